// DaemonFixture: the base of the e2e suites that start and stop the daemon themselves (its
// signals, reloads, privilege drop): a php-fpm the suite fills with scripts, the daemon on a
// config the test shapes from BaseConfig, and a Postfix in front of it.
// Thread-safety: not thread-safe; the test thread owns it.
#pragma once

#include <memory>
#include <string>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "tests/support/milter_daemon.h"
#include "tests/support/php_fpm.h"
#include "tests/support/postfix.h"
#include "tests/support/smtp_client.h"
#include "tests/support/temp_dir.h"

namespace testing_support {

class DaemonFixture : public ::testing::Test {
 protected:
  nlohmann::json BaseConfig(const std::string& save) {
    return BaseDaemonConfig(*php_, "", save, tmp_.Mkdir("spool", 0777));
  }

  void StartDaemonAndPostfix(const nlohmann::json& config) {
    daemon_ = std::make_unique<MilterDaemon>(config);
    ASSERT_TRUE(daemon_->Start());
    Postfix::Options po;
    po.milters = daemon_->postfix_milters();
    postfix_ = std::make_unique<Postfix>(po);
    ASSERT_TRUE(postfix_->Start());
  }

  MailResult Send(const std::string& subject) {
    return SendMail(postfix_->port(), "sender@client.test", {"user@example.test"},
                    MakeMessage("sender@client.test", "user@example.test", subject, "body\n"));
  }

  std::string Logs() const {
    return "\n--- daemon ---\n" + Tail(daemon_ ? daemon_->log() : "") + "\n--- postfix ---\n" +
           Tail(postfix_ ? postfix_->maillog() : "");
  }

  TempDir tmp_;
  std::unique_ptr<PhpFpm> php_;
  std::unique_ptr<MilterDaemon> daemon_;
  std::unique_ptr<Postfix> postfix_;
};

}  // namespace testing_support
