// The FastCGI client against a real php-fpm: GET and POST, large bodies, STDERR (kept on every
// outcome), Status codes, deadlines, a stopped backend, pool limits, connection reuse, retries
// the caller allows, retirement, shutting down.
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>
#include <nlohmann/json.hpp>

#include <atomic>
#include <thread>

#include "fcgi/client.h"
#include "tests/support/php_fpm.h"
#include "tests/support/temp_dir.h"

namespace {

using base::Status;
using fcgi::Client;
using fcgi::Idempotency;
using fcgi::Params;
using fcgi::Result;
using testing_support::PhpFpm;

constexpr auto kDeadline = std::chrono::seconds(10);

// FNV-1a 64: PHP has it as hash('fnv1a64'), so a multi-MiB body can be compared end to end.
std::string Fnv1a64(std::string_view data) {
  uint64_t h = 0xcbf29ce484222325ULL;
  for (unsigned char c : data) {
    h ^= c;
    h *= 0x100000001b3ULL;
  }
  char out[17];
  std::snprintf(out, sizeof out, "%016llx", static_cast<unsigned long long>(h));
  return out;
}

const char* kEchoScript = R"php(<?php
$in = file_get_contents('php://input');
header('Content-Type: application/json');
echo json_encode([
  'get' => $_GET,
  'method' => $_SERVER['REQUEST_METHOD'],
  'remote_addr' => $_SERVER['REMOTE_ADDR'] ?? null,
  'content_length' => $_SERVER['CONTENT_LENGTH'] ?? null,
  'input_length' => strlen($in),
  'input_hash' => hash('fnv1a64', $in),
]);
)php";

class FcgiClientTest : public ::testing::Test {
 protected:
  void StartPhp(PhpFpm::Options options = {}) {
    php_ = std::make_unique<PhpFpm>(options);
    echo_ = php_->AddScript("echo.php", kEchoScript);
    ASSERT_TRUE(php_->Start());
  }

  fcgi::ClientOptions BaseOptions(size_t max_connections = 4) {
    fcgi::ClientOptions o;
    EXPECT_TRUE(
        fcgi::BackendAddress::Parse(php_->connection_type(), php_->address(), &o.address).ok());
    o.max_connections = max_connections;
    o.connect_timeout = std::chrono::seconds(2);
    return o;
  }

  std::unique_ptr<Client> MakeClient(const fcgi::ClientOptions& o) {
    std::unique_ptr<Client> client;
    EXPECT_TRUE(Client::Create(o, &client).ok());
    return client;
  }

  std::unique_ptr<Client> MakeClient(size_t max_connections = 4) {
    return MakeClient(BaseOptions(max_connections));
  }

  Params ScriptParams(const std::string& script, const std::string& method,
                      const std::string& query, uint64_t length) {
    return {{"SCRIPT_FILENAME", script},
            {"SCRIPT_NAME", "/x.php"},
            {"REQUEST_METHOD", method},
            {"QUERY_STRING", query},
            {"CONTENT_LENGTH", std::to_string(length)},
            {"CONTENT_TYPE", "application/octet-stream"},
            {"REMOTE_ADDR", "192.0.2.7"}};
  }

  Result Get(Client* client, const std::string& script, const std::string& query = "") {
    return client->Execute(ScriptParams(script, "GET", query, 0), nullptr,
                           Client::Clock::now() + kDeadline, Idempotency::kIdempotent);
  }

  std::unique_ptr<PhpFpm> php_;
  std::string echo_;
};

TEST_F(FcgiClientTest, GetDeliversQueryAndRemoteAddr) {
  StartPhp();
  auto client = MakeClient();
  Result r = Get(client.get(), echo_, "rcpt_to=a%26b%3Dc%2Bd%40example.test&x=1");
  ASSERT_TRUE(r.status.ok()) << r.status.ToString();
  EXPECT_EQ(r.response.status, 200);
  EXPECT_EQ(r.response.Header("Content-Type"), "application/json");
  auto j = nlohmann::json::parse(r.response.body);
  EXPECT_EQ(j["get"]["rcpt_to"], "a&b=c+d@example.test");
  EXPECT_EQ(j["method"], "GET");
  EXPECT_EQ(j["remote_addr"], "192.0.2.7");
  EXPECT_EQ(j["input_length"], 0);
}

TEST_F(FcgiClientTest, PostOfTwentyMebibytesArrivesByteExact) {
  StartPhp();
  auto client = MakeClient();
  std::string data(20 * 1024 * 1024, '\0');
  uint32_t x = 12345;
  for (char& c : data) {
    x = x * 1103515245 + 12345;
    c = static_cast<char>(x >> 24);
  }
  auto body = std::make_shared<fcgi::StringBody>(data);
  Result r =
      client->Execute(ScriptParams(echo_, "POST", "", data.size()), body,
                      Client::Clock::now() + std::chrono::seconds(30), Idempotency::kNotIdempotent);
  ASSERT_TRUE(r.status.ok()) << r.status.ToString();
  auto j = nlohmann::json::parse(r.response.body);
  EXPECT_EQ(j["method"], "POST");
  EXPECT_EQ(j["input_length"], data.size());
  EXPECT_EQ(j["input_hash"], Fnv1a64(data));
}

TEST_F(FcgiClientTest, SpooledBodyStreamsFromItsTempFile) {
  StartPhp();
  auto client = MakeClient();
  auto spool = std::make_shared<fcgi::Spool>("/tmp", 64 * 1024);
  std::string all;
  for (int i = 0; i < 40000; ++i) {
    std::string line = "line " + std::to_string(i) + " of a spooled body\n";
    all += line;
    ASSERT_TRUE(spool->Append(line).ok());
  }
  ASSERT_TRUE(spool->spilled());
  Result r = client->Execute(ScriptParams(echo_, "POST", "", spool->size()), spool,
                             Client::Clock::now() + kDeadline, Idempotency::kNotIdempotent);
  ASSERT_TRUE(r.status.ok()) << r.status.ToString();
  auto j = nlohmann::json::parse(r.response.body);
  EXPECT_EQ(j["input_length"], all.size());
  EXPECT_EQ(j["input_hash"], Fnv1a64(all));
}

TEST_F(FcgiClientTest, StderrWrittenBeforeStdoutIsKeptApart) {
  StartPhp();
  // Message type 4 goes to the SAPI logger: php-fpm sends it as FastCGI STDERR.
  const std::string script = php_->AddScript("stderr.php", R"php(<?php
error_log("first a warning", 4);
echo "PASS";
)php");
  auto client = MakeClient();
  Result r = Get(client.get(), script);
  ASSERT_TRUE(r.status.ok()) << r.status.ToString();
  EXPECT_EQ(r.response.body, "PASS");
  EXPECT_NE(r.response.stderr_output.find("first a warning"), std::string::npos)
      << r.response.stderr_output;
}

TEST_F(FcgiClientTest, MissingScriptIsStatus404) {
  StartPhp();
  auto client = MakeClient();
  Result r = Get(client.get(), php_->scripts_dir() + "/nope.php");
  ASSERT_TRUE(r.status.ok()) << r.status.ToString();
  EXPECT_EQ(r.response.status, 404);
  EXPECT_NE(r.response.stderr_output.find("Primary script unknown"), std::string::npos);
}

TEST_F(FcgiClientTest, ScriptSleepingPastTheDeadlineTimesOut) {
  StartPhp();
  const std::string script = php_->AddScript("sleep.php", "<?php sleep(5); echo 'PASS';");
  auto client = MakeClient();
  const auto start = Client::Clock::now();
  Result r = client->Execute(ScriptParams(script, "GET", "", 0), nullptr,
                             start + std::chrono::milliseconds(700), Idempotency::kIdempotent);
  const auto took = Client::Clock::now() - start;
  EXPECT_EQ(r.status.code(), Status::Code::kTimeout) << r.status.ToString();
  EXPECT_LT(took, std::chrono::seconds(3));
  EXPECT_GE(took, std::chrono::milliseconds(650));
}

TEST_F(FcgiClientTest, StoppedPhpFpmFailsFastWithConnectError) {
  StartPhp();
  auto client = MakeClient();
  ASSERT_TRUE(Get(client.get(), echo_).status.ok());
  php_->Stop();
  const auto start = Client::Clock::now();
  Result r = Get(client.get(), echo_);
  EXPECT_EQ(r.status.code(), Status::Code::kConnectFailed) << r.status.ToString();
  EXPECT_LT(Client::Clock::now() - start, std::chrono::seconds(2));
}

TEST_F(FcgiClientTest, TcpBackendWorks) {
  PhpFpm::Options o;
  o.tcp = true;
  StartPhp(o);
  auto client = MakeClient();
  Result r = Get(client.get(), echo_, "a=1");
  ASSERT_TRUE(r.status.ok()) << r.status.ToString();
  EXPECT_EQ(nlohmann::json::parse(r.response.body)["get"]["a"], "1");
}

TEST_F(FcgiClientTest, ConnectionsAreReusedAndBounded) {
  StartPhp();
  auto client = MakeClient(2);
  std::atomic<int> ok{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 25; ++i) {
        if (Get(client.get(), echo_).status.ok()) ok++;
        const fcgi::ClientStats stats = client->stats();  // one snapshot: busy and idle together
        EXPECT_LE(stats.busy + stats.idle, 2u);
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(ok.load(), 200);
  EXPECT_LE(client->stats().idle, 2u);
  EXPECT_GE(client->stats().idle, 1u);
}

TEST_F(FcgiClientTest, ReuseAfterPhpClosedTheConnectionRetriesOnAFreshOne) {
  PhpFpm::Options o;
  o.max_children = 1;
  o.max_requests = 2;  // the worker exits after two requests, closing our kept connection
  StartPhp(o);
  auto client = MakeClient(1);
  for (int i = 0; i < 10; ++i) {
    Result r = Get(client.get(), echo_);
    ASSERT_TRUE(r.status.ok()) << "request " << i << ": " << r.status.ToString();
  }
}

TEST_F(FcgiClientTest, WaitingForABusyPoolEndsAtTheDeadline) {
  StartPhp();
  const std::string script = php_->AddScript("sleep.php", "<?php sleep(2); echo 'PASS';");
  auto client = MakeClient(1);
  std::thread slow([&] { EXPECT_TRUE(Get(client.get(), script).status.ok()); });
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  Result r = client->Execute(ScriptParams(echo_, "GET", "", 0), nullptr,
                             Client::Clock::now() + std::chrono::milliseconds(300),
                             Idempotency::kIdempotent);
  EXPECT_EQ(r.status.code(), Status::Code::kTimeout);
  EXPECT_NE(r.status.message().find("free connection"), std::string::npos) << r.status.message();
  slow.join();
}

}  // namespace

namespace {

TEST_F(FcgiClientTest, HeartbeatRunsOnTheCallingThreadWhileWaiting) {
  StartPhp();
  const std::string script = php_->AddScript("sleep.php", "<?php usleep(700000); echo 'PASS';");
  auto client = MakeClient();
  int beats = 0;
  const auto caller = std::this_thread::get_id();
  bool same_thread = true;
  Result r = client->Execute(
      ScriptParams(script, "GET", "", 0), nullptr, Client::Clock::now() + kDeadline,
      Idempotency::kIdempotent,
      [&] {
        beats++;
        same_thread = same_thread && std::this_thread::get_id() == caller;
      },
      std::chrono::milliseconds(100));
  ASSERT_TRUE(r.status.ok()) << r.status.ToString();
  EXPECT_GE(beats, 4);
  EXPECT_LE(beats, 8);
  EXPECT_TRUE(same_thread);
}

}  // namespace

namespace {

TEST_F(FcgiClientTest, PostToAScriptThatDiesAfterReadingItIsNotSentTwice) {
  StartPhp();
  // Records each run, then dies the hard way before any output reaches us.
  const std::string script = php_->AddScript("die.php", R"php(<?php
file_put_contents(getenv('DUMP_DIR') . '/runs', "run\n", FILE_APPEND);
posix_kill(getmypid(), 9);
)php");
  auto client = MakeClient(1);
  ASSERT_TRUE(Get(client.get(), echo_).status.ok());  // the next request reuses this connection
  const std::string data = "subject=x&body=message";
  Result r = client->Execute(ScriptParams(script, "POST", "", data.size()),
                             std::make_shared<fcgi::StringBody>(data),
                             Client::Clock::now() + kDeadline, Idempotency::kNotIdempotent);
  EXPECT_FALSE(r.status.ok());
  EXPECT_EQ(r.attempts, 1) << r.status.ToString();
  EXPECT_EQ(testing_support::ReadFile(php_->data_dir() + "/runs"), "run\n");
}

}  // namespace

namespace {

TEST_F(FcgiClientTest, WithoutKeepAliveNoConnectionIsKept) {
  StartPhp();
  fcgi::ClientOptions o = BaseOptions();
  o.keep_alive = false;
  auto client = MakeClient(o);
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(Get(client.get(), echo_).status.ok());
  EXPECT_EQ(client->stats().idle, 0u);
  EXPECT_EQ(client->stats().busy, 0u);
}

TEST_F(FcgiClientTest, ConnectionIsRetiredAfterItsRequestLimit) {
  StartPhp();
  fcgi::ClientOptions o = BaseOptions(1);
  o.max_requests_per_connection = 2;
  auto client = MakeClient(o);
  ASSERT_TRUE(Get(client.get(), echo_).status.ok());
  EXPECT_EQ(client->stats().idle, 1u);  // kept for a second request
  ASSERT_TRUE(Get(client.get(), echo_).status.ok());
  EXPECT_EQ(client->stats().idle, 0u);  // its second request was its last
  Result r = Get(client.get(), echo_);
  ASSERT_TRUE(r.status.ok()) << r.status.ToString();
  EXPECT_EQ(r.attempts, 1);  // a fresh connection, not a retry
  EXPECT_EQ(client->stats().idle, 1u);
}

TEST_F(FcgiClientTest, IdleConnectionIsClosedAfterTheIdleTimeout) {
  StartPhp();
  fcgi::ClientOptions o = BaseOptions();
  o.idle_timeout = std::chrono::milliseconds(200);
  auto client = MakeClient(o);
  ASSERT_TRUE(Get(client.get(), echo_).status.ok());
  EXPECT_EQ(client->stats().idle, 1u);
  const auto limit = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while (client->stats().idle != 0 && std::chrono::steady_clock::now() < limit) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  EXPECT_EQ(client->stats().idle, 0u);
  EXPECT_TRUE(Get(client.get(), echo_).status.ok());  // and the next request opens a new one
}

TEST_F(FcgiClientTest, DestroyingTheClientEndsARequestInFlightWithoutRetryingIt) {
  StartPhp();
  // Records each run, then sleeps far past the moment the client goes away.
  const std::string script = php_->AddScript("slow.php", R"php(<?php
file_put_contents(getenv('DUMP_DIR') . '/runs', "run\n", FILE_APPEND);
sleep(5);
echo 'PASS';
)php");
  auto client = MakeClient(1);
  ASSERT_TRUE(Get(client.get(), echo_).status.ok());  // the slow request reuses this connection
  Result r;
  Client* raw = client.get();  // read here: the caller thread must not touch `client` itself
  std::thread caller([&, raw] { r = Get(raw, script); });
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  const auto t0 = std::chrono::steady_clock::now();
  client.reset();  // waits for the caller, which must give up at once
  caller.join();
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(3));
  EXPECT_EQ(r.status.code(), Status::Code::kUnavailable) << r.status.ToString();
  EXPECT_NE(r.status.message().find("shutting down"), std::string::npos) << r.status.message();
  EXPECT_EQ(r.attempts, 1);
  EXPECT_EQ(testing_support::ReadFile(php_->data_dir() + "/runs"), "run\n");
}

}  // namespace

namespace {

// A failure carries its evidence: the STDERR a script wrote before it failed is in the Result.

TEST_F(FcgiClientTest, ScriptTimingOutKeepsTheStderrItWrote) {
  StartPhp();
  // flush() sends php-fpm's buffered STDERR record at once, as a script's output would be.
  const std::string script = php_->AddScript("hang.php", R"php(<?php
error_log("about to hang on the database", 4);
flush();
sleep(5);
echo 'PASS';
)php");
  auto client = MakeClient();
  Result r = client->Execute(ScriptParams(script, "GET", "", 0), nullptr,
                             Client::Clock::now() + std::chrono::milliseconds(700),
                             Idempotency::kIdempotent);
  EXPECT_EQ(r.status.code(), Status::Code::kTimeout) << r.status.ToString();
  EXPECT_EQ(r.phase, fcgi::RequestPhase::kReading);
  EXPECT_NE(r.response.stderr_output.find("about to hang on the database"), std::string::npos)
      << r.response.stderr_output;
}

TEST_F(FcgiClientTest, ReplyPastMaxReplyBytesKeepsTheStderrItWrote) {
  StartPhp();
  const std::string script = php_->AddScript("flood.php", R"php(<?php
error_log("dumping the whole table", 4);
echo str_repeat("x", 200000);
)php");
  fcgi::ClientOptions o = BaseOptions();
  o.max_reply_bytes = 1000;
  auto client = MakeClient(o);
  Result r = Get(client.get(), script);
  EXPECT_EQ(r.status.code(), Status::Code::kTooLarge) << r.status.ToString();
  EXPECT_NE(r.response.stderr_output.find("dumping the whole table"), std::string::npos)
      << r.response.stderr_output;
}

TEST(FcgiClientBrokenPeerTest, ReplyBreakingTheProtocolKeepsTheStderrBeforeIt) {
  // php-fpm never breaks the protocol; a peer made to: STDERR, then a record for another request.
  testing_support::TempDir dir;
  const std::string path = dir.path() + "/broken.sock";
  base::UniqueFd listener(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::snprintf(addr.sun_path, sizeof addr.sun_path, "%s", path.c_str());
  ASSERT_EQ(::bind(listener.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  ASSERT_EQ(::listen(listener.get(), 4), 0);
  std::thread peer([&] {
    base::UniqueFd c(::accept(listener.get(), nullptr, nullptr));
    // The request ends with the empty STDIN record.
    const std::string end_of_request("\x01\x05\x00\x01\x00\x00\x00\x00", 8);
    std::string request;
    char buf[4096];
    while (request.size() < end_of_request.size() ||
           request.compare(request.size() - end_of_request.size(), end_of_request.size(),
                           end_of_request) != 0) {
      const ssize_t n = ::read(c.get(), buf, sizeof buf);
      if (n <= 0) return;
      request.append(buf, static_cast<size_t>(n));
    }
    std::string reply;
    fcgi::protocol::AppendRecord(&reply, fcgi::protocol::RecordType::kStderr, 1,
                                 "PHP Warning: the reply below is for someone else");
    fcgi::protocol::AppendRecord(&reply, fcgi::protocol::RecordType::kStdout, 2, "SAVED");
    EXPECT_EQ(::write(c.get(), reply.data(), reply.size()), static_cast<ssize_t>(reply.size()));
  });
  fcgi::ClientOptions o;
  ASSERT_TRUE(fcgi::BackendAddress::Parse("unix", path, &o.address).ok());
  std::unique_ptr<Client> client;
  ASSERT_TRUE(Client::Create(o, &client).ok());
  Result r = client->Execute({{"REQUEST_METHOD", "GET"}}, nullptr, Client::Clock::now() + kDeadline,
                             Idempotency::kIdempotent);
  peer.join();
  EXPECT_EQ(r.status.code(), Status::Code::kProtocolError) << r.status.ToString();
  EXPECT_NE(r.response.stderr_output.find("the reply below is for someone else"), std::string::npos)
      << r.response.stderr_output;
}

TEST_F(FcgiClientTest, TheCallerNotTheMethodSaysWhetherARequestMayRunTwice) {
  StartPhp();
  // Records each run, then dies the hard way after reading the whole request.
  const std::string script = php_->AddScript("die.php", R"php(<?php
file_put_contents(getenv('DUMP_DIR') . '/runs', $_SERVER['REQUEST_METHOD'] . "\n", FILE_APPEND);
posix_kill(getmypid(), 9);
)php");
  auto client = MakeClient(1);
  const std::string runs = php_->data_dir() + "/runs";

  // A GET the caller calls unsafe runs once, even on a reused connection.
  ASSERT_TRUE(Get(client.get(), echo_).status.ok());  // the next request reuses this connection
  Result get = client->Execute(ScriptParams(script, "GET", "", 0), nullptr,
                               Client::Clock::now() + kDeadline, Idempotency::kNotIdempotent);
  EXPECT_FALSE(get.status.ok());
  EXPECT_EQ(get.attempts, 1) << get.status.ToString();
  EXPECT_EQ(testing_support::ReadFile(runs), "GET\n");

  // A POST the caller calls idempotent is sent again on a fresh connection.
  ASSERT_TRUE(Get(client.get(), echo_).status.ok());
  const std::string data = "x=1";
  Result post = client->Execute(ScriptParams(script, "POST", "", data.size()),
                                std::make_shared<fcgi::StringBody>(data),
                                Client::Clock::now() + kDeadline, Idempotency::kIdempotent);
  EXPECT_FALSE(post.status.ok());
  EXPECT_EQ(post.attempts, 2) << post.status.ToString();
  EXPECT_EQ(testing_support::ReadFile(runs), "GET\nPOST\nPOST\n");
}

}  // namespace
