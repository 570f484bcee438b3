// The daemon as a service, through a real Postfix: privilege drop and socket permissions,
// SIGUSR1 reload under load, a refused reload, graceful stop with a save in flight.
#include <gtest/gtest.h>
#include <grp.h>
#include <nlohmann/json.hpp>
#include <pwd.h>
#include <signal.h>
#include <sys/stat.h>

#include <atomic>
#include <filesystem>
#include <thread>

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
  return "<?php usleep(" + std::to_string(sleep_ms * 1000) + ");\n"
         "$dir = getenv('DUMP_DIR');\n"
         "file_put_contents(\"$dir/\" . hrtime(true) . '-" + tag + ".msg', $_POST['body'] ?? '');\n"
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

class DaemonE2eTest : public ::testing::Test {
 protected:
  void StartPhp() {
    php_ = std::make_unique<PhpFpm>();
    save_a_ = php_->AddScript("save-a.php", TaggedSave("a"));
    save_b_ = php_->AddScript("save-b.php", TaggedSave("b"));
    slow_save_ = php_->AddScript("save-slow.php", TaggedSave("slow", 2000));
    ASSERT_TRUE(php_->Start());
  }

  json BaseConfig(const std::string& save) {
    return {{"fcgi_connection_type", php_->connection_type()},
            {"fcgi_connection_address", php_->address()},
            {"fcgi_script_filename_save", save},
            {"spool_directory", tmp_.Mkdir("spool", 0777)},
            {"save_timeout", 10},
            {"log_level", "debug"}};
  }

  void StartDaemonAndPostfix(const json& config) {
    daemon_ = std::make_unique<MilterDaemon>(config);
    ASSERT_TRUE(daemon_->Start());
    Postfix::Options po;
    po.milters = daemon_->postfix_milters();
    postfix_ = std::make_unique<Postfix>(po);
    ASSERT_TRUE(postfix_->Start());
  }

  testing_support::MailResult Send(const std::string& subject) {
    return SendMail(postfix_->port(), "sender@client.test", {"user@example.test"},
                    testing_support::MakeMessage("sender@client.test", "user@example.test",
                                                 subject, "body\n"));
  }

  std::string Logs() const {
    return "\n--- daemon ---\n" + testing_support::Tail(daemon_ ? daemon_->log() : "") +
           "\n--- postfix ---\n" + testing_support::Tail(postfix_ ? postfix_->maillog() : "");
  }

  testing_support::TempDir tmp_;
  std::unique_ptr<PhpFpm> php_;
  std::unique_ptr<MilterDaemon> daemon_;
  std::unique_ptr<Postfix> postfix_;
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
  EXPECT_NE(full_log.find("reload: fcgi_script_filename_save: \"" + save_a_ + "\" -> \"" +
                          save_b_ + "\"\n"),
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

}  // namespace
