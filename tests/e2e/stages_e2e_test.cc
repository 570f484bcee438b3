// Stage scripts end to end, through a real Postfix (and Sendmail) and php-fpm: a connect, HELO,
// MAIL FROM or end-of-headers script answers like the validate script, its refusal reaches the
// SMTP client with the script's own code and text at that stage, its backend failure follows its
// own failure policy, and the example MAIL FROM blocklist works as shipped.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "tests/support/mail_lab.h"
#include "tests/support/milter_daemon.h"
#include "tests/support/net.h"
#include "tests/support/php_fpm.h"
#include "tests/support/process.h"
#include "tests/support/sendmail.h"
#include "tests/support/smtp_client.h"

namespace {

using nlohmann::json;
using testing_support::MailLab;
using testing_support::SendMail;
using testing_support::SmtpClient;

// One script for every stage: records each call (stage, method, content type, $_GET, the POST
// body) as a JSON line in DUMP_DIR/stages.jsonl, then answers what DUMP_DIR/rule-<stage> holds
// (JSON when it starts with "{"), or PASS.
constexpr const char* kStageScript = R"php(<?php
$d = getenv('DUMP_DIR');
$stage = $_GET['stage'] ?? 'eoh';
file_put_contents("$d/stages.jsonl", json_encode([
  'stage' => $stage, 'method' => $_SERVER['REQUEST_METHOD'],
  'content_type' => $_SERVER['CONTENT_TYPE'] ?? '', 'get' => $_GET,
  'input' => $_SERVER['REQUEST_METHOD'] === 'POST' ? file_get_contents('php://input') : '',
]) . "\n", FILE_APPEND | LOCK_EX);
$rule = @file_get_contents("$d/rule-$stage");
if ($rule !== false) {
  if (str_starts_with($rule, '{')) header('Content-Type: application/json');
  echo $rule;
  exit;
}
echo "PASS\n";
)php";

class StagesE2eTest : public ::testing::Test {
 protected:
  // Postfix -> daemon with kStageScript at every stage named in `stages` (connect, helo, mail,
  // eoh), the recording save script, and `daemon` keys on top.
  void Start(const std::vector<std::string>& stages, json daemon = json::object()) {
    MailLab::Options o;
    for (const std::string& stage : stages)
      o.scripts["fcgi_script_filename_" + stage] = kStageScript;
    o.daemon = std::move(daemon);
    ASSERT_TRUE(lab_.Start(std::move(o)));
  }

  void Rule(const std::string& stage, const std::string& reply) {
    std::ofstream(lab_.php().data_dir() + "/rule-" + stage) << reply;
  }

  std::vector<json> Calls() {
    std::vector<json> calls;
    std::istringstream lines(testing_support::ReadFile(lab_.php().data_dir() + "/stages.jsonl"));
    std::string line;
    while (std::getline(lines, line)) calls.push_back(json::parse(line));
    return calls;
  }

  testing_support::MailResult Send(const std::string& from = "sender@client.test",
                                   const std::string& subject = "stages") {
    return SendMail(
        lab_.port(), from, {"user@example.test"},
        testing_support::MakeMessage("sender@client.test", "user@example.test", subject, "hello\n"),
        "client.example.test", std::chrono::seconds(30));
  }

  MailLab lab_;
};

TEST_F(StagesE2eTest, EveryStageScriptIsAskedWithWhatIsKnownThenAndTheMessageIsSaved) {
  Start({"connect", "helo", "mail", "eoh"});
  const auto r =
      SendMail(lab_.port(), "<sender@client.test> SIZE=300 BODY=8BITMIME", {"user@example.test"},
               testing_support::MakeMessage("sender@client.test", "user@example.test", "all stages",
                                            "hello\n"));
  ASSERT_TRUE(r.accepted()) << r << lab_.Diagnostics();
  // Postfix's start-up probe connected too: the message's session is the last connect on.
  std::vector<json> calls = Calls();
  while (calls.size() > 4 && calls[0]["stage"] == "connect") calls.erase(calls.begin());
  ASSERT_EQ(calls.size(), 4u) << lab_.Diagnostics();
  EXPECT_EQ(calls[0]["stage"], "connect");
  EXPECT_EQ(calls[0]["method"], "GET");
  EXPECT_EQ(calls[0]["get"]["remote_ip"], "127.0.0.1");
  EXPECT_FALSE(calls[0]["get"].contains("helo"));
  EXPECT_EQ(calls[1]["stage"], "helo");
  EXPECT_EQ(calls[1]["get"]["helo"], "client.example.test");
  EXPECT_FALSE(calls[1]["get"].contains("mail_from"));
  EXPECT_EQ(calls[2]["stage"], "mail");
  EXPECT_EQ(calls[2]["get"]["mail_from"], "sender@client.test");
  EXPECT_EQ(calls[2]["get"]["esmtp_args"], "SIZE=300 BODY=8BITMIME");
  EXPECT_EQ(calls[3]["stage"], "eoh");
  EXPECT_EQ(calls[3]["method"], "POST");
  EXPECT_EQ(calls[3]["content_type"], "text/rfc822-headers");
  EXPECT_EQ(calls[3]["get"]["rcpt_to"], json::array({"user@example.test"}));
  EXPECT_EQ(calls[3]["get"]["subject"], "all stages");
  // Known only once the whole message is in: not sent at end of headers.
  EXPECT_FALSE(calls[3]["get"].contains("message_size"));
  EXPECT_FALSE(calls[3]["get"].contains("idempotency_key"));
  const std::string headers = calls[3]["input"];
  EXPECT_NE(headers.find("Subject: all stages\n"), std::string::npos) << headers;
  EXPECT_EQ(headers.find("hello"), std::string::npos) << "no body at end of headers: " << headers;
  ASSERT_EQ(lab_.Saved().size(), 1u);
}

TEST_F(StagesE2eTest, ConnectScriptRefusalReachesTheClientWithItsOwnCodeAndText) {
  Start({"connect"});
  Rule("connect", "REJECT 554 5.7.1 Your network is not welcome here\n");
  const auto r = Send();
  EXPECT_FALSE(r.accepted());
  // Postfix answers the greeting with 554 and its own text ("not accepting connections"); the
  // script's reply is in its log, which postlogd may write a moment after the greeting.
  EXPECT_EQ(r.banner.code, 554) << r << lab_.Diagnostics();
  EXPECT_TRUE(testing_support::WaitUntil(
      [&] {
        return lab_.postfix().maillog().find(
                   "milter-reject: CONNECT from localhost[127.0.0.1]: "
                   "554 5.7.1 Your network is not welcome here") != std::string::npos;
      },
      std::chrono::seconds(5)))
      << lab_.Diagnostics();
  EXPECT_TRUE(lab_.Saved().empty());
  EXPECT_NE(lab_.daemon().log().find("connect script: client 127.0.0.1"), std::string::npos)
      << lab_.Diagnostics();
}

TEST_F(StagesE2eTest, HeloScriptRefusalAndTempfailCarryTheScriptsReply) {
  Start({"helo"});
  Rule("helo", "REJECT 550 5.7.1 Bad HELO name\n");
  auto r = Send();
  // Postfix answers EHLO 250 (with little in it) and gives the script's reply to MAIL FROM.
  EXPECT_EQ(r.ehlo.code, 250) << r << lab_.Diagnostics();
  EXPECT_EQ(r.mail_from.text, "550 5.7.1 Bad HELO name") << r << lab_.Diagnostics();
  Rule("helo",
       R"({"action":"tempfail","smtp_code":421,"enhanced_code":"4.7.0","text":"slow down"})");
  r = Send();
  EXPECT_FALSE(r.accepted());
  EXPECT_NE((r.ehlo.text + "\n" + r.mail_from.text).find("4.7.0 slow down"), std::string::npos)
      << r << lab_.Diagnostics();
  EXPECT_TRUE(lab_.Saved().empty());
}

TEST_F(StagesE2eTest, MailScriptRefusesASenderAtMailFromAndTheNextTransactionIsAskedAgain) {
  Start({"mail"});
  Rule("mail", "REJECT 550 5.7.1 Sender blocked by policy\n");
  SmtpClient c(std::chrono::seconds(30));
  ASSERT_EQ(c.Connect(lab_.port()).code, 220);
  ASSERT_EQ(c.Command("EHLO client.example.test").code, 250);
  const auto refused = c.Command("MAIL FROM:<bad@spam.test>");
  EXPECT_EQ(refused.code, 550) << refused << lab_.Diagnostics();
  EXPECT_NE(refused.text.find("5.7.1 Sender blocked by policy"), std::string::npos) << refused;
  // The same session, another sender: asked again, and now accepted.
  std::remove((lab_.php().data_dir() + "/rule-mail").c_str());
  EXPECT_EQ(c.Command("MAIL FROM:<good@client.test>").code, 250);
  EXPECT_EQ(c.Command("RCPT TO:<user@example.test>").code, 250);
  EXPECT_EQ(c.SendData(testing_support::MakeMessage("good@client.test", "user@example.test",
                                                    "after a refusal", "hi\n"))
                .code,
            250)
      << lab_.Diagnostics();
  c.Quit();
  const std::vector<json> calls = Calls();
  ASSERT_EQ(calls.size(), 2u);
  EXPECT_EQ(calls[0]["get"]["mail_from"], "bad@spam.test");
  EXPECT_EQ(calls[1]["get"]["mail_from"], "good@client.test");
  const auto saved = lab_.Saved();
  ASSERT_EQ(saved.size(), 1u);
  EXPECT_EQ(saved[0].fields["mail_from"], "good@client.test");
}

TEST_F(StagesE2eTest, EndOfHeadersRefusalStopsTheMessageBeforeTheSave) {
  Start({"eoh"});
  Rule("eoh",
       R"({"action":"reject","smtp_code":554,"enhanced_code":"5.7.1","text":["No","thanks"]})");
  const auto r = Send("sender@client.test", "buy now");
  EXPECT_EQ(r.data.code, 554) << r << lab_.Diagnostics();
  EXPECT_NE(r.data.text.find("554-5.7.1 No"), std::string::npos) << r;
  EXPECT_NE(r.data.text.find("554 5.7.1 thanks"), std::string::npos) << r;
  EXPECT_TRUE(lab_.Saved().empty()) << "the save script must not run";
}

TEST_F(StagesE2eTest, StageScriptBackendFailureFollowsThatStagesPolicy) {
  // A script path php-fpm does not have: 404 "File not found." is a backend failure.
  MailLab::Options o;
  o.daemon = {{"fcgi_script_filename_mail", "/nonexistent/mail.php"}};
  ASSERT_TRUE(lab_.Start(std::move(o)));
  auto r = Send();
  EXPECT_EQ(r.mail_from.code, 451) << r << lab_.Diagnostics();
  EXPECT_NE(r.mail_from.text.find("4.3.0"), std::string::npos) << r;
  EXPECT_NE(lab_.daemon().log().find("mail script /nonexistent/mail.php"), std::string::npos)
      << lab_.Diagnostics();
  lab_.Stop();

  MailLab accepting;
  MailLab::Options a;
  a.daemon = {{"fcgi_script_filename_mail", "/nonexistent/mail.php"},
              {"mail_failure_action", "accept"}};
  ASSERT_TRUE(accepting.Start(std::move(a)));
  r = SendMail(
      accepting.port(), "sender@client.test", {"user@example.test"},
      testing_support::MakeMessage("sender@client.test", "user@example.test", "policy", "hi\n"));
  EXPECT_TRUE(r.accepted()) << r << accepting.Diagnostics();
  EXPECT_EQ(accepting.Saved().size(), 1u);
}

TEST_F(StagesE2eTest, TheExampleBlocklistRefusesListedSendersAndDomainsOnly) {
  MailLab::Options o;
  o.scripts["fcgi_script_filename_mail"] =
      std::string(FCGI_MILTER_SOURCE_DIR) + "/examples/blocklist/mail.php";
  testing_support::TempDir list_dir;
  o.php.env["FCGI_MILTER_BLOCKLIST"] =
      list_dir.Write("blocked.txt", "# test list\nspam@blocked.example\n@Spammer.Example\n");
  ASSERT_TRUE(lab_.Start(std::move(o)));
  for (const char* blocked : {"spam@blocked.example", "anyone@spammer.example"}) {
    const auto r = Send(blocked);
    EXPECT_EQ(r.mail_from.code, 550) << blocked << r << lab_.Diagnostics();
    EXPECT_NE(r.mail_from.text.find("Sender address rejected: blocked"), std::string::npos) << r;
  }
  for (const char* fine : {"other@blocked.example", "a@spammer.example.org", ""}) {
    const auto r = Send(fine);
    EXPECT_TRUE(r.accepted()) << "<" << fine << "> " << r << lab_.Diagnostics();
  }
  EXPECT_EQ(lab_.Saved().size(), 3u);
}

// Sendmail calls the same stages; what it does with each refusal is what its client sees.
TEST(StagesSendmailE2eTest, MailAndEndOfHeadersRefusalsReachTheClient) {
  static const auto fetched = testing_support::Sendmail::Fetch();
  if (fetched.outcome == testing_support::Sendmail::FetchOutcome::kArchiveUnreachable) {
    GTEST_SKIP() << "Debian archive unreachable, cannot fetch Sendmail";
  }
  ASSERT_EQ(fetched.outcome, testing_support::Sendmail::FetchOutcome::kReady) << fetched.output;
  testing_support::TempDir tmp;
  testing_support::PhpFpm php;
  const std::string stage = php.AddScript("stage.php", kStageScript);
  const std::string save = php.AddScript("save.php", testing_support::kRecordingSaveScript);
  ASSERT_TRUE(php.Start());
  json config = testing_support::BaseDaemonConfig(php, "", save, tmp.Mkdir("spool", 0700));
  for (const char* key : {"connect", "helo", "mail", "eoh"}) {
    config[std::string("fcgi_script_filename_") + key] = stage;
  }
  testing_support::MilterDaemon daemon(config);
  ASSERT_TRUE(daemon.Start());
  testing_support::Sendmail::Options so;
  so.milter = daemon.milter_socket();
  testing_support::Sendmail sendmail(so);
  ASSERT_TRUE(sendmail.Start());
  const auto diagnostics = [&] {
    return "\n--- daemon ---\n" + testing_support::Tail(daemon.log()) + "\n--- sendmail ---\n" +
           testing_support::Tail(sendmail.log());
  };
  const auto send = [&](const std::string& from, const std::string& subject) {
    return SendMail(sendmail.port(), from, {"user@example.test"},
                    testing_support::MakeMessage(from, "user@example.test", subject, "hi\n"));
  };

  std::ofstream(php.data_dir() + "/rule-connect") << "REJECT 554 5.7.1 Not your network\n";
  auto c = send("good@client.test", "connect");
  // Like Postfix: 554 with its own text for the greeting.
  EXPECT_EQ(c.banner.code, 554) << c << diagnostics();
  std::remove((php.data_dir() + "/rule-connect").c_str());

  std::ofstream(php.data_dir() + "/rule-helo") << "REJECT 550 5.7.1 Bad HELO\n";
  c = send("good@client.test", "helo");
  // EHLO is answered 250 (with little in it); MAIL FROM gets the script's reply.
  EXPECT_EQ(c.ehlo.code, 250) << c << diagnostics();
  EXPECT_EQ(c.mail_from.text, "550 5.7.1 Bad HELO") << c << diagnostics();
  std::remove((php.data_dir() + "/rule-helo").c_str());

  std::ofstream(php.data_dir() + "/rule-mail") << "REJECT 553 5.7.1 Not from you\n";
  auto r = send("bad@spam.test", "mail");
  EXPECT_EQ(r.mail_from.code, 553) << r << diagnostics();
  // Sendmail puts the address before the script's text: "553 5.7.1 <bad@spam.test>... Not ...".
  EXPECT_NE(r.mail_from.text.find("553 5.7.1 "), std::string::npos) << r;
  EXPECT_NE(r.mail_from.text.find("Not from you"), std::string::npos) << r;
  std::remove((php.data_dir() + "/rule-mail").c_str());

  std::ofstream(php.data_dir() + "/rule-eoh") << "REJECT 550 5.7.1 Headers refused\n";
  r = send("good@client.test", "eoh");
  EXPECT_EQ(r.data.code, 550) << r << diagnostics();
  EXPECT_NE(r.data.text.find("5.7.1 Headers refused"), std::string::npos) << r;
  std::remove((php.data_dir() + "/rule-eoh").c_str());

  r = send("good@client.test", "fine");
  EXPECT_TRUE(r.accepted()) << r << diagnostics();
  const auto saved = testing_support::ReadSavedMessages(php.data_dir());
  ASSERT_EQ(saved.size(), 1u);
  EXPECT_EQ(saved[0].fields["subject"], "fine");
}

}  // namespace
