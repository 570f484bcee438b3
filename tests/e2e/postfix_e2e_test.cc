// End to end through a real Postfix: SMTP client -> Postfix smtpd -> fcgi-milter -> php-fpm.
// Every server is started by the test on loopback; the scripts are the shipped examples where
// the point is the example, and small recording scripts where the point is what arrives.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <dirent.h>

#include <algorithm>
#include <filesystem>
#include <fstream>

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

class PostfixE2eTest : public ::testing::Test {
 protected:
  // Starts php-fpm with the example validate.php (recipients: @example.test and
  // "a&b=c+d@weird.test"), the recording save script (or save_source), the daemon and Postfix.
  void StartAll(const std::string& save_source = testing_support::kRecordingSaveScript,
                json extra_config = {}, std::string post_max_size = "64M") {
    PhpFpm::Options o;
    o.post_max_size = post_max_size;
    recipients_ = tmp_.Write("recipients.txt", "@example.test\na&b=c+d@weird.test\n");
    o.env["FCGI_MILTER_RECIPIENTS"] = recipients_;
    o.env["FCGI_MILTER_MAILDIR"] = tmp_.Mkdir("Maildir", 0777);
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
    Postfix::Options po;
    po.milters = daemon_->postfix_milters();
    // XCLIENT lets a test play a client from a documentation network, which may relay too.
    po.extra_main_cf = {"smtpd_authorized_xclient_hosts = 127.0.0.0/8",
                        "mynetworks = 127.0.0.0/8 192.0.2.0/24"};
    postfix_ = std::make_unique<Postfix>(po);
    ASSERT_TRUE(postfix_->Start());
  }

  std::string SaveDir() const { return php_->data_dir(); }

  std::vector<testing_support::SavedMessage> Saved() const {
    return testing_support::ReadSavedMessages(SaveDir());
  }

  std::string Diagnostics() const {
    return "\n--- daemon log ---\n" + testing_support::Tail(daemon_ ? daemon_->log() : "") +
           "\n--- postfix log ---\n" + testing_support::Tail(postfix_ ? postfix_->maillog() : "") +
           "\n--- php-fpm log ---\n" + testing_support::Tail(php_ ? php_->error_log() : "");
  }

  testing_support::TempDir tmp_;
  std::string recipients_;
  std::unique_ptr<PhpFpm> php_;
  std::unique_ptr<MilterDaemon> daemon_;
  std::unique_ptr<Postfix> postfix_;
};

TEST_F(PostfixE2eTest, ValidRecipientIsSavedWithEveryFieldAsSent) {
  StartAll();
  SmtpClient smtp;
  ASSERT_EQ(smtp.Connect(postfix_->port()).code, 220);
  // XCLIENT makes Postfix see a client other than 127.0.0.1, so REMOTE_ADDR proves it is passed on.
  ASSERT_EQ(smtp.Command("XCLIENT ADDR=192.0.2.44 NAME=client.example.test").code, 220)
      << Diagnostics();
  ASSERT_EQ(smtp.Command("EHLO helo.client.test").code, 250);
  ASSERT_EQ(smtp.Command("MAIL FROM:<sender@client.test>").code, 250);
  ASSERT_EQ(smtp.Command("RCPT TO:<user@example.test>").code, 250) << Diagnostics();
  auto data = smtp.SendData(testing_support::kCraftedMessage);
  ASSERT_EQ(data.code, 250) << data << Diagnostics();
  smtp.Quit();

  auto saved = Saved();
  ASSERT_EQ(saved.size(), 1u) << Diagnostics();
  const json& f = saved[0].fields;
  EXPECT_EQ(f["remote_ip"], "192.0.2.44");
  EXPECT_EQ(f["_server"]["REMOTE_ADDR"], "192.0.2.44");
  EXPECT_EQ(f["client_name"], "client.example.test");
  EXPECT_EQ(f["helo"], "helo.client.test");
  EXPECT_EQ(f["mail_from"], "sender@client.test");
  EXPECT_EQ(f["tls_on"], "false");
  EXPECT_EQ(f["subject"], "Héllowörld");  // the space between two encoded words goes
  EXPECT_EQ(f["rcpt_to_0"], "user@example.test");
  EXPECT_FALSE(f.contains("rcpt_to_1"));
  EXPECT_EQ(f["rcpt_count"], "1");
  EXPECT_FALSE(f["queue_id"].get<std::string>().empty());
  EXPECT_EQ(f["_server"]["REQUEST_METHOD"], "POST");
  EXPECT_EQ(f["_server"]["CONTENT_TYPE"], "application/x-www-form-urlencoded");
  EXPECT_EQ(f["message_size"],
            std::to_string(std::string(testing_support::kCraftedMessage).size()));
  // The client dot-stuffs, Postfix unstuffs; header whitespace kept; LF line endings.
  EXPECT_EQ(saved[0].body, testing_support::kCraftedMessage);
  EXPECT_TRUE(postfix_->WaitForQueueEmpty());
}

TEST_F(PostfixE2eTest, UnknownRecipientIsRefusedAndOnlyTheValidOneIsSaved) {
  StartAll();
  auto r = SendMail(
      postfix_->port(), "sender@client.test", {"nobody@elsewhere.test", "known@example.test"},
      testing_support::MakeMessage("sender@client.test", "known@example.test", "mixed", "hello\n"));
  ASSERT_EQ(r.rcpts.size(), 2u);
  EXPECT_EQ(r.rcpts[0].code, 550) << r << Diagnostics();
  EXPECT_NE(r.rcpts[0].text.find("5.1.1"), std::string::npos) << r.rcpts[0];
  EXPECT_EQ(r.rcpts[1].code, 250) << r;
  ASSERT_TRUE(r.accepted()) << r << Diagnostics();
  auto saved = Saved();
  ASSERT_EQ(saved.size(), 1u);
  EXPECT_EQ(saved[0].fields["rcpt_to_0"], "known@example.test");
  EXPECT_FALSE(saved[0].fields.contains("rcpt_to_1"));
  EXPECT_EQ(saved[0].fields["rcpt_count"], "1");
}

TEST_F(PostfixE2eTest, StoppedPhpFpmGivesTemporaryFailureAndSavesNothing) {
  StartAll();
  php_->Stop();
  auto r = SendMail(
      postfix_->port(), "sender@client.test", {"user@example.test"},
      testing_support::MakeMessage("sender@client.test", "user@example.test", "down", "hello\n"));
  ASSERT_EQ(r.rcpts.size(), 1u);
  EXPECT_EQ(r.rcpts[0].code / 100, 4) << r << Diagnostics();
  EXPECT_NE(r.rcpts[0].text.find("4.3.0"), std::string::npos) << r.rcpts[0];
  EXPECT_FALSE(r.accepted());
  EXPECT_TRUE(Saved().empty());
  EXPECT_NE(daemon_->log().find("the socket does not exist"), std::string::npos) << daemon_->log();
}

TEST_F(PostfixE2eTest, StoppedPhpFpmAtSaveTimeGivesTemporaryFailure) {
  // No validate script: the first contact with php-fpm is the save.
  StartAll(testing_support::kRecordingSaveScript, {{"fcgi_script_filename_validate", ""}});
  php_->Stop();
  auto r = SendMail(
      postfix_->port(), "sender@client.test", {"user@example.test"},
      testing_support::MakeMessage("sender@client.test", "user@example.test", "down", "hello\n"));
  ASSERT_EQ(r.rcpts.size(), 1u);
  EXPECT_EQ(r.rcpts[0].code, 250) << r;
  EXPECT_EQ(r.data.code, 451) << r << Diagnostics();
  EXPECT_NE(r.data.text.find("4.3.0"), std::string::npos) << r.data;
}

TEST_F(PostfixE2eTest, SaveOutputOtherThanSavedGivesTemporaryFailure) {
  StartAll("<?php echo 'OK, stored it';");
  auto r = SendMail(postfix_->port(), "sender@client.test", {"user@example.test"},
                    testing_support::MakeMessage("sender@client.test", "user@example.test",
                                                 "not saved", "hello\n"));
  EXPECT_EQ(r.data.code, 451) << r << Diagnostics();
  EXPECT_NE(daemon_->log().find("OK, stored it"), std::string::npos) << daemon_->log();
}

TEST_F(PostfixE2eTest, ScriptRejectLineIsHonoured) {
  StartAll("<?php echo \"REJECT 554 5.7.1 No thanks\\n\";");
  auto r = SendMail(postfix_->port(), "sender@client.test", {"user@example.test"},
                    testing_support::MakeMessage("sender@client.test", "user@example.test",
                                                 "refused", "hello\n"));
  EXPECT_EQ(r.data.code, 554) << r << Diagnostics();
  EXPECT_NE(r.data.text.find("5.7.1 No thanks"), std::string::npos) << r.data;
}

TEST_F(PostfixE2eTest, NullSenderArrivesAsEmptyMailFrom) {
  StartAll();
  auto r = SendMail(postfix_->port(), "", {"user@example.test"},
                    testing_support::MakeMessage("MAILER-DAEMON@client.test", "user@example.test",
                                                 "bounce", "a bounce\n"));
  ASSERT_TRUE(r.accepted()) << r << Diagnostics();
  auto saved = Saved();
  ASSERT_EQ(saved.size(), 1u);
  ASSERT_TRUE(saved[0].fields.contains("mail_from"));
  EXPECT_EQ(saved[0].fields["mail_from"], "");
}

TEST_F(PostfixE2eTest, AddressWithAmpersandEqualsAndPlusArrivesByteExact) {
  StartAll();
  auto r = SendMail(postfix_->port(), "x+tag=1&y@client.test", {"a&b=c+d@weird.test"},
                    testing_support::MakeMessage("x@client.test", "a&b=c+d@weird.test",
                                                 "odd address", "hello\n"));
  ASSERT_EQ(r.rcpts.size(), 1u);
  ASSERT_EQ(r.rcpts[0].code, 250) << r << Diagnostics();
  ASSERT_TRUE(r.accepted()) << r;
  auto saved = Saved();
  ASSERT_EQ(saved.size(), 1u);
  EXPECT_EQ(saved[0].fields["rcpt_to_0"], "a&b=c+d@weird.test");
  EXPECT_EQ(saved[0].fields["mail_from"], "x+tag=1&y@client.test");
}

TEST_F(PostfixE2eTest, FiveMebibyteMessageLandsByteExactInTheExampleMaildir) {
  const std::string example_save =
      testing_support::ReadFile(std::string(FCGI_MILTER_SOURCE_DIR) + "/examples/save.php");
  ASSERT_FALSE(example_save.empty());
  StartAll(example_save);
  std::string body;
  body.reserve(5 * 1024 * 1024 + 100);
  uint32_t x = 7;
  while (body.size() < 5 * 1024 * 1024) {
    std::string line;
    for (int i = 0; i < 76; ++i) {
      x = x * 1103515245 + 12345;
      line.push_back(static_cast<char>('!' + (x >> 16) % 94));
    }
    body += line + "\n";
  }
  const std::string message =
      testing_support::MakeMessage("sender@client.test", "big@example.test", "big one", body);
  auto r = SendMail(postfix_->port(), "sender@client.test", {"big@example.test"}, message);
  ASSERT_TRUE(r.accepted()) << r << Diagnostics();
  const std::string maildir = tmp_.Path("Maildir/new");
  std::vector<std::string> files;
  for (const auto& e : std::filesystem::directory_iterator(maildir)) files.push_back(e.path());
  ASSERT_EQ(files.size(), 1u);
  const std::string stored = testing_support::ReadFile(files[0]);
  // save.php prepends Return-Path; the rest is the message exactly as sent.
  const std::string prefix = "Return-Path: <sender@client.test>\n";
  ASSERT_EQ(stored.substr(0, prefix.size()), prefix);
  EXPECT_TRUE(stored.substr(prefix.size()) == message)
      << "stored " << stored.size() - prefix.size() << " bytes, sent " << message.size();
  EXPECT_TRUE(std::filesystem::is_empty(tmp_.Path("Maildir/tmp")));
}

TEST_F(PostfixE2eTest, TwentyMebibyteMessageSpillsToDiskAndArrivesByteExact) {
  StartAll();
  std::string body;
  body.reserve(20 * 1024 * 1024 + 100);
  uint32_t x = 99;
  static const char kAlphabet[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
  while (body.size() < 20 * 1024 * 1024) {
    for (int i = 0; i < 76; ++i) {
      x = x * 1103515245 + 12345;
      body.push_back(kAlphabet[(x >> 16) % 62]);
    }
    body.push_back('\n');
  }
  const std::string message =
      testing_support::MakeMessage("sender@client.test", "big@example.test", "20 MiB", body);
  auto r = SendMail(postfix_->port(), "sender@client.test", {"big@example.test"}, message);
  ASSERT_TRUE(r.accepted()) << r << Diagnostics();
  auto saved = Saved();
  ASSERT_EQ(saved.size(), 1u);
  EXPECT_EQ(saved[0].body.size(), message.size());
  EXPECT_TRUE(saved[0].body == message) << "the saved body differs from the message sent";
  EXPECT_EQ(saved[0].fields["message_size"], std::to_string(message.size()));
  // Above spool_threshold (1 MiB) the message went through an unlinked file: nothing is left.
  EXPECT_NE(daemon_->log().find("spilled to an unlinked temp file"), std::string::npos)
      << Diagnostics();
  EXPECT_TRUE(std::filesystem::is_empty(tmp_.Path("spool")));
}

TEST_F(PostfixE2eTest, MessageOverPostMaxSizeIsTempfailedByTheExampleNotLost) {
  const std::string example_save =
      testing_support::ReadFile(std::string(FCGI_MILTER_SOURCE_DIR) + "/examples/save.php");
  StartAll(example_save, {}, "1M");
  const std::string message =
      testing_support::MakeMessage("sender@client.test", "big@example.test", "too big for PHP",
                                   std::string(1500000, 'x') + "\n");
  auto r = SendMail(postfix_->port(), "sender@client.test", {"big@example.test"}, message);
  EXPECT_EQ(r.data.code, 452) << r << Diagnostics();
  EXPECT_NE(r.data.text.find("post_max_size"), std::string::npos) << r.data;
  EXPECT_TRUE(!std::filesystem::exists(tmp_.Path("Maildir/new")) ||
              std::filesystem::is_empty(tmp_.Path("Maildir/new")));
}

TEST_F(PostfixE2eTest, ThreeMessagesOnOneConnectionEachCarryOnlyTheirRecipients) {
  StartAll();
  SmtpClient smtp;
  ASSERT_EQ(smtp.Connect(postfix_->port()).code, 220);
  ASSERT_EQ(smtp.Command("EHLO client.test").code, 250);
  const std::vector<std::vector<std::string>> batches = {
      {"one@example.test"}, {"two@example.test", "three@example.test"}, {"four@example.test"}};
  for (size_t i = 0; i < batches.size(); ++i) {
    ASSERT_EQ(smtp.Command("MAIL FROM:<s" + std::to_string(i) + "@client.test>").code, 250);
    for (const auto& rcpt : batches[i]) {
      ASSERT_EQ(smtp.Command("RCPT TO:<" + rcpt + ">").code, 250) << Diagnostics();
    }
    if (i == 1) {
      // An aborted transaction in between must leave nothing behind.
      ASSERT_EQ(smtp.Command("RSET").code, 250);
      ASSERT_EQ(smtp.Command("MAIL FROM:<s1@client.test>").code, 250);
      ASSERT_EQ(smtp.Command("RCPT TO:<two@example.test>").code, 250);
      ASSERT_EQ(smtp.Command("RCPT TO:<three@example.test>").code, 250);
    }
    auto data = smtp.SendData(testing_support::MakeMessage(
        "s@client.test", batches[i][0], "message " + std::to_string(i), "body\n"));
    ASSERT_EQ(data.code, 250) << data << Diagnostics();
  }
  smtp.Quit();
  auto saved = Saved();
  ASSERT_EQ(saved.size(), 3u) << Diagnostics();
  for (size_t i = 0; i < batches.size(); ++i) {
    const json& f = saved[i].fields;
    EXPECT_EQ(f["mail_from"], "s" + std::to_string(i) + "@client.test");
    EXPECT_EQ(f["subject"], "message " + std::to_string(i));
    EXPECT_EQ(f["rcpt_count"], std::to_string(batches[i].size()));
    for (size_t k = 0; k < batches[i].size(); ++k) {
      EXPECT_EQ(f["rcpt_to_" + std::to_string(k)], batches[i][k]);
    }
    EXPECT_FALSE(f.contains("rcpt_to_" + std::to_string(batches[i].size())));
  }
  EXPECT_NE(saved[0].fields["queue_id"], saved[2].fields["queue_id"]);
}

}  // namespace
