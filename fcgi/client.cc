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
                 const std::function<void()>& heartbeat,
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
    bool idempotent = false;  // REQUEST_METHOD GET or HEAD: safe to send twice
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

  // How one attempt on one connection ended.
  struct Attempt {
    Status status;
    Response response;
    bool stale = false;          // the backend went away before any reply byte
    bool reply_started = false;  // some reply byte arrived
    bool fully_sent = false;     // the whole request went out
    bool reusable = false;       // clean end: the connection may serve another request
  };

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
  Attempt Run(Connection* conn, Call* call);
  // Adds the next STDIN records (or the closing empty one) to *out; chunk is scratch space of
  // kStdinChunk bytes.
  Status FillOutput(const Body* body, uint64_t* offset, bool* stdin_done, char* chunk,
                    std::string* out);
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

Status Client::Pool::FillOutput(const Body* body, uint64_t* offset, bool* stdin_done, char* chunk,
                                std::string* out) {
  const uint64_t total = body != nullptr ? body->size() : 0;
  // Several records per write keep syscalls few for large bodies.
  while (out->size() < 4 * kStdinChunk && !*stdin_done) {
    if (*offset >= total) {
      protocol::AppendRecord(out, protocol::RecordType::kStdin, kRequestId, {});
      *stdin_done = true;
      break;
    }
    size_t got = 0;
    Status s = body->ReadAt(*offset, chunk, kStdinChunk, &got);
    if (!s.ok()) return s;
    if (got == 0) return Status::IoError("request body ended before its announced size");
    protocol::AppendRecord(out, protocol::RecordType::kStdin, kRequestId,
                           std::string_view(chunk, got));
    *offset += got;
  }
  return Status::Ok();
}

Client::Pool::Attempt Client::Pool::Run(Connection* conn, Call* call) {
  Attempt a;
  const std::string& where = options_.address.ToString();
  const int fd = conn->fd.get();

  if (conn->connecting) {
    const auto limit = std::min(call->deadline, Clock::now() + options_.connect_timeout);
    for (;;) {
      pollfd p{fd, POLLOUT, 0};
      const int n = ::poll(&p, 1, PollTimeout(call->WakeBy(limit)));
      if (n < 0 && errno == EINTR) continue;
      if (n > 0) break;
      if (Clock::now() >= limit) {
        a.status = Status::Timeout("connecting to " + where);
        return a;
      }
      Beat(call);
    }
    int err = 0;
    socklen_t len = sizeof err;
    ::getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len);
    if (err != 0) {
      a.status = OrShuttingDown(DescribeConnectError(options_.address, err));
      return a;
    }
    conn->connecting = false;
  }

  conn->requests++;
  std::string out;
  size_t out_pos = 0;
  uint64_t body_offset = 0;
  bool stdin_done = false;
  if (Status s = protocol::EncodeRequestHead(kRequestId, *call->params, options_.keep_alive, &out);
      !s.ok()) {
    a.status = s;
    a.reusable = true;  // nothing was sent
    return a;
  }
  protocol::RecordReader reader;
  ResponseCollector collector(kRequestId, options_.max_reply_bytes, options_.max_stderr_bytes);
  auto fail_io = [&](const char* what, int err) {
    a.status = OrShuttingDown(Status::FromErrno(Status::Code::kIoError, what + where, err));
    a.stale = IsStaleConnectionError(err) && !collector.started();
  };
  // Scratch for body chunks and replies: on the heap, so that the MTA-facing threads that run
  // requests keep small stacks (there may be hundreds of them).
  const std::unique_ptr<char[]> buf(new char[kStdinChunk]);
  bool can_write = true;  // try at once: a fresh or idle socket has room
  for (;;) {
    // The deadline holds even when the socket never goes quiet (a backend streaming STDERR).
    if (Clock::now() >= call->deadline) {
      a.fully_sent = stdin_done && out_pos == out.size();
      a.status = Status::Timeout(
          (a.fully_sent ? "waiting for the reply from " : "sending the request to ") + where);
      return a;
    }
    Beat(call);
    // Send what we can.
    while (can_write && !(stdin_done && out_pos == out.size())) {
      if (out_pos == out.size()) {
        out.clear();
        out_pos = 0;
        if (Status s = FillOutput(call->body, &body_offset, &stdin_done, buf.get(), &out);
            !s.ok()) {
          a.status = s;
          return a;
        }
        if (out.empty()) break;
      }
      const ssize_t n =
          ::send(fd, out.data() + out_pos, out.size() - out_pos, MSG_NOSIGNAL | MSG_DONTWAIT);
      if (n < 0) {
        if (errno == EINTR) continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
          can_write = false;
          break;
        }
        const int err = errno;
        fail_io("sending request to ", err);
        // The backend may have answered and closed before reading the whole body: whatever it
        // sent means the request ran, so it must not be retried.
        for (;;) {
          const ssize_t got = ::recv(fd, buf.get(), kStdinChunk, MSG_DONTWAIT);
          if (got < 0 && errno == EINTR) continue;
          if (got <= 0) break;
          a.reply_started = true;
          a.stale = false;
        }
        return a;
      }
      out_pos += static_cast<size_t>(n);
    }
    a.fully_sent = stdin_done && out_pos == out.size();

    // Wait for the reply (and for room to send the rest of a large body).
    pollfd p{fd, static_cast<short>(POLLIN | (a.fully_sent ? 0 : POLLOUT)), 0};
    const int ready = ::poll(&p, 1, PollTimeout(call->WakeBy(call->deadline)));
    if (ready < 0) {
      if (errno == EINTR) continue;
      fail_io("waiting on ", errno);
      return a;
    }
    if (ready == 0) continue;  // the deadline or a heartbeat is due: checked at the top
    if ((p.revents & POLLOUT) != 0) can_write = true;
    if ((p.revents & (POLLIN | POLLHUP | POLLERR)) == 0) continue;

    // Read everything there is.
    for (int rounds = 0; rounds < 16; ++rounds) {
      const ssize_t n = ::recv(fd, buf.get(), kStdinChunk, MSG_DONTWAIT);
      if (n < 0) {
        if (errno == EINTR) continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) break;
        fail_io("reading reply from ", errno);
        return a;
      }
      if (n == 0) {
        const bool nothing = !collector.started() && reader.buffered() == 0;
        a.status = OrShuttingDown(Status::IoError(where + " closed the connection " +
                                                  (nothing ? "without replying"
                                                           : "before the end of its reply (no "
                                                             "END_REQUEST)")));
        a.stale = nothing;
        return a;
      }
      reader.Feed(buf.get(), static_cast<size_t>(n));
      for (;;) {
        std::optional<protocol::RecordReader::Record> record;
        Status s = reader.Next(&record);
        if (s.ok() && record) s = collector.Consume(*record);
        a.reply_started = collector.started();
        if (!s.ok()) {
          a.status = s;
          return a;
        }
        if (!record) break;
        if (collector.done()) {
          a.status = collector.Finish(&a.response);
          a.fully_sent = stdin_done && out_pos == out.size();
          a.reusable = a.fully_sent && reader.buffered() == 0;
          return a;
        }
      }
    }
  }
}

Result Client::Pool::Execute(const Params& params, std::shared_ptr<const Body> body,
                             Clock::time_point deadline, const std::function<void()>& heartbeat,
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
  Call call;
  call.params = &params;
  for (const auto& [name, value] : params) {
    if (name == "REQUEST_METHOD") call.idempotent = value == "GET" || value == "HEAD";
  }
  call.body = body.get();
  call.deadline = deadline;
  call.heartbeat = &heartbeat;
  call.beats = static_cast<bool>(heartbeat);
  call.heartbeat_interval = heartbeat_interval;
  call.next_beat = started + heartbeat_interval;

  // Keeps the books straight whatever happens below, an exception included.
  struct Leaving {
    Pool* pool;
    ~Leaving() {
      std::lock_guard<std::mutex> lock(pool->mutex_);
      if (--pool->in_flight_ == 0) pool->drained_.notify_all();
    }
  } leaving{this};
  std::unique_ptr<Connection> conn;
  bool holding = false;   // one entry of busy_fds_ is ours
  bool reusable = false;  // the exchange ended cleanly: the connection may serve another
  try {
    result.status = Acquire(&call, &conn);
    holding = result.status.ok();
    while (holding) {
      if (!conn) {
        result.attempts++;
        if (Status s = Connect(&conn); !s.ok()) {
          result.status = s;
          break;
        }
      } else if (result.attempts == 0) {
        result.attempts++;
      }
      Attempt a = Run(conn.get(), &call);
      // A reused connection that fails before any reply byte is usually one the backend closed
      // while idle. But a script that died after reading the whole request looks the same, so a
      // request that is not idempotent (a POST that may have saved a message) is retried only
      // when it failed while still being written.
      const bool retry = a.stale && conn->reused && !a.reply_started &&
                         (call.idempotent || !a.fully_sent) && Clock::now() < call.deadline &&
                         result.attempts == 1;
      std::lock_guard<std::mutex> lock(mutex_);
      if (retry && !stopping_) {
        // Close the stale connection but keep its slot for a fresh one.
        auto slot = std::find(busy_fds_.begin(), busy_fds_.end(), conn->fd.get());
        if (slot != busy_fds_.end()) *slot = -1;
        conn.reset();
        continue;
      }
      result.status = std::move(a.status);
      if (result.status.ok()) result.response = std::move(a.response);
      reusable = a.reusable;
      break;
    }
  } catch (...) {
    if (holding) Release(std::move(conn), false);
    throw;
  }
  if (holding) Release(std::move(conn), reusable);
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
                       Clock::time_point deadline, const std::function<void()>& heartbeat,
                       std::chrono::milliseconds heartbeat_interval) {
  return pool_->Execute(params, std::move(body), deadline, heartbeat, heartbeat_interval);
}

ClientStats Client::stats() const {
  return pool_->stats();
}
const ClientOptions& Client::options() const {
  return pool_->options();
}

}  // namespace fcgi
