// End to end through a real Postfix and php-fpm with save_mode "raw": the message is the request
// body (read from php://input), the envelope is $_GET, and every save carries an idempotency key
// that a sender's retry reproduces.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <string>
#include <thread>
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

class RawModeE2eTest : public ::testing::Test {
 protected:
  void StartAll(json extra_config = json::object(), std::vector<std::string> extra_main_cf = {}) {
    testing_support::MailLab::Options o;  // Debian's php.ini: post_max_size 8M, memory_limit 128M
    o.save = testing_support::kRecordingRawSaveScript;
    o.daemon = {{"save_mode", "raw"}};
    for (auto& [k, v] : extra_config.items()) o.daemon[k] = v;
    o.main_cf = std::move(extra_main_cf);
    ASSERT_TRUE(lab_.Start(std::move(o)));
    postfix_ = &lab_.postfix();
    daemon_ = &lab_.daemon();
  }

  std::string Diagnostics() const { return lab_.Diagnostics(); }
  std::vector<testing_support::SavedMessage> Saved() const { return lab_.Saved(); }

  testing_support::MailLab lab_;
  Postfix* postfix_ = nullptr;
  MilterDaemon* daemon_ = nullptr;
};

TEST_F(RawModeE2eTest, MessageIsTheRequestBodyAndTheEnvelopeIsInGet) {
  StartAll();
  auto r = SendMail(postfix_->port(), "sender@client.test", {"a&b@example.test", "c@example.test"},
                    testing_support::kCraftedMessage);
  ASSERT_TRUE(r.accepted()) << r << Diagnostics();
  const auto saved = Saved();
  ASSERT_EQ(saved.size(), 1u) << Diagnostics();
  const json& f = saved[0].fields;
  EXPECT_EQ(saved[0].body, testing_support::kCraftedMessage);
  EXPECT_EQ(f["_server"]["REQUEST_METHOD"], "POST");
  EXPECT_EQ(f["_server"]["CONTENT_TYPE"], "message/rfc822");
  EXPECT_EQ(f["_server"]["CONTENT_LENGTH"],
            std::to_string(std::string(testing_support::kCraftedMessage).size()));
  EXPECT_EQ(f["_server"]["POST_FIELDS"], 0);
  EXPECT_EQ(f["mail_from"], "sender@client.test");
  EXPECT_EQ(f["rcpt_to"], json::array({"a&b@example.test", "c@example.test"}));
  EXPECT_EQ(f["rcpt_count"], "2");
  EXPECT_EQ(f["subject"], "Héllowörld");
  EXPECT_EQ(f["remote_ip"], "127.0.0.1");
  EXPECT_FALSE(f["queue_id"].get<std::string>().empty());
  const std::string key = f["idempotency_key"];
  EXPECT_EQ(key.size(), 64u);
  EXPECT_NE(daemon_->log().find("key=" + key), std::string::npos) << daemon_->log();
}

// A sender's retry is a new transaction (new queue id): the key stays, so a script can store the
// message once. Another recipient set or another message gets another key.
TEST_F(RawModeE2eTest, IdempotencyKeyIsStableAcrossRetriesAndDiffersOtherwise) {
  StartAll();
  const std::string message = testing_support::MakeMessage("sender@client.test", "u@example.test",
                                                           "key", "the same body\n");
  for (int i = 0; i < 2; ++i) {
    ASSERT_TRUE(SendMail(postfix_->port(), "sender@client.test",
                         {"u@example.test", "v@example.test"}, message)
                    .accepted())
        << Diagnostics();
  }
  ASSERT_TRUE(SendMail(postfix_->port(), "sender@client.test", {"v@example.test", "u@example.test"},
                       message)
                  .accepted());
  ASSERT_TRUE(
      SendMail(postfix_->port(), "sender@client.test", {"u@example.test"}, message).accepted());
  ASSERT_TRUE(SendMail(postfix_->port(), "sender@client.test", {"u@example.test", "v@example.test"},
                       message + "one more line\n")
                  .accepted());
  const auto saved = Saved();
  ASSERT_EQ(saved.size(), 5u) << Diagnostics();
  const auto key = [&](size_t i) { return saved[i].fields["idempotency_key"].get<std::string>(); };
  EXPECT_NE(saved[0].fields["queue_id"], saved[1].fields["queue_id"]);
  EXPECT_EQ(key(0), key(1));
  EXPECT_EQ(key(0), key(2));  // RCPT order does not matter
  EXPECT_NE(key(0), key(3));
  EXPECT_NE(key(0), key(4));
  EXPECT_NE(key(3), key(4));
}

// The size problem of the form: with Debian's stock php.ini (post_max_size 8M, memory_limit
// 128M) a message over a few MB cannot be saved as a form field. In raw mode 50 MiB go through,
// byte-exact, and the worker reading php://input in 64 KiB chunks stays small.
TEST_F(RawModeE2eTest, FiftyMebibyteMessageArrivesByteExactWithStockPhpSettings) {
  StartAll({{"spool_threshold", 1048576}, {"save_timeout", 120}},
           {"message_size_limit = 60000000"});
  const std::string message = testing_support::LargeMessage("fifty mebibytes", 50u << 20);
  auto r = SendMail(postfix_->port(), "sender@client.test", {"big@example.test"}, message,
                    "client.example.test", std::chrono::seconds(180));
  ASSERT_TRUE(r.accepted()) << r << Diagnostics();
  const auto saved = Saved();
  ASSERT_EQ(saved.size(), 1u) << Diagnostics();
  EXPECT_EQ(saved[0].body.size(), message.size());
  EXPECT_TRUE(saved[0].body == message);
  const int64_t peak = saved[0].fields["_server"]["PEAK_MEMORY"].get<int64_t>();
  EXPECT_LT(peak, 32 * 1024 * 1024) << peak;
  EXPECT_NE(daemon_->log().find("spilled"), std::string::npos);
}

}  // namespace

namespace {

// The shipped examples/save.php, in both modes, with Debian's stock php.ini: each message is
// stored once per idempotency key, however often and however concurrently it is delivered.
class ExampleSaveE2eTest : public ::testing::TestWithParam<std::string> {
 protected:
  // The example at `example` (relative to the source tree) as the save script, in GetParam()'s
  // save_mode, storing into maildir_.
  void StartAll(json extra_config = json::object(), std::vector<std::string> extra_main_cf = {},
                const std::string& example = "examples/save.php") {
    testing_support::MailLab::Options o;
    maildir_ = lab_.tmp().Mkdir("Maildir", 0777);
    o.php.env["FCGI_MILTER_MAILDIR"] = maildir_;
    o.php.request_terminate_timeout_seconds = 300;
    o.save = std::string(FCGI_MILTER_SOURCE_DIR) + "/" + example;
    o.daemon = {{"save_mode", GetParam()}};
    for (auto& [k, v] : extra_config.items()) o.daemon[k] = v;
    o.main_cf = std::move(extra_main_cf);
    ASSERT_TRUE(lab_.Start(std::move(o)));
    postfix_ = &lab_.postfix();
    php_ = &lab_.php();
  }

  std::vector<std::string> Stored() const {
    std::vector<std::string> files;
    if (!std::filesystem::exists(maildir_ + "/new")) return files;  // nothing stored yet
    for (const auto& e : std::filesystem::directory_iterator(maildir_ + "/new")) {
      files.push_back(testing_support::ReadFile(e.path()));
    }
    return files;
  }

  std::string Diagnostics() const { return lab_.Diagnostics(); }

  testing_support::MailLab lab_;
  std::string maildir_;
  Postfix* postfix_ = nullptr;
  PhpFpm* php_ = nullptr;
};

TEST_P(ExampleSaveE2eTest, ARetriedMessageIsStoredOnceAndAnsweredSavedEachTime) {
  StartAll();
  const std::string message = testing_support::MakeMessage(
      "sender@client.test", "u@example.test", "once", "stored once, however often it comes\n");
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(
        SendMail(postfix_->port(), "sender@client.test", {"u@example.test"}, message).accepted())
        << Diagnostics();
  }
  // Another recipient set is another message for the store.
  ASSERT_TRUE(SendMail(postfix_->port(), "sender@client.test", {"u@example.test", "v@example.test"},
                       message)
                  .accepted());
  const auto stored = Stored();
  ASSERT_EQ(stored.size(), 2u) << Diagnostics();
  for (const std::string& s : stored) {
    EXPECT_EQ(s, "Return-Path: <sender@client.test>\n" + message);
  }
  EXPECT_NE(php_->error_log().find("already stored"), std::string::npos) << php_->error_log();
  EXPECT_TRUE(std::filesystem::is_empty(maildir_ + "/tmp"));
}

TEST_P(ExampleSaveE2eTest, ConcurrentDeliveriesOfOneMessageStoreOneFile) {
  StartAll();
  const std::string message = testing_support::MakeMessage("sender@client.test", "u@example.test",
                                                           "race", std::string(300000, 'r') + "\n");
  std::vector<std::thread> senders;
  std::atomic<int> accepted{0};
  for (int i = 0; i < 4; ++i) {
    senders.emplace_back([&] {
      if (SendMail(postfix_->port(), "sender@client.test", {"u@example.test"}, message)
              .accepted()) {
        ++accepted;
      }
    });
  }
  for (std::thread& t : senders) t.join();
  EXPECT_EQ(accepted.load(), 4) << Diagnostics();
  EXPECT_EQ(Stored().size(), 1u) << Diagnostics();
  EXPECT_TRUE(std::filesystem::is_empty(maildir_ + "/tmp"));
}

// 50 MiB through the real Postfix with Debian's stock php.ini (post_max_size 8M): raw mode
// stores it in the example Maildir byte-exact; the form cannot carry it, and the example says
// "later" (the sender keeps the message) instead of losing it.
TEST_P(ExampleSaveE2eTest, FiftyMebibyteMessageIsStoredInRawModeAndKeptBySenderInFormMode) {
  StartAll({{"save_timeout", 120}}, {"message_size_limit = 60000000"});
  const std::string message = testing_support::LargeMessage("fifty", 50u << 20);
  auto r = SendMail(postfix_->port(), "sender@client.test", {"big@example.test"}, message,
                    "client.example.test", std::chrono::seconds(180));
  if (GetParam() == "form") {
    EXPECT_EQ(r.data.code, 452) << r << Diagnostics();
    EXPECT_TRUE(Stored().empty());
    EXPECT_NE(php_->error_log().find("post_max_size"), std::string::npos);
    return;
  }
  ASSERT_TRUE(r.accepted()) << r << Diagnostics();
  const auto stored = Stored();
  ASSERT_EQ(stored.size(), 1u) << Diagnostics();
  const std::string prefix = "Return-Path: <sender@client.test>\n";
  ASSERT_EQ(stored[0].substr(0, prefix.size()), prefix);
  EXPECT_TRUE(stored[0].substr(prefix.size()) == message)
      << "stored " << stored[0].size() - prefix.size() << " bytes, sent " << message.size();
}

INSTANTIATE_TEST_SUITE_P(BothModes, ExampleSaveE2eTest, ::testing::Values("form", "raw"));

}  // namespace

namespace {

// examples/json/save.php: one Maildir per recipient, each storing a retried message once.
TEST_P(ExampleSaveE2eTest, TheJsonExampleStoresARetryOncePerMailbox) {
  StartAll(json::object(), {}, "examples/json/save.php");

  const std::string message = testing_support::MakeMessage("sender@client.test", "u@example.test",
                                                           "json once", "one copy per mailbox\n");
  for (int i = 0; i < 2; ++i) {
    ASSERT_TRUE(SendMail(postfix_->port(), "sender@client.test",
                         {"u@example.test", "v@example.test"}, message)
                    .accepted())
        << Diagnostics();
  }
  for (const char* box : {"u@example.test", "v@example.test"}) {
    SCOPED_TRACE(box);
    const std::string dir = maildir_ + "/" + box + "/new";
    ASSERT_TRUE(std::filesystem::exists(dir)) << Diagnostics();
    size_t files = 0;
    for (const auto& e : std::filesystem::directory_iterator(dir)) {
      ++files;
      EXPECT_EQ(testing_support::ReadFile(e.path()), message);
    }
    EXPECT_EQ(files, 1u);
  }
}

}  // namespace
