// End to end through a real Postfix and a real php-fpm: "temporary stays temporary". A script
// that meant "later" is never read as a bounce, a save that did not say SAVED is never accepted,
// PHP's own limits never cut what the script receives, and a failing callback at a stage the MTA
// does not wait on is still answered at once, at end of message.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <chrono>
#include <cstdlib>
#include <set>
#include <string>
#include <vector>

#include "tests/support/mail_lab.h"
#include "tests/support/milter_daemon.h"
#include "tests/support/php_fpm.h"
#include "tests/support/postfix.h"
#include "tests/support/recording.h"
#include "tests/support/smtp_client.h"
#include "tests/support/temp_dir.h"

namespace {

using nlohmann::json;
using testing_support::MilterDaemon;
using testing_support::PhpFpm;
using testing_support::Postfix;
using testing_support::SendMail;
using testing_support::SmtpClient;

// Answers by the recipient's local part, so one test covers several reply forms.
constexpr const char* kValidateByLocalPart = R"php(<?php
$rcpt = $_GET['rcpt_to'] ?? '';
$local = substr($rcpt, 0, strpos($rcpt, '@'));
switch ($local) {
  case 'bare': echo "TEMPFAIL\n"; break;
  case 'nocode': echo "TEMPFAIL 4.2.1 Mailbox locked\n"; break;
  case 'lower': echo "tempfail try later\n"; break;
  case 'wrongclass': echo "TEMPFAIL 550 5.1.1 wrong class\n"; break;
  case 'rejecttemp': echo "REJECT 450 4.2.1 over quota\n"; break;
  case 'bom': echo "\xEF\xBB\xBFPASS\n"; break;
  case 'unknown': echo "NO\n"; break;
  default: echo "PASS\n";
}
)php";

// display_errors on (PHP's built-in default, and php.ini-development): a deprecation notice
// reaches STDOUT before PASS.
constexpr const char* kValidateWithDeprecation = R"php(<?php
$year = strftime('%Y');
echo "PASS\n";
)php";

class TemporaryE2eTest : public ::testing::Test {
 protected:
  void StartAll(const std::string& validate_source, const std::string& save_source,
                json extra_config = json::object(), PhpFpm::Options php_options = {},
                std::vector<std::string> extra_main_cf = {}) {
    testing_support::MailLab::Options o;
    o.php = std::move(php_options);
    o.validate = validate_source;
    o.save = save_source;
    o.daemon = std::move(extra_config);
    o.main_cf = std::move(extra_main_cf);
    lab_ = std::make_unique<testing_support::MailLab>();
    ASSERT_TRUE(lab_->Start(std::move(o)));
    postfix_ = &lab_->postfix();
    daemon_ = &lab_->daemon();
    php_ = &lab_->php();
  }

  std::string Diagnostics() const { return lab_->Diagnostics(); }
  std::vector<testing_support::SavedMessage> Saved() const { return lab_->Saved(); }

  std::unique_ptr<testing_support::MailLab> lab_;
  Postfix* postfix_ = nullptr;
  MilterDaemon* daemon_ = nullptr;
  PhpFpm* php_ = nullptr;
};

TEST_F(TemporaryE2eTest, EveryFormOfTempfailFromValidateIsATemporaryReply) {
  StartAll(kValidateByLocalPart, testing_support::kRecordingSaveScript);
  const std::vector<std::string> rcpts = {"bare@example.test",       "nocode@example.test",
                                          "lower@example.test",      "wrongclass@example.test",
                                          "rejecttemp@example.test", "bom@example.test",
                                          "unknown@example.test",    "ok@example.test"};
  auto r = SendMail(postfix_->port(), "sender@client.test", rcpts,
                    testing_support::MakeMessage("sender@client.test", "ok@example.test",
                                                 "forms of tempfail", "hello\n"));
  ASSERT_EQ(r.rcpts.size(), rcpts.size()) << r << Diagnostics();
  for (size_t i = 0; i < 5; ++i) {
    SCOPED_TRACE(rcpts[i]);
    EXPECT_EQ(r.rcpts[i].code / 100, 4) << r.rcpts[i] << Diagnostics();
  }
  EXPECT_EQ(r.rcpts[0].code, 451) << r.rcpts[0];
  EXPECT_NE(r.rcpts[1].text.find("4.2.1 Mailbox locked"), std::string::npos) << r.rcpts[1];
  EXPECT_NE(r.rcpts[4].text.find("450 4.2.1 over quota"), std::string::npos) << r.rcpts[4];
  EXPECT_EQ(r.rcpts[5].code, 250) << r.rcpts[5];  // a byte order mark before PASS
  EXPECT_EQ(r.rcpts[6].code, 550) << r.rcpts[6];  // a refusal stays a refusal
  EXPECT_EQ(r.rcpts[7].code, 250) << r.rcpts[7];
  EXPECT_TRUE(r.accepted()) << r << Diagnostics();
}

TEST_F(TemporaryE2eTest, PhpDeprecationNoticeBeforePassIsTemporaryAndLoggedWithItsText) {
  PhpFpm::Options o;
  o.extra_pool_lines = {"php_admin_flag[display_errors] = on",
                        "php_admin_value[error_reporting] = E_ALL"};
  StartAll(kValidateWithDeprecation, testing_support::kRecordingSaveScript, {}, o);
  auto r = SendMail(postfix_->port(), "sender@client.test", {"user@example.test"},
                    testing_support::MakeMessage("sender@client.test", "user@example.test",
                                                 "deprecated", "hello\n"));
  ASSERT_EQ(r.rcpts.size(), 1u);
  EXPECT_EQ(r.rcpts[0].code, 451) << r << Diagnostics();
  EXPECT_NE(r.rcpts[0].text.find("4.3.0"), std::string::npos) << r.rcpts[0];
  const std::string log = daemon_->log();
  EXPECT_NE(log.find("PHP error"), std::string::npos) << log;
  EXPECT_NE(log.find("strftime()"), std::string::npos) << log;
  EXPECT_TRUE(Saved().empty());
}

TEST_F(TemporaryE2eTest, SavedFollowedByMoreOfTheWordIsNotAccepted) {
  StartAll("", "<?php echo \"SAVED_FAILED could not write\\n\";");
  auto r = SendMail(postfix_->port(), "sender@client.test", {"user@example.test"},
                    testing_support::MakeMessage("sender@client.test", "user@example.test",
                                                 "not saved", "hello\n"));
  EXPECT_EQ(r.data.code, 451) << r << Diagnostics();
  EXPECT_NE(daemon_->log().find("SAVED_FAILED could not write"), std::string::npos)
      << daemon_->log();
}

// PHP drops every form variable past max_input_vars (1000, Debian's php.ini leaves the default)
// without a word. Postfix allows 1000 recipients per transaction by default: the daemon takes
// what a form can carry, answers 452 4.5.3 for the rest, and the sender brings those in the next
// transaction. Every recipient arrives exactly once, every save with its body.
TEST_F(TemporaryE2eTest, ThousandRecipientsArriveAcrossTransactionsEachSaveWithItsBody) {
  StartAll("", testing_support::kRecordingSaveScript);
  std::vector<std::string> pending;
  for (int i = 0; i < 1000; ++i) pending.push_back("r" + std::to_string(i) + "@example.test");
  const std::string message = testing_support::MakeMessage(
      "sender@client.test", "list@example.test", "a thousand", "the body of the message\n");

  SmtpClient smtp(std::chrono::seconds(120));
  ASSERT_EQ(smtp.Connect(postfix_->port()).code, 220);
  ASSERT_EQ(smtp.Command("EHLO client.example.test").code, 250);
  std::vector<size_t> accepted_per_transaction;
  for (int round = 0; round < 4 && !pending.empty(); ++round) {
    ASSERT_EQ(smtp.Command("MAIL FROM:<sender@client.test>").code, 250) << Diagnostics();
    std::vector<std::string> deferred;
    size_t accepted = 0;
    for (const std::string& rcpt : pending) {
      const SmtpClient::Reply reply = smtp.Command("RCPT TO:<" + rcpt + ">");
      if (reply.code == 250) {
        ++accepted;
      } else {
        ASSERT_EQ(reply.code, 452) << rcpt << ": " << reply << Diagnostics();
        ASSERT_NE(reply.text.find("4.5.3"), std::string::npos) << reply;
        deferred.push_back(rcpt);
      }
    }
    ASSERT_GT(accepted, 0u) << Diagnostics();
    const SmtpClient::Reply data = smtp.SendData(message);
    ASSERT_EQ(data.code, 250) << data << Diagnostics();
    accepted_per_transaction.push_back(accepted);
    pending = std::move(deferred);
  }
  smtp.Quit();
  EXPECT_TRUE(pending.empty()) << pending.size() << " recipients never accepted";
  ASSERT_EQ(accepted_per_transaction.size(), 3u);
  EXPECT_EQ(accepted_per_transaction[0], 492u);  // (1000 - 15 fixed fields) / 2

  const auto saved = Saved();
  ASSERT_EQ(saved.size(), accepted_per_transaction.size()) << Diagnostics();
  std::set<std::string> seen;
  size_t total = 0;
  for (size_t i = 0; i < saved.size(); ++i) {
    SCOPED_TRACE(i);
    const json& f = saved[i].fields;
    EXPECT_EQ(saved[i].body, message);
    ASSERT_TRUE(f.contains("rcpt_to") && f["rcpt_to"].is_array()) << f.dump().substr(0, 500);
    const size_t n = f["rcpt_to"].size();
    EXPECT_EQ(f["rcpt_count"], std::to_string(n));
    EXPECT_TRUE(f.contains("rcpt_to_" + std::to_string(n - 1)));
    EXPECT_TRUE(f.contains("daemon_name"));  // the last field sent is there too
    for (const json& r : f["rcpt_to"]) EXPECT_TRUE(seen.insert(r.get<std::string>()).second);
    total += n;
  }
  EXPECT_EQ(total, 1000u);
  EXPECT_EQ(seen.size(), 1000u);
}

// A callback that fails at a stage negotiated as no-reply (headers, on a unix socket) must not
// put libmilter out of step: the message is answered 451 at end of message at once. Before, the
// end of message went unanswered, Postfix waited milter_content_timeout and then applied
// milter_default_action, here "accept": the message was accepted and never saved.
TEST_F(TemporaryE2eTest, FailureAtANoReplyStageIsAnsweredAtEndOfMessageAtOnce) {
  for (const char* stage : {"header", "body"}) {
    SCOPED_TRACE(stage);
    ::setenv("FCGI_MILTER_FAULT_INJECT", stage, 1);
    testing_support::TempDir sock_tmp;
    const std::string sock_dir = sock_tmp.Mkdir(std::string("sock-") + stage, 0755);
    StartAll("", testing_support::kRecordingSaveScript,
             {{"milter_socket", "unix:" + sock_dir + "/fcgi-milter.sock"},
              {"milter_socket_mode", "0666"}},
             {}, {"milter_default_action = accept", "milter_content_timeout = 20s"});
    ::unsetenv("FCGI_MILTER_FAULT_INJECT");
    const auto started = std::chrono::steady_clock::now();
    auto r = SendMail(postfix_->port(), "sender@client.test", {"user@example.test"},
                      testing_support::MakeMessage("sender@client.test", "user@example.test",
                                                   "callback fails", "hello\n"));
    const auto took = std::chrono::steady_clock::now() - started;
    EXPECT_EQ(r.data.code, 451) << r << Diagnostics();
    EXPECT_LT(took, std::chrono::seconds(10)) << Diagnostics();
    EXPECT_TRUE(Saved().empty());
    EXPECT_NE(daemon_->log().find(std::string(stage) + ": internal error"), std::string::npos)
        << daemon_->log();
    lab_->Stop();
  }
}

}  // namespace
