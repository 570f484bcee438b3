// A failing save explains itself in the daemon's log: `fcgi-milter try` runs the same Filter as
// the daemon and logs to stderr, so these tests read the log lines an admin would see when a
// script hangs after a PHP warning, or when a backend of a farm is down.
// Thread-safety: each test owns its php-fpm and directories; run on the gtest main thread.
#include <chrono>
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
using testing_support::CommandResult;
using testing_support::MilterBinary;
using testing_support::PhpFpm;
using testing_support::RunCommand;
using testing_support::TempDir;

constexpr const char* kMessage =
    "From: Sender <sender@origin.test>\n"
    "To: someone@example.test\n"
    "Subject: a save that fails\n"
    "\n"
    "Hello.\n";

// A save script that logs a warning, hands it to php-fpm's FastCGI STDERR at once (flush()), and
// then hangs far past save_timeout.
constexpr const char* kHangingSave = R"php(<?php
error_log("save.php: database at 192.0.2.9 is not answering, retrying", 4);
flush();
sleep(10);
echo "SAVED";
)php";

class FailureLogTest : public ::testing::Test {
 protected:
  void SetUp() override {
    php_ = std::make_unique<PhpFpm>();
    save_ = php_->AddScript("save.php", kHangingSave);
    ASSERT_TRUE(php_->Start());
    message_path_ = data_.Write("message.eml", kMessage);
  }

  // `fcgi-milter try` with config (the save script and a short save_timeout added).
  CommandResult Try(json config) {
    config["fcgi_script_filename_save"] = save_;
    config["save_timeout"] = 1;
    config["spool_directory"] = data_.path();
    const std::string config_path = data_.Write("fcgi-milter.json", config.dump(2));
    return RunCommand({MilterBinary(), "try", "-c", config_path, "--from", "sender@origin.test",
                       "--rcpt", "someone@example.test", message_path_},
                      std::chrono::seconds(30));
  }

  TempDir data_;
  std::unique_ptr<PhpFpm> php_;
  std::string save_;
  std::string message_path_;
};

TEST_F(FailureLogTest, SaveTimingOutLogsTheStderrItWroteBeforeTheFailure) {
  CommandResult run = Try({{"fcgi_connection_type", php_->connection_type()},
                           {"fcgi_connection_address", php_->address()}});
  EXPECT_EQ(run.exit_code, 2) << run.output;  // a temporary failure
  const size_t warning = run.output.find(
      "save script " + save_ +
      " wrote to stderr: PHP message: save.php: database at 192.0.2.9 is not answering, retrying");
  const size_t failure =
      run.output.find("save script " + save_ + " via " + php_->connection_type() + ":" +
                      php_->address() + " failed: backend failure: timeout: waiting for the reply");
  EXPECT_NE(warning, std::string::npos) << run.output;
  EXPECT_NE(failure, std::string::npos) << run.output;
  EXPECT_LT(warning, failure) << "the evidence comes before the verdict\n" << run.output;
}

TEST_F(FailureLogTest, FarmBackendFoundDownIsLoggedOnceWithTheReason) {
  // The first backend's socket does not exist; the second is the php-fpm that hangs.
  const std::string missing = data_.path() + "/no-php-fpm.sock";
  CommandResult run = Try({{"fcgi_backends", {"unix:" + missing, "unix:" + php_->socket_path()}}});
  const std::string down = "FastCGI backend unix:" + missing +
                           " is down, skipped until it accepts connections: connect failed: ";
  const size_t first = run.output.find(down);
  ASSERT_NE(first, std::string::npos) << run.output;
  EXPECT_EQ(run.output.find(down, first + 1), std::string::npos) << run.output;
}

}  // namespace
