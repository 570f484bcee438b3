// End to end through a real Postfix on an inet: milter socket: the daemon finds the MTA's socket
// in libmilter's context (quick ACKs, no-reply stages), and when it cannot (detection forced
// off) it says so once and still answers every stage correctly.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <cstdlib>
#include <string>

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

int CountOf(const std::string& text, const std::string& needle) {
  int n = 0;
  for (size_t at = text.find(needle); at != std::string::npos; at = text.find(needle, at + 1)) n++;
  return n;
}

class LibmilterInternalsE2eTest : public ::testing::TestWithParam<bool> {};

TEST_P(LibmilterInternalsE2eTest, EveryMessageIsAnsweredWithOrWithoutTheContextPeek) {
  const bool peek_off = GetParam();
  testing_support::TempDir tmp;
  PhpFpm php;
  const std::string validate = php.AddScript("validate.php",
                                             "<?php echo str_starts_with($_GET['rcpt_to'], 'no') ? "
                                             "\"NO\\n\" : \"PASS\\n\";");
  const std::string save = php.AddScript("save.php", testing_support::kRecordingSaveScript);
  ASSERT_TRUE(php.Start());
  json config = testing_support::BaseDaemonConfig(php, validate, save, tmp.Mkdir("spool", 0700));
  if (peek_off) ::setenv("FCGI_MILTER_NO_CONTEXT_PEEK", "1", 1);
  MilterDaemon daemon(config);  // inet:PORT@127.0.0.1
  const auto started = daemon.Start();
  ::unsetenv("FCGI_MILTER_NO_CONTEXT_PEEK");
  ASSERT_TRUE(started);
  Postfix::Options po;
  po.milters = daemon.postfix_milters();
  Postfix postfix(po);
  ASSERT_TRUE(postfix.Start());

  for (int i = 0; i < 3; ++i) {
    auto r = SendMail(postfix.port(), "sender@client.test", {"user@example.test", "nobody@x.test"},
                      testing_support::MakeMessage("sender@client.test", "user@example.test",
                                                   "peek " + std::to_string(i), "hello\n"));
    ASSERT_EQ(r.rcpts.size(), 2u);
    EXPECT_EQ(r.rcpts[0].code, 250) << r << daemon.log();
    EXPECT_EQ(r.rcpts[1].code, 550) << r;
    EXPECT_TRUE(r.accepted()) << r << daemon.log();
  }
  EXPECT_EQ(testing_support::ReadSavedMessages(php.data_dir()).size(), 3u);
  const std::string log = testing_support::ReadFile(daemon.process().stderr_path());
  if (peek_off) {
    EXPECT_EQ(CountOf(log, "cannot find the MTA's socket in libmilter's context"), 1) << log;
    EXPECT_EQ(CountOf(log, "TCP, quick ACKs"), 0) << log;
  } else {
    EXPECT_EQ(CountOf(log, "cannot find the MTA's socket"), 0) << log;
    EXPECT_GE(CountOf(log, "TCP, quick ACKs"), 1) << log;
  }
}

INSTANTIATE_TEST_SUITE_P(PeekOnAndOff, LibmilterInternalsE2eTest, ::testing::Values(false, true),
                         [](const auto& p) { return p.param ? "Off" : "On"; });

}  // namespace
