// A php-fpm farm: two real php-fpm instances behind one BackendPool. Failover, all-down fast
// failure, recovery after a restart, least-in-flight spreading, and which failures mean "down"
// (told once through on_health_change, as the daemon logs them).
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <map>
#include <mutex>
#include <thread>

#include "fcgi/backend_pool.h"
#include "tests/support/php_fpm.h"

namespace {

using base::Status;
using fcgi::BackendPool;
using fcgi::Client;
using fcgi::Result;
using testing_support::PhpFpm;

// Answers with the name of the pool that ran it, so a test sees which backend served it.
const char* kWhoScript = "<?php echo getenv('POOL_NAME');";

class BackendPoolTest : public ::testing::Test {
 protected:
  void SetUp() override {
    for (const char* name : {"one", "two"}) {
      PhpFpm::Options o;
      o.env["POOL_NAME"] = name;
      auto php = std::make_unique<PhpFpm>(o);
      ASSERT_TRUE(php->Start());
      php_.push_back(std::move(php));
    }
  }

  // What on_health_change was told, in order.
  struct HealthEvent {
    std::string backend;
    bool up;
    Status::Code code;
  };

  fcgi::BackendPoolOptions Options() {
    fcgi::BackendPoolOptions o;
    for (const auto& php : php_) {
      fcgi::BackendAddress a;
      EXPECT_TRUE(fcgi::BackendAddress::Parse("unix", php->socket_path(), &a).ok());
      o.addresses.push_back(a);
    }
    o.client.connect_timeout = std::chrono::seconds(1);
    o.client.max_connections = 2;
    o.probe_interval = std::chrono::milliseconds(100);
    o.on_health_change = [this](const fcgi::BackendAddress& b, bool up, const Status& why) {
      std::lock_guard<std::mutex> lock(events_mutex_);
      events_.push_back({b.ToString(), up, why.code()});
    };
    return o;
  }

  std::vector<HealthEvent> Events() {
    std::lock_guard<std::mutex> lock(events_mutex_);
    return events_;
  }

  std::unique_ptr<BackendPool> MakePool() { return MakePool(Options()); }

  std::unique_ptr<BackendPool> MakePool(const fcgi::BackendPoolOptions& o) {
    std::unique_ptr<BackendPool> pool;
    EXPECT_TRUE(BackendPool::Create(o, &pool).ok());
    return pool;
  }

  // Each php-fpm has its own dir; the script both run lives in a shared one.
  Result Who(BackendPool* pool,
             std::chrono::milliseconds deadline = std::chrono::milliseconds(5000)) {
    return pool->Execute(
        {{"SCRIPT_FILENAME", shared_script_}, {"REQUEST_METHOD", "GET"}, {"CONTENT_LENGTH", "0"}},
        nullptr, Client::Clock::now() + deadline, fcgi::Idempotency::kIdempotent);
  }

  void ShareScript() {
    shared_dir_ = std::make_unique<testing_support::TempDir>();
    shared_script_ = shared_dir_->Write("who.php", kWhoScript);
  }

  std::vector<std::unique_ptr<PhpFpm>> php_;
  std::unique_ptr<testing_support::TempDir> shared_dir_;
  std::string shared_script_;
  std::mutex events_mutex_;
  std::vector<HealthEvent> events_;
};

TEST_F(BackendPoolTest, RequestsSpreadOverBothBackends) {
  ShareScript();
  auto pool = MakePool();
  std::map<std::string, int> served;
  std::mutex m;
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 20; ++i) {
        Result r = Who(pool.get());
        ASSERT_TRUE(r.status.ok()) << r.status.ToString();
        std::lock_guard<std::mutex> lock(m);
        served[r.response.body]++;
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(served["one"] + served["two"], 80);
  EXPECT_GT(served["one"], 0);
  EXPECT_GT(served["two"], 0);
}

TEST_F(BackendPoolTest, StoppedBackendFailsOverToTheOtherWithoutAnError) {
  ShareScript();
  auto pool = MakePool();
  php_[0]->Stop();
  for (int i = 0; i < 10; ++i) {
    Result r = Who(pool.get());
    ASSERT_TRUE(r.status.ok()) << i << ": " << r.status.ToString();
    EXPECT_EQ(r.response.body, "two");
  }
  auto stats = pool->stats();
  EXPECT_FALSE(stats[0].up);
  EXPECT_TRUE(stats[1].up);
}

TEST_F(BackendPoolTest, AllBackendsDownFailsAtOnce) {
  ShareScript();
  auto pool = MakePool();
  php_[0]->Stop();
  php_[1]->Stop();
  Result first = Who(pool.get());  // discovers both are down
  EXPECT_FALSE(first.status.ok());
  const auto start = Client::Clock::now();
  Result r = Who(pool.get());
  EXPECT_EQ(r.status.code(), Status::Code::kUnavailable) << r.status.ToString();
  EXPECT_NE(r.status.message().find("all 2 FastCGI backends are down"), std::string::npos);
  EXPECT_LT(Client::Clock::now() - start, std::chrono::milliseconds(50));
  for (const auto& b : pool->stats()) EXPECT_FALSE(b.up) << b.address;
}

TEST_F(BackendPoolTest, RestartedBackendIsBackWithinASecond) {
  ShareScript();
  auto pool = MakePool();
  php_[0]->Stop();
  php_[1]->Stop();
  EXPECT_FALSE(Who(pool.get()).status.ok());
  ASSERT_TRUE(php_[1]->Start());
  const auto restarted = Client::Clock::now();
  bool ok = false;
  while (Client::Clock::now() - restarted < std::chrono::seconds(1)) {
    if (Who(pool.get()).status.ok()) {
      ok = true;
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  EXPECT_TRUE(ok) << "no successful request within 1 s of php-fpm's restart";
}

TEST_F(BackendPoolTest, BackendGoingDownAndComingBackIsToldOnceEach) {
  ShareScript();
  auto pool = MakePool();
  const std::string one = "unix:" + php_[0]->socket_path();
  php_[0]->Stop();
  // Several requests find it refusing; only the first change of state is told.
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 5; ++i) EXPECT_TRUE(Who(pool.get()).status.ok());
    });
  }
  for (auto& t : threads) t.join();
  ASSERT_FALSE(pool->stats()[0].up);
  ASSERT_TRUE(php_[0]->Start());
  const auto limit = Client::Clock::now() + std::chrono::seconds(3);
  while (Events().size() < 2 && Client::Clock::now() < limit) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  const std::vector<HealthEvent> events = Events();
  ASSERT_EQ(events.size(), 2u);
  EXPECT_EQ(events[0].backend, one);
  EXPECT_FALSE(events[0].up);
  EXPECT_EQ(events[0].code, Status::Code::kConnectFailed);
  EXPECT_EQ(events[1].backend, one);
  EXPECT_TRUE(events[1].up);
  EXPECT_EQ(events[1].code, Status::Code::kOk);
  EXPECT_TRUE(pool->stats()[0].up);
}

TEST_F(BackendPoolTest, ConnectTimeoutMarksTheBackendDown) {
  // A TCP listener that never accepts, its backlog filled: the next connect() stays in progress.
  base::UniqueFd listener(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::bind(listener.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  ASSERT_EQ(::listen(listener.get(), 0), 0);
  socklen_t len = sizeof addr;
  ASSERT_EQ(::getsockname(listener.get(), reinterpret_cast<sockaddr*>(&addr), &len), 0);
  const std::string address = "127.0.0.1:" + std::to_string(ntohs(addr.sin_port));
  fcgi::BackendAddress black_hole;
  ASSERT_TRUE(fcgi::BackendAddress::Parse("tcp", address, &black_hole).ok());
  std::vector<base::UniqueFd> fillers;
  for (int i = 0; i < 4; ++i) {
    base::UniqueFd fd;
    bool in_progress = false;
    ASSERT_TRUE(black_hole.StartConnect(&fd, &in_progress).ok());
    fillers.push_back(std::move(fd));
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(100));

  fcgi::BackendPoolOptions o = Options();
  o.addresses = {black_hole};
  o.client.connect_timeout = std::chrono::milliseconds(300);
  auto pool = MakePool(o);
  Result r = Who(pool.get());
  EXPECT_EQ(r.status.code(), Status::Code::kTimeout) << r.status.ToString();
  EXPECT_EQ(r.phase, fcgi::RequestPhase::kConnecting);
  EXPECT_FALSE(pool->stats()[0].up);
  const std::vector<HealthEvent> events = Events();
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].backend, "tcp:" + address);
  EXPECT_FALSE(events[0].up);
  EXPECT_EQ(events[0].code, Status::Code::kTimeout);
}

TEST_F(BackendPoolTest, SlowScriptOrBusyPoolLeavesTheBackendUp) {
  ShareScript();
  const std::string slow = shared_dir_->Write("slow.php", "<?php sleep(2); echo 'late';");
  fcgi::BackendPoolOptions o = Options();
  o.addresses.resize(1);
  o.client.max_connections = 1;
  auto pool = MakePool(o);
  const fcgi::Params params = {
      {"SCRIPT_FILENAME", slow}, {"REQUEST_METHOD", "GET"}, {"CONTENT_LENGTH", "0"}};
  std::thread busy([&] {
    Result r = pool->Execute(params, nullptr, Client::Clock::now() + std::chrono::milliseconds(800),
                             fcgi::Idempotency::kIdempotent);
    EXPECT_EQ(r.status.code(), Status::Code::kTimeout) << r.status.ToString();
    EXPECT_EQ(r.phase, fcgi::RequestPhase::kAwaitingReply);
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  Result waiting = Who(pool.get(), std::chrono::milliseconds(300));
  EXPECT_EQ(waiting.status.code(), Status::Code::kTimeout) << waiting.status.ToString();
  EXPECT_EQ(waiting.phase, fcgi::RequestPhase::kWaiting);
  busy.join();
  EXPECT_TRUE(pool->stats()[0].up);
  EXPECT_TRUE(Events().empty());
}

}  // namespace
