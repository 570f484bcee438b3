// fcgi_client_bench: FastCGI requests/s of the project's fcgi::Client against a FastCGI server
// (php-fpm), N threads calling Execute() in a loop for a fixed time. Prints one JSON line.
// Usage: fcgi_client_bench --address unix:/path|tcp:HOST:PORT --script /abs/file.php
//          [--threads 8] [--connections 4] [--seconds 5] [--body BYTES] [--no-keep-alive]
//          [--expect TEXT]
// Thread-safety: worker threads share only the Client (thread-safe) and atomic counters.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "fcgi/body.h"
#include "fcgi/client.h"
#include "fcgi/socket.h"

namespace {

struct Args {
  std::string type = "unix";
  std::string address;
  std::string script;
  int threads = 8;
  size_t connections = 4;
  double seconds = 5;
  size_t body_bytes = 0;  // > 0: POST this many bytes, like a small save
  bool keep_alive = true;
  std::string expect = "PASS";
};

bool ParseArgs(int argc, char** argv, Args* a) {
  for (int i = 1; i < argc; ++i) {
    std::string k = argv[i];
    auto next = [&]() -> const char* { return i + 1 < argc ? argv[++i] : nullptr; };
    const char* v = nullptr;
    if (k == "--no-keep-alive") {
      a->keep_alive = false;
      continue;
    }
    if ((v = next()) == nullptr) return false;
    if (k == "--address") {
      std::string s = v;
      if (s.rfind("unix:", 0) == 0) {
        a->type = "unix";
        a->address = s.substr(5);
      } else if (s.rfind("tcp:", 0) == 0) {
        a->type = "tcp";
        a->address = s.substr(4);
      } else {
        return false;
      }
    } else if (k == "--script") {
      a->script = v;
    } else if (k == "--threads") {
      a->threads = std::atoi(v);
    } else if (k == "--connections") {
      a->connections = static_cast<size_t>(std::atoi(v));
    } else if (k == "--seconds") {
      a->seconds = std::atof(v);
    } else if (k == "--body") {
      a->body_bytes = static_cast<size_t>(std::atoll(v));
    } else if (k == "--expect") {
      a->expect = v;
    } else {
      return false;
    }
  }
  return !a->address.empty() && !a->script.empty() && a->threads > 0 && a->connections > 0;
}

fcgi::Params MakeParams(const Args& a) {
  fcgi::Params p = {
      {"SCRIPT_FILENAME", a.script},
      {"SCRIPT_NAME", a.script},
      {"REQUEST_URI", a.script},
      {"DOCUMENT_ROOT", "/"},
      {"GATEWAY_INTERFACE", "CGI/1.1"},
      {"SERVER_PROTOCOL", "HTTP/1.1"},
      {"SERVER_SOFTWARE", "fcgi_client_bench"},
      {"SERVER_NAME", "localhost"},
      {"REMOTE_ADDR", "127.0.0.1"},
  };
  if (a.body_bytes > 0) {
    p.push_back({"REQUEST_METHOD", "POST"});
    p.push_back({"QUERY_STRING", ""});
    p.push_back({"CONTENT_TYPE", "application/x-www-form-urlencoded"});
    p.push_back({"CONTENT_LENGTH", std::to_string(a.body_bytes)});
  } else {
    p.push_back({"REQUEST_METHOD", "GET"});
    p.push_back({"QUERY_STRING", "rcpt_to=user%40example.test&mail_from=a%40example.test"});
    p.push_back({"CONTENT_LENGTH", "0"});
  }
  return p;
}

}  // namespace

int main(int argc, char** argv) {
  Args args;
  if (!ParseArgs(argc, argv, &args)) {
    std::fprintf(stderr,
                 "usage: fcgi_client_bench --address unix:/path|tcp:HOST:PORT --script FILE "
                 "[--threads N] [--connections N] [--seconds S] [--body BYTES] "
                 "[--no-keep-alive] [--expect TEXT]\n");
    return 2;
  }
  fcgi::ClientOptions options;
  if (fcgi::Status s = fcgi::BackendAddress::Parse(args.type, args.address, &options.address);
      !s.ok()) {
    std::fprintf(stderr, "fcgi_client_bench: %s\n", s.ToString().c_str());
    return 2;
  }
  options.keep_alive = args.keep_alive;
  options.max_connections = args.connections;
  std::unique_ptr<fcgi::Client> client;
  if (fcgi::Status s = fcgi::Client::Create(options, &client); !s.ok()) {
    std::fprintf(stderr, "fcgi_client_bench: %s\n", s.ToString().c_str());
    return 1;
  }
  const fcgi::Params params = MakeParams(args);
  std::shared_ptr<const fcgi::Body> body;
  if (args.body_bytes > 0) {
    std::string form = "body=";
    form.resize(args.body_bytes, 'x');
    body = std::make_shared<fcgi::StringBody>(std::move(form));
  }

  // Like the daemon: the GET (validate) may run twice, the POST (save) may not.
  const fcgi::Idempotency idempotency =
      args.body_bytes > 0 ? fcgi::Idempotency::kNotIdempotent : fcgi::Idempotency::kIdempotent;
  std::atomic<bool> stop{false};
  std::atomic<uint64_t> ok{0}, failed{0}, wrong{0};
  std::mutex latency_mutex;
  std::vector<double> latencies_ms;
  std::string first_error;
  auto worker = [&] {
    std::vector<double> mine;
    while (!stop.load(std::memory_order_relaxed)) {
      auto t0 = std::chrono::steady_clock::now();
      fcgi::Result r = client->Execute(params, body, t0 + std::chrono::seconds(10), idempotency);
      auto t1 = std::chrono::steady_clock::now();
      if (!r.status.ok()) {
        failed++;
        std::lock_guard<std::mutex> lock(latency_mutex);
        if (first_error.empty()) first_error = r.status.ToString();
        continue;
      }
      if (r.response.body.find(args.expect) == std::string::npos) {
        wrong++;
        continue;
      }
      ok++;
      mine.push_back(std::chrono::duration<double, std::milli>(t1 - t0).count());
    }
    std::lock_guard<std::mutex> lock(latency_mutex);
    latencies_ms.insert(latencies_ms.end(), mine.begin(), mine.end());
  };

  auto start = std::chrono::steady_clock::now();
  std::vector<std::thread> threads;
  for (int i = 0; i < args.threads; ++i) threads.emplace_back(worker);
  std::this_thread::sleep_for(std::chrono::duration<double>(args.seconds));
  stop = true;
  for (auto& t : threads) t.join();
  double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();

  std::sort(latencies_ms.begin(), latencies_ms.end());
  auto pct = [&](double q) {
    if (latencies_ms.empty()) return 0.0;
    return latencies_ms[std::min(
        latencies_ms.size() - 1,
        static_cast<size_t>(q * static_cast<double>(latencies_ms.size())))];
  };
  std::printf(
      "{\"ok\": %llu, \"failed\": %llu, \"wrong_reply\": %llu, \"seconds\": %.3f, "
      "\"rps\": %.1f, \"p50_ms\": %.3f, \"p99_ms\": %.3f, \"first_error\": \"%s\"}\n",
      static_cast<unsigned long long>(ok.load()), static_cast<unsigned long long>(failed.load()),
      static_cast<unsigned long long>(wrong.load()), elapsed,
      static_cast<double>(ok.load()) / elapsed, pct(0.5), pct(0.99), first_error.c_str());
  return ok.load() > 0 ? 0 : 1;
}
