#include "fcgi/backend_pool.h"

#include <pthread.h>
#include <signal.h>

#include <algorithm>

namespace fcgi {
namespace {

// A backend is down when it cannot take requests: refused, missing socket, no accept in time,
// or it declined (FCGI_OVERLOADED). A slow script (reply timeout) or a pool that stayed busy says
// nothing about the backend's health.
bool MeansDown(const Result& r) {
  switch (r.status.code()) {
    case Status::Code::kConnectFailed:
    case Status::Code::kUnavailable: return true;
    case Status::Code::kTimeout: return r.phase == RequestPhase::kConnecting;
    default: return false;
  }
}

}  // namespace

Status BackendPool::Create(const BackendPoolOptions& options, std::unique_ptr<BackendPool>* out) {
  if (options.addresses.empty()) return Status::InvalidArgument("no FastCGI backend configured");
  std::unique_ptr<BackendPool> pool(new BackendPool);
  pool->options_ = options;
  for (const BackendAddress& address : options.addresses) {
    auto b = std::make_unique<Backend>();
    b->address = address;
    ClientOptions co = options.client;
    co.address = address;
    if (Status s = Client::Create(co, &b->client); !s.ok()) return s;
    pool->backends_.push_back(std::move(b));
  }
  pool->prober_ = std::thread([p = pool.get()] { p->ProbeLoop(); });
  *out = std::move(pool);
  return Status::Ok();
}

BackendPool::~BackendPool() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_all();
  if (prober_.joinable()) prober_.join();
}

BackendPool::Backend* BackendPool::Pick(const std::vector<Backend*>& tried) {
  Backend* best = nullptr;
  for (const auto& b : backends_) {
    if (!b->up.load() || std::find(tried.begin(), tried.end(), b.get()) != tried.end()) continue;
    if (best == nullptr || b->in_flight.load() < best->in_flight.load()) best = b.get();
  }
  return best;
}

void BackendPool::MarkDown(Backend* b, const Status& why) {
  // Requests failing together on one backend tell the program once.
  if (b->up.exchange(false) && options_.on_health_change) {
    options_.on_health_change(b->address, false, why);
  }
  wake_.notify_all();
}

void BackendPool::MarkUp(Backend* b) {
  if (!b->up.exchange(true) && options_.on_health_change) {
    options_.on_health_change(b->address, true, Status::Ok());
  }
}

Result BackendPool::Execute(const Params& params, std::shared_ptr<const Body> body,
                            Client::Clock::time_point deadline, Idempotency idempotency,
                            const std::function<void()>& heartbeat,
                            std::chrono::milliseconds heartbeat_interval) {
  std::vector<Backend*> tried;
  Result last;
  int attempts = 0;
  const auto start = Client::Clock::now();
  for (;;) {
    Backend* b = Pick(tried);
    if (b == nullptr) {
      if (tried.empty()) {
        last = Result();
        last.status = Status::Unavailable(
            backends_.size() == 1
                ? backends_[0]->address.ToString() + " is down (no connection " +
                      "since the last failure; probing every " +
                      std::to_string(options_.probe_interval.count()) + " ms)"
                : "all " + std::to_string(backends_.size()) + " FastCGI backends are down");
      }
      break;
    }
    tried.push_back(b);
    b->requests++;
    {
      // Counted for as long as the request runs, however Execute is left.
      struct InFlight {
        std::atomic<int>& n;
        explicit InFlight(std::atomic<int>& count) : n(count) { ++n; }
        ~InFlight() { --n; }
      } counted(b->in_flight);
      last = b->client->Execute(params, body, deadline, idempotency, heartbeat, heartbeat_interval);
    }
    attempts += last.attempts;
    if (last.status.ok()) break;
    b->failures++;
    if (!MeansDown(last)) break;
    MarkDown(b, last.status);
    // Nothing reached a script: another backend may take it, time permitting.
    if (Client::Clock::now() >= deadline) break;
  }
  last.attempts = attempts;
  last.elapsed =
      std::chrono::duration_cast<std::chrono::microseconds>(Client::Clock::now() - start);
  return last;
}

void BackendPool::ProbeLoop() {
  sigset_t all;
  sigfillset(&all);
  pthread_sigmask(SIG_BLOCK, &all, nullptr);
  std::unique_lock<std::mutex> lock(mutex_);
  while (!stopping_) {
    wake_.wait_for(lock, options_.probe_interval);
    if (stopping_) break;
    lock.unlock();
    for (const auto& b : backends_) {
      if (b->up.load()) continue;
      const int timeout_ms =
          static_cast<int>(std::min<int64_t>(options_.client.connect_timeout.count(), 1000));
      if (ProbeBackend(b->address, timeout_ms).ok()) MarkUp(b.get());
    }
    lock.lock();
  }
}

std::vector<BackendStats> BackendPool::stats() const {
  std::vector<BackendStats> out;
  for (const auto& b : backends_) {
    BackendStats s;
    s.address = b->address.ToString();
    s.up = b->up.load();
    s.in_flight = b->in_flight.load();
    s.pool = b->client->stats();
    s.requests = b->requests.load();
    s.failures = b->failures.load();
    out.push_back(s);
  }
  return out;
}

bool BackendPool::AnyConnectable() const {
  for (const auto& b : backends_) {
    if (ProbeBackend(b->address, 1000).ok()) return true;
  }
  return false;
}

std::string BackendPool::Describe() const {
  if (backends_.size() == 1) return backends_[0]->address.ToString();
  return std::to_string(backends_.size()) + " backends";
}

}  // namespace fcgi
