#include "milter/metrics.h"

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/thread.h>
#include <pthread.h>
#include <signal.h>

#include <array>
#include <atomic>
#include <chrono>
#include <cstring>
#include <mutex>
#include <sstream>
#include <thread>

namespace metrics {
namespace {

// A fixed set of label values per family keeps every update a plain atomic increment.
template <size_t N>
struct LabelledCounter {
  const std::array<const char*, N> labels;
  std::array<std::atomic<uint64_t>, N + 1> values{};  // last slot: "other"

  void Add(const char* label) {
    for (size_t i = 0; i < N; ++i) {
      if (std::strcmp(labels[i], label) == 0) {
        values[i]++;
        return;
      }
    }
    values[N]++;
  }
};

LabelledCounter<5> g_messages{{"accept", "reject", "tempfail", "discard", "quarantine"}};
LabelledCounter<3> g_recipients{{"accept", "reject", "tempfail"}};
LabelledCounter<8> g_backend_errors{
    {"connect", "timeout", "io", "protocol", "too_large", "unavailable", "status", "reply"}};
std::atomic<uint64_t> g_spills{0};
LabelledCounter<2> g_validate_cache{{"hit", "miss"}};
// The stage scripts' verdicts: connect, helo, mail, eoh.
constexpr const char* kStageScripts[] = {"connect", "helo", "mail", "eoh"};
LabelledCounter<3> g_stage_verdicts[4] = {{{"accept", "reject", "tempfail"}},
                                          {{"accept", "reject", "tempfail"}},
                                          {{"accept", "reject", "tempfail"}},
                                          {{"accept", "reject", "tempfail"}}};

constexpr std::array<double, 12> kBuckets = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                             0.1,   0.25,   0.5,   1,    5,     30};
struct Histogram {
  std::array<std::atomic<uint64_t>, kBuckets.size()> buckets{};
  std::atomic<uint64_t> count{0};
  std::atomic<uint64_t> sum_us{0};
};
constexpr const char* kLatencyStages[] = {"validate", "save", "connect", "helo", "mail", "eoh"};
Histogram g_latency[std::size(kLatencyStages)];

template <size_t N>
void Write(std::ostringstream& out, const char* name, const char* help, const char* label,
           const LabelledCounter<N>& c) {
  out << "# HELP " << name << " " << help << "\n# TYPE " << name << " counter\n";
  for (size_t i = 0; i < N; ++i) {
    out << name << "{" << label << "=\"" << c.labels[i] << "\"} " << c.values[i].load() << "\n";
  }
  if (c.values[N].load() != 0) {
    out << name << "{" << label << "=\"other\"} " << c.values[N].load() << "\n";
  }
}

}  // namespace

void CountMessage(const char* verdict) {
  g_messages.Add(verdict);
}
void CountRecipient(const char* verdict) {
  g_recipients.Add(verdict);
}
void CountBackendError(const char* kind) {
  g_backend_errors.Add(kind);
}
void CountSpill() {
  g_spills++;
}
void CountValidateCache(const char* result) {
  g_validate_cache.Add(result);
}

void CountStage(const char* stage, const char* verdict) {
  for (size_t i = 0; i < std::size(kStageScripts); ++i) {
    if (std::strcmp(kStageScripts[i], stage) == 0) g_stage_verdicts[i].Add(verdict);
  }
}

void ObserveLatency(const char* stage, double seconds) {
  size_t slot = 0;
  for (size_t i = 0; i < std::size(kLatencyStages); ++i) {
    if (std::strcmp(kLatencyStages[i], stage) == 0) slot = i;
  }
  Histogram& h = g_latency[slot];
  for (size_t i = 0; i < kBuckets.size(); ++i) {
    if (seconds <= kBuckets[i]) h.buckets[i]++;
  }
  h.count++;
  h.sum_us += static_cast<uint64_t>(seconds * 1e6);
}

std::string Render(const std::function<std::vector<fcgi::BackendStats>()>& backends) {
  std::ostringstream out;
  Write(out, "fcgi_milter_messages_total", "Messages by end-of-message verdict.", "verdict",
        g_messages);
  Write(out, "fcgi_milter_recipients_total", "Recipients by validate verdict.", "verdict",
        g_recipients);
  Write(out, "fcgi_milter_backend_errors_total", "FastCGI failures by kind.", "kind",
        g_backend_errors);
  Write(out, "fcgi_milter_validate_cache_total",
        "Validate lookups answered from the cache (hit) or by the script (miss).", "result",
        g_validate_cache);
  out << "# HELP fcgi_milter_stage_verdicts_total Stage-script verdicts by stage.\n"
      << "# TYPE fcgi_milter_stage_verdicts_total counter\n";
  for (size_t i = 0; i < std::size(kStageScripts); ++i) {
    const auto& c = g_stage_verdicts[i];
    for (size_t l = 0; l < c.labels.size(); ++l) {
      out << "fcgi_milter_stage_verdicts_total{stage=\"" << kStageScripts[i] << "\",verdict=\""
          << c.labels[l] << "\"} " << c.values[l].load() << "\n";
    }
  }
  out << "# HELP fcgi_milter_spill_files_total Messages that spilled to a temp file.\n"
      << "# TYPE fcgi_milter_spill_files_total counter\n"
      << "fcgi_milter_spill_files_total " << g_spills.load() << "\n";
  out << "# HELP fcgi_milter_request_duration_seconds FastCGI request time per stage.\n"
      << "# TYPE fcgi_milter_request_duration_seconds histogram\n";
  const auto& stages = kLatencyStages;
  for (size_t s = 0; s < std::size(kLatencyStages); ++s) {
    const Histogram& h = g_latency[s];
    for (size_t i = 0; i < kBuckets.size(); ++i) {
      out << "fcgi_milter_request_duration_seconds_bucket{stage=\"" << stages[s] << "\",le=\""
          << kBuckets[i] << "\"} " << h.buckets[i].load() << "\n";
    }
    out << "fcgi_milter_request_duration_seconds_bucket{stage=\"" << stages[s] << "\",le=\"+Inf\"} "
        << h.count.load() << "\n";
    out << "fcgi_milter_request_duration_seconds_sum{stage=\"" << stages[s] << "\"} "
        << static_cast<double>(h.sum_us.load()) / 1e6 << "\n";
    out << "fcgi_milter_request_duration_seconds_count{stage=\"" << stages[s] << "\"} "
        << h.count.load() << "\n";
  }
  if (backends) {
    const auto stats = backends();
    out << "# HELP fcgi_milter_backend_up Whether the backend takes connections.\n"
        << "# TYPE fcgi_milter_backend_up gauge\n";
    for (const auto& b : stats) {
      out << "fcgi_milter_backend_up{backend=\"" << b.address << "\"} " << (b.up ? 1 : 0) << "\n";
    }
    out << "# HELP fcgi_milter_pool_connections FastCGI connections by state.\n"
        << "# TYPE fcgi_milter_pool_connections gauge\n";
    for (const auto& b : stats) {
      out << "fcgi_milter_pool_connections{backend=\"" << b.address << "\",state=\"busy\"} "
          << b.pool.busy << "\n"
          << "fcgi_milter_pool_connections{backend=\"" << b.address << "\",state=\"idle\"} "
          << b.pool.idle << "\n";
    }
    out << "# HELP fcgi_milter_pool_waiting Requests waiting for a free connection.\n"
        << "# TYPE fcgi_milter_pool_waiting gauge\n";
    for (const auto& b : stats) {
      out << "fcgi_milter_pool_waiting{backend=\"" << b.address << "\"} " << b.pool.waiting << "\n";
    }
    out << "# HELP fcgi_milter_requests_in_flight FastCGI requests in progress.\n"
        << "# TYPE fcgi_milter_requests_in_flight gauge\n";
    for (const auto& b : stats) {
      out << "fcgi_milter_requests_in_flight{backend=\"" << b.address << "\"} " << b.in_flight
          << "\n";
    }
  }
  return out.str();
}

constexpr std::chrono::seconds kHealthCacheTime{1};

struct HttpServer::Impl {
  event_base* base = nullptr;
  evhttp* http = nullptr;
  event* stop = nullptr;
  std::thread thread;
  std::function<std::vector<fcgi::BackendStats>()> backends;
  std::function<bool()> healthy;
  // The last health answer and when it was found: a check connects to every backend, so
  // /healthz polled by several balancers (or hammered by anyone who reaches the port) answers
  // from this for a second instead of opening a FastCGI connection per request. Only the
  // event loop's thread touches them.
  bool healthy_cached = false;
  std::chrono::steady_clock::time_point healthy_checked{};
  bool healthy_known = false;

  bool Healthy() {
    const auto now = std::chrono::steady_clock::now();
    if (!healthy_known || now - healthy_checked >= kHealthCacheTime) {
      healthy_cached = healthy && healthy();
      // From the end of the check: a slow check (a backend that does not accept) is not
      // repeated at once.
      healthy_checked = std::chrono::steady_clock::now();
      healthy_known = true;
    }
    return healthy_cached;
  }

  ~Impl() {
    if (thread.joinable()) {
      event_active(stop, 0, 0);
      thread.join();
    }
    if (stop != nullptr) event_free(stop);
    if (http != nullptr) evhttp_free(http);
    if (base != nullptr) event_base_free(base);
  }

  static void OnRequest(evhttp_request* req, void* arg) {
    auto* self = static_cast<Impl*>(arg);
    const char* uri = evhttp_request_get_uri(req);
    const std::string path =
        uri != nullptr ? std::string(uri).substr(0, std::string(uri).find('?')) : std::string();
    evbuffer* buf = evbuffer_new();
    if (path == "/metrics") {
      const std::string text = Render(self->backends);
      evbuffer_add(buf, text.data(), text.size());
      evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type",
                        "text/plain; version=0.0.4");
      evhttp_send_reply(req, 200, "OK", buf);
    } else if (path == "/healthz") {
      const bool ok = self->Healthy();
      evbuffer_add_printf(buf, ok ? "ok\n" : "no FastCGI backend answers\n");
      evhttp_send_reply(req, ok ? 200 : 503, ok ? "OK" : "Service Unavailable", buf);
    } else {
      evbuffer_add_printf(buf, "try /metrics or /healthz\n");
      evhttp_send_reply(req, 404, "Not Found", buf);
    }
    evbuffer_free(buf);
  }
};

HttpServer::HttpServer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
HttpServer::~HttpServer() = default;

base::Status HttpServer::Start(const std::string& listen,
                               std::function<std::vector<fcgi::BackendStats>()> backends,
                               std::function<bool()> healthy, std::unique_ptr<HttpServer>* out) {
  const size_t colon = listen.rfind(':');
  std::string host = listen.substr(0, colon);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  const int port = std::atoi(listen.c_str() + colon + 1);
  auto impl = std::make_unique<Impl>();
  impl->backends = std::move(backends);
  impl->healthy = std::move(healthy);
  // The stop event is activated from another thread: libevent must lock its base.
  static std::once_flag threads_once;
  std::call_once(threads_once, [] { evthread_use_pthreads(); });
  impl->base = event_base_new();
  impl->http = impl->base ? evhttp_new(impl->base) : nullptr;
  if (impl->http == nullptr) return base::Status::IoError("metrics: cannot create HTTP server");
  if (evhttp_bind_socket(impl->http, host.c_str(), static_cast<uint16_t>(port)) != 0) {
    return base::Status::IoError("key 'metrics_listen': cannot listen on " + listen);
  }
  evhttp_set_gencb(impl->http, &Impl::OnRequest, impl.get());
  evhttp_set_allowed_methods(impl->http, EVHTTP_REQ_GET | EVHTTP_REQ_HEAD);
  impl->stop = event_new(
      impl->base, -1, 0,
      [](evutil_socket_t, short, void* b) { event_base_loopbreak(static_cast<event_base*>(b)); },
      impl->base);
  event_base* base = impl->base;
  impl->thread = std::thread([base] {
    sigset_t all;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, nullptr);
    event_base_loop(base, EVLOOP_NO_EXIT_ON_EMPTY);
  });
  out->reset(new HttpServer(std::move(impl)));
  return base::Status::Ok();
}

}  // namespace metrics
