// The FastCGI client for one backend: a bounded pool of kept-alive connections. Each request runs
// on its caller's thread, which blocks in Execute() until the reply, a failure, or its deadline.
// Thread-safety: Execute() and stats() may be called from any number of threads at once.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>

#include "base/status.h"
#include "fcgi/body.h"
#include "fcgi/protocol.h"
#include "fcgi/response.h"
#include "fcgi/socket.h"

namespace fcgi {

using base::Status;

struct ClientOptions {
  BackendAddress address;
  std::chrono::milliseconds connect_timeout{5000};
  size_t max_reply_bytes = 1 << 20;    // STDOUT beyond this fails the request
  size_t max_stderr_bytes = 64 << 10;  // STDERR kept for the log; the rest is dropped
  bool keep_alive = true;              // FCGI_KEEP_CONN: reuse connections between requests
  size_t max_connections = 4;          // busy + idle; keep below php-fpm's pm.max_children
  std::chrono::milliseconds idle_timeout{10000};  // an idle kept connection is closed after this
  uint32_t max_requests_per_connection = 500;     // then a fresh connection (0 = no limit)
};

// Whether a request may run twice. A kept-alive connection the backend closed while it sat idle
// looks like any other failure until a request is sent on it, so the client retries once on a
// fresh connection when the old one fails before any reply byte: always while the request was
// still being written (no script can have read it whole), and after it went out whole only when
// the caller says running it twice does no harm.
enum class Idempotency { kNotIdempotent, kIdempotent };

// How far a request got, so that callers decide by kind rather than by message text. On failure,
// the phase that failed.
enum class RequestPhase {
  kWaiting,        // for a free connection (the pool stayed busy, or the client stopped)
  kConnecting,     // connect() refused, or not accepted in time: the backend takes no connections
  kSending,        // writing the request (params, then the body as STDIN)
  kAwaitingReply,  // the whole request went out; no reply byte yet (a script may be running it)
  kReading,        // some of the reply arrived
  kEnded,          // END_REQUEST arrived (the reply may still be malformed CGI)
};

struct Result {
  Status status;      // not ok: no usable reply (connect, timeout, I/O, protocol, size)
  Response response;  // filled when status is ok; stderr_output on every outcome
  RequestPhase phase = RequestPhase::kWaiting;
  int attempts = 0;  // connections tried (a retry happens only when nothing was received)
  std::chrono::microseconds elapsed{0};
};

struct ClientStats {
  size_t busy = 0;
  size_t idle = 0;
  size_t waiting = 0;
};

class Client {
 public:
  using Clock = std::chrono::steady_clock;

  static Status Create(const ClientOptions& options, std::unique_ptr<Client>* out);
  ~Client();
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  // Sends one request (params, then body as STDIN; body may be null) and waits for the reply.
  // A request that fails on a reused connection before any reply byte is retried once on a
  // fresh one if it had not been fully written or is kIdempotent (see Idempotency).
  // The deadline covers waiting for a connection, connecting, sending and receiving. While it
  // waits, heartbeat (if set) runs on the calling thread every heartbeat_interval (a milter
  // uses it to tell the MTA it is still working).
  Result Execute(const Params& params, std::shared_ptr<const Body> body, Clock::time_point deadline,
                 Idempotency idempotency, const std::function<void()>& heartbeat = nullptr,
                 std::chrono::milliseconds heartbeat_interval = std::chrono::seconds(10));

  ClientStats stats() const;
  const ClientOptions& options() const;

  class Pool;  // the implementation, in client.cc

 private:
  explicit Client(std::unique_ptr<Pool> pool);
  std::unique_ptr<Pool> pool_;
};

}  // namespace fcgi
