// The JSON save reply's envelope and body edits end to end, through a real Postfix and a real
// Sendmail: add_recipients (with and without ESMTP args), change_from, insert_headers and
// replace_body (small, several MiB, and larger than max_reply_size). A small save script picks
// the edits by the message's Subject. Postfix relays what it accepted to an smtp-sink that dumps
// each transaction (envelope and message); Sendmail keeps it in its queue (qf: envelope and
// headers, df: body). The example scripts examples/footer and examples/archive-bcc run here too.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <filesystem>

#include "tests/support/milter_daemon.h"
#include "tests/support/net.h"
#include "tests/support/php_fpm.h"
#include "tests/support/postfix.h"
#include "tests/support/process.h"
#include "tests/support/sendmail.h"
#include "tests/support/smtp_client.h"
#include "tests/support/smtp_sink.h"
#include "tests/support/temp_dir.h"

namespace {

using nlohmann::json;
using testing_support::MilterDaemon;
using testing_support::PhpFpm;
using testing_support::Postfix;
using testing_support::SendMail;
using testing_support::Sendmail;

// Answers JSON edits chosen by the Subject ("big N": a new body of N MiB of numbered lines).
constexpr const char* kEditsScript = R"php(<?php
$s = $_POST['subject'] ?? '';
$r = ['action' => 'accept'];
if ($s === 'add-rcpt') {
  $r['add_recipients'] = ['archive@archive.test',
      ['address' => 'audit@archive.test', 'args' => 'NOTIFY=NEVER ORCPT=rfc822;audit@archive.test']];
} elseif ($s === 'chgfrom') {
  $r['change_from'] = ['address' => 'bounces@example.test', 'args' => 'RET=HDRS ENVID=e2e-envid'];
} elseif ($s === 'chgfrom-plain') {
  $r['change_from'] = 'plain-bounces@example.test';
} elseif ($s === 'insert') {
  $r['insert_headers'] = [['name' => 'X-Top', 'value' => 'inserted at 0', 'index' => 0],
                          ['name' => 'X-Second', 'value' => 'inserted at 1', 'index' => 1]];
  $r['add_headers'] = [['name' => 'X-Bottom', 'value' => 'appended']];
} elseif ($s === 'replace') {
  $r['replace_body'] = "The body was replaced.\nSecond line.\n.leading dot\n";
} elseif (str_starts_with($s, 'big ')) {
  $body = '';
  for ($n = 0; strlen($body) < (int)substr($s, 4) * 1048576; $n++) {
    $body .= sprintf("line %07d %s\n", $n, str_repeat('x', 60));
  }
  $r['replace_body'] = $body;
} elseif ($s === 'redirect') {
  $r['reject_recipients'] = [$_POST['rcpt_to'][0]];
  $r['add_recipients'] = ['review@archive.test'];
} elseif ($s === 'chg-hdr') {
  $r['change_headers'] = [['name' => 'Subject', 'value' => '[tagged] chg-hdr']];
  $r['remove_headers'] = [['name' => 'Message-ID']];
} elseif ($s === 'quarantine') {
  $r = ['action' => 'quarantine', 'reason' => 'held for review'];
} elseif ($s === 'bad-address') {
  $r['add_recipients'] = ['<archive@archive.test>'];
} elseif ($s === 'reject') {
  $r = ['action' => 'reject', 'add_recipients' => ['archive@archive.test']];
}
header('Content-Type: application/json');
echo json_encode($r, JSON_UNESCAPED_SLASHES);
)php";

// The body kEditsScript sends for "big N", with the line ending the MTA stores.
std::string BigBody(int mib, const std::string& eol) {
  std::string body;
  char line[32];
  for (int n = 0; body.size() < static_cast<size_t>(mib) * 1048576; ++n) {
    std::snprintf(line, sizeof line, "line %07d ", n);
    body += line + std::string(60, 'x') + "\n";
  }
  if (eol == "\n") return body;
  std::string out;
  for (char c : body) c == '\n' ? out += eol : out += c;
  return out;
}

size_t Count(const std::string& haystack, const std::string& needle) {
  size_t n = 0;
  for (size_t at = haystack.find(needle); at != std::string::npos;
       at = haystack.find(needle, at + 1)) {
    ++n;
  }
  return n;
}

// What follows the first empty line (CRLF or LF).
std::string BodyOf(const std::string& message) {
  size_t at = message.find("\r\n\r\n");
  if (at != std::string::npos) return message.substr(at + 4);
  at = message.find("\n\n");
  return at == std::string::npos ? "" : message.substr(at + 2);
}

// The body of an smtp-sink dump: LF line endings, and the sink ends the file with one more LF.
std::string SinkBody(const std::string& dump) {
  std::string body = BodyOf(dump);
  if (!body.empty() && body.back() == '\n') body.pop_back();
  return body;
}

// ---------------------------------------------------------------------------------------------
// What both MTAs' suites start with: php-fpm with a PASS validate script and the save script
// (default kEditsScript), and the daemon.

class EditsFixture : public ::testing::Test {
 protected:
  void StartScriptsAndDaemon(const json& extra_config, const std::string& save_path = "",
                             std::map<std::string, std::string> env = {}) {
    PhpFpm::Options o;
    o.env = std::move(env);
    php_ = std::make_unique<PhpFpm>(o);
    const std::string validate = php_->AddScript("validate.php", "<?php echo \"PASS\\n\";");
    const std::string save = save_path.empty() ? php_->AddScript("edits.php", kEditsScript)
                                               : php_->CopyScript(save_path);
    ASSERT_TRUE(php_->Start());
    json config =
        testing_support::BaseDaemonConfig(*php_, validate, save, tmp_.Mkdir("spool", 0700));
    for (const auto& item : extra_config.items()) config[item.key()] = item.value();
    daemon_ = std::make_unique<MilterDaemon>(config);
    ASSERT_TRUE(daemon_->Start());
  }

  // The daemon's and php-fpm's logs around the MTA's (`mta`, labelled `mta_name`).
  std::string Logs(const char* mta_name, const std::string& mta) const {
    return "\n--- daemon ---\n" + testing_support::Tail(daemon_ ? daemon_->log() : "") + "\n--- " +
           mta_name + " ---\n" + testing_support::Tail(mta) + "\n--- php ---\n" +
           testing_support::Tail(php_ ? php_->error_log() : "");
  }

  testing_support::TempDir tmp_;
  std::unique_ptr<PhpFpm> php_;
  std::unique_ptr<MilterDaemon> daemon_;
};

// ---------------------------------------------------------------------------------------------
// Postfix -> fcgi-milter, relaying to smtp-sink. The sink's dump starts with X-Mail-Args (the
// MAIL FROM address and parameters it got) and one X-Rcpt-Args per RCPT TO, then its own
// Received: header, then the message.

class EditsPostfixTest : public EditsFixture {
 protected:
  // The scripts and the daemon with `extra_config`, the sink, and Postfix with `extra_main_cf`.
  void StartAll(json extra_config = json::object(), std::vector<std::string> extra_main_cf = {},
                const std::string& save_path = "", std::map<std::string, std::string> env = {}) {
    StartScriptsAndDaemon(extra_config, save_path, std::move(env));
    if (HasFatalFailure()) return;
    sink_ = std::make_unique<testing_support::SmtpSink>(tmp_.path() + "/sink");
    ASSERT_TRUE(sink_->Start());

    Postfix::Options po;
    po.milters = daemon_->postfix_milters();
    po.extra_main_cf = sink_->RelayMainCf();
    for (auto& line : extra_main_cf) po.extra_main_cf.push_back(std::move(line));
    postfix_ = std::make_unique<Postfix>(po);
    ASSERT_TRUE(postfix_->Start());
  }

  // Sends one message to bob@example.test and returns the one transaction the sink got.
  std::string Relay(const std::string& subject, const std::string& body = "original body\n") {
    auto r = SendMail(
        postfix_->port(), "sender@client.test", {"bob@example.test"},
        testing_support::MakeMessage("sender@client.test", "bob@example.test", subject, body));
    EXPECT_TRUE(r.accepted()) << r << Logs();
    if (!r.accepted()) return "";
    EXPECT_TRUE(postfix_->WaitForQueueEmpty(std::chrono::seconds(30))) << Logs();
    const auto files = SinkFiles();
    EXPECT_EQ(files.size(), 1u) << Logs();
    return files.empty() ? "" : files.back();
  }

  std::vector<std::string> SinkFiles() const { return sink_->Files(); }

  std::string Logs() const {
    return EditsFixture::Logs("postfix", postfix_ ? postfix_->maillog() : "");
  }

  std::unique_ptr<testing_support::SmtpSink> sink_;
  std::unique_ptr<Postfix> postfix_;
};

TEST_F(EditsPostfixTest, AddedRecipientsGetTheMessageWithTheirEsmtpArgs) {
  StartAll();
  const std::string dump = Relay("add-rcpt");
  EXPECT_NE(dump.find("X-Rcpt-Args: <bob@example.test> ORCPT=rfc822;bob@example.test\n"),
            std::string::npos)
      << dump;
  // smfi_addrcpt: Postfix makes up the ORCPT itself.
  EXPECT_NE(dump.find("X-Rcpt-Args: <archive@archive.test> ORCPT=rfc822;archive@archive.test\n"),
            std::string::npos)
      << dump;
  // smfi_addrcpt_par: Postfix 3.7 keeps NOTIFY and ORCPT and relays them (Postfix 2.6's
  // MILTER_README said they were ignored; no longer so).
  EXPECT_NE(dump.find("X-Rcpt-Args: <audit@archive.test> ORCPT=rfc822;audit@archive.test "
                      "NOTIFY=NEVER\n"),
            std::string::npos)
      << dump;
  EXPECT_EQ(postfix_->maillog().find("ignoring ESMTP arguments"), std::string::npos) << Logs();
}

// Every original recipient refused and another added: the message goes to the added one only.
TEST_F(EditsPostfixTest, RefusingEveryRecipientWhileAddingOneRedirectsTheMessage) {
  StartAll();
  const std::string dump = Relay("redirect");
  EXPECT_NE(dump.find("X-Rcpt-Args: <review@archive.test>"), std::string::npos) << dump << Logs();
  EXPECT_EQ(dump.find("X-Rcpt-Args: <bob@example.test>"), std::string::npos) << dump;
}

TEST_F(EditsPostfixTest, ChangedAndRemovedHeadersAreWhatPostfixRelays) {
  StartAll();
  const std::string dump = Relay("chg-hdr");
  EXPECT_NE(dump.find("\nSubject: [tagged] chg-hdr\n"), std::string::npos) << dump;
  EXPECT_EQ(dump.find("Subject: chg-hdr"), std::string::npos) << dump;
  EXPECT_EQ(dump.find("@client.example.test>"), std::string::npos) << "Message-ID kept: " << dump;
}

TEST_F(EditsPostfixTest, QuarantinePutsTheMessageInTheHoldQueue) {
  StartAll();
  auto r = SendMail(postfix_->port(), "sender@client.test", {"bob@example.test"},
                    testing_support::MakeMessage("sender@client.test", "bob@example.test",
                                                 "quarantine", "held\n"));
  ASSERT_TRUE(r.accepted()) << r << Logs();
  // Postfix puts it in the hold queue and logs the hold; it keeps no reason text.
  EXPECT_TRUE(testing_support::WaitUntil(
      [&] {
        return postfix_->maillog().find(
                   "milter-hold: END-OF-MESSAGE from localhost[127.0.0.1]: "
                   "milter triggers HOLD action") != std::string::npos;
      },
      std::chrono::seconds(10)))
      << Logs();
  EXPECT_TRUE(SinkFiles().empty()) << "a held message is not relayed";
}

TEST_F(EditsPostfixTest, ChangeFromRewritesTheEnvelopeSenderWithItsEsmtpArgs) {
  StartAll();
  std::string dump = Relay("chgfrom-plain");
  EXPECT_NE(dump.find("X-Mail-Args: <plain-bounces@example.test>\n"), std::string::npos) << dump;
  EXPECT_EQ(dump.find("X-Mail-Args: <sender@client.test>"), std::string::npos) << dump;
  EXPECT_NE(dump.find("\nFrom: sender@client.test\n"), std::string::npos) << dump;  // untouched
  sink_->Clear();
  dump = Relay("chgfrom");
  EXPECT_NE(dump.find("X-Mail-Args: <bounces@example.test> ENVID=e2e-envid RET=HDRS\n"),
            std::string::npos)
      << dump;
  EXPECT_EQ(postfix_->maillog().find("ignoring ESMTP arguments"), std::string::npos) << Logs();
}

TEST_F(EditsPostfixTest, InsertedHeadersGoAboveTheOthersAndAddedOnesBelow) {
  StartAll();
  const std::string dump = Relay("insert");
  const size_t top = dump.find("\nX-Top: inserted at 0");
  const size_t second = dump.find("\nX-Second: inserted at 1");
  const size_t received = dump.find("\nReceived: from client.example.test");  // Postfix's own
  const size_t subject = dump.find("\nSubject: insert");
  const size_t bottom = dump.find("\nX-Bottom: appended");
  ASSERT_NE(top, std::string::npos) << dump;
  ASSERT_NE(second, std::string::npos) << dump;
  ASSERT_NE(bottom, std::string::npos) << dump;
  EXPECT_LT(top, second) << dump;
  EXPECT_LT(second, subject) << dump;
  EXPECT_LT(subject, bottom) << dump;
  EXPECT_LT(bottom, dump.find("original body")) << dump;
  // Index 0 is above Postfix's own Received: header (only the sink's is higher: it adds it later).
  ASSERT_NE(received, std::string::npos) << dump;
  EXPECT_LT(second, received) << dump;
}

TEST_F(EditsPostfixTest, ReplacedBodyIsWhatPostfixRelays) {
  StartAll();
  const std::string dump = Relay("replace");
  EXPECT_EQ(dump.find("original body"), std::string::npos) << dump;
  EXPECT_NE(dump.find("Subject: replace"), std::string::npos) << dump;
  EXPECT_EQ(SinkBody(dump), "The body was replaced.\nSecond line.\n.leading dot\n") << dump;
}

TEST_F(EditsPostfixTest, ThreeMibBodyIsReplacedWholeWithMaxReplySizeRaised) {
  StartAll({{"max_reply_size", 8 * 1048576}});
  const std::string dump = Relay("big 3");
  const std::string expected = BigBody(3, "\n");
  const std::string got = SinkBody(dump);
  EXPECT_EQ(got.size(), expected.size());
  EXPECT_TRUE(got == expected) << "body differs; first 200 bytes: " << got.substr(0, 200);
}

TEST_F(EditsPostfixTest, ReplyOverMaxReplySizeIsATemporaryFailureNamingTheSetting) {
  StartAll();  // max_reply_size: the default 1 MiB
  auto r = SendMail(postfix_->port(), "sender@client.test", {"bob@example.test"},
                    testing_support::MakeMessage("sender@client.test", "bob@example.test", "big 2",
                                                 "original body\n"));
  EXPECT_EQ(r.data.code, 451) << r << Logs();
  EXPECT_NE(r.data.text.find("4.3.0"), std::string::npos) << r.data;
  const std::string log = daemon_->log();
  EXPECT_EQ(Count(log, "error: save script "), 1u) << Logs();
  EXPECT_EQ(Count(log, "failed: backend failure: too large: reply is larger than 1048576 bytes"),
            1u)
      << Logs();
  // The line says which setting to raise (docs/json-replies.md, "Large bodies"). Needs the
  // reason from milter/mail/decision.cc's Decide to name it.
  EXPECT_EQ(Count(log,
                  "reply is larger than 1048576 bytes (max_reply_size; raise it for a "
                  "script whose reply is large, such as a replace_body)"),
            3u)  // the error line, the debug line, the message's info line
      << Logs();
  EXPECT_TRUE(SinkFiles().empty());
}

TEST_F(EditsPostfixTest, InvalidEditIsRefusedWithOneLogLineAndNothingIsRelayed) {
  StartAll();
  auto r = SendMail(postfix_->port(), "sender@client.test", {"bob@example.test"},
                    testing_support::MakeMessage("sender@client.test", "bob@example.test",
                                                 "bad-address", "original body\n"));
  EXPECT_EQ(r.data.code, 451) << r << Logs();
  // One error line names the script and the problem (the info line for the message repeats it).
  EXPECT_EQ(Count(daemon_->log(), "error: save script "), 1u) << Logs();
  EXPECT_EQ(Count(daemon_->log(),
                  "failed: invalid JSON reply: key 'add_recipients': invalid "
                  "address \"<archive@archive.test>\""),
            1u)
      << Logs();
  EXPECT_TRUE(SinkFiles().empty());
}

TEST_F(EditsPostfixTest, EditsOfARejectedMessageAreNotApplied) {
  StartAll();
  auto r = SendMail(postfix_->port(), "sender@client.test", {"bob@example.test"},
                    testing_support::MakeMessage("sender@client.test", "bob@example.test", "reject",
                                                 "original body\n"));
  EXPECT_EQ(r.data.code, 550) << r << Logs();
  EXPECT_EQ(postfix_->maillog().find("archive@archive.test"), std::string::npos) << Logs();
}

TEST_F(EditsPostfixTest, OlderMilterProtocolStillGrantsEveryEdit) {
  // Postfix 3.7 with milter_protocol = 2 (the version before Postfix 2.6) still offers
  // SMFIF_CHGFROM and the other 8.14 actions: the edits work. Neither MTA here can be made to
  // refuse an edit, so the "MTA did not allow it" path (milter/edits.cc) is not reached.
  StartAll(json::object(), {"milter_protocol = 2"});
  const std::string dump = Relay("chgfrom");
  EXPECT_NE(dump.find("X-Mail-Args: <bounces@example.test>"), std::string::npos) << dump;
  EXPECT_EQ(daemon_->log().find("the MTA did not allow it"), std::string::npos) << Logs();
}

// The worked examples, through Postfix.

TEST_F(EditsPostfixTest, FooterExampleAppendsItsFooterToPlainTextOnly) {
  const std::string maildir = tmp_.Mkdir("Maildir", 0777);
  StartAll(json::object(), {}, std::string(FCGI_MILTER_SOURCE_DIR) + "/examples/footer/save.php",
           {{"FCGI_MILTER_MAILDIR", maildir}, {"FCGI_MILTER_FOOTER", "Sent through the e2e test"}});
  const std::string dump = Relay("plain", "Hello,\nsee you.\n");
  EXPECT_EQ(SinkBody(dump), "Hello,\nsee you.\n\n-- \nSent through the e2e test\n")
      << dump << Logs();
  // The stored copy is the message as it arrived, without the footer.
  size_t stored = 0;
  for (const auto& e : std::filesystem::directory_iterator(maildir + "/new")) {
    ++stored;
    const std::string saved = testing_support::ReadFile(e.path());
    EXPECT_EQ(saved.find("Sent through the e2e test"), std::string::npos) << saved;
    EXPECT_NE(saved.find("Return-Path: <sender@client.test>"), std::string::npos) << saved;
  }
  EXPECT_EQ(stored, 1u);

  // A multipart message goes on untouched.
  sink_->Clear();
  const std::string multipart =
      "From: <sender@client.test>\nTo: <bob@example.test>\nSubject: parts\n"
      "MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=\"b1\"\n\n"
      "--b1\nContent-Type: text/plain\n\nfirst part\n--b1--\n";
  auto r = SendMail(postfix_->port(), "sender@client.test", {"bob@example.test"}, multipart);
  ASSERT_TRUE(r.accepted()) << r << Logs();
  ASSERT_TRUE(postfix_->WaitForQueueEmpty(std::chrono::seconds(30))) << Logs();
  const auto files = SinkFiles();
  ASSERT_EQ(files.size(), 1u);
  EXPECT_EQ(SinkBody(files[0]), "--b1\nContent-Type: text/plain\n\nfirst part\n--b1--\n")
      << files[0];
}

TEST_F(EditsPostfixTest, ArchiveBccExampleAddsTheArchiveRecipient) {
  const std::string maildir = tmp_.Mkdir("Maildir", 0777);
  StartAll(json::object(), {},
           std::string(FCGI_MILTER_SOURCE_DIR) + "/examples/archive-bcc/save.php",
           {{"FCGI_MILTER_MAILDIR", maildir}, {"FCGI_MILTER_ARCHIVE", "archive@archive.test"}});
  const std::string dump = Relay("to be archived");
  EXPECT_NE(dump.find("X-Rcpt-Args: <bob@example.test>"), std::string::npos) << dump;
  EXPECT_NE(dump.find("X-Rcpt-Args: <archive@archive.test>"), std::string::npos) << dump << Logs();
  // A BCC: no header names the archive.
  // A BCC: the message names no archive.
  EXPECT_EQ(dump.find("archive@", dump.find("\nReceived: ")), std::string::npos) << dump;
  EXPECT_FALSE(std::filesystem::is_empty(maildir + "/new"));
}

// ---------------------------------------------------------------------------------------------
// Sendmail -> fcgi-milter; accepted mail stays in Sendmail's queue (qf envelope, df body).

class EditsSendmailTest : public EditsFixture {
 protected:
  void SetUp() override {
    static const Sendmail::FetchResult fetched = Sendmail::Fetch();
    if (fetched.outcome == Sendmail::FetchOutcome::kArchiveUnreachable) {
      GTEST_SKIP() << "Debian archive unreachable, cannot fetch Sendmail:\n" << fetched.output;
    }
    ASSERT_EQ(fetched.outcome, Sendmail::FetchOutcome::kReady) << fetched.output;
  }

  void StartAll(json extra_config = json::object()) {
    StartScriptsAndDaemon(extra_config);
    if (HasFatalFailure()) return;
    Sendmail::Options so;
    so.milter = daemon_->milter_socket();
    sendmail_ = std::make_unique<Sendmail>(so);
    ASSERT_TRUE(sendmail_->Start());
  }

  // Sends one message to bob@example.test; the qf and df files it was queued under.
  std::pair<std::string, std::string> Queue(const std::string& subject) {
    auto r = SendMail(sendmail_->port(), "sender@client.test", {"bob@example.test"},
                      testing_support::MakeMessage("sender@client.test", "bob@example.test",
                                                   subject, "original body\n"));
    EXPECT_TRUE(r.accepted()) << r << Logs();
    const auto qf = sendmail_->QueuedEnvelopes();
    const auto df = sendmail_->QueuedBodies();
    EXPECT_EQ(qf.size(), 1u) << Logs();
    if (qf.size() != 1 || df.size() != 1) return {};
    return {qf[0], df[0]};
  }

  std::string Logs() const {
    return EditsFixture::Logs("sendmail", sendmail_ ? sendmail_->log() : "");
  }

  std::unique_ptr<Sendmail> sendmail_;
};

TEST_F(EditsSendmailTest, AddedRecipientsAreQueuedWithTheirEsmtpArgs) {
  StartAll();
  const auto [qf, df] = Queue("add-rcpt");
  EXPECT_NE(qf.find("RPFD:<bob@example.test>\n"), std::string::npos) << qf;
  EXPECT_NE(qf.find(":<archive@archive.test>\n"), std::string::npos) << qf;
  // NOTIFY=NEVER: no P/F/D/S notify flags, only "has notify" (N); ORCPT is kept on a Q line.
  EXPECT_NE(qf.find("Qrfc822;audit@archive.test\n"), std::string::npos) << qf;
  EXPECT_NE(qf.find("RPN:<audit@archive.test>\n"), std::string::npos) << qf;
}

TEST_F(EditsSendmailTest, ChangedAndRemovedHeadersAreTheQueuedOnes) {
  StartAll();
  const auto [qf, df] = Queue("chg-hdr");
  EXPECT_NE(qf.find("Subject: [tagged] chg-hdr\n"), std::string::npos) << qf;
  EXPECT_EQ(qf.find("Subject: chg-hdr"), std::string::npos) << qf;
  EXPECT_EQ(qf.find("@client.example.test>"), std::string::npos) << "Message-ID kept: " << qf;
}

TEST_F(EditsSendmailTest, RefusedRecipientsAreDroppedAndAddedOnesQueued) {
  StartAll();
  const auto [qf, df] = Queue("redirect");
  EXPECT_NE(qf.find(":<review@archive.test>\n"), std::string::npos) << qf;
  EXPECT_EQ(qf.find("<bob@example.test>\n"), std::string::npos) << qf;
}

TEST_F(EditsSendmailTest, QuarantineKeepsTheReasonInTheQueueFile) {
  StartAll();
  auto r = SendMail(sendmail_->port(), "sender@client.test", {"bob@example.test"},
                    testing_support::MakeMessage("sender@client.test", "bob@example.test",
                                                 "quarantine", "held\n"));
  ASSERT_TRUE(r.accepted()) << r << Logs();
  // Sendmail keeps a quarantined message as hf (not qf), with the reason on a q line.
  EXPECT_TRUE(sendmail_->QueuedEnvelopes().empty()) << Logs();
  const auto held = sendmail_->QuarantinedEnvelopes();
  ASSERT_EQ(held.size(), 1u) << Logs();
  EXPECT_NE(held[0].find("qheld for review\n"), std::string::npos) << held[0];
}

TEST_F(EditsSendmailTest, ChangeFromSetsTheSenderAndItsEsmtpArgs) {
  StartAll();
  const auto [qf, df] = Queue("chgfrom");
  EXPECT_NE(qf.find("S<bounces@example.test>\n"), std::string::npos) << qf;
  EXPECT_NE(qf.find("Ze2e-envid\n"), std::string::npos) << qf;  // ENVID
  EXPECT_NE(qf.find("\nFbdns\n"), std::string::npos) << qf;     // RET=HDRS: d and n (was Fbs)
  EXPECT_EQ(qf.find("sender@client.test>\n"), std::string::npos) << qf;
}

TEST_F(EditsSendmailTest, InsertedHeadersGoAboveTheOthersAndAddedOnesBelow) {
  StartAll();
  const auto [qf, df] = Queue("insert");
  const size_t top = qf.find("H??X-Top: inserted at 0");
  const size_t second = qf.find("H??X-Second: inserted at 1");
  const size_t subject = qf.find("H??Subject: insert");
  const size_t bottom = qf.find("H??X-Bottom: appended");
  ASSERT_NE(top, std::string::npos) << qf;
  ASSERT_NE(second, std::string::npos) << qf;
  ASSERT_NE(bottom, std::string::npos) << qf;
  EXPECT_LT(top, second) << qf;
  EXPECT_LT(second, subject) << qf;
  EXPECT_LT(subject, bottom) << qf;
  // Index 0 is above Sendmail's own Received: header.
  EXPECT_LT(second, qf.find("H??Received: from client.example.test")) << qf;
}

TEST_F(EditsSendmailTest, ReplacedBodyIsTheQueuedBody) {
  StartAll();
  const auto [qf, df] = Queue("replace");
  EXPECT_EQ(df, "The body was replaced.\nSecond line.\n.leading dot\n") << Logs();
}

TEST_F(EditsSendmailTest, ThreeMibBodyIsReplacedWholeWithMaxReplySizeRaised) {
  StartAll({{"max_reply_size", 8 * 1048576}});
  const auto [qf, df] = Queue("big 3");
  const std::string expected = BigBody(3, "\n");
  EXPECT_EQ(df.size(), expected.size()) << Logs();
  EXPECT_TRUE(df == expected) << "first 200 bytes: " << df.substr(0, 200);
}

}  // namespace
