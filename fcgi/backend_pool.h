// Several FastCGI backends (a php-fpm farm) behind one Execute(): each request goes to the
// healthy backend with the fewest requests in flight. A backend that refuses connections or
// does not accept one in time is marked down and skipped; a prober thread connects to down
// backends every probe_interval and brings them back. When every backend is down a request
// fails at once instead of waiting for timeouts. A request is retried on another backend only
// when nothing of it can have reached a script (the connection itself failed).
// Thread-safety: Execute() and stats() may be called from any thread; on_health_change runs on
// the thread that noticed the change (a request's, or the prober).
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "fcgi/client.h"

namespace fcgi {

struct BackendPoolOptions {
  std::vector<BackendAddress> addresses;
  ClientOptions client;  // address ignored; everything else applies to each backend
  std::chrono::milliseconds probe_interval{250};
  // Told once when a backend is marked down (why: the failure that showed it) and once when a
  // probe brings it back (why: ok). fcgi has no logger; the program logs here. May be empty.
  std::function<void(const BackendAddress& backend, bool up, const Status& why)> on_health_change;
};

struct BackendStats {
  std::string address;
  bool up = true;
  int in_flight = 0;
  ClientStats pool;
  uint64_t requests = 0;
  uint64_t failures = 0;
};

class BackendPool {
 public:
  static Status Create(const BackendPoolOptions& options, std::unique_ptr<BackendPool>* out);
  ~BackendPool();
  BackendPool(const BackendPool&) = delete;
  BackendPool& operator=(const BackendPool&) = delete;

  // As Client::Execute, on the healthy backend with the fewest requests in flight.
  Result Execute(const Params& params, std::shared_ptr<const Body> body,
                 Client::Clock::time_point deadline, Idempotency idempotency,
                 const std::function<void()>& heartbeat = nullptr,
                 std::chrono::milliseconds heartbeat_interval = std::chrono::seconds(10));

  std::vector<BackendStats> stats() const;
  // Connects to each backend now (health checks): true when one accepts.
  bool AnyConnectable() const;
  // "unix:/run/php.sock" or "2 backends", for logs.
  std::string Describe() const;

 private:
  struct Backend {
    BackendAddress address;
    std::unique_ptr<Client> client;
    std::atomic<bool> up{true};
    std::atomic<int> in_flight{0};
    std::atomic<uint64_t> requests{0};
    std::atomic<uint64_t> failures{0};
  };

  BackendPool() = default;
  Backend* Pick(const std::vector<Backend*>& tried);
  void MarkDown(Backend* b, const Status& why);
  void MarkUp(Backend* b);
  void ProbeLoop();

  BackendPoolOptions options_;
  std::vector<std::unique_ptr<Backend>> backends_;
  std::thread prober_;
  std::mutex mutex_;
  std::condition_variable wake_;
  bool stopping_ = false;
};

}  // namespace fcgi
