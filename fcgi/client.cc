// The libevent side of the FastCGI client. All connection and request state lives on the loop
// thread; other threads only push Calls onto a locked queue and wait on a future.
#include "fcgi/client.h"

#include <event2/event.h>
#include <event2/thread.h>
#include <pthread.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <deque>
#include <future>
#include <list>
#include <mutex>
#include <thread>
#include <vector>

namespace fcgi {
namespace {

constexpr uint16_t kRequestId = 1;
// The largest STDIN record content that needs no padding (a multiple of 8 below 65535).
constexpr size_t kStdinChunk = 65528;

struct EventDeleter {
  void operator()(event* e) const {
    if (e != nullptr) event_free(e);
  }
};
using EventPtr = std::unique_ptr<event, EventDeleter>;

timeval ToTimeval(std::chrono::steady_clock::duration d) {
  if (d < std::chrono::steady_clock::duration::zero()) d = {};
  const auto us = std::chrono::duration_cast<std::chrono::microseconds>(d).count();
  return timeval{static_cast<time_t>(us / 1000000), static_cast<suseconds_t>(us % 1000000)};
}

// Failures after which a request on a reused connection may be retried on a fresh one, when
// nothing of the reply came back: the backend closed the idle connection under us.
bool IsStaleConnectionError(int err) {
  return err == EPIPE || err == ECONNRESET || err == ECONNABORTED;
}

}  // namespace

class Client::Loop {
 public:
  explicit Loop(const ClientOptions& options) : options_(options) {}
  ~Loop() { Stop(); }

  Status Start();
  void Stop();
  Result Execute(const Params& params, std::shared_ptr<const Body> body, Clock::time_point deadline,
                 const std::function<void()>& heartbeat,
                 std::chrono::milliseconds heartbeat_interval);
  ClientStats stats() const {
    std::lock_guard<std::mutex> lock(stats_mutex_);
    return stats_;
  }
  const ClientOptions& options() const { return options_; }

 private:
  struct Connection;

  struct Call {
    Loop* loop = nullptr;
    Params params;
    bool idempotent = false;  // REQUEST_METHOD GET or HEAD: safe to send twice
    std::shared_ptr<const Body> body;
    Clock::time_point deadline;
    Clock::time_point started;
    std::promise<Result> promise;
    EventPtr timer;
    Connection* conn = nullptr;
    int attempts = 0;
    // Per attempt:
    std::string out;
    size_t out_pos = 0;
    uint64_t body_offset = 0;
    bool stdin_done = false;
    protocol::RecordReader reader;
    std::unique_ptr<ResponseCollector> collector;
  };

  struct Connection {
    Loop* loop = nullptr;
    UniqueFd fd;
    EventPtr read_event;
    EventPtr write_event;
    EventPtr connect_timer;
    Call* call = nullptr;
    bool connecting = false;
    bool reused = false;
    uint32_t requests = 0;
    Clock::time_point idle_since;
  };

  using ConnList = std::list<std::unique_ptr<Connection>>;

  void Run();
  static void OnWake(evutil_socket_t, short, void* arg);
  static void OnCallTimer(evutil_socket_t, short, void* arg);
  static void OnConnectTimer(evutil_socket_t, short, void* arg);
  static void OnReadable(evutil_socket_t, short, void* arg);
  static void OnWritable(evutil_socket_t, short, void* arg);
  static void OnSweep(evutil_socket_t, short, void* arg);

  void Dispatch();
  Connection* TakeIdleConnection();
  Connection* NewConnection(Status* error);
  void BeginAttempt(Call* call, Connection* conn);
  void StartRequest(Connection* conn);
  void HandleWritable(Connection* conn);
  void HandleReadable(Connection* conn);
  Status FillOutput(Call* call);
  // Ends the current attempt with an error: retries when safe, else completes the call.
  void FailAttempt(Connection* conn, Status status, bool stale_connection);
  void Complete(Call* call, Result result);
  void CloseConnection(Connection* conn);
  void ReleaseConnection(Connection* conn);
  void UpdateStats();

  ClientOptions options_;
  event_base* base_ = nullptr;
  EventPtr wake_event_;
  EventPtr sweep_event_;
  std::thread thread_;

  std::mutex queue_mutex_;
  std::vector<Call*> incoming_;  // owned; moved to waiting_ on the loop thread
  bool stopping_ = false;

  // Loop-thread state.
  std::deque<Call*> waiting_;
  ConnList busy_;
  ConnList idle_;

  mutable std::mutex stats_mutex_;
  ClientStats stats_;
};

Status Client::Loop::Start() {
  static std::once_flag threads_once;
  std::call_once(threads_once, [] { evthread_use_pthreads(); });
  base_ = event_base_new();
  if (base_ == nullptr) return Status::IoError("event_base_new failed");
  wake_event_.reset(event_new(base_, -1, 0, &Loop::OnWake, this));
  sweep_event_.reset(event_new(base_, -1, EV_PERSIST, &Loop::OnSweep, this));
  const timeval one_second{1, 0};
  event_add(sweep_event_.get(), &one_second);
  thread_ = std::thread([this] { Run(); });
  return Status::Ok();
}

void Client::Loop::Run() {
  // Signals are the embedding program's business, never this I/O thread's.
  sigset_t all;
  sigfillset(&all);
  pthread_sigmask(SIG_BLOCK, &all, nullptr);
  event_base_dispatch(base_);
}

void Client::Loop::Stop() {
  if (!thread_.joinable()) {
    if (base_ != nullptr) {
      wake_event_.reset();
      sweep_event_.reset();
      event_base_free(base_);
      base_ = nullptr;
    }
    return;
  }
  {
    std::lock_guard<std::mutex> lock(queue_mutex_);
    stopping_ = true;
  }
  event_active(wake_event_.get(), 0, 0);
  thread_.join();
  wake_event_.reset();
  sweep_event_.reset();
  event_base_free(base_);
  base_ = nullptr;
}

Result Client::Loop::Execute(const Params& params, std::shared_ptr<const Body> body,
                             Clock::time_point deadline, const std::function<void()>& heartbeat,
                             std::chrono::milliseconds heartbeat_interval) {
  auto* call = new Call;
  call->params = params;
  for (const auto& [name, value] : params) {
    if (name == "REQUEST_METHOD") call->idempotent = value == "GET" || value == "HEAD";
  }
  call->body = std::move(body);
  call->deadline = deadline;
  call->started = Clock::now();
  std::future<Result> future = call->promise.get_future();
  {
    std::lock_guard<std::mutex> lock(queue_mutex_);
    if (stopping_) {
      delete call;
      Result r;
      r.status = Status::Unavailable("FastCGI client is shutting down");
      return r;
    }
    incoming_.push_back(call);
  }
  event_active(wake_event_.get(), 0, 0);
  if (heartbeat) {
    while (future.wait_for(heartbeat_interval) == std::future_status::timeout) heartbeat();
  }
  return future.get();
}

void Client::Loop::OnWake(evutil_socket_t, short, void* arg) {
  auto* self = static_cast<Loop*>(arg);
  std::vector<Call*> incoming;
  bool stopping;
  {
    std::lock_guard<std::mutex> lock(self->queue_mutex_);
    incoming.swap(self->incoming_);
    stopping = self->stopping_;
  }
  for (Call* call : incoming) {
    call->loop = self;
    call->timer.reset(evtimer_new(self->base_, &Loop::OnCallTimer, call));
    const timeval tv = ToTimeval(call->deadline - Clock::now());
    event_add(call->timer.get(), &tv);
    self->waiting_.push_back(call);
  }
  if (stopping) {
    while (!self->busy_.empty()) {
      Connection* conn = self->busy_.front().get();
      Call* call = conn->call;
      self->CloseConnection(conn);
      if (call != nullptr) {
        Result r;
        r.status = Status::Unavailable("FastCGI client is shutting down");
        self->Complete(call, std::move(r));
      }
    }
    while (!self->waiting_.empty()) {
      Call* call = self->waiting_.front();
      self->waiting_.pop_front();
      Result r;
      r.status = Status::Unavailable("FastCGI client is shutting down");
      self->Complete(call, std::move(r));
    }
    while (!self->idle_.empty()) self->CloseConnection(self->idle_.front().get());
    event_base_loopbreak(self->base_);
    return;
  }
  self->Dispatch();
}

void Client::Loop::Dispatch() {
  while (!waiting_.empty()) {
    Connection* conn = TakeIdleConnection();
    if (conn == nullptr) {
      if (busy_.size() + idle_.size() >= options_.max_connections) break;
      Status error;
      conn = NewConnection(&error);
      if (conn == nullptr) {
        Call* call = waiting_.front();
        waiting_.pop_front();
        call->attempts++;
        Result r;
        r.status = error;
        Complete(call, std::move(r));
        continue;
      }
    }
    Call* call = waiting_.front();
    waiting_.pop_front();
    BeginAttempt(call, conn);
  }
  UpdateStats();
}

Client::Loop::Connection* Client::Loop::TakeIdleConnection() {
  while (!idle_.empty()) {
    // Most recently used first: it is the least likely to have been closed by the backend.
    auto it = std::prev(idle_.end());
    Connection* conn = it->get();
    char probe;
    const ssize_t n = ::recv(conn->fd.get(), &probe, 1, MSG_PEEK | MSG_DONTWAIT);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      busy_.splice(busy_.end(), idle_, it);
      conn->reused = true;
      return conn;
    }
    // EOF, an error, or stray bytes: the connection is of no further use.
    CloseConnection(conn);
  }
  return nullptr;
}

Client::Loop::Connection* Client::Loop::NewConnection(Status* error) {
  UniqueFd fd;
  bool in_progress = false;
  *error = options_.address.StartConnect(&fd, &in_progress);
  if (!error->ok()) return nullptr;
  auto conn = std::make_unique<Connection>();
  conn->loop = this;
  conn->fd = std::move(fd);
  conn->connecting = in_progress;
  conn->read_event.reset(
      event_new(base_, conn->fd.get(), EV_READ | EV_PERSIST, &Loop::OnReadable, conn.get()));
  conn->write_event.reset(
      event_new(base_, conn->fd.get(), EV_WRITE | EV_PERSIST, &Loop::OnWritable, conn.get()));
  conn->connect_timer.reset(evtimer_new(base_, &Loop::OnConnectTimer, conn.get()));
  Connection* raw = conn.get();
  busy_.push_back(std::move(conn));
  return raw;
}

void Client::Loop::BeginAttempt(Call* call, Connection* conn) {
  call->attempts++;
  call->conn = conn;
  call->out.clear();
  call->out_pos = 0;
  call->body_offset = 0;
  call->stdin_done = false;
  call->reader = protocol::RecordReader();
  call->collector = std::make_unique<ResponseCollector>(kRequestId, options_.max_reply_bytes,
                                                        options_.max_stderr_bytes);
  conn->call = call;
  if (conn->connecting) {
    const auto limit = std::min(call->deadline, Clock::now() + options_.connect_timeout);
    const timeval tv = ToTimeval(limit - Clock::now());
    event_add(conn->connect_timer.get(), &tv);
    event_add(conn->write_event.get(), nullptr);
    return;
  }
  StartRequest(conn);
}

void Client::Loop::StartRequest(Connection* conn) {
  Call* call = conn->call;
  conn->requests++;
  Status s = protocol::EncodeRequestHead(kRequestId, call->params, options_.keep_alive, &call->out);
  if (!s.ok()) {
    conn->call = nullptr;
    call->conn = nullptr;
    ReleaseConnection(conn);
    Result r;
    r.status = s;
    Complete(call, std::move(r));
    return;
  }
  event_add(conn->read_event.get(), nullptr);
  event_add(conn->write_event.get(), nullptr);
  HandleWritable(conn);
}

Status Client::Loop::FillOutput(Call* call) {
  call->out.clear();
  call->out_pos = 0;
  const uint64_t total = call->body ? call->body->size() : 0;
  // Several records per write keep syscalls few for large bodies.
  while (call->out.size() < 4 * kStdinChunk && !call->stdin_done) {
    if (call->body_offset >= total) {
      protocol::AppendRecord(&call->out, protocol::RecordType::kStdin, kRequestId, {});
      call->stdin_done = true;
      break;
    }
    char chunk[kStdinChunk];
    size_t got = 0;
    Status s = call->body->ReadAt(call->body_offset, chunk, sizeof chunk, &got);
    if (!s.ok()) return s;
    if (got == 0) return Status::IoError("request body ended before its announced size");
    protocol::AppendRecord(&call->out, protocol::RecordType::kStdin, kRequestId,
                           std::string_view(chunk, got));
    call->body_offset += got;
  }
  return Status::Ok();
}

void Client::Loop::OnWritable(evutil_socket_t, short, void* arg) {
  auto* conn = static_cast<Connection*>(arg);
  conn->loop->HandleWritable(conn);
}

void Client::Loop::HandleWritable(Connection* conn) {
  Call* call = conn->call;
  if (call == nullptr) {
    event_del(conn->write_event.get());
    return;
  }
  if (conn->connecting) {
    int err = 0;
    socklen_t len = sizeof err;
    ::getsockopt(conn->fd.get(), SOL_SOCKET, SO_ERROR, &err, &len);
    event_del(conn->connect_timer.get());
    event_del(conn->write_event.get());
    conn->connecting = false;
    if (err != 0) {
      FailAttempt(conn, DescribeConnectError(options_.address, err), false);
      return;
    }
    StartRequest(conn);
    return;
  }
  for (;;) {
    if (call->out_pos == call->out.size()) {
      if (call->stdin_done) {
        event_del(conn->write_event.get());
        return;
      }
      if (Status s = FillOutput(call); !s.ok()) {
        FailAttempt(conn, s, false);
        return;
      }
      if (call->out.empty()) {
        event_del(conn->write_event.get());
        return;
      }
    }
    const ssize_t n = ::send(conn->fd.get(), call->out.data() + call->out_pos,
                             call->out.size() - call->out_pos, MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) return;
      const int err = errno;
      FailAttempt(conn,
                  Status::FromErrno(Status::Code::kIoError,
                                    "sending request to " + options_.address.ToString(), err),
                  IsStaleConnectionError(err));
      return;
    }
    call->out_pos += static_cast<size_t>(n);
  }
}

void Client::Loop::OnReadable(evutil_socket_t, short, void* arg) {
  auto* conn = static_cast<Connection*>(arg);
  conn->loop->HandleReadable(conn);
}

void Client::Loop::HandleReadable(Connection* conn) {
  Call* call = conn->call;
  if (call == nullptr) {
    CloseConnection(conn);
    return;
  }
  char buf[65536];
  for (int rounds = 0; rounds < 16; ++rounds) {
    const ssize_t n = ::recv(conn->fd.get(), buf, sizeof buf, 0);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) return;
      const int err = errno;
      FailAttempt(conn,
                  Status::FromErrno(Status::Code::kIoError,
                                    "reading reply from " + options_.address.ToString(), err),
                  IsStaleConnectionError(err));
      return;
    }
    if (n == 0) {
      const bool nothing = !call->collector->started() && call->reader.buffered() == 0;
      FailAttempt(conn,
                  Status::IoError(options_.address.ToString() + " closed the connection " +
                                  (nothing ? "without replying"
                                           : "before the end of its reply (no END_REQUEST)")),
                  nothing);
      return;
    }
    call->reader.Feed(buf, static_cast<size_t>(n));
    for (;;) {
      std::optional<protocol::RecordReader::Record> record;
      Status s = call->reader.Next(&record);
      if (s.ok() && record) s = call->collector->Consume(*record);
      if (!s.ok()) {
        FailAttempt(conn, s, false);
        return;
      }
      if (!record) break;
      if (call->collector->done()) {
        Result result;
        result.status = call->collector->Finish(&result.response);
        const bool clean =
            call->stdin_done && call->out_pos == call->out.size() && call->reader.buffered() == 0;
        conn->call = nullptr;
        call->conn = nullptr;
        event_del(conn->write_event.get());
        if (clean && options_.keep_alive) {
          ReleaseConnection(conn);
        } else {
          CloseConnection(conn);
        }
        Complete(call, std::move(result));
        Dispatch();
        return;
      }
    }
  }
}

void Client::Loop::FailAttempt(Connection* conn, Status status, bool stale_connection) {
  Call* call = conn->call;
  // A reused connection that fails before any reply byte is usually one the backend closed
  // while idle. But a script that died after reading the whole request looks the same, so a
  // request that is not idempotent (a POST that may have saved a message) is retried only when
  // it failed while still being written.
  const bool fully_sent = call->stdin_done && call->out_pos == call->out.size();
  const bool retry = stale_connection && conn->reused && !call->collector->started() &&
                     (call->idempotent || !fully_sent) && Clock::now() < call->deadline;
  conn->call = nullptr;
  call->conn = nullptr;
  CloseConnection(conn);
  if (retry) {
    Status error;
    Connection* fresh = NewConnection(&error);
    if (fresh != nullptr) {
      BeginAttempt(call, fresh);
      UpdateStats();
      return;
    }
    status = error;
  }
  Result r;
  r.status = std::move(status);
  Complete(call, std::move(r));
  Dispatch();
}

void Client::Loop::OnConnectTimer(evutil_socket_t, short, void* arg) {
  auto* conn = static_cast<Connection*>(arg);
  Loop* self = conn->loop;
  self->FailAttempt(conn, Status::Timeout("connecting to " + self->options_.address.ToString()),
                    false);
}

void Client::Loop::OnCallTimer(evutil_socket_t, short, void* arg) {
  auto* call = static_cast<Call*>(arg);
  Loop* self = call->loop;
  Result r;
  Connection* conn = call->conn;
  if (conn == nullptr) {
    // Still queued: every connection stayed busy until the deadline.
    std::erase(self->waiting_, call);
    r.status =
        Status::Timeout("waiting for a free connection to " + self->options_.address.ToString() +
                        " (all " + std::to_string(self->options_.max_connections) + " busy)");
    self->Complete(call, std::move(r));
    self->UpdateStats();
    return;
  }
  const char* what = conn->connecting ? "connecting to "
                     : call->stdin_done && call->out_pos == call->out.size()
                         ? "waiting for the reply from "
                         : "sending the request to ";
  conn->call = nullptr;
  call->conn = nullptr;
  self->CloseConnection(conn);
  r.status = Status::Timeout(what + self->options_.address.ToString());
  self->Complete(call, std::move(r));
  self->Dispatch();
}

void Client::Loop::Complete(Call* call, Result result) {
  if (call->timer) event_del(call->timer.get());
  result.attempts = call->attempts;
  result.elapsed =
      std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - call->started);
  call->promise.set_value(std::move(result));
  delete call;
}

void Client::Loop::CloseConnection(Connection* conn) {
  for (ConnList* list : {&busy_, &idle_}) {
    for (auto it = list->begin(); it != list->end(); ++it) {
      if (it->get() == conn) {
        list->erase(it);  // frees the events before the fd closes
        UpdateStats();
        return;
      }
    }
  }
}

void Client::Loop::ReleaseConnection(Connection* conn) {
  if (options_.max_requests_per_connection != 0 &&
      conn->requests >= options_.max_requests_per_connection) {
    CloseConnection(conn);
    return;
  }
  event_del(conn->read_event.get());
  event_del(conn->write_event.get());
  conn->idle_since = Clock::now();
  for (auto it = busy_.begin(); it != busy_.end(); ++it) {
    if (it->get() == conn) {
      idle_.splice(idle_.end(), busy_, it);
      break;
    }
  }
  UpdateStats();
}

void Client::Loop::OnSweep(evutil_socket_t, short, void* arg) {
  auto* self = static_cast<Loop*>(arg);
  const auto now = Clock::now();
  while (!self->idle_.empty() &&
         now - self->idle_.front()->idle_since >= self->options_.idle_timeout) {
    self->CloseConnection(self->idle_.front().get());
  }
}

void Client::Loop::UpdateStats() {
  std::lock_guard<std::mutex> lock(stats_mutex_);
  stats_.busy = busy_.size();
  stats_.idle = idle_.size();
  stats_.waiting = waiting_.size();
}

Client::Client(std::unique_ptr<Loop> loop) : loop_(std::move(loop)) {}
Client::~Client() = default;

Status Client::Create(const ClientOptions& options, std::unique_ptr<Client>* out) {
  auto loop = std::make_unique<Loop>(options);
  if (Status s = loop->Start(); !s.ok()) return s;
  out->reset(new Client(std::move(loop)));
  return Status::Ok();
}

Result Client::Execute(const Params& params, std::shared_ptr<const Body> body,
                       Clock::time_point deadline, const std::function<void()>& heartbeat,
                       std::chrono::milliseconds heartbeat_interval) {
  return loop_->Execute(params, std::move(body), deadline, heartbeat, heartbeat_interval);
}

ClientStats Client::stats() const {
  return loop_->stats();
}
const ClientOptions& Client::options() const {
  return loop_->options();
}

}  // namespace fcgi
