// Counters and histograms of what the daemon decided, served in Prometheus text format on an
// optional loopback HTTP listener (libevent's evhttp), with /healthz for load balancers.
// Thread-safety: the Count/Observe functions are lock-free and may be called from any thread.
#pragma once

#include <functional>
#include <memory>
#include <string>

#include "base/status.h"
#include "fcgi/backend_pool.h"

namespace metrics {

void CountMessage(const char* verdict);    // accept, reject, tempfail, discard, quarantine
void CountRecipient(const char* verdict);  // accept, reject, tempfail
void CountBackendError(const char* kind);  // connect, timeout, io, protocol, status, reply, ...
void ObserveLatency(const char* stage, double seconds);  // validate, save
void CountSpill();
void CountValidateCache(const char* result);              // hit, miss
void CountStage(const char* stage, const char* verdict);  // connect/helo/mail/eoh; accept, ...

// The exposition text; backends supplies the pool gauges (may be empty).
std::string Render(const std::function<std::vector<fcgi::BackendStats>()>& backends);

class HttpServer {
 public:
  // listen: "127.0.0.1:9466". backends: current pool stats. healthy: true when a backend answers;
  // /healthz calls it at most once a second and answers from the last result in between.
  static base::Status Start(const std::string& listen,
                            std::function<std::vector<fcgi::BackendStats>()> backends,
                            std::function<bool()> healthy, std::unique_ptr<HttpServer>* out);
  ~HttpServer();
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  struct Impl;

 private:
  explicit HttpServer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace metrics
