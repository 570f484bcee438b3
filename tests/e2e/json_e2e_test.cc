// JSON replies end to end: Postfix -> fcgi-milter -> the JSON example scripts, and Postfix then
// relays what it accepted to an smtp-sink that dumps each delivered message, so the test sees
// the header the save script added and which recipients the message really went to.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <filesystem>

#include "tests/support/milter_daemon.h"
#include "tests/support/net.h"
#include "tests/support/php_fpm.h"
#include "tests/support/postfix.h"
#include "tests/support/process.h"
#include "tests/support/smtp_client.h"
#include "tests/support/smtp_sink.h"
#include "tests/support/temp_dir.h"

namespace {

using nlohmann::json;
using testing_support::MilterDaemon;
using testing_support::PhpFpm;
using testing_support::Postfix;
using testing_support::SendMail;

class JsonE2eTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const std::string src = FCGI_MILTER_SOURCE_DIR;
    PhpFpm::Options o;
    o.env["FCGI_MILTER_RECIPIENTS"] = tmp_.Write("recipients.txt", "@example.test\n");
    maildir_ = tmp_.Mkdir("Maildir", 0777);
    o.env["FCGI_MILTER_MAILDIR"] = maildir_;
    o.env["FCGI_MILTER_LOCK_DIR"] = tmp_.Mkdir("locks", 0755);
    php_ = std::make_unique<PhpFpm>(o);
    const std::string validate = php_->CopyScript(src + "/examples/json/validate.php");
    const std::string save = php_->CopyScript(src + "/examples/json/save.php");
    ASSERT_TRUE(php_->Start());

    daemon_ = std::make_unique<MilterDaemon>(
        testing_support::BaseDaemonConfig(*php_, validate, save, tmp_.Mkdir("spool", 0700)));
    ASSERT_TRUE(daemon_->Start());

    // What Postfix delivers goes to smtp-sink, which writes one file per transaction.
    sink_ = std::make_unique<testing_support::SmtpSink>(tmp_.path() + "/sink");
    ASSERT_TRUE(sink_->Start());

    Postfix::Options po;
    po.milters = daemon_->postfix_milters();
    po.extra_main_cf = sink_->RelayMainCf();
    postfix_ = std::make_unique<Postfix>(po);
    ASSERT_TRUE(postfix_->Start());
  }

  std::vector<std::string> SinkFiles() const { return sink_->Files(); }

  std::string Logs() const {
    return "\n--- daemon ---\n" + testing_support::Tail(daemon_->log()) + "\n--- postfix ---\n" +
           testing_support::Tail(postfix_ ? postfix_->maillog() : "") + "\n--- php ---\n" +
           testing_support::Tail(php_->error_log());
  }

  testing_support::TempDir tmp_;
  std::string maildir_;
  std::unique_ptr<PhpFpm> php_;
  std::unique_ptr<MilterDaemon> daemon_;
  std::unique_ptr<testing_support::SmtpSink> sink_;
  std::unique_ptr<Postfix> postfix_;
};

TEST_F(JsonE2eTest, SaveScriptAddsAHeaderAndRefusesOneRecipientWhileTheOtherGetsTheMail) {
  // full@ is over quota for the example save script: it refuses that recipient only.
  testing_support::WriteFile(maildir_ + "/full@example.test.full", "");
  auto r = SendMail(
      postfix_->port(), "sender@client.test", {"bob@example.test", "full@example.test"},
      testing_support::MakeMessage("sender@client.test", "bob@example.test", "json", "hello\n"));
  ASSERT_EQ(r.rcpts.size(), 2u);
  EXPECT_EQ(r.rcpts[0].code, 250) << r << Logs();
  EXPECT_EQ(r.rcpts[1].code, 250) << r;
  ASSERT_TRUE(r.accepted()) << r << Logs();
  ASSERT_TRUE(postfix_->WaitForQueueEmpty(std::chrono::seconds(20))) << Logs();

  auto files = SinkFiles();
  ASSERT_EQ(files.size(), 1u) << Logs();
  const std::string& dump = files[0];
  // The relayed transaction went to bob only; full@ was removed with smfi_delrcpt.
  EXPECT_NE(dump.find("bob@example.test"), std::string::npos) << dump;
  EXPECT_EQ(dump.find("RCPT TO:<full@example.test>"), std::string::npos) << dump;
  EXPECT_EQ(dump.find("full@example.test\n"), std::string::npos) << dump;
  EXPECT_NE(dump.find("X-Fcgi-Milter-Stored: 1 mailbox(es), queue id "), std::string::npos) << dump;
  EXPECT_TRUE(std::filesystem::exists(maildir_ + "/bob@example.test/new"));
  EXPECT_FALSE(std::filesystem::exists(maildir_ + "/full@example.test"));
}

TEST_F(JsonE2eTest, LockedMailboxIsTempfailedAtRcptWithTheScriptsCode) {
  testing_support::WriteFile(tmp_.Path("locks") + "/locked@example.test.lock", "");
  auto r = SendMail(
      postfix_->port(), "sender@client.test",
      {"locked@example.test", "nobody@elsewhere.test", "ok@example.test"},
      testing_support::MakeMessage("sender@client.test", "ok@example.test", "lock", "hello\n"));
  ASSERT_EQ(r.rcpts.size(), 3u);
  EXPECT_EQ(r.rcpts[0].code, 450) << r << Logs();
  EXPECT_NE(r.rcpts[0].text.find("4.2.1"), std::string::npos) << r.rcpts[0];
  EXPECT_EQ(r.rcpts[1].code, 550) << r;
  EXPECT_EQ(r.rcpts[2].code, 250) << r;
  EXPECT_TRUE(r.accepted()) << r << Logs();
}

}  // namespace
