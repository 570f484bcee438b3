// The FastCGI client. Each request runs on its caller's thread over a connection checked out of a
// small locked pool: the caller writes, sleeps in poll() until the reply, and reads it, so a
// request costs one wake-up instead of a round trip through a separate I/O thread. A sweeper
// thread closes connections that stayed idle too long.
#include "fcgi/client.h"

#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <condition_variable>
#include <cstring>
#include <list>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>
#include <utility>
#include <vector>

namespace fcgi {
namespace {

constexpr uint16_t kRequestId = 1;
// The largest STDIN record content that needs no padding (a multiple of 8 below 65535).
constexpr size_t kStdinChunk = 65528;

using Clock = Client::Clock;

// Failures after which a request on a reused connection may be retried on a fresh one, when
// nothing of the reply came back: the backend closed the idle connection under us.
bool IsStaleConnectionError(int err) {
  return err == EPIPE || err == ECONNRESET || err == ECONNABORTED;
}

// Milliseconds for poll() until t (rounded up, so a wait never ends just before t), capped.
int PollTimeout(Clock::time_point t) {
  const auto left = t - Clock::now();
  if (left <= Clock::duration::zero()) return 0;
  const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(left).count() + 1;
  return static_cast<int>(std::min<int64_t>(ms, 60000));
}

Status ShuttingDown() {
  return Status::Unavailable("FastCGI client is shutting down");
}

}  // namespace

class Client::Pool {
 public:
  explicit Pool(const ClientOptions& options) : options_(options) {}
  ~Pool() { Stop(); }

  Status Start();
  void Stop();
  Result Execute(const Params& params, std::shared_ptr<const Body> body, Clock::time_point deadline,
                 Idempotency idempotency, const std::function<void()>& heartbeat,
                 std::chrono::milliseconds heartbeat_interval);
  ClientStats stats() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return ClientStats{busy_fds_.size(), idle_.size(), waiters_.size()};
  }
  const ClientOptions& options() const { return options_; }

 private:
  struct Connection {
    UniqueFd fd;
    bool connecting = false;  // connect() still in progress
    bool reused = false;      // served a request before this one
    uint32_t requests = 0;
    Clock::time_point idle_since;
  };

  // A caller waiting for a connection; served in arrival order.
  struct Waiter {
    std::condition_variable wake;
  };

  // What the caller wants, and when to call its heartbeat.
  struct Call {
    const Params* params = nullptr;
    Idempotency idempotency = Idempotency::kNotIdempotent;
    const Body* body = nullptr;
    Clock::time_point deadline;
    const std::function<void()>* heartbeat = nullptr;  // never null; may be empty
    bool beats = false;                                // the heartbeat is set
    std::chrono::milliseconds heartbeat_interval{10000};
    Clock::time_point next_beat;
    // When a wait meant to end at t must end earlier for the next heartbeat.
    Clock::time_point WakeBy(Clock::time_point t) const {
      return beats ? std::min(t, next_beat) : t;
    }
  };

  // What the end of an attempt leaves of its connection.
  enum class ConnectionFate {
    kKeep,         // a clean end: it may serve another request
    kClose,        // anything else
    kFoundClosed,  // the backend had closed it before any reply byte: a candidate for a retry
  };

  // How one attempt on one connection ended.
  struct Attempt {
    Status status;
    Response response;  // the reply when status is ok; otherwise only the STDERR that arrived
    RequestPhase phase = RequestPhase::kConnecting;  // how far it got
    ConnectionFate fate = ConnectionFate::kClose;
  };

  // One request on one connection, phase by phase (see Exchange::Run).
  class Exchange;
  // The pool slot a request holds, with its connection once there is one. Gives both back when
  // it goes out of scope (an exception included), keeping the connection only when told to.
  class Lease;

  // Waits for a connection: an idle one that still looks alive, or a free slot for a new one
  // (*conn is then null). Callers are served first come, first served. Fails at the deadline or
  // when the client stops.
  Status Acquire(Call* call, std::unique_ptr<Connection>* conn);
  // Under mutex_: takes an idle connection or a free slot, if there is one.
  bool TryTake(std::unique_ptr<Connection>* conn);
  // Under mutex_: removes w from the queue and wakes the next waiter if w was first.
  void Leave(Waiter* w);
  // A new connection in an acquired slot.
  Status Connect(std::unique_ptr<Connection>* conn);
  // Gives the slot back, keeping the connection for the next request when it may be reused.
  void Release(std::unique_ptr<Connection> conn, bool reusable);
  // Attempts on the leased slot until one counts, filling *result.
  void Attempts(Call* call, Lease* lease, Result* result);
  // Whether a failed attempt, the number-th, may run again on a fresh connection.
  bool MayRetry(const Attempt& attempt, const Connection& conn, const Call& call, int number) const;
  // Closes *conn but keeps its slot for a fresh one; false (nothing done) once Stop() began.
  bool DropForRetry(std::unique_ptr<Connection>* conn);
  void Beat(Call* call);
  // A failure as the caller should see it: once Stop() began, whatever broke was its doing.
  Status OrShuttingDown(Status failure) const {
    std::lock_guard<std::mutex> lock(mutex_);
    return stopping_ ? ShuttingDown() : failure;
  }
  void Sweep();

  ClientOptions options_;
  mutable std::mutex mutex_;
  std::condition_variable sweeper_wake_;
  std::vector<std::unique_ptr<Connection>> idle_;  // least recently used first
  std::vector<int> busy_fds_;                      // sockets of requests in flight
  std::list<Waiter*> waiters_;  // oldest first; the first one is woken when a slot frees up
  size_t in_flight_ = 0;        // callers inside Execute (Stop waits for them)
  bool stopping_ = false;
  std::condition_variable drained_;
  std::thread sweeper_;
};

class Client::Pool::Lease {
 public:
  Lease(Pool* pool, std::unique_ptr<Connection> acquired)
      : conn(std::move(acquired)), pool_(pool) {}
  ~Lease() {
    if (pool_ != nullptr) pool_->Release(std::move(conn), false);
  }
  Lease(const Lease&) = delete;
  Lease& operator=(const Lease&) = delete;

  void Release(bool reusable) { std::exchange(pool_, nullptr)->Release(std::move(conn), reusable); }

  std::unique_ptr<Connection> conn;  // null until connected (or after a drop for a retry)

 private:
  Pool* pool_;  // null once released
};

// The phases of one attempt: finish connecting, queue the request head, then stream the body
// as STDIN while reading the reply, until END_REQUEST, a failure or the deadline. The attempt's
// phase only moves forward; a reply may begin before the whole body went out (a script that
// answers without reading it all).
class Client::Pool::Exchange {
 public:
  Exchange(Pool* pool, Connection* conn, Call* call)
      : pool_(pool),
        conn_(conn),
        call_(call),
        where_(pool->options_.address.ToString()),
        fd_(conn->fd.get()),
        collector_(kRequestId, pool->options_.max_reply_bytes, pool->options_.max_stderr_bytes),
        // On the heap, so that the MTA-facing threads that run requests keep small stacks
        // (there may be hundreds of them).
        buf_(new char[kStdinChunk]) {}

  Attempt Run();

 private:
  // Each phase returns false when the attempt ended there (attempt_ says how).
  bool FinishConnecting();
  bool QueueHead();
  void Transfer();
  // Writes what the socket takes now, refilling the output from the body.
  bool SendSome();
  // Reads what arrived, up to END_REQUEST.
  bool ReadSome();
  // Adds the next STDIN records (or the closing empty one) to out_.
  Status FillOutput();
  // After a failed send: the backend may have answered and closed before reading the whole
  // body. Whatever it sent means the request ran (and its STDERR is worth keeping).
  void DrainReply();
  // Feeds received bytes to the reader and the collector, up to END_REQUEST; fails on broken
  // protocol or a reply past max_reply_bytes.
  Status Consume(const char* data, size_t size);
  bool Sent() const { return stdin_queued_ && out_pos_ == out_.size(); }
  bool AnythingReceived() const {
    return attempt_.phase == RequestPhase::kReading || attempt_.phase == RequestPhase::kEnded;
  }
  void End(Status status, ConnectionFate fate);
  void FailIo(const char* what, int err);

  Pool* pool_;
  Connection* conn_;
  Call* call_;
  const std::string& where_;
  const int fd_;
  Attempt attempt_;
  std::string out_;  // encoded records not yet sent, from out_pos_
  size_t out_pos_ = 0;
  uint64_t body_offset_ = 0;   // body bytes encoded into out_ so far
  bool stdin_queued_ = false;  // the closing empty STDIN record is in out_
  bool can_write_ = true;      // try at once: a fresh or idle socket has room
  protocol::RecordReader reader_;
  ResponseCollector collector_;
  const std::unique_ptr<char[]> buf_;  // kStdinChunk bytes: body chunks and replies
};

Status Client::Pool::Start() {
  sweeper_ = std::thread([this] {
    // Signals are the embedding program's business, never this helper thread's.
    sigset_t all;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, nullptr);
    Sweep();
  });
  return Status::Ok();
}

void Client::Pool::Stop() {
  {
    std::unique_lock<std::mutex> lock(mutex_);
    stopping_ = true;
    // Wake the callers blocked in poll() on a busy connection; they see stopping_ and give up.
    for (int fd : busy_fds_) ::shutdown(fd, SHUT_RDWR);
    for (Waiter* w : waiters_) w->wake.notify_one();
    sweeper_wake_.notify_all();
    drained_.wait(lock, [this] { return in_flight_ == 0; });
    idle_.clear();
  }
  if (sweeper_.joinable()) sweeper_.join();
}

void Client::Pool::Sweep() {
  std::unique_lock<std::mutex> lock(mutex_);
  while (!stopping_) {
    sweeper_wake_.wait_for(lock, std::chrono::seconds(1));
    const auto now = Clock::now();
    std::erase_if(idle_, [&](const std::unique_ptr<Connection>& c) {
      return now - c->idle_since >= options_.idle_timeout;
    });
  }
}

void Client::Pool::Beat(Call* call) {
  if (!call->beats) return;
  const auto now = Clock::now();
  if (now < call->next_beat) return;
  call->next_beat = now + call->heartbeat_interval;
  try {
    (*call->heartbeat)();
  } catch (...) {
    // A progress report that failed is no reason to abandon the request.
  }
}

bool Client::Pool::TryTake(std::unique_ptr<Connection>* conn) {
  while (!idle_.empty()) {
    // Most recently used first: it is the least likely to have been closed by the backend.
    std::unique_ptr<Connection> c = std::move(idle_.back());
    idle_.pop_back();
    char probe;
    const ssize_t n = ::recv(c->fd.get(), &probe, 1, MSG_PEEK | MSG_DONTWAIT);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      c->reused = true;
      busy_fds_.push_back(c->fd.get());
      *conn = std::move(c);
      return true;
    }
    // EOF, an error, or stray bytes: the connection is of no further use (closed here).
  }
  if (busy_fds_.size() < options_.max_connections) {
    busy_fds_.push_back(-1);  // a slot; the fd is filled in once connected
    conn->reset();
    return true;
  }
  return false;
}

void Client::Pool::Leave(Waiter* w) {
  const bool was_first = !waiters_.empty() && waiters_.front() == w;
  waiters_.remove(w);
  if (was_first && !waiters_.empty()) waiters_.front()->wake.notify_one();
}

Status Client::Pool::Acquire(Call* call, std::unique_ptr<Connection>* conn) {
  std::unique_lock<std::mutex> lock(mutex_);
  if (stopping_) return ShuttingDown();
  // Nobody waiting: take what is free. Otherwise queue up behind the others, so that a newcomer
  // never takes the connection a longer waiter was woken for.
  if (waiters_.empty() && TryTake(conn)) return Status::Ok();
  Waiter me;
  waiters_.push_back(&me);
  try {
    for (;;) {
      if (stopping_) {
        Leave(&me);
        return ShuttingDown();
      }
      if (Clock::now() >= call->deadline) {
        Leave(&me);
        return Status::Timeout("waiting for a free connection to " + options_.address.ToString() +
                               " (all " + std::to_string(options_.max_connections) + " busy)");
      }
      if (waiters_.front() == &me && TryTake(conn)) {
        Leave(&me);  // wakes the next one: there may be more than one free slot
        return Status::Ok();
      }
      me.wake.wait_until(lock, call->WakeBy(call->deadline));
      if (call->beats && Clock::now() >= call->next_beat) {
        lock.unlock();
        Beat(call);  // never throws
        lock.lock();
      }
    }
  } catch (...) {
    if (!lock.owns_lock()) lock.lock();
    Leave(&me);  // an allocation failed: me must not stay in the queue
    throw;
  }
}

Status Client::Pool::Connect(std::unique_ptr<Connection>* conn) {
  UniqueFd fd;
  bool in_progress = false;
  if (Status s = options_.address.StartConnect(&fd, &in_progress); !s.ok()) return s;
  auto c = std::make_unique<Connection>();
  c->fd = std::move(fd);
  c->connecting = in_progress;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    auto slot = std::find(busy_fds_.begin(), busy_fds_.end(), -1);
    if (slot != busy_fds_.end()) *slot = c->fd.get();
    if (stopping_) ::shutdown(c->fd.get(), SHUT_RDWR);
  }
  *conn = std::move(c);
  return Status::Ok();
}

void Client::Pool::Release(std::unique_ptr<Connection> conn, bool reusable) {
  std::lock_guard<std::mutex> lock(mutex_);
  const int fd = conn ? conn->fd.get() : -1;
  auto slot = std::find(busy_fds_.begin(), busy_fds_.end(), fd);
  if (slot != busy_fds_.end()) busy_fds_.erase(slot);
  const bool worn_out = conn && options_.max_requests_per_connection != 0 &&
                        conn->requests >= options_.max_requests_per_connection;
  if (conn && reusable && options_.keep_alive && !worn_out && !stopping_) {
    conn->idle_since = Clock::now();
    idle_.push_back(std::move(conn));
  }
  // else: the connection (if any) closes here, under the lock, so its fd number cannot be
  // reused while it still sits in busy_fds_.
  conn.reset();
  if (!waiters_.empty()) waiters_.front()->wake.notify_one();
}

Client::Pool::Attempt Client::Pool::Exchange::Run() {
  if (conn_->connecting && !FinishConnecting()) return std::move(attempt_);
  attempt_.phase = RequestPhase::kSending;
  conn_->requests++;
  if (!QueueHead()) return std::move(attempt_);
  Transfer();
  return std::move(attempt_);
}

bool Client::Pool::Exchange::FinishConnecting() {
  const auto limit = std::min(call_->deadline, Clock::now() + pool_->options_.connect_timeout);
  for (;;) {
    pollfd p{fd_, POLLOUT, 0};
    const int n = ::poll(&p, 1, PollTimeout(call_->WakeBy(limit)));
    if (n < 0 && errno == EINTR) continue;
    if (n > 0) break;
    if (Clock::now() >= limit) {
      End(Status::Timeout("connecting to " + where_), ConnectionFate::kClose);
      return false;
    }
    pool_->Beat(call_);
  }
  int err = 0;
  socklen_t len = sizeof err;
  ::getsockopt(fd_, SOL_SOCKET, SO_ERROR, &err, &len);
  if (err != 0) {
    End(pool_->OrShuttingDown(DescribeConnectError(pool_->options_.address, err)),
        ConnectionFate::kClose);
    return false;
  }
  conn_->connecting = false;
  return true;
}

bool Client::Pool::Exchange::QueueHead() {
  Status s =
      protocol::EncodeRequestHead(kRequestId, *call_->params, pool_->options_.keep_alive, &out_);
  if (!s.ok()) {
    End(std::move(s), ConnectionFate::kKeep);  // nothing was sent
    return false;
  }
  return true;
}

void Client::Pool::Exchange::Transfer() {
  for (;;) {
    // The deadline holds even when the socket never goes quiet (a backend streaming STDERR).
    if (Clock::now() >= call_->deadline) {
      End(Status::Timeout((Sent() ? "waiting for the reply from " : "sending the request to ") +
                          where_),
          ConnectionFate::kClose);
      return;
    }
    pool_->Beat(call_);
    if (!SendSome()) return;

    // Wait for the reply (and for room to send the rest of a large body).
    pollfd p{fd_, static_cast<short>(POLLIN | (Sent() ? 0 : POLLOUT)), 0};
    const int ready = ::poll(&p, 1, PollTimeout(call_->WakeBy(call_->deadline)));
    if (ready < 0) {
      if (errno == EINTR) continue;
      FailIo("waiting on ", errno);
      return;
    }
    if (ready == 0) continue;  // the deadline or a heartbeat is due: checked at the top
    if ((p.revents & POLLOUT) != 0) can_write_ = true;
    if ((p.revents & (POLLIN | POLLHUP | POLLERR)) == 0) continue;
    if (!ReadSome()) return;
  }
}

bool Client::Pool::Exchange::SendSome() {
  while (can_write_ && !Sent()) {
    if (out_pos_ == out_.size()) {
      out_.clear();
      out_pos_ = 0;
      if (Status s = FillOutput(); !s.ok()) {
        End(std::move(s), ConnectionFate::kClose);
        return false;
      }
      if (out_.empty()) break;
    }
    const ssize_t n =
        ::send(fd_, out_.data() + out_pos_, out_.size() - out_pos_, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) {
        can_write_ = false;
        break;
      }
      const int err = errno;
      DrainReply();
      FailIo("sending request to ", err);
      return false;
    }
    out_pos_ += static_cast<size_t>(n);
  }
  if (Sent() && attempt_.phase == RequestPhase::kSending) {
    attempt_.phase = RequestPhase::kAwaitingReply;
  }
  return true;
}

Status Client::Pool::Exchange::FillOutput() {
  const Body* body = call_->body;
  const uint64_t total = body != nullptr ? body->size() : 0;
  // Several records per write keep syscalls few for large bodies.
  while (out_.size() < 4 * kStdinChunk && !stdin_queued_) {
    if (body_offset_ >= total) {
      protocol::AppendRecord(&out_, protocol::RecordType::kStdin, kRequestId, {});
      stdin_queued_ = true;
      break;
    }
    size_t got = 0;
    Status s = body->ReadAt(body_offset_, buf_.get(), kStdinChunk, &got);
    if (!s.ok()) return s;
    if (got == 0) return Status::IoError("request body ended before its announced size");
    protocol::AppendRecord(&out_, protocol::RecordType::kStdin, kRequestId,
                           std::string_view(buf_.get(), got));
    body_offset_ += got;
  }
  return Status::Ok();
}

void Client::Pool::Exchange::DrainReply() {
  bool readable = true;  // until the first record the collector refuses
  for (;;) {
    const ssize_t got = ::recv(fd_, buf_.get(), kStdinChunk, MSG_DONTWAIT);
    if (got < 0 && errno == EINTR) continue;
    if (got <= 0) break;
    attempt_.phase = RequestPhase::kReading;
    if (readable) readable = Consume(buf_.get(), static_cast<size_t>(got)).ok();
  }
}

bool Client::Pool::Exchange::ReadSome() {
  // A bounded number of rounds, so that the deadline and the heartbeat get their turn.
  for (int rounds = 0; rounds < 16; ++rounds) {
    const ssize_t n = ::recv(fd_, buf_.get(), kStdinChunk, MSG_DONTWAIT);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) return true;
      FailIo("reading reply from ", errno);
      return false;
    }
    if (n == 0) {
      const bool nothing = !AnythingReceived();
      End(pool_->OrShuttingDown(Status::IoError(
              where_ + " closed the connection " +
              (nothing ? "without replying" : "before the end of its reply (no END_REQUEST)"))),
          nothing ? ConnectionFate::kFoundClosed : ConnectionFate::kClose);
      return false;
    }
    attempt_.phase = RequestPhase::kReading;
    if (Status s = Consume(buf_.get(), static_cast<size_t>(n)); !s.ok()) {
      End(std::move(s), ConnectionFate::kClose);
      return false;
    }
    if (collector_.done()) {
      attempt_.phase = RequestPhase::kEnded;
      attempt_.status = collector_.Finish(&attempt_.response);
      attempt_.fate =
          Sent() && reader_.buffered() == 0 ? ConnectionFate::kKeep : ConnectionFate::kClose;
      return false;
    }
  }
  return true;
}

Status Client::Pool::Exchange::Consume(const char* data, size_t size) {
  reader_.Feed(data, size);
  while (!collector_.done()) {
    std::optional<protocol::RecordReader::Record> record;
    Status s = reader_.Next(&record);
    if (s.ok() && record) s = collector_.Consume(*record);
    if (!s.ok()) return s;
    if (!record) break;
  }
  return Status::Ok();
}

void Client::Pool::Exchange::End(Status status, ConnectionFate fate) {
  attempt_.status = std::move(status);
  attempt_.fate = fate;
  attempt_.response.stderr_output = collector_.TakeStderr();
}

void Client::Pool::Exchange::FailIo(const char* what, int err) {
  const bool found_closed = IsStaleConnectionError(err) && !AnythingReceived();
  End(pool_->OrShuttingDown(Status::FromErrno(Status::Code::kIoError, what + where_, err)),
      found_closed ? ConnectionFate::kFoundClosed : ConnectionFate::kClose);
}

bool Client::Pool::MayRetry(const Attempt& attempt, const Connection& conn, const Call& call,
                            int number) const {
  if (attempt.fate != ConnectionFate::kFoundClosed || !conn.reused || number != 1) return false;
  if (Clock::now() >= call.deadline) return false;
  // A reused connection that fails before any reply byte is usually one the backend closed
  // while idle. But a script that died after reading the whole request looks the same, so a
  // request that is not idempotent (a POST that may have saved a message) is retried only when
  // it failed while still being written.
  return attempt.phase == RequestPhase::kSending || call.idempotency == Idempotency::kIdempotent;
}

bool Client::Pool::DropForRetry(std::unique_ptr<Connection>* conn) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (stopping_) return false;
  auto slot = std::find(busy_fds_.begin(), busy_fds_.end(), (*conn)->fd.get());
  if (slot != busy_fds_.end()) *slot = -1;
  conn->reset();  // under the lock, like Release: the fd number is not reused while listed
  return true;
}

void Client::Pool::Attempts(Call* call, Lease* lease, Result* result) {
  for (;;) {
    result->attempts++;
    if (!lease->conn) {
      if (Status s = Connect(&lease->conn); !s.ok()) {
        result->status = std::move(s);
        result->phase = RequestPhase::kConnecting;
        return;
      }
    }
    Attempt a = Exchange(this, lease->conn.get(), call).Run();
    if (MayRetry(a, *lease->conn, *call, result->attempts) && DropForRetry(&lease->conn)) continue;
    result->status = std::move(a.status);
    result->phase = a.phase;
    if (result->status.ok()) {
      result->response = std::move(a.response);
    } else {
      result->response.stderr_output = std::move(a.response.stderr_output);
    }
    lease->Release(a.fate == ConnectionFate::kKeep);
    return;
  }
}

Result Client::Pool::Execute(const Params& params, std::shared_ptr<const Body> body,
                             Clock::time_point deadline, Idempotency idempotency,
                             const std::function<void()>& heartbeat,
                             std::chrono::milliseconds heartbeat_interval) {
  Result result;
  const auto started = Clock::now();
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (stopping_) {
      result.status = ShuttingDown();
      return result;
    }
    ++in_flight_;
  }
  // Keeps the books straight whatever happens below, an exception included.
  struct Leaving {
    Pool* pool;
    ~Leaving() {
      std::lock_guard<std::mutex> lock(pool->mutex_);
      if (--pool->in_flight_ == 0) pool->drained_.notify_all();
    }
  } leaving{this};

  Call call;
  call.params = &params;
  call.idempotency = idempotency;
  call.body = body.get();
  call.deadline = deadline;
  call.heartbeat = &heartbeat;
  call.beats = static_cast<bool>(heartbeat);
  call.heartbeat_interval = heartbeat_interval;
  call.next_beat = started + heartbeat_interval;

  std::unique_ptr<Connection> conn;
  result.status = Acquire(&call, &conn);
  if (result.status.ok()) {
    Lease lease(this, std::move(conn));  // the slot is ours until the lease ends
    Attempts(&call, &lease, &result);
  }
  result.elapsed = std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - started);
  return result;
}

Client::Client(std::unique_ptr<Pool> pool) : pool_(std::move(pool)) {}
Client::~Client() = default;

Status Client::Create(const ClientOptions& options, std::unique_ptr<Client>* out) {
  auto pool = std::make_unique<Pool>(options);
  if (Status s = pool->Start(); !s.ok()) return s;
  out->reset(new Client(std::move(pool)));
  return Status::Ok();
}

Result Client::Execute(const Params& params, std::shared_ptr<const Body> body,
                       Clock::time_point deadline, Idempotency idempotency,
                       const std::function<void()>& heartbeat,
                       std::chrono::milliseconds heartbeat_interval) {
  return pool_->Execute(params, std::move(body), deadline, idempotency, heartbeat,
                        heartbeat_interval);
}

ClientStats Client::stats() const {
  return pool_->stats();
}
const ClientOptions& Client::options() const {
  return pool_->options();
}

}  // namespace fcgi
