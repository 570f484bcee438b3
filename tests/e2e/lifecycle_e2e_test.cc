// The daemon's life cycle through a real Postfix and php-fpm: a stop (SIGTERM) lets the open SMTP
// transactions finish within shutdown_timeout (a message in DATA, a slow save) and then leaves;
// a reload does not hold up new transactions while the old config's backend prober ends;
// /healthz does not connect to the backend on every request; the unix milter socket gets its
// mode and owner without following what its directory's owner puts at that path.
#include <arpa/inet.h>
#include <fcntl.h>
#include <grp.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <pwd.h>
#include <signal.h>
#include <sys/inotify.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "tests/support/daemon_fixture.h"
#include "tests/support/milter_daemon.h"
#include "tests/support/net.h"
#include "tests/support/php_fpm.h"
#include "tests/support/postfix.h"
#include "tests/support/smtp_client.h"
#include "tests/support/temp_dir.h"

namespace {

using nlohmann::json;
using testing_support::MilterDaemon;
using testing_support::PhpFpm;
using testing_support::Postfix;
using testing_support::SendMail;
using Clock = std::chrono::steady_clock;

// Saves by writing <DUMP_DIR>/<hrtime>-<tag>.msg; first marks that it started (a .started file),
// then sleeps sleep_ms, so a test can signal the daemon while the script works.
std::string SlowSave(const std::string& tag, int sleep_ms) {
  return "<?php $dir = getenv('DUMP_DIR');\n"
         "touch(\"$dir/\" . hrtime(true) . '-" +
         tag + ".started');\nusleep(" + std::to_string(sleep_ms * 1000) +
         ");\n"
         "file_put_contents(\"$dir/\" . hrtime(true) . '-" +
         tag +
         ".msg', $_POST['body'] ?? '');\n"
         "echo 'SAVED';\n";
}

int CountFiles(const std::string& dir, const std::string& suffix) {
  int n = 0;
  for (const auto& e : std::filesystem::directory_iterator(dir)) {
    if (e.path().string().ends_with(suffix)) n++;
  }
  return n;
}

// One SMTP connection driven a line at a time, so a test can stop in the middle of DATA.
class RawSmtp {
 public:
  ~RawSmtp() {
    if (fd_ >= 0) close(fd_);
  }
  bool Connect(int port) {
    fd_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<uint16_t>(port));
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    return connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
  }
  bool Send(const std::string& text) {
    return send(fd_, text.data(), text.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(text.size());
  }
  // The reply's last line ("250 2.0.0 Ok: queued as ..."), or "" on timeout / close.
  std::string Reply(std::chrono::milliseconds timeout = std::chrono::seconds(30)) {
    const auto deadline = Clock::now() + timeout;
    for (;;) {
      size_t eol;
      while ((eol = buffer_.find("\r\n")) != std::string::npos) {
        std::string line = buffer_.substr(0, eol);
        buffer_.erase(0, eol + 2);
        if (line.size() < 4 || line[3] != '-') return line;
      }
      const auto left =
          std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
      pollfd p{fd_, POLLIN, 0};
      if (left <= 0 || poll(&p, 1, static_cast<int>(left)) <= 0) return "";
      char buf[4096];
      const ssize_t n = recv(fd_, buf, sizeof buf, 0);
      if (n <= 0) return "";
      buffer_.append(buf, static_cast<size_t>(n));
    }
  }
  std::string Command(const std::string& line) { return Send(line + "\r\n") ? Reply() : ""; }

 private:
  int fd_ = -1;
  std::string buffer_;
};

using testing_support::HttpGet;

class LifecycleE2eTest : public testing_support::DaemonFixture {
 protected:
  void StartPhp() {
    php_ = std::make_unique<PhpFpm>();
    ASSERT_TRUE(php_->Start());
  }

  // Waits until the save script has started (its .started marker exists).
  ::testing::AssertionResult WaitForSaveStart(const std::string& tag) {
    if (testing_support::WaitUntil(
            [&] { return CountFiles(php_->data_dir(), "-" + tag + ".started") > 0; },
            std::chrono::seconds(10))) {
      return ::testing::AssertionSuccess();
    }
    return ::testing::AssertionFailure() << "the save script never started" << Logs();
  }
};

// (a) The client is half-way through DATA when the daemon is told to stop. The transaction is
// open (MAIL FROM seen), so the stop waits for it: the rest of the message arrives, the save
// runs, the client gets 250. It used to be cut ~200 ms after the signal (only FastCGI requests
// in flight were waited for), and Postfix answered 451.
TEST_F(LifecycleE2eTest, MessageInDataWhenTheStopArrivesIsStillAnsweredAndSaved) {
  StartPhp();
  json config = BaseConfig(php_->AddScript("save.php", SlowSave("data", 0)));
  config["shutdown_timeout"] = 20;
  StartDaemonAndPostfix(config);

  RawSmtp smtp;
  ASSERT_TRUE(smtp.Connect(postfix_->port()));
  ASSERT_EQ(smtp.Reply().substr(0, 3), "220");
  ASSERT_EQ(smtp.Command("EHLO client.example.test").substr(0, 3), "250");
  ASSERT_EQ(smtp.Command("MAIL FROM:<sender@client.test>").substr(0, 3), "250");
  ASSERT_EQ(smtp.Command("RCPT TO:<user@example.test>").substr(0, 3), "250") << Logs();
  ASSERT_EQ(smtp.Command("DATA").substr(0, 3), "354");
  ASSERT_TRUE(smtp.Send(
      "From: sender@client.test\r\nTo: user@example.test\r\nSubject: cut?\r\n\r\nfirst line\r\n"));
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  ASSERT_TRUE(daemon_->Signal(SIGTERM));
  // Longer than the old 50 ms wake-up + 200 ms grace.
  std::this_thread::sleep_for(std::chrono::milliseconds(1500));
  EXPECT_TRUE(daemon_->Running()) << "left with a transaction open" << Logs();
  ASSERT_TRUE(smtp.Send("second line\r\n.\r\n"));
  const std::string reply = smtp.Reply();
  EXPECT_EQ(reply.substr(0, 3), "250") << reply << Logs();
  smtp.Command("QUIT");

  auto status = daemon_->process().Wait(std::chrono::seconds(10));
  ASSERT_TRUE(status.has_value()) << Logs();
  EXPECT_EQ(*status, 0) << Logs();
  EXPECT_EQ(CountFiles(php_->data_dir(), "-data.msg"), 1) << Logs();
  const std::string log = daemon_->log();
  EXPECT_NE(log.find("waiting up to 20 s for 1 open SMTP transaction"), std::string::npos) << log;
  EXPECT_NE(log.find("every open transaction finished"), std::string::npos) << log;
}

// (b) SIGTERM while a save that takes 1.5 s runs, shutdown_timeout well above that: the save
// finishes, the client gets 250, the message is stored once, the daemon exits 0 after that.
// While a stop drains, an SMTP session that was already connected may start a new transaction:
// its recipients are refused for now (451 4.3.2), so nothing new starts to wait for, and the
// transaction in DATA still ends with 250.
TEST_F(LifecycleE2eTest, NewTransactionsDuringTheDrainAreRefusedForNow) {
  StartPhp();
  json config = BaseConfig(php_->AddScript("save.php", SlowSave("drain", 0)));
  config["shutdown_timeout"] = 20;
  StartDaemonAndPostfix(config);

  RawSmtp busy;
  ASSERT_TRUE(busy.Connect(postfix_->port()));
  ASSERT_EQ(busy.Reply().substr(0, 3), "220");
  ASSERT_EQ(busy.Command("EHLO busy.example.test").substr(0, 3), "250");
  ASSERT_EQ(busy.Command("MAIL FROM:<sender@client.test>").substr(0, 3), "250");
  ASSERT_EQ(busy.Command("RCPT TO:<user@example.test>").substr(0, 3), "250") << Logs();
  ASSERT_EQ(busy.Command("DATA").substr(0, 3), "354");
  ASSERT_TRUE(busy.Send("Subject: busy\r\n\r\nfirst line\r\n"));
  RawSmtp idle;
  ASSERT_TRUE(idle.Connect(postfix_->port()));
  ASSERT_EQ(idle.Reply().substr(0, 3), "220");
  ASSERT_EQ(idle.Command("EHLO idle.example.test").substr(0, 3), "250");
  std::this_thread::sleep_for(std::chrono::milliseconds(300));

  ASSERT_TRUE(daemon_->Signal(SIGTERM));
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  ASSERT_EQ(idle.Command("MAIL FROM:<late@client.test>").substr(0, 3), "250");
  const std::string refused = idle.Command("RCPT TO:<user@example.test>");
  EXPECT_EQ(refused.substr(0, 3), "451") << refused << Logs();
  EXPECT_NE(refused.find("4.3.2"), std::string::npos) << refused;
  idle.Command("QUIT");

  ASSERT_TRUE(busy.Send("second line\r\n.\r\n"));
  const std::string reply = busy.Reply();
  EXPECT_EQ(reply.substr(0, 3), "250") << reply << Logs();
  busy.Command("QUIT");
  auto status = daemon_->process().Wait(std::chrono::seconds(10));
  ASSERT_TRUE(status.has_value()) << Logs();
  EXPECT_EQ(*status, 0) << Logs();
  EXPECT_EQ(CountFiles(php_->data_dir(), "-drain.msg"), 1) << Logs();
}

TEST_F(LifecycleE2eTest, SaveLongerThanASecondFinishesAndTheDaemonExitsZero) {
  StartPhp();
  json config = BaseConfig(php_->AddScript("save.php", SlowSave("slow", 1500)));
  config["shutdown_timeout"] = 10;
  StartDaemonAndPostfix(config);
  testing_support::MailResult result;
  std::thread sender([&] { result = Send("slow"); });
  ASSERT_TRUE(WaitForSaveStart("slow"));
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  ASSERT_TRUE(daemon_->Signal(SIGTERM));
  // The milter socket stops taking connections at once, while the save still runs.
  const std::string spec = daemon_->milter_socket();  // inet:PORT@127.0.0.1
  const int milter_port = std::stoi(spec.substr(spec.find(':') + 1));
  EXPECT_TRUE(testing_support::WaitUntil(
      [&] { return !testing_support::CanConnectTcp(milter_port); }, std::chrono::milliseconds(500)))
      << Logs();
  EXPECT_TRUE(daemon_->Running());
  sender.join();
  EXPECT_TRUE(result.accepted()) << result << Logs();
  auto status = daemon_->process().Wait(std::chrono::seconds(15));
  ASSERT_TRUE(status.has_value()) << Logs();
  EXPECT_EQ(*status, 0) << Logs();
  EXPECT_EQ(CountFiles(php_->data_dir(), "-slow.msg"), 1) << Logs();
  EXPECT_EQ(CountFiles(php_->data_dir(), "-slow.started"), 1) << Logs();
  const std::string log = daemon_->log();
  EXPECT_NE(log.find("waiting up to 10 s for 1 open SMTP transaction"), std::string::npos) << log;
  EXPECT_NE(log.find("stopped"), std::string::npos) << log;
}

// (c) shutdown_timeout (1 s) shorter than the save (4 s): the daemon leaves after about
// shutdown_timeout, says how many transactions it left open, and the client is not told the
// message was accepted (Postfix applies milter_default_action = tempfail).
TEST_F(LifecycleE2eTest, ShutdownTimeoutShorterThanTheSaveLeavesTheMessageUnaccepted) {
  StartPhp();
  json config = BaseConfig(php_->AddScript("save.php", SlowSave("cut", 4000)));
  config["shutdown_timeout"] = 1;
  StartDaemonAndPostfix(config);
  testing_support::MailResult result;
  std::thread sender([&] { result = Send("cut"); });
  ASSERT_TRUE(WaitForSaveStart("cut"));
  const auto signalled = Clock::now();
  ASSERT_TRUE(daemon_->Signal(SIGTERM));
  auto status = daemon_->process().Wait(std::chrono::seconds(10));
  const double took = std::chrono::duration<double>(Clock::now() - signalled).count();
  sender.join();
  ASSERT_TRUE(status.has_value()) << Logs();
  EXPECT_EQ(*status, 0) << Logs();
  EXPECT_GE(took, 0.9) << Logs();
  EXPECT_LT(took, 3.0) << Logs();
  EXPECT_FALSE(result.accepted()) << result << Logs();
  EXPECT_TRUE((result.data.code >= 400 && result.data.code < 500)) << result << Logs();
  const std::string log = daemon_->log();
  EXPECT_NE(log.find("stopping with 1 SMTP transaction still open"), std::string::npos) << log;
}

// A TCP backend that never accepts: a listener with backlog 0 whose one queue slot is taken, so
// the kernel drops further SYNs and a connect() hangs until its timeout.
class BlackholeBackend {
 public:
  BlackholeBackend() {
    listener_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    bind(listener_, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
    listen(listener_, 0);
    socklen_t len = sizeof addr;
    getsockname(listener_, reinterpret_cast<sockaddr*>(&addr), &len);
    port_ = ntohs(addr.sin_port);
    filler_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    connect(filler_, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
  }
  ~BlackholeBackend() {
    close(filler_);
    close(listener_);
  }
  int port() const { return port_; }

 private:
  int listener_ = -1;
  int filler_ = -1;
  int port_ = 0;
};

// The old config's filter used to be destroyed inside Filter::SetCurrent, under the lock every
// new transaction (and /metrics) takes to read the current filter. Destroying it joins its
// backend prober, which is inside a connect to a down backend for up to a second: during that
// second nothing could start. Now the reload releases it after the swap, outside the lock.
TEST_F(LifecycleE2eTest, ReloadDoesNotHoldUpNewTransactionsWhileTheOldProberEnds) {
  StartPhp();
  BlackholeBackend blackhole;
  const int metrics_port = testing_support::FreeTcpPort();
  json config = BaseConfig(php_->AddScript("save.php", SlowSave("reload", 0)));
  config.erase("fcgi_connection_type");
  config.erase("fcgi_connection_address");
  // The blackhole first: the first request tries it, waits fcgi_connect_timeout, marks it down
  // (which wakes the prober: it starts a 1 s probe at once) and goes on to php-fpm.
  config["fcgi_backends"] = {"tcp:127.0.0.1:" + std::to_string(blackhole.port()),
                             "unix:" + php_->socket_path()};
  config["fcgi_connect_timeout"] = 1;
  config["fcgi_script_filename_validate"] = php_->AddScript("validate.php", "<?php echo 'PASS';");
  config["metrics_listen"] = "127.0.0.1:" + std::to_string(metrics_port);
  StartDaemonAndPostfix(config);

  auto r = Send("marks the blackhole down");
  ASSERT_TRUE(r.accepted()) << r << Logs();
  // The prober started its probe when the RCPT marked the blackhole down, moments ago, and
  // stays in it for about a second. Reload now, and read the current config meanwhile.
  ASSERT_TRUE(daemon_->Signal(SIGUSR1));
  double slowest = 0;
  const auto until = Clock::now() + std::chrono::milliseconds(1500);
  while (Clock::now() < until) {
    const auto t0 = Clock::now();
    auto [status, text] = HttpGet(metrics_port, "/metrics");
    const double took = std::chrono::duration<double>(Clock::now() - t0).count();
    EXPECT_EQ(status, 200) << text;
    slowest = std::max(slowest, took);
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_NE(daemon_->log().find("reloaded"), std::string::npos) << Logs();
  EXPECT_LT(slowest, 0.3) << "reading the current config waited " << slowest << " s" << Logs();
  // And mail still flows on the new config.
  auto after = Send("after reload");
  EXPECT_TRUE(after.accepted()) << after << Logs();
}

// /healthz used to connect to every backend on every request; it now answers from a check at
// most a second old. The backend here is a listener of ours that counts connections.
TEST_F(LifecycleE2eTest, HealthzConnectsToTheBackendAtMostOnceASecond) {
  const int listener = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(bind(listener, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  ASSERT_EQ(listen(listener, 64), 0);
  socklen_t len = sizeof addr;
  getsockname(listener, reinterpret_cast<sockaddr*>(&addr), &len);
  std::atomic<int> accepted{0};
  std::atomic<bool> done{false};
  std::thread acceptor([&] {
    while (!done) {
      pollfd p{listener, POLLIN, 0};
      if (poll(&p, 1, 50) > 0) {
        const int c = accept(listener, nullptr, nullptr);
        if (c >= 0) {
          accepted++;
          close(c);
        }
      }
    }
  });
  const int metrics_port = testing_support::FreeTcpPort();
  json config = {{"fcgi_connection_type", "tcp"},
                 {"fcgi_connection_address", "127.0.0.1:" + std::to_string(ntohs(addr.sin_port))},
                 {"fcgi_script_filename_save", "/srv/save.php"},
                 {"spool_directory", tmp_.Mkdir("spool", 0777)},
                 {"metrics_listen", "127.0.0.1:" + std::to_string(metrics_port)}};
  daemon_ = std::make_unique<MilterDaemon>(config);
  ASSERT_TRUE(daemon_->Start());
  // The start-up check connects once.
  ASSERT_TRUE(
      testing_support::WaitUntil([&] { return accepted.load() >= 1; }, std::chrono::seconds(5)));
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  const int before = accepted.load();
  const auto start = Clock::now();
  for (int i = 0; i < 20; ++i) EXPECT_EQ(HttpGet(metrics_port, "/healthz").first, 200);
  const double took = std::chrono::duration<double>(Clock::now() - start).count();
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  const int checks = accepted.load() - before;
  EXPECT_GE(checks, 1);
  EXPECT_LE(checks, 1 + static_cast<int>(took)) << "20 requests in " << took << " s";
  // A second later the answer is checked again.
  std::this_thread::sleep_for(std::chrono::milliseconds(1100));
  EXPECT_EQ(HttpGet(metrics_port, "/healthz").first, 200);
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  EXPECT_EQ(accepted.load() - before, checks + 1);
  done = true;
  acceptor.join();
  close(listener);
}

}  // namespace
