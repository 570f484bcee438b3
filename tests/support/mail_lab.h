// MailLab: the whole chain an end-to-end test sends mail through, started in one call: a private
// php-fpm with the test's scripts, the daemon with BaseDaemonConfig plus the test's keys, and a
// throw-away Postfix whose smtpd_milters points at it. Plus what every such test wants after a
// failure (the three logs) and a large test message. Needs root (Postfix).
// Thread-safety: not thread-safe; the test thread owns it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "tests/support/milter_daemon.h"
#include "tests/support/php_fpm.h"
#include "tests/support/postfix.h"
#include "tests/support/recording.h"
#include "tests/support/temp_dir.h"

namespace testing_support {

class MailLab {
 public:
  struct Options {
    PhpFpm::Options php;
    // PHP source of the scripts; "" leaves validate off. A source starting with "/" is a file to
    // copy (an example script) instead.
    std::string validate;
    std::string save = kRecordingSaveScript;
    // More scripts: config key (e.g. "fcgi_script_filename_mail") -> PHP source or "/file". A
    // key that is not an fcgi_script_filename_* key is a file name: written, not configured.
    std::map<std::string, std::string> scripts;
    // Shapes the daemon's config last, given every script's path by its key (e.g. for routes).
    std::function<void(nlohmann::json& config, const std::map<std::string, std::string>& paths)>
        shape;
    nlohmann::json daemon = nlohmann::json::object();  // keys over BaseDaemonConfig
    std::vector<std::string> main_cf;                  // extra Postfix main.cf lines
  };

  // Starts php-fpm, the daemon and Postfix, in that order; a failure names the step and shows
  // the logs so far.
  [[nodiscard]] ::testing::AssertionResult Start(Options options);
  // Stops Postfix, the daemon and php-fpm (the destructors do it too).
  void Stop();

  int port() const { return postfix_->port(); }
  PhpFpm& php() { return *php_; }
  MilterDaemon& daemon() { return *daemon_; }
  Postfix& postfix() { return *postfix_; }
  TempDir& tmp() { return tmp_; }

  // What kRecordingSaveScript (or kRecordingRawSaveScript) stored, oldest first.
  std::vector<SavedMessage> Saved() const;
  // The tails of the daemon's, Postfix's and php-fpm's logs, labelled.
  std::string Diagnostics() const;

 private:
  TempDir tmp_;
  std::unique_ptr<PhpFpm> php_;
  std::unique_ptr<MilterDaemon> daemon_;
  std::unique_ptr<Postfix> postfix_;
};

// A message (From, To, Subject headers) padded with 76-character printable lines to at least
// `bytes`; the same seed gives the same message.
std::string LargeMessage(const std::string& subject, size_t bytes, uint32_t seed = 11);

}  // namespace testing_support
