// The daemon as a service, through a real Postfix: privilege drop and socket permissions,
// SIGUSR1 reload under load, a refused reload, graceful stop with a save in flight.
#include <arpa/inet.h>
#include <grp.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <pwd.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>
#include <nlohmann/json.hpp>

#include <iostream>

#include <atomic>
#include <filesystem>
#include <thread>

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

// Saves by writing a file named after the tag in the script's own name, so a test can tell
// which configuration handled a message.
std::string TaggedSave(const std::string& tag, int sleep_ms = 0) {
  return "<?php usleep(" + std::to_string(sleep_ms * 1000) +
         ");\n"
         "$dir = getenv('DUMP_DIR');\n"
         "file_put_contents(\"$dir/\" . hrtime(true) . '-" +
         tag +
         ".msg', $_POST['body'] ?? '');\n"
         "echo 'SAVED';\n";
}

int CountSaved(const std::string& dir, const std::string& tag) {
  int n = 0;
  for (const auto& e : std::filesystem::directory_iterator(dir)) {
    if (e.path().string().ends_with("-" + tag + ".msg")) n++;
  }
  return n;
}

std::string ProcStatusField(pid_t pid, const std::string& field) {
  const std::string status = testing_support::ReadFile("/proc/" + std::to_string(pid) + "/status");
  const size_t at = status.find(field + ":");
  if (at == std::string::npos) return {};
  const size_t end = status.find('\n', at);
  return status.substr(at, end - at);
}

class DaemonE2eTest : public testing_support::DaemonFixture {
 protected:
  void StartPhp() {
    php_ = std::make_unique<PhpFpm>();
    save_a_ = php_->AddScript("save-a.php", TaggedSave("a"));
    save_b_ = php_->AddScript("save-b.php", TaggedSave("b"));
    slow_save_ = php_->AddScript("save-slow.php", TaggedSave("slow", 2000));
    ASSERT_TRUE(php_->Start());
  }

  std::string save_a_, save_b_, slow_save_;
};

TEST_F(DaemonE2eTest, DropsToConfiguredUserAndGivesTheSocketToPostfixGroup) {
  StartPhp();
  const std::string sock_dir = tmp_.Mkdir("sock", 0755);
  json config = BaseConfig(save_a_);
  config["milter_socket"] = "unix:" + sock_dir + "/fcgi-milter.sock";
  config["milter_socket_mode"] = "0660";
  config["milter_socket_group"] = "postfix";
  config["user"] = "nobody";
  config["group"] = "nogroup";
  config["pid_file"] = sock_dir + "/fcgi-milter.pid";
  StartDaemonAndPostfix(config);

  struct stat st {};
  ASSERT_EQ(stat((sock_dir + "/fcgi-milter.sock").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0660u);
  EXPECT_EQ(st.st_gid, getgrnam("postfix")->gr_gid);
  const std::string uid = std::to_string(getpwnam("nobody")->pw_uid);
  EXPECT_EQ(ProcStatusField(daemon_->process().pid(), "Uid"),
            "Uid:\t" + uid + "\t" + uid + "\t" + uid + "\t" + uid);
  EXPECT_EQ(testing_support::ReadFile(sock_dir + "/fcgi-milter.pid"),
            std::to_string(daemon_->process().pid()) + "\n");

  // smtpd (user postfix) reaches the 0660 socket through its group; the save goes through.
  auto r = Send("as nobody");
  EXPECT_TRUE(r.accepted()) << r << Logs();
  EXPECT_EQ(CountSaved(php_->data_dir(), "a"), 1);

  // SIGTERM: exit status 0, and the socket file is gone: the daemon, unprivileged by now,
  // removes it from a directory its user owns (as the package's is).
  ASSERT_EQ(chown(sock_dir.c_str(), getpwnam("nobody")->pw_uid, getgrnam("nogroup")->gr_gid), 0);
  postfix_.reset();
  EXPECT_EQ(daemon_->Stop(), 0) << Logs();
  EXPECT_FALSE(std::filesystem::exists(sock_dir + "/fcgi-milter.sock")) << Logs();
}

TEST_F(DaemonE2eTest, ReloadUnderLoadLosesNothingAndSwitchesScripts) {
  StartPhp();
  StartDaemonAndPostfix(BaseConfig(save_a_));
  std::atomic<bool> stop{false};
  std::atomic<int> sent{0};
  std::atomic<int> refused{0};
  std::vector<std::thread> senders;
  for (int t = 0; t < 3; ++t) {
    senders.emplace_back([&] {
      while (!stop) {
        auto r = Send("load");
        if (r.accepted()) {
          sent++;
        } else {
          refused++;
        }
      }
    });
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(700));
  json reloaded = daemon_->config();
  reloaded["fcgi_script_filename_save"] = save_b_;
  ASSERT_TRUE(daemon_->WriteConfig(reloaded));
  ASSERT_TRUE(daemon_->Signal(SIGUSR1));
  ASSERT_TRUE(testing_support::WaitUntil(
      [&] { return daemon_->log().find("reloaded") != std::string::npos; },
      std::chrono::seconds(5)))
      << Logs();
  std::this_thread::sleep_for(std::chrono::milliseconds(700));
  stop = true;
  for (auto& t : senders) t.join();

  EXPECT_EQ(refused.load(), 0) << Logs();
  const int a = CountSaved(php_->data_dir(), "a");
  const int b = CountSaved(php_->data_dir(), "b");
  EXPECT_EQ(a + b, sent.load());
  EXPECT_GT(a, 0);
  EXPECT_GT(b, 0);
  const std::string full_log = testing_support::ReadFile(daemon_->process().stderr_path());
  EXPECT_NE(full_log.find("reload: fcgi_script_filename_save: \"" + save_a_ + "\" -> \"" + save_b_ +
                          "\"\n"),
            std::string::npos)
      << Logs();
  EXPECT_NE(full_log.find("(1 change)"), std::string::npos) << Logs();
  // After the reload every new message goes to the new script.
  auto r = Send("after reload");
  ASSERT_TRUE(r.accepted()) << r;
  EXPECT_EQ(CountSaved(php_->data_dir(), "b"), b + 1);
}

TEST_F(DaemonE2eTest, BrokenConfigOnReloadIsRefusedAndTheOldOneKeepsWorking) {
  StartPhp();
  StartDaemonAndPostfix(BaseConfig(save_a_));
  testing_support::WriteFile(daemon_->config_path(), "{\"fcgi_script_filename_save\": 42,");
  ASSERT_TRUE(daemon_->Signal(SIGUSR1));
  ASSERT_TRUE(testing_support::WaitUntil(
      [&] { return daemon_->log().find("keeping the running configuration") != std::string::npos; },
      std::chrono::seconds(5)))
      << Logs();
  EXPECT_NE(daemon_->log().find("reload refused: " + daemon_->config_path()), std::string::npos)
      << Logs();
  EXPECT_TRUE(daemon_->Running());
  auto r = Send("still here");
  EXPECT_TRUE(r.accepted()) << r << Logs();
  EXPECT_EQ(CountSaved(php_->data_dir(), "a"), 1);
}

TEST_F(DaemonE2eTest, GracefulStopLetsTheSaveInFlightFinish) {
  StartPhp();
  StartDaemonAndPostfix(BaseConfig(slow_save_));
  testing_support::MailResult result;
  std::thread sender([&] { result = Send("slow"); });
  // The save script sleeps 2 s; the SMTP dialogue before it takes well under a second.
  std::this_thread::sleep_for(std::chrono::milliseconds(1000));
  ASSERT_TRUE(daemon_->Signal(SIGTERM));
  sender.join();
  EXPECT_TRUE(result.accepted()) << result << Logs();
  EXPECT_EQ(CountSaved(php_->data_dir(), "slow"), 1);
  auto status = daemon_->process().Wait(std::chrono::seconds(10));
  ASSERT_TRUE(status.has_value());
  EXPECT_EQ(*status, 0) << Logs();
  EXPECT_NE(daemon_->log().find("stopped"), std::string::npos);
}

// A minimal HTTP GET on loopback: status line and body.
TEST_F(DaemonE2eTest, MetricsCountWhatWasSentAndHealthFollowsTheBackend) {
  StartPhp();
  const int port = testing_support::FreeTcpPort();
  json config = BaseConfig(save_a_);
  config["fcgi_script_filename_validate"] =
      php_->AddScript("validate.php",
                      "<?php echo str_starts_with($_GET['rcpt_to'], 'no') "
                      "? 'REJECT 550 5.1.1 no' : 'PASS';");
  config["metrics_listen"] = "127.0.0.1:" + std::to_string(port);
  StartDaemonAndPostfix(config);
  for (int i = 0; i < 3; ++i) {
    auto r =
        SendMail(postfix_->port(), "s@client.test", {"user@example.test", "nobody@example.test"},
                 testing_support::MakeMessage("s@client.test", "user@example.test", "m", "body\n"));
    ASSERT_TRUE(r.accepted()) << r << Logs();
  }
  auto [status, text] = testing_support::HttpGet(port, "/metrics");
  ASSERT_EQ(status, 200) << text;
  EXPECT_NE(text.find("fcgi_milter_messages_total{verdict=\"accept\"} 3\n"), std::string::npos)
      << text;
  EXPECT_NE(text.find("fcgi_milter_recipients_total{verdict=\"accept\"} 3\n"), std::string::npos)
      << text;
  EXPECT_NE(text.find("fcgi_milter_recipients_total{verdict=\"reject\"} 3\n"), std::string::npos)
      << text;
  EXPECT_NE(text.find("fcgi_milter_request_duration_seconds_count{stage=\"save\"} 3\n"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("fcgi_milter_request_duration_seconds_count{stage=\"validate\"} 6\n"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("fcgi_milter_backend_up{backend=\"unix:" + php_->socket_path() + "\"} 1"),
            std::string::npos)
      << text;
  std::cout << "--- /metrics scrape ---\n" << text;
  EXPECT_EQ(testing_support::HttpGet(port, "/healthz").first, 200);
  php_->Stop();
  // /healthz answers from a check at most a second old.
  EXPECT_TRUE(testing_support::WaitUntil(
      [&] { return testing_support::HttpGet(port, "/healthz").first == 503; },
      std::chrono::seconds(3)));
  auto r = Send("backend down");
  EXPECT_FALSE(r.accepted());
  auto [status2, text2] = testing_support::HttpGet(port, "/metrics");
  EXPECT_NE(text2.find("fcgi_milter_backend_errors_total{kind=\"connect\"} 1\n"), std::string::npos)
      << text2;
}

}  // namespace

namespace {

// The daemon starts as root and hands its unix socket to the service user and the MTA's group,
// in a directory the service user owns. An attacker with that user's rights who swaps the socket
// for a symlink between bind() and the ownership change must not make root change another file.
// tests/preload/socket_race.cc plays that attacker, deterministically, at the daemon's first
// open(O_PATH)/chown/chmod of the socket path.
TEST(MilterSocketRaceE2eTest, ASocketSwappedForASymlinkIsRefusedAndTheTargetUntouched) {
  testing_support::TempDir tmp;
  PhpFpm php;
  const std::string save = php.AddScript("save.php", "<?php echo \"SAVED\\n\";");
  ASSERT_TRUE(php.Start());
  const std::string sock_dir = tmp.Mkdir("sock", 0755);
  ASSERT_EQ(chown(sock_dir.c_str(), 65534, 65534), 0);  // the service user's directory
  const std::string victim = tmp.Write("victim", "root's file\n");
  ASSERT_EQ(chmod(victim.c_str(), 0600), 0);
  json config = testing_support::BaseDaemonConfig(php, "", save, tmp.Mkdir("spool", 0777));
  config["milter_socket"] = "unix:" + sock_dir + "/fcgi-milter.sock";
  config["milter_socket_mode"] = "0660";
  config["milter_socket_group"] = "postfix";
  config["user"] = "nobody";
  config["group"] = "nogroup";

  ::setenv("LD_PRELOAD", FCGI_MILTER_SOCKET_RACE_PRELOAD, 1);
  ::setenv("FCGI_RACE_PATH", (sock_dir + "/fcgi-milter.sock").c_str(), 1);
  ::setenv("FCGI_RACE_TARGET", victim.c_str(), 1);
  const char* asan = std::getenv("ASAN_OPTIONS");
  const std::string saved_asan = asan != nullptr ? asan : "";
  // Under ASan the preload comes before ASan's runtime; allow it for this one child.
  ::setenv("ASAN_OPTIONS",
           (saved_asan + (saved_asan.empty() ? "" : ":") + "verify_asan_link_order=0").c_str(), 1);
  MilterDaemon daemon(config);
  // Start() may catch the socket listening for the moment between libmilter's bind and the
  // ownership check that refuses it (a CI run did, once): what counts is that the daemon exits.
  (void)daemon.Start({}, std::chrono::seconds(5));
  ::unsetenv("LD_PRELOAD");
  ::unsetenv("FCGI_RACE_PATH");
  ::unsetenv("FCGI_RACE_TARGET");
  if (saved_asan.empty()) {
    ::unsetenv("ASAN_OPTIONS");
  } else {
    ::setenv("ASAN_OPTIONS", saved_asan.c_str(), 1);
  }

  EXPECT_TRUE(
      testing_support::WaitUntil([&] { return !daemon.Running(); }, std::chrono::seconds(5)))
      << "the daemon accepted a socket that was swapped under it";
  struct stat st {};
  ASSERT_EQ(lstat(victim.c_str(), &st), 0);
  EXPECT_EQ(st.st_uid, 0u) << "root changed the owner of the symlink's target";
  EXPECT_EQ(st.st_mode & 07777, 0600u) << "root changed the mode of the symlink's target";
  EXPECT_NE(daemon.log().find("was replaced"), std::string::npos) << daemon.log();
}

}  // namespace
