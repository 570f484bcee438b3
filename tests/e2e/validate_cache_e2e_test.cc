// End to end through a real Postfix and php-fpm: the validate cache answers repeated recipients
// without a PHP request, per sender domain, never for a tempfail, for the TTL a JSON reply sets,
// counts itself in /metrics, and starts empty after a reload.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <signal.h>

#include <future>
#include <string>
#include <vector>

#include "tests/support/mail_lab.h"
#include "tests/support/net.h"
#include "tests/support/smtp_client.h"

namespace {

using nlohmann::json;
using testing_support::SendMail;

// Counts its calls per recipient in DUMP_DIR/calls; "later@" is tempfailed, "json0@" answers
// in JSON with cache_ttl 0, "json@" with cache_ttl 600, the rest PASS.
constexpr const char* kCountingValidate = R"php(<?php
$rcpt = $_GET['rcpt_to'] ?? '';
file_put_contents(getenv('DUMP_DIR') . '/calls', "$rcpt\n", FILE_APPEND | LOCK_EX);
if (str_starts_with($rcpt, 'later@')) { echo "TEMPFAIL\n"; exit; }
if (str_starts_with($rcpt, 'json0@')) {
  header('Content-Type: application/json'); echo '{"action":"accept","cache_ttl":0}'; exit;
}
if (str_starts_with($rcpt, 'json@')) {
  header('Content-Type: application/json'); echo '{"action":"accept","cache_ttl":600}'; exit;
}
echo "PASS\n";
)php";

int Calls(testing_support::MailLab& lab, const std::string& rcpt) {
  const std::string calls = testing_support::ReadFile(lab.php().data_dir() + "/calls");
  int n = 0;
  for (size_t at = calls.find(rcpt + "\n"); at != std::string::npos;
       at = calls.find(rcpt + "\n", at + 1)) {
    if (at == 0 || calls[at - 1] == '\n') n++;
  }
  return n;
}

TEST(ValidateCacheE2eTest, RepeatedRecipientsCostOneScriptCallUntilTheTtlOrAReload) {
  testing_support::MailLab lab;
  testing_support::MailLab::Options o;
  o.validate = kCountingValidate;
  const int metrics_port = testing_support::FreeTcpPort();
  o.daemon = {{"validate_cache_ttl", 60},
              {"metrics_listen", "127.0.0.1:" + std::to_string(metrics_port)}};
  ASSERT_TRUE(lab.Start(std::move(o)));
  const auto send = [&](const std::string& from, const std::vector<std::string>& rcpts) {
    return SendMail(lab.port(), from, rcpts,
                    testing_support::MakeMessage(from, rcpts[0], "cache", "hello\n"));
  };

  for (int i = 0; i < 3; ++i) {
    auto r = send("a@s1.test", {"u@example.test", "later@example.test", "json0@example.test",
                                "json@example.test"});
    ASSERT_EQ(r.rcpts.size(), 4u);
    EXPECT_EQ(r.rcpts[0].code, 250) << r << lab.Diagnostics();
    EXPECT_EQ(r.rcpts[1].code, 451) << r;
    EXPECT_TRUE(r.accepted()) << r << lab.Diagnostics();
  }
  EXPECT_EQ(Calls(lab, "u@example.test"), 1);
  EXPECT_EQ(Calls(lab, "later@example.test"), 3);  // a tempfail is never reused
  EXPECT_EQ(Calls(lab, "json0@example.test"), 3);  // the script said: do not reuse
  EXPECT_EQ(Calls(lab, "json@example.test"), 1);
  // Another sender domain asks again; the same domain under another name does not.
  ASSERT_TRUE(send("b@s2.test", {"u@example.test"}).accepted());
  ASSERT_TRUE(send("c@S1.TEST", {"u@example.test"}).accepted());
  EXPECT_EQ(Calls(lab, "u@example.test"), 2);

  auto [status, text] = testing_support::HttpGet(metrics_port, "/metrics");
  ASSERT_EQ(status, 200);
  EXPECT_NE(text.find("fcgi_milter_validate_cache_total{result=\"hit\"} 5\n"), std::string::npos)
      << text;
  EXPECT_NE(text.find("fcgi_milter_validate_cache_total{result=\"miss\"} 9\n"), std::string::npos)
      << text;

  // A reload starts with an empty cache.
  const auto reloads = [&] {
    return testing_support::ReadFile(lab.daemon().process().stderr_path()).find("reloaded ") !=
           std::string::npos;
  };
  ASSERT_TRUE(lab.daemon().Signal(SIGUSR1));
  ASSERT_TRUE(testing_support::WaitUntil(reloads, std::chrono::seconds(5)));
  ASSERT_TRUE(send("a@s1.test", {"u@example.test"}).accepted());
  EXPECT_EQ(Calls(lab, "u@example.test"), 3);
}

// A dictionary attack spread over many sessions: the sessions that ask about the same address
// while the first request is running wait for its answer instead of asking PHP too.
TEST(ValidateCacheE2eTest, ConcurrentSessionsAskingAboutOneRecipientCostOneScriptCall) {
  testing_support::MailLab lab;
  testing_support::MailLab::Options o;
  o.validate = R"php(<?php
file_put_contents(getenv('DUMP_DIR') . '/calls', ($_GET['rcpt_to'] ?? '') . "\n", FILE_APPEND | LOCK_EX);
usleep(500000);
echo "REJECT 550 5.1.1 no such user\n";
)php";
  o.php.max_children = 8;
  o.daemon = {{"validate_cache_ttl", 60}, {"fcgi_max_connections", 8}};
  ASSERT_TRUE(lab.Start(std::move(o)));
  std::vector<std::future<testing_support::MailResult>> sessions;
  for (int i = 0; i < 6; ++i) {
    sessions.push_back(std::async(std::launch::async, [&lab] {
      return SendMail(lab.port(), "guess@attacker.test", {"nobody@example.test"},
                      testing_support::MakeMessage("guess@attacker.test", "nobody@example.test",
                                                   "guess", "hi\n"));
    }));
  }
  for (auto& f : sessions) {
    const auto r = f.get();
    ASSERT_EQ(r.rcpts.size(), 1u);
    EXPECT_EQ(r.rcpts[0].code, 550) << r << lab.Diagnostics();
  }
  EXPECT_EQ(Calls(lab, "nobody@example.test"), 1) << lab.Diagnostics();
}

}  // namespace
