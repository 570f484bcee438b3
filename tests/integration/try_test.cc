// `fcgi-milter try` against a real php-fpm running the shipped example scripts (the plain-text
// pair examples/*.php and the JSON pair examples/json/*.php): exit statuses, the --json report
// (form fields, verdicts, header edits, refused recipients) and the Maildirs the scripts fill.
// Thread-safety: each test owns its php-fpm and directories; run on the gtest main thread.
#include <dirent.h>
#include <sys/stat.h>

#include <chrono>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "tests/support/milter_daemon.h"
#include "tests/support/php_fpm.h"
#include "tests/support/process.h"
#include "tests/support/temp_dir.h"

namespace {

using nlohmann::json;
using testing_support::MilterBinary;
using testing_support::PhpFpm;
using testing_support::Process;
using testing_support::ReadFile;
using testing_support::TempDir;

constexpr const char* kMessage =
    "From: Sender <sender@origin.test>\n"
    "To: someone@example.test\n"
    "Subject: =?UTF-8?Q?Gr=C3=BC=C3=9Fe?= from try\n"
    "Message-ID: <try-test-1@origin.test>\n"
    "\n"
    "Hello from the try test.\n"
    "Second line.\n";

std::string Example(const std::string& rel) {
  return std::string(FCGI_MILTER_SOURCE_DIR) + "/examples/" + rel;
}

// Names of the files in dir (not . and ..); empty if dir does not exist.
std::vector<std::string> ListDir(const std::string& dir) {
  std::vector<std::string> names;
  DIR* d = opendir(dir.c_str());
  if (d == nullptr) return names;
  while (dirent* e = readdir(d)) {
    const std::string n = e->d_name;
    if (n != "." && n != "..") names.push_back(n);
  }
  closedir(d);
  return names;
}

struct TryRun {
  int exit_status = -1;
  std::string out;  // stdout: the report
  std::string err;  // stderr: log lines
  json report;      // parsed stdout with --json
};

// php-fpm with one pair of example scripts, a recipient list, a Maildir root and a lock dir that
// the pool user can write, and a daemon config pointing at them.
class TryTest : public ::testing::Test {
 protected:
  void StartPair(const std::string& validate_rel, const std::string& save_rel,
                 const json& extra_config = json::object()) {
    recipients_ = data_.Write("recipients.txt", "@example.test\npostmaster@localhost\n");
    maildir_ = data_.Mkdir("Maildir", 0777);
    locks_ = data_.Mkdir("locks", 0777);
    PhpFpm::Options o;
    o.env["FCGI_MILTER_RECIPIENTS"] = recipients_;
    o.env["FCGI_MILTER_MAILDIR"] = maildir_;
    o.env["FCGI_MILTER_LOCK_DIR"] = locks_;
    o.env.insert(env_.begin(), env_.end());
    php_ = std::make_unique<PhpFpm>(o);
    const std::string validate = php_->CopyScript(Example(validate_rel), "validate.php");
    const std::string save = php_->CopyScript(Example(save_rel), "save.php");
    ASSERT_FALSE(validate.empty());
    ASSERT_FALSE(save.empty());
    ASSERT_TRUE(php_->Start());
    json config = {
        {"fcgi_connection_type", php_->connection_type()},
        {"fcgi_connection_address", php_->address()},
        {"fcgi_script_filename_validate", validate},
        {"fcgi_script_filename_save", save},
        {"spool_directory", data_.path()},
    };
    config.update(extra_config);
    config_path_ = data_.Write("fcgi-milter.json", config.dump(2));
    message_path_ = data_.Write("message.eml", kMessage);
  }

  TryRun Try(std::vector<std::string> args, bool as_json) {
    std::vector<std::string> argv = {MilterBinary(), "try",    "-c",
                                     config_path_,   "--from", "sender@origin.test"};
    argv.insert(argv.end(), args.begin(), args.end());
    if (as_json) argv.push_back("--json");
    argv.push_back(message_path_);
    TryRun run;
    Process p;
    Process::Options po;
    po.output_dir = data_.Mkdir("out-" + std::to_string(++runs_));
    po.name = "try";
    if (!p.Start(argv, po)) {
      ADD_FAILURE() << "cannot start " << MilterBinary();
      return run;
    }
    run.exit_status = p.Wait(std::chrono::seconds(60)).value_or(-1);
    run.out = p.ReadStdout();
    run.err = p.ReadStderr();
    if (as_json) {
      run.report = json::parse(run.out, nullptr, false);
      EXPECT_FALSE(run.report.is_discarded()) << "not JSON:\n" << run.out << run.err;
    }
    return run;
  }

  // The value of the first form field `name` of the save exchange, or null.
  static json FormField(const json& report, const std::string& name) {
    if (!report.contains("save") || !report["save"].contains("form")) return nullptr;
    for (const json& f : report["save"]["form"]) {
      if (f["name"] == name) return f["value"];
    }
    return nullptr;
  }

  static std::vector<std::string> FormNames(const json& report) {
    std::vector<std::string> names;
    if (!report.contains("save") || !report["save"].contains("form")) return names;
    for (const json& f : report["save"]["form"]) names.push_back(f["name"]);
    return names;
  }

  // Adds a script to php-fpm and `key` (fcgi_script_filename_connect, ...) to the config.
  void UseScript(const std::string& key, const std::string& name, const std::string& php) {
    const std::string path = php_->AddScript(name, php);
    ASSERT_FALSE(path.empty());
    Configure({{key, path}});
  }

  void Configure(const json& patch) {
    json config = json::parse(ReadFile(config_path_));
    config.update(patch);
    testing_support::WriteFile(config_path_, config.dump(2));
  }

  // Where `needle` starts in `haystack`, failing the test when it is not there.
  static size_t Find(const std::string& haystack, const std::string& needle) {
    const size_t at = haystack.find(needle);
    EXPECT_NE(at, std::string::npos) << "no \"" << needle << "\" in:\n" << haystack;
    return at;
  }

  std::string Diagnostics(const TryRun& run) const {
    return "stdout:\n" + run.out + "\nstderr:\n" + run.err + "\n" + php_->error_log();
  }

  TempDir data_;
  std::map<std::string, std::string> env_;  // more of the pool's environment, set before StartPair
  std::unique_ptr<PhpFpm> php_;
  std::string recipients_;
  std::string maildir_;
  std::string locks_;
  std::string config_path_;
  std::string message_path_;
  int runs_ = 0;
};

// --- The plain-text pair: examples/validate.php and examples/save.php ---

TEST_F(TryTest, PlainPairAcceptsKnownRecipientAndStoresMessageInMaildir) {
  StartPair("validate.php", "save.php");
  TryRun run = Try({"--rcpt", "someone@example.test"}, false);
  EXPECT_EQ(run.exit_status, 0) << Diagnostics(run);
  EXPECT_NE(run.out.find("== validate <someone@example.test>"), std::string::npos) << run.out;
  EXPECT_NE(run.out.find("   stdout   PASS"), std::string::npos) << run.out;
  EXPECT_NE(run.out.find("   stdout   SAVED"), std::string::npos) << run.out;
  EXPECT_NE(run.out.find("== the MTA would answer: 250 2.0.0 Ok: queued"), std::string::npos)
      << run.out;

  const std::vector<std::string> stored = ListDir(maildir_ + "/new");
  ASSERT_EQ(stored.size(), 1u) << Diagnostics(run);
  const std::string mail = ReadFile(maildir_ + "/new/" + stored[0]);
  EXPECT_EQ(mail.rfind("Return-Path: <sender@origin.test>\n", 0), 0u) << mail;
  EXPECT_NE(mail.find("Subject: =?UTF-8?Q?Gr=C3=BC=C3=9Fe?= from try\n"), std::string::npos);
  EXPECT_NE(mail.find("\n\nHello from the try test.\nSecond line.\n"), std::string::npos) << mail;
  EXPECT_TRUE(ListDir(maildir_ + "/tmp").empty());
}

TEST_F(TryTest, PlainPairRefusesUnknownRecipientWithExitOneAndSavesNothing) {
  StartPair("validate.php", "save.php");
  TryRun run = Try({"--rcpt", "nobody@elsewhere.test"}, false);
  EXPECT_EQ(run.exit_status, 1) << Diagnostics(run);
  EXPECT_NE(run.out.find("verdict  reject 550"), std::string::npos) << run.out;
  EXPECT_NE(run.out.find("every recipient refused"), std::string::npos) << run.out;
  EXPECT_EQ(run.out.find("== save"), std::string::npos) << "no save request expected";
  EXPECT_TRUE(ListDir(maildir_ + "/new").empty());
}

TEST_F(TryTest, PlainPairJsonReportShowsEveryFormFieldAndVerdict) {
  StartPair("validate.php", "save.php");
  TryRun run = Try({"--rcpt", "someone@example.test", "--rcpt", "nobody@elsewhere.test",
                    "--client-ip", "192.0.2.7", "--helo", "mx.origin.test", "--tls"},
                   true);
  ASSERT_EQ(run.exit_status, 0) << Diagnostics(run);
  const json& r = run.report;
  EXPECT_EQ(r["exit_status"], 0);
  EXPECT_EQ(r["outcome"], "250 2.0.0 Ok: queued");

  ASSERT_EQ(r["validate"].size(), 2u) << r.dump(2);
  const json& ok = r["validate"][0];
  EXPECT_EQ(ok["recipient"], "someone@example.test");
  EXPECT_EQ(ok["params"]["REQUEST_METHOD"], "GET");
  EXPECT_EQ(ok["params"]["REMOTE_ADDR"], "192.0.2.7");
  const std::string query = ok["params"]["QUERY_STRING"];
  EXPECT_EQ(query.rfind("rcpt_to=someone%40example.test&mail_from=sender%40origin.test&"
                        "remote_ip=192.0.2.7&helo=mx.origin.test&",
                        0),
            0u)
      << query;
  EXPECT_NE(query.find("&tls_on=true&daemon_name=try&queue_id=TRY"), std::string::npos) << query;
  EXPECT_EQ(ok["stdout"], "PASS\n");
  EXPECT_EQ(ok["verdict"]["action"], "accept");
  EXPECT_EQ(ok["smtp"], "250 2.1.5 Ok");
  const json& refused = r["validate"][1];
  EXPECT_EQ(refused["verdict"]["action"], "reject");
  EXPECT_EQ(refused["verdict"]["smtp_code"], "550");
  EXPECT_EQ(refused["verdict"]["enhanced_code"], "5.1.1");
  EXPECT_EQ(refused["smtp"],
            "550 5.1.1 <nobody@elsewhere.test>: Recipient address rejected: User unknown");

  const json& save = r["save"];
  EXPECT_EQ(save["params"]["REQUEST_METHOD"], "POST");
  EXPECT_EQ(save["params"]["CONTENT_TYPE"], "application/x-www-form-urlencoded");
  EXPECT_EQ(save["verdict"]["action"], "accept");
  EXPECT_EQ(save["stdout"], "SAVED\n");
  // body first: PHP's max_input_vars can never cut it off.
  const std::vector<std::string> expected_names = {
      "body",        "remote_ip",  "subject",      "tls_on",      "helo",           "mail_from",
      "rcpt_to_0",   "rcpt_to[]",  "rcpt_count",   "queue_id",    "client_name",    "auth_login",
      "tls_version", "tls_cipher", "message_size", "daemon_name", "idempotency_key"};
  EXPECT_EQ(FormNames(r), expected_names);
  EXPECT_EQ(FormField(r, "remote_ip"), "192.0.2.7");
  EXPECT_EQ(FormField(r, "subject"), "Grüße from try");
  EXPECT_EQ(FormField(r, "tls_on"), "true");
  EXPECT_EQ(FormField(r, "tls_version"), "TLSv1.3");
  EXPECT_EQ(FormField(r, "helo"), "mx.origin.test");
  EXPECT_EQ(FormField(r, "mail_from"), "sender@origin.test");
  EXPECT_EQ(FormField(r, "rcpt_to_0"), "someone@example.test");
  EXPECT_EQ(FormField(r, "rcpt_to[]"), "someone@example.test");
  EXPECT_EQ(FormField(r, "rcpt_count"), "1");
  EXPECT_EQ(FormField(r, "queue_id"), r["envelope"]["queue_id"]);
  EXPECT_EQ(FormField(r, "client_name"), "localhost");
  EXPECT_EQ(FormField(r, "auth_login"), "");
  EXPECT_EQ(FormField(r, "daemon_name"), "try");
  EXPECT_EQ(FormField(r, "message_size"), std::to_string(std::string(kMessage).size()));
  EXPECT_EQ(FormField(r, "body"), kMessage);
  EXPECT_EQ(FormField(r, "idempotency_key").get<std::string>().size(), 64u);
  EXPECT_EQ(ListDir(maildir_ + "/new").size(), 1u);
}

// save_mode raw through `try`: the same request the daemon makes (the message as the body, the
// envelope as the query), the same idempotency key for the same message, stored once.
TEST_F(TryTest, RawModeSendsTheMessageAsTheBodyAndStoresItOncePerKey) {
  StartPair("validate.php", "save.php", {{"save_mode", "raw"}});
  TryRun first = Try({"--rcpt", "someone@example.test"}, true);
  ASSERT_EQ(first.exit_status, 0) << Diagnostics(first);
  const json& save = first.report["save"];
  EXPECT_EQ(save["params"]["CONTENT_TYPE"], "message/rfc822");
  EXPECT_EQ(save["params"]["CONTENT_LENGTH"], std::to_string(std::string(kMessage).size()));
  EXPECT_NE(save["params"]["QUERY_STRING"].get<std::string>().find("rcpt_to%5B%5D=someone"),
            std::string::npos);
  const json key = FormField(first.report, "idempotency_key");
  ASSERT_TRUE(key.is_string());
  EXPECT_EQ(key.get<std::string>().size(), 64u);
  EXPECT_TRUE(FormField(first.report, "body").is_null());
  TryRun again = Try({"--rcpt", "someone@example.test"}, true);
  ASSERT_EQ(again.exit_status, 0) << Diagnostics(again);
  EXPECT_EQ(FormField(again.report, "idempotency_key"), key);
  ASSERT_EQ(ListDir(maildir_ + "/new").size(), 1u);  // the second run was a retry
  EXPECT_EQ(ReadFile(maildir_ + "/new/" + ListDir(maildir_ + "/new")[0]),
            "Return-Path: <sender@origin.test>\n" + std::string(kMessage));
  TryRun text = Try({"--rcpt", "someone@example.test"}, false);
  EXPECT_NE(text.out.find("the request body is the message"), std::string::npos) << text.out;
}

// try drives the daemon's own transaction: a message over max_message_size gets the daemon's
// 552 and never reaches the save script (before, try ran the save and printed 250).
TEST_F(TryTest, MessageOverMaxMessageSizeIsRefusedAsTheDaemonRefusesIt) {
  StartPair("validate.php", "save.php", {{"max_message_size", 50}});
  TryRun run = Try({"--rcpt", "someone@example.test"}, true);
  EXPECT_EQ(run.exit_status, 1) << Diagnostics(run);
  EXPECT_EQ(run.report["outcome"], "552 5.3.4 Message size exceeds fixed limit") << run.out;
  EXPECT_EQ(run.report["save"]["skipped"], true);
  EXPECT_TRUE(ListDir(maildir_ + "/new").empty());
}

TEST_F(TryTest, PlainPairWithPhpFpmStoppedIsTemporaryWithExitTwo) {
  StartPair("validate.php", "save.php");
  php_->Stop();
  TryRun run = Try({"--rcpt", "someone@example.test"}, true);
  EXPECT_EQ(run.exit_status, 2) << Diagnostics(run);
  const json& v = run.report["validate"][0];
  EXPECT_EQ(v["verdict"]["action"], "tempfail");
  EXPECT_EQ(v["smtp"], "451 4.3.0 Temporary failure, try again later");
  EXPECT_NE(v["transport"].get<std::string>(), "ok");
  EXPECT_FALSE(run.report.contains("save"));
}

// No reply means no HTTP status: the report used to show "status": 200 (an empty response's
// default) for a backend it never reached.
TEST_F(TryTest, NoReplyFromPhpFpmReportsNoStatus) {
  StartPair("validate.php", "save.php");
  php_->Stop();
  TryRun run = Try({"--rcpt", "someone@example.test"}, true);
  EXPECT_EQ(run.exit_status, 2) << Diagnostics(run);
  const json& v = run.report["validate"][0];
  ASSERT_TRUE(v.contains("status")) << v.dump(2);
  EXPECT_TRUE(v["status"].is_null()) << v.dump(2);
  EXPECT_TRUE(v["stdout"].is_null()) << v.dump(2);
  EXPECT_TRUE(v["headers"].is_null()) << v.dump(2);
  EXPECT_NE(v["transport"].get<std::string>().find("does not exist"), std::string::npos)
      << v.dump(2);

  TryRun plain = Try({"--rcpt", "someone@example.test"}, false);
  EXPECT_EQ(plain.exit_status, 2) << Diagnostics(plain);
  EXPECT_NE(plain.out.find("   answer   none: "), std::string::npos) << plain.out;
  EXPECT_EQ(plain.out.find("Status 200"), std::string::npos) << plain.out;
  EXPECT_EQ(plain.out.find("   stdout"), std::string::npos) << plain.out;
}

TEST_F(TryTest, UsageAndConfigErrorsExitThree) {
  StartPair("validate.php", "save.php");
  testing_support::CommandResult no_rcpt =
      testing_support::RunCommand({MilterBinary(), "try", "-c", config_path_, message_path_});
  EXPECT_EQ(no_rcpt.exit_code, 3) << no_rcpt.output;
  EXPECT_NE(no_rcpt.output.find("give at least one --rcpt"), std::string::npos) << no_rcpt.output;

  testing_support::CommandResult no_config = testing_support::RunCommand(
      {MilterBinary(), "try", "-c", data_.Path("missing.json"), "--rcpt", "a@example.test"});
  EXPECT_EQ(no_config.exit_code, 3) << no_config.output;
  EXPECT_NE(no_config.output.find("missing.json: cannot read"), std::string::npos)
      << no_config.output;
}

// --- The JSON pair: examples/json/validate.php and examples/json/save.php ---

TEST_F(TryTest, JsonPairStoresOneMaildirPerRecipientAndAddsHeader) {
  StartPair("json/validate.php", "json/save.php");
  TryRun run = Try({"--rcpt", "a@example.test", "--rcpt", "b@example.test"}, true);
  ASSERT_EQ(run.exit_status, 0) << Diagnostics(run);
  const json& save = run.report["save"];
  EXPECT_EQ(save["headers"]["Content-Type"], "application/json");
  EXPECT_EQ(save["verdict"]["action"], "accept");
  EXPECT_EQ(save["verdict"]["reason"], "script replied JSON action accept");
  ASSERT_EQ(save["verdict"]["header_edits"].size(), 1u) << save.dump(2);
  const json& edit = save["verdict"]["header_edits"][0];
  EXPECT_EQ(edit["kind"], "add");
  EXPECT_EQ(edit["name"], "X-Fcgi-Milter-Stored");
  EXPECT_EQ(edit["value"],
            "2 mailbox(es), queue id " + run.report["envelope"]["queue_id"].get<std::string>());
  EXPECT_FALSE(save["verdict"].contains("refused_recipients"));
  EXPECT_EQ(FormField(run.report, "rcpt_count"), "2");
  for (const char* box : {"a@example.test", "b@example.test"}) {
    const std::vector<std::string> stored = ListDir(maildir_ + "/" + box + "/new");
    ASSERT_EQ(stored.size(), 1u) << box << "\n" << Diagnostics(run);
    EXPECT_EQ(ReadFile(maildir_ + "/" + box + "/new/" + stored[0]), kMessage);
  }
}

TEST_F(TryTest, JsonSaveRefusesFullMailboxButDeliversToTheOthers) {
  StartPair("json/validate.php", "json/save.php");
  ASSERT_FALSE(data_.Write("Maildir/full@example.test.full", "").empty());
  TryRun run = Try({"--rcpt", "a@example.test", "--rcpt", "full@example.test"}, true);
  ASSERT_EQ(run.exit_status, 0) << Diagnostics(run);
  const json& verdict = run.report["save"]["verdict"];
  EXPECT_EQ(verdict["action"], "accept");
  EXPECT_EQ(verdict["refused_recipients"], json::array({"full@example.test"}));
  ASSERT_EQ(verdict["header_edits"].size(), 1u);
  EXPECT_EQ(verdict["header_edits"][0]["name"], "X-Fcgi-Milter-Stored");
  EXPECT_EQ(verdict["header_edits"][0]["value"].get<std::string>().rfind("1 mailbox(es)", 0), 0u);
  EXPECT_EQ(run.report["outcome"], "250 2.0.0 Ok: queued (except for the refused recipients)");
  EXPECT_EQ(ListDir(maildir_ + "/a@example.test/new").size(), 1u);
  EXPECT_TRUE(ListDir(maildir_ + "/full@example.test/new").empty());

  TryRun plain = Try({"--rcpt", "a@example.test", "--rcpt", "full@example.test"}, false);
  EXPECT_EQ(plain.exit_status, 0) << Diagnostics(plain);
  EXPECT_NE(plain.out.find("refuse recipient <full@example.test>"), std::string::npos) << plain.out;
  EXPECT_NE(plain.out.find("add header X-Fcgi-Milter-Stored: 1 mailbox(es)"), std::string::npos)
      << plain.out;
}

TEST_F(TryTest, JsonSaveRejectsWhenEveryMailboxIsFullWithExitOne) {
  StartPair("json/validate.php", "json/save.php");
  ASSERT_FALSE(data_.Write("Maildir/full@example.test.full", "").empty());
  TryRun run = Try({"--rcpt", "full@example.test"}, true);
  EXPECT_EQ(run.exit_status, 1) << Diagnostics(run);
  const json& verdict = run.report["save"]["verdict"];
  EXPECT_EQ(verdict["action"], "reject");
  EXPECT_EQ(verdict["smtp_code"], "552");
  EXPECT_EQ(verdict["enhanced_code"], "5.2.2");
  EXPECT_EQ(run.report["outcome"], "552 5.2.2 Mailbox full");
}

TEST_F(TryTest, JsonValidateTempfailsLockedMailboxWithExitTwo) {
  StartPair("json/validate.php", "json/save.php");
  ASSERT_FALSE(data_.Write("locks/locked@example.test.lock", "").empty());
  TryRun run = Try({"--rcpt", "locked@example.test"}, true);
  EXPECT_EQ(run.exit_status, 2) << Diagnostics(run);
  const json& v = run.report["validate"][0];
  EXPECT_EQ(v["headers"]["Content-Type"], "application/json");
  EXPECT_EQ(v["verdict"]["action"], "tempfail");
  EXPECT_EQ(v["verdict"]["smtp_code"], "450");
  EXPECT_EQ(v["verdict"]["enhanced_code"], "4.2.1");
  EXPECT_EQ(v["smtp"],
            "450 4.2.1 <locked@example.test>: Mailbox temporarily locked, try again later");
  EXPECT_EQ(run.report["outcome"], "no recipient accepted (temporary failure): the sender retries");
  EXPECT_FALSE(run.report.contains("save"));
}

TEST_F(TryTest, JsonValidateRejectsUnknownRecipientWithExitOne) {
  StartPair("json/validate.php", "json/save.php");
  TryRun run = Try({"--rcpt", "nobody@elsewhere.test"}, false);
  EXPECT_EQ(run.exit_status, 1) << Diagnostics(run);
  EXPECT_NE(run.out.find("verdict  reject 550 (script replied JSON action reject)"),
            std::string::npos)
      << run.out;
  EXPECT_EQ(run.out.find("== save"), std::string::npos) << "no save request expected";
  EXPECT_TRUE(ListDir(maildir_).empty());
}

// A JSON reply the schema refuses falls under the stage's failure policy: a temporary failure
// by default, or what validate_failure_action says.
TEST_F(TryTest, InvalidJsonReplyFollowsTheFailurePolicy) {
  StartPair("json/validate.php", "json/save.php");
  const std::string bad =
      php_->AddScript("bad.php",
                      "<?php header('Content-Type: application/json');\n"
                      "echo json_encode(['action' => 'reject', 'smtp_code' => '55x']);\n");
  json config = json::parse(ReadFile(config_path_));
  config["fcgi_script_filename_validate"] = bad;
  testing_support::WriteFile(config_path_, config.dump(2));
  TryRun run = Try({"--rcpt", "a@example.test"}, true);
  EXPECT_EQ(run.exit_status, 2) << Diagnostics(run);
  const json& v = run.report["validate"][0]["verdict"];
  EXPECT_EQ(v["action"], "tempfail");
  EXPECT_EQ(v["smtp_code"], "451");
  EXPECT_EQ(v["reason"],
            "invalid JSON reply: key 'smtp_code': 55x does not go with reject (needs 5xx)");

  config["validate_failure_action"] = "reject";
  testing_support::WriteFile(config_path_, config.dump(2));
  TryRun rejected = Try({"--rcpt", "a@example.test"}, true);
  EXPECT_EQ(rejected.exit_status, 1) << Diagnostics(rejected);
  EXPECT_EQ(rejected.report["validate"][0]["verdict"]["action"], "reject");
}

// --- The stage scripts, routes and every edit of a save reply ---

// A stage script that accepts and says which stage it saw: the reply shows the request reached it.
constexpr const char* kPassStage = "<?php echo \"PASS\\n\";\n";

TEST_F(TryTest, EveryStageScriptIsAskedInTheDaemonsOrder) {
  StartPair("validate.php", "save.php");
  UseScript("fcgi_script_filename_connect", "connect.php", kPassStage);
  UseScript("fcgi_script_filename_helo", "helo.php", kPassStage);
  UseScript("fcgi_script_filename_mail", "mail.php", kPassStage);
  // The end-of-headers script answers with the Message-ID it read: the headers came before it.
  UseScript("fcgi_script_filename_eoh", "eoh.php",
            "<?php preg_match('/^Message-ID: (.*)$/mi', file_get_contents('php://input'), $m);\n"
            "header('X-Seen-Message-Id: ' . trim($m[1] ?? 'none'));\n"
            "echo \"PASS\\n\";\n");
  const std::vector<std::string> args = {
      "--rcpt", "someone@example.test", "--esmtp-args", "SIZE=123 BODY=8BITMIME",
      "--helo", "mx.origin.test",       "--tls"};
  TryRun run = Try(args, false);
  ASSERT_EQ(run.exit_status, 0) << Diagnostics(run);
  const std::string& out = run.out;
  const size_t connect = Find(out, "== connect\n");
  const size_t helo = Find(out, "== helo\n");
  const size_t mail = Find(out, "== mail\n");
  const size_t validate = Find(out, "== validate <someone@example.test>\n");
  const size_t eoh = Find(out, "== eoh\n");
  const size_t save = Find(out, "== save\n");
  EXPECT_LT(connect, helo);
  EXPECT_LT(helo, mail);
  EXPECT_LT(mail, validate);
  EXPECT_LT(validate, eoh);
  EXPECT_LT(eoh, save);
  EXPECT_GT(Find(out, "   sent     GET /connect.php?stage=connect&remote_ip=127.0.0.1&"), connect);
  EXPECT_GT(Find(out, "   sent     GET /helo.php?stage=helo&"), helo);
  EXPECT_GT(Find(out, "&helo=mx.origin.test&tls_on=true&tls_version=TLSv1.3&"), helo);
  EXPECT_GT(Find(out, "   sent     GET /mail.php?stage=mail&"), mail);
  EXPECT_GT(Find(out, "&mail_from=sender%40origin.test&esmtp_args=SIZE%3D123%20BODY%3D8BITMIME&"),
            mail);
  EXPECT_GT(Find(out, "   smtp     250 2.1.0 Ok\n"), mail);
  EXPECT_GT(Find(out, "   sent     POST /eoh.php?"), eoh);
  EXPECT_GT(Find(out, "            CONTENT_TYPE=text/rfc822-headers\n"), eoh);
  EXPECT_GT(Find(out, "   headers  (the request body, "), eoh);
  EXPECT_GT(Find(out, "            Message-ID: <try-test-1@origin.test>\n"), eoh);
  EXPECT_GT(Find(out, "            X-Seen-Message-Id: <try-test-1@origin.test>\n"), eoh);
  EXPECT_GT(Find(out, "   smtp     (no reply yet: the MTA sends the body)\n"), eoh);
  EXPECT_GT(Find(out, "   stdout   SAVED"), save);
  EXPECT_NE(out.find("== the MTA would answer: 250 2.0.0 Ok: queued"), std::string::npos) << out;

  TryRun js = Try(args, true);
  ASSERT_EQ(js.exit_status, 0) << Diagnostics(js);
  const json& r = js.report;
  EXPECT_EQ(r["stages"], json({"connect", "helo", "mail", "validate", "eoh", "save"}));
  EXPECT_EQ(r["envelope"]["mail_args"], json({"SIZE=123", "BODY=8BITMIME"}));
  for (const char* stage : {"connect", "helo", "mail", "eoh"}) {
    EXPECT_EQ(r[stage]["skipped"], false) << stage;
    EXPECT_EQ(r[stage]["stdout"], "PASS\n") << stage;
    EXPECT_EQ(r[stage]["verdict"]["action"], "accept") << stage;
  }
  EXPECT_EQ(r["connect"]["smtp"], "220 (the MTA's greeting)");
  // The daemon has no queue id before MAIL FROM; from there on it is the message's.
  const std::string qid = r["envelope"]["queue_id"];
  EXPECT_EQ(r["connect"]["params"]["QUERY_STRING"].get<std::string>().find("queue_id"),
            std::string::npos);
  EXPECT_NE(r["mail"]["params"]["QUERY_STRING"].get<std::string>().find("queue_id=" + qid),
            std::string::npos);
  EXPECT_NE(r["eoh"]["headers_sent"].get<std::string>().find("Subject: =?UTF-8?Q?Gr"),
            std::string::npos);
  EXPECT_EQ(r["eoh"]["headers_sent"].get<std::string>().find("Hello from the try test"),
            std::string::npos);
  EXPECT_EQ(ListDir(maildir_ + "/new").size(), 1u);  // the second run is a retry of the first
}

TEST_F(TryTest, StagesWithoutAScriptShowOneLine) {
  StartPair("validate.php", "save.php");
  TryRun run = Try({"--rcpt", "someone@example.test"}, false);
  ASSERT_EQ(run.exit_status, 0) << Diagnostics(run);
  for (const char* stage : {"connect", "helo", "mail", "eoh"}) {
    EXPECT_NE(run.out.find(std::string("== ") + stage + " (no script)\n"), std::string::npos)
        << run.out;
  }
  EXPECT_EQ(run.out.find("== connect\n"), std::string::npos) << run.out;
}

// The shipped blocklist example refuses the sender at MAIL FROM: no recipient is validated.
TEST_F(TryTest, MailFromRefusalStopsBeforeAnyRecipient) {
  env_["FCGI_MILTER_BLOCKLIST"] = data_.Write("blocked.txt", "@origin.test\n");
  StartPair("validate.php", "save.php");
  const std::string mail = php_->CopyScript(Example("blocklist/mail.php"), "mail.php");
  ASSERT_FALSE(mail.empty());
  Configure({{"fcgi_script_filename_mail", mail}});
  TryRun run = Try({"--rcpt", "someone@example.test"}, false);
  EXPECT_EQ(run.exit_status, 1) << Diagnostics(run);
  EXPECT_NE(run.out.find("   stdout   REJECT 550 5.7.1 <sender@origin.test>: Sender address "
                         "rejected: blocked"),
            std::string::npos)
      << run.out;
  EXPECT_EQ(run.out.find("== validate"), std::string::npos) << run.out;
  EXPECT_EQ(run.out.find("== eoh"), std::string::npos) << run.out;
  EXPECT_EQ(run.out.find("== save"), std::string::npos) << run.out;
  EXPECT_NE(run.out.find("== the MTA would answer: 550 5.7.1 <sender@origin.test>: Sender "
                         "address rejected: blocked (refused at MAIL FROM: no recipient is sent)"),
            std::string::npos)
      << run.out;

  TryRun js = Try({"--rcpt", "someone@example.test"}, true);
  EXPECT_EQ(js.exit_status, 1) << Diagnostics(js);
  EXPECT_EQ(js.report["stages"], json({"connect", "helo", "mail"}));
  EXPECT_EQ(js.report["mail"]["verdict"]["action"], "reject");
  EXPECT_FALSE(js.report.contains("validate"));
  EXPECT_FALSE(js.report.contains("save"));
  EXPECT_EQ(js.report["exit_status"], 1);
  EXPECT_TRUE(ListDir(maildir_ + "/new").empty());
}

// A connect script's tempfail ends the session at once: exit 2, not even HELO.
TEST_F(TryTest, ConnectTempfailStopsEverything) {
  StartPair("validate.php", "save.php");
  UseScript("fcgi_script_filename_connect", "connect.php",
            "<?php echo \"TEMPFAIL 421 4.7.0 Too busy\\n\";\n");
  UseScript("fcgi_script_filename_helo", "helo.php", kPassStage);
  TryRun run = Try({"--rcpt", "someone@example.test"}, true);
  EXPECT_EQ(run.exit_status, 2) << Diagnostics(run);
  EXPECT_EQ(run.report["stages"], json({"connect"}));
  EXPECT_EQ(run.report["outcome"],
            "421 4.7.0 Too busy (refused at connect: no mail on this connection)");
}

TEST_F(TryTest, EndOfHeadersRefusalStopsBeforeTheSave) {
  StartPair("validate.php", "save.php");
  UseScript("fcgi_script_filename_eoh", "eoh.php",
            "<?php $h = file_get_contents('php://input');\n"
            "if (stripos($h, \"\\nSubject: =?UTF-8?\") !== false) {\n"
            "  echo \"REJECT 554 5.7.1 Encoded subjects refused\\n\"; exit;\n"
            "}\n"
            "echo \"PASS\\n\";\n");
  TryRun run = Try({"--rcpt", "someone@example.test"}, false);
  EXPECT_EQ(run.exit_status, 1) << Diagnostics(run);
  const size_t eoh = Find(run.out, "== eoh\n");
  EXPECT_GT(Find(run.out, "   verdict  reject 554"), eoh);
  EXPECT_GT(Find(run.out, "   smtp     554 5.7.1 Encoded subjects refused\n"), eoh);
  EXPECT_EQ(run.out.find("== save"), std::string::npos) << run.out;
  EXPECT_NE(run.out.find("== the MTA would answer: 554 5.7.1 Encoded subjects refused (refused "
                         "at the end of the headers: no body, nothing saved)"),
            std::string::npos)
      << run.out;

  TryRun js = Try({"--rcpt", "someone@example.test"}, true);
  EXPECT_EQ(js.exit_status, 1) << Diagnostics(js);
  EXPECT_EQ(js.report["stages"], json({"connect", "helo", "mail", "validate", "eoh"}));
  EXPECT_FALSE(js.report.contains("save"));
  EXPECT_TRUE(ListDir(maildir_ + "/new").empty());
}

// Every edit a JSON save reply can ask for, shown in the order the MTA applies them; none done.
TEST_F(TryTest, SaveEditsAreShownAsTheMtaWouldApplyThem) {
  StartPair("validate.php", "save.php");
  const json reply = {
      {"action", "quarantine"},
      {"reason", "looks odd"},
      {"add_headers", {{{"name", "X-Added"}, {"value", "1"}}}},
      {"change_headers", {{{"name", "Subject"}, {"value", "[try] hi"}, {"index", 1}}}},
      {"remove_headers", {{{"name", "Message-ID"}}}},
      {"insert_headers", {{{"name", "X-Top"}, {"value", "first"}, {"index", 0}}}},
      {"reject_recipients", {"b@example.test"}},
      {"add_recipients",
       {"archive@example.test", {{"address", "audit@example.test"}, {"args", "NOTIFY=NEVER"}}}},
      {"change_from", {{"address", "bounces@origin.test"}, {"args", "SIZE=99"}}},
      {"replace_body", "line 1\nline 2\nline 3\nline 4\nline 5\nline 6\nline 7\n"},
  };
  UseScript("fcgi_script_filename_save", "edits.php",
            "<?php header('Content-Type: application/json');\necho '" + reply.dump() + "';\n");
  const std::vector<std::string> args = {"--rcpt", "a@example.test", "--rcpt", "b@example.test"};
  TryRun run = Try(args, false);
  ASSERT_EQ(run.exit_status, 0) << Diagnostics(run);
  const std::vector<std::string> in_order = {
      "   edits    change sender to <bounces@origin.test> SIZE=99\n",
      "            refuse recipient <b@example.test>\n",
      "            add recipient <archive@example.test>\n",
      "            add recipient <audit@example.test> NOTIFY=NEVER\n",
      "            add header X-Added: 1\n",
      "            change header Subject (occurrence 1): [try] hi\n",
      "            remove header Message-ID (occurrence 1)\n",
      "            insert header X-Top: first (at index 0: the top)\n",
      "            replace body (56 bytes, 7 lines), beginning:\n"
      "              | line 1\n              | line 2\n              | line 3\n"
      "              | line 4\n              | line 5\n              | ... (2 more lines)\n",
      "            quarantine: looks odd\n",
      "   smtp     250 (accepted, held in quarantine: looks odd)\n",
  };
  size_t at = Find(run.out, "== save\n");
  for (const std::string& line : in_order) {
    const size_t next = Find(run.out, line);
    EXPECT_GT(next, at) << line;
    at = next;
  }

  TryRun js = Try(args, true);
  ASSERT_EQ(js.exit_status, 0) << Diagnostics(js);
  const json& v = js.report["save"]["verdict"];
  EXPECT_EQ(v["action"], "quarantine");
  EXPECT_EQ(v["quarantine_reason"], "looks odd");
  EXPECT_EQ(v["new_sender"], json({{"address", "bounces@origin.test"}, {"args", "SIZE=99"}}));
  EXPECT_EQ(v["added_recipients"], json::parse(R"([{"address":"archive@example.test","args":""},
      {"address":"audit@example.test","args":"NOTIFY=NEVER"}])"));
  EXPECT_EQ(v["inserted_headers"], json::parse(R"([{"name":"X-Top","value":"first","index":0}])"));
  EXPECT_EQ(v["refused_recipients"], json({"b@example.test"}));
  EXPECT_EQ(v["header_edits"].size(), 3u);
  EXPECT_EQ(v["new_body"]["size"], 56);
  EXPECT_EQ(v["new_body"]["first_lines"][0], "line 1");
  EXPECT_EQ(v["new_body"]["text"],
            "line 1\r\nline 2\r\nline 3\r\nline 4\r\nline 5\r\nline 6\r\n"
            "line 7\r\n");
  EXPECT_EQ(js.report["outcome"],
            "250 (accepted, held in quarantine: looks odd) (except for the refused recipients)");
}

// Every recipient refused and one added: the outcome says the message goes to the added one.
TEST_F(TryTest, ARedirectSaysTheMessageGoesToTheAddedRecipientsOnly) {
  StartPair("validate.php", "save.php");
  UseScript("fcgi_script_filename_save", "edits.php",
            "<?php header('Content-Type: application/json');\n"
            "echo '{\"action\":\"accept\",\"reject_recipients\":[\"a@example.test\"],"
            "\"add_recipients\":[\"review@example.test\"]}';\n");
  TryRun js = Try({"--rcpt", "a@example.test"}, true);
  ASSERT_EQ(js.exit_status, 0) << Diagnostics(js);
  EXPECT_EQ(js.report["outcome"],
            "250 2.0.0 Ok: queued (for the added recipients only: every recipient was refused)");
}

// A rejected save's edits are listed but marked as not applied.
TEST_F(TryTest, EditsOfARejectedSaveAreNotApplied) {
  StartPair("validate.php", "save.php");
  UseScript(
      "fcgi_script_filename_save", "edits.php",
      "<?php header('Content-Type: application/json');\n"
      "echo '{\"action\":\"reject\",\"add_headers\":[{\"name\":\"X-A\",\"value\":\"1\"}]}';\n");
  TryRun run = Try({"--rcpt", "a@example.test"}, false);
  EXPECT_EQ(run.exit_status, 1) << Diagnostics(run);
  const size_t note = Find(run.out, "   edits    (asked for, but not applied with reject)\n");
  EXPECT_GT(Find(run.out, "            add header X-A: 1\n"), note);
}

// With routes, each recipient shows its route; one of another save route gets the 452.
TEST_F(TryTest, RoutesAreShownAndAnotherSaveRouteGets452) {
  StartPair("validate.php", "save.php");
  const std::string org_validate = php_->AddScript("org-validate.php", kPassStage);
  const std::string org_save = php_->AddScript("org-save.php", "<?php echo \"SAVED\\n\";\n");
  Configure({{"routes",
              {{{"domains", {"example.org", "*.example.org"}},
                {"fcgi_script_filename_validate", org_validate},
                {"fcgi_script_filename_save", org_save}}}}});
  TryRun mixed = Try({"--rcpt", "a@example.test", "--rcpt", "b@example.org"}, false);
  ASSERT_EQ(mixed.exit_status, 0) << Diagnostics(mixed);
  const size_t a = Find(mixed.out,
                        "== validate <a@example.test>\n   route    none: the top-level "
                        "scripts\n");
  const size_t b = Find(mixed.out,
                        "== validate <b@example.org>\n   route    routes[0] "
                        "(example.org, *.example.org)\n");
  EXPECT_LT(a, b);
  EXPECT_GT(Find(mixed.out, "   smtp     452 4.5.3 "), b);
  EXPECT_GT(Find(mixed.out, "== save\n   route    none: the top-level scripts\n"), b);

  TryRun org = Try({"--rcpt", "b@example.org"}, true);
  ASSERT_EQ(org.exit_status, 0) << Diagnostics(org);
  const json& v = org.report["validate"][0];
  EXPECT_EQ(v["route"], 0);
  EXPECT_EQ(v["route_domains"], json({"example.org", "*.example.org"}));
  EXPECT_EQ(v["params"]["SCRIPT_FILENAME"], org_validate);
  EXPECT_EQ(org.report["save"]["route"], 0);
  EXPECT_EQ(org.report["save"]["params"]["SCRIPT_FILENAME"], org_save);
  EXPECT_EQ(org.report["save"]["stdout"], "SAVED\n");
}

}  // namespace
