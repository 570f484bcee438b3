// A php-fpm farm: two real php-fpm instances behind one BackendPool. Failover, all-down fast
// failure, recovery after a restart, and least-in-flight spreading.
#include <gtest/gtest.h>

#include <map>
#include <mutex>
#include <thread>

#include "fcgi/backend_pool.h"
#include "tests/support/php_fpm.h"

namespace {

using fcgi::BackendPool;
using fcgi::Client;
using fcgi::Result;
using fcgi::Status;
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

  std::unique_ptr<BackendPool> MakePool() {
    fcgi::BackendPoolOptions o;
    for (const auto& php : php_) {
      fcgi::BackendAddress a;
      EXPECT_TRUE(fcgi::BackendAddress::Parse("unix", php->socket_path(), &a).ok());
      o.addresses.push_back(a);
    }
    o.client.connect_timeout = std::chrono::seconds(1);
    o.client.max_connections = 2;
    o.probe_interval = std::chrono::milliseconds(100);
    std::unique_ptr<BackendPool> pool;
    EXPECT_TRUE(BackendPool::Create(o, &pool).ok());
    return pool;
  }

  // Each php-fpm has its own dir; the script both run lives in a shared one.
  Result Who(BackendPool* pool) {
    return pool->Execute(
        {{"SCRIPT_FILENAME", shared_script_}, {"REQUEST_METHOD", "GET"}, {"CONTENT_LENGTH", "0"}},
        nullptr, Client::Clock::now() + std::chrono::seconds(5), fcgi::Idempotency::kIdempotent);
  }

  void ShareScript() {
    shared_dir_ = std::make_unique<testing_support::TempDir>();
    shared_script_ = shared_dir_->Write("who.php", kWhoScript);
  }

  std::vector<std::unique_ptr<PhpFpm>> php_;
  std::unique_ptr<testing_support::TempDir> shared_dir_;
  std::string shared_script_;
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
  EXPECT_FALSE(pool->AnyUp());
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

}  // namespace
