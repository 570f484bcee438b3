// End to end through a real Sendmail 8.17 with INPUT_MAIL_FILTER: SMTP client -> Sendmail ->
// fcgi-milter -> php-fpm. Sendmail is unpacked from Debian's packages by scripts/fetch-sendmail
// (it conflicts with postfix as a package); the tests skip only when the Debian archive cannot be
// reached.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <filesystem>

#include "tests/support/milter_daemon.h"
#include "tests/support/net.h"
#include "tests/support/php_fpm.h"
#include "tests/support/recording.h"
#include "tests/support/sendmail.h"
#include "tests/support/smtp_client.h"
#include "tests/support/temp_dir.h"

namespace {

using nlohmann::json;
using testing_support::MilterDaemon;
using testing_support::PhpFpm;
using testing_support::SendMail;
using testing_support::Sendmail;
using testing_support::SmtpClient;

// The R (recipient) lines of a Sendmail qf file.
std::vector<std::string> RecipientLines(const std::string& qf) {
  std::vector<std::string> lines;
  size_t start = 0;
  while (start < qf.size()) {
    size_t end = qf.find('\n', start);
    if (end == std::string::npos) end = qf.size();
    if (qf[start] == 'R') lines.push_back(qf.substr(start, end - start));
    start = end + 1;
  }
  return lines;
}

class SendmailE2eTest : public ::testing::Test {
 protected:
  void SetUp() override {
    // Once per binary: unpacking takes a few seconds, and later calls find the stamp.
    static const Sendmail::FetchResult fetched = Sendmail::Fetch();
    if (fetched.outcome == Sendmail::FetchOutcome::kArchiveUnreachable) {
      GTEST_SKIP() << "Debian archive unreachable, cannot fetch Sendmail:\n" << fetched.output;
    }
    ASSERT_EQ(fetched.outcome, Sendmail::FetchOutcome::kReady) << "scripts/fetch-sendmail failed:\n"
                                                               << fetched.output;
  }

  // php-fpm with the example validate.php (recipients: @example.test), the recording save script
  // (or save_source), the daemon, and Sendmail in front of it.
  void StartAll(const std::string& save_source = testing_support::kRecordingSaveScript,
                json extra_config = {}) {
    PhpFpm::Options o;
    o.env["FCGI_MILTER_RECIPIENTS"] = tmp_.Write("recipients.txt", "@example.test\n");
    php_ = std::make_unique<PhpFpm>(o);
    const std::string validate =
        php_->CopyScript(std::string(FCGI_MILTER_SOURCE_DIR) + "/examples/validate.php");
    const std::string save = php_->AddScript("save.php", save_source);
    ASSERT_TRUE(php_->Start());
    json config =
        testing_support::BaseDaemonConfig(*php_, validate, save, tmp_.Mkdir("spool", 0700));
    for (auto& [k, v] : extra_config.items()) config[k] = v;
    daemon_ = std::make_unique<MilterDaemon>(config);
    ASSERT_TRUE(daemon_->Start());
    Sendmail::Options so;
    so.milter = daemon_->milter_socket();  // libmilter's syntax is Sendmail's: inet:PORT@HOST
    sendmail_ = std::make_unique<Sendmail>(so);
    ASSERT_TRUE(sendmail_->Start());
  }

  std::vector<testing_support::SavedMessage> Saved() const {
    return testing_support::ReadSavedMessages(php_->data_dir());
  }

  std::string Diagnostics() const {
    return "\n--- daemon log ---\n" + testing_support::Tail(daemon_ ? daemon_->log() : "") +
           "\n--- sendmail output ---\n" +
           testing_support::Tail(sendmail_ ? sendmail_->log() : "") + "\n--- php-fpm log ---\n" +
           testing_support::Tail(php_ ? php_->error_log() : "");
  }

  testing_support::TempDir tmp_;
  std::unique_ptr<PhpFpm> php_;
  std::unique_ptr<MilterDaemon> daemon_;
  std::unique_ptr<Sendmail> sendmail_;
};

TEST_F(SendmailE2eTest, KnownRecipientIsAcceptedAndUnknownRefusedInOneTransaction) {
  StartAll();
  auto r = SendMail(
      sendmail_->port(), "sender@client.test", {"nobody@elsewhere.test", "known@example.test"},
      testing_support::MakeMessage("sender@client.test", "known@example.test", "mixed", "hello\n"));
  ASSERT_EQ(r.rcpts.size(), 2u) << r << Diagnostics();
  EXPECT_EQ(r.rcpts[0].code, 550) << r << Diagnostics();
  EXPECT_NE(r.rcpts[0].text.find("5.1.1"), std::string::npos) << r.rcpts[0];
  EXPECT_EQ(r.rcpts[1].code, 250) << r << Diagnostics();
  ASSERT_TRUE(r.accepted()) << r << Diagnostics();
  auto saved = Saved();
  ASSERT_EQ(saved.size(), 1u) << Diagnostics();
  EXPECT_EQ(saved[0].fields["rcpt_to_0"], "known@example.test");
  EXPECT_FALSE(saved[0].fields.contains("rcpt_to_1"));
  EXPECT_EQ(saved[0].fields["rcpt_count"], "1");
  // Sendmail queued the message for the accepted recipient only.
  auto queued = sendmail_->QueuedEnvelopes();
  ASSERT_EQ(queued.size(), 1u) << Diagnostics();
  EXPECT_EQ(RecipientLines(queued[0]), std::vector<std::string>{"RPFD:<known@example.test>"})
      << queued[0];
}

TEST_F(SendmailE2eTest, SavedMessageCarriesTheSameFieldsAsThroughPostfix) {
  StartAll();
  SmtpClient smtp;
  ASSERT_EQ(smtp.Connect(sendmail_->port()).code, 220) << Diagnostics();
  ASSERT_EQ(smtp.Command("EHLO helo.client.test").code, 250);
  ASSERT_EQ(smtp.Command("MAIL FROM:<sender@client.test>").code, 250) << Diagnostics();
  ASSERT_EQ(smtp.Command("RCPT TO:<user@example.test>").code, 250) << Diagnostics();
  auto data = smtp.SendData(testing_support::kCraftedMessage);
  ASSERT_EQ(data.code, 250) << data << Diagnostics();
  smtp.Quit();

  auto saved = Saved();
  ASSERT_EQ(saved.size(), 1u) << Diagnostics();
  const json& f = saved[0].fields;
  EXPECT_EQ(f["remote_ip"], "127.0.0.1");
  EXPECT_EQ(f["_server"]["REMOTE_ADDR"], "127.0.0.1");
  EXPECT_EQ(f["helo"], "helo.client.test");
  EXPECT_EQ(f["mail_from"], "sender@client.test");
  EXPECT_EQ(f["rcpt_to_0"], "user@example.test");
  EXPECT_FALSE(f.contains("rcpt_to_1"));
  EXPECT_EQ(f["rcpt_count"], "1");
  EXPECT_EQ(f["subject"], "Héllowörld");
  EXPECT_EQ(f["tls_on"], "false");
  EXPECT_EQ(f["_server"]["REQUEST_METHOD"], "POST");
  // The queue id the script gets is the one Sendmail queued the message under.
  const std::string queue_id = f["queue_id"].get<std::string>();
  ASSERT_FALSE(queue_id.empty()) << f.dump();
  EXPECT_TRUE(std::filesystem::exists(sendmail_->queue_dir() + "/qf" + queue_id))
      << queue_id << Diagnostics();
  // The client dot-stuffs, Sendmail unstuffs; header whitespace kept (leading tab, trailing
  // spaces, the folded line), LF line endings.
  EXPECT_EQ(saved[0].body, testing_support::kCraftedMessage) << Diagnostics();
  EXPECT_EQ(f["message_size"], std::to_string(saved[0].body.size()));
}

TEST_F(SendmailE2eTest, HeadersSendmailAddsAreNotShownToTheFilter) {
  StartAll();
  // No Date, Message-ID or From: Sendmail adds them (and its Received) to the queued copy.
  const std::string message = "Subject: bare\n\nonly a body\n";
  auto r = SendMail(sendmail_->port(), "sender@client.test", {"user@example.test"}, message);
  ASSERT_TRUE(r.accepted()) << r << Diagnostics();
  auto saved = Saved();
  ASSERT_EQ(saved.size(), 1u) << Diagnostics();
  EXPECT_EQ(saved[0].body, message) << Diagnostics();
  auto queued = sendmail_->QueuedEnvelopes();
  ASSERT_EQ(queued.size(), 1u);
  for (const char* added : {"H??Received: ", "Date: ", "Message-Id: ", "From: "}) {
    EXPECT_NE(queued[0].find(added), std::string::npos) << added << "\n" << queued[0];
  }
}

TEST_F(SendmailE2eTest, StoppedPhpFpmGivesTemporaryFailureAtRcptAndSavesNothing) {
  StartAll();
  php_->Stop();
  auto r = SendMail(
      sendmail_->port(), "sender@client.test", {"user@example.test"},
      testing_support::MakeMessage("sender@client.test", "user@example.test", "down", "hello\n"));
  ASSERT_EQ(r.rcpts.size(), 1u) << r << Diagnostics();
  EXPECT_EQ(r.rcpts[0].code / 100, 4) << r << Diagnostics();
  EXPECT_NE(r.rcpts[0].text.find("4.3.0"), std::string::npos) << r.rcpts[0];
  EXPECT_EQ(r.data.code, 0) << r;
  EXPECT_FALSE(r.accepted());
  EXPECT_TRUE(Saved().empty());
  EXPECT_TRUE(sendmail_->QueuedEnvelopes().empty()) << Diagnostics();
}

TEST_F(SendmailE2eTest, UnreachableFilterWithFlagTTempfailsEveryTransaction) {
  // No daemon listens on the milter port: F=T must not let mail through unfiltered.
  Sendmail::Options so;
  so.milter = "inet:" + std::to_string(testing_support::FreeTcpPort()) + "@127.0.0.1";
  sendmail_ = std::make_unique<Sendmail>(so);
  ASSERT_TRUE(sendmail_->Start());
  auto r = SendMail(sendmail_->port(), "sender@client.test", {"user@example.test"},
                    testing_support::MakeMessage("sender@client.test", "user@example.test",
                                                 "unfiltered?", "hello\n"));
  EXPECT_EQ(r.mail_from.code, 451) << r << Diagnostics();
  EXPECT_FALSE(r.accepted());
  EXPECT_TRUE(sendmail_->QueuedEnvelopes().empty()) << Diagnostics();
}

TEST_F(SendmailE2eTest, SaveScriptDownAtEndOfMessageGivesTemporaryFailureAfterData) {
  // No validate script: the first contact with php-fpm is the save, at end of message.
  StartAll(testing_support::kRecordingSaveScript, {{"fcgi_script_filename_validate", ""}});
  php_->Stop();
  auto r = SendMail(
      sendmail_->port(), "sender@client.test", {"user@example.test"},
      testing_support::MakeMessage("sender@client.test", "user@example.test", "down", "hello\n"));
  ASSERT_EQ(r.rcpts.size(), 1u) << r << Diagnostics();
  EXPECT_EQ(r.rcpts[0].code, 250) << r << Diagnostics();
  EXPECT_EQ(r.data.code, 451) << r << Diagnostics();
  EXPECT_NE(r.data.text.find("4.3.0"), std::string::npos) << r.data;
  EXPECT_TRUE(Saved().empty());
  EXPECT_TRUE(sendmail_->QueuedEnvelopes().empty()) << Diagnostics();
}

}  // namespace
