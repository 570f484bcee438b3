// Postfix: a throw-away Postfix instance (own config, queue and data directories in a temp dir,
// SMTP on 127.0.0.1:<port>, everything delivered to `discard`) for end-to-end tests. Needs root.
// Thread-safety: not thread-safe; the test thread owns it.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "tests/support/process.h"
#include "tests/support/temp_dir.h"

namespace testing_support {

class Postfix {
 public:
  struct Options {
    int port = 0;         // SMTP port on 127.0.0.1; 0: FreeTcpPort()
    std::string milters;  // smtpd_milters, Postfix syntax: "inet:127.0.0.1:PORT", "unix:/path"
    std::vector<std::string> extra_main_cf;  // "name = value" lines appended (a later line wins)
  };

  Postfix();
  explicit Postfix(Options options);
  // Stops the instance (postfix stop, then abort / SIGKILL if it lingers).
  ~Postfix();
  Postfix(const Postfix&) = delete;
  Postfix& operator=(const Postfix&) = delete;

  // Writes main.cf/master.cf, runs `postfix check` and `postfix start`, then waits (10 s) for the
  // 220 banner. A failure carries the command output and the mail log.
  [[nodiscard]] ::testing::AssertionResult Start();
  // `postfix stop`, then waits until the master and every process of its session exited (so the
  // port is free again); escalates to `postfix abort` and SIGKILL.
  [[nodiscard]] ::testing::AssertionResult Stop();
  [[nodiscard]] ::testing::AssertionResult Restart();
  bool running() const { return master_pid_ > 0; }

  int port() const { return options_.port; }
  const std::string& dir() const { return dir_.path(); }
  const std::string& config_dir() const { return config_dir_; }
  const std::string& queue_dir() const { return queue_dir_; }
  const Options& options() const { return options_; }
  pid_t master_pid() const { return master_pid_; }

  // The instance's mail log (maillog_file).
  std::string maillog() const;
  // Waits until maillog() contains needle.
  [[nodiscard]] ::testing::AssertionResult WaitForLog(const std::string& needle,
                                                      std::chrono::milliseconds timeout);
  // No message file in maildrop, incoming, active, deferred or hold.
  bool QueueIsEmpty() const;
  // On timeout the message has `postqueue -p` and the log tail.
  [[nodiscard]] ::testing::AssertionResult WaitForQueueEmpty(
      std::chrono::milliseconds timeout = std::chrono::seconds(10));
  // `postqueue -c DIR -p` output.
  std::string QueueListing() const;

 private:
  std::string MainCf() const;
  std::string MasterCf(std::string* error) const;
  // Runs `postfix -c DIR <args>` under `script -qec` so fatal errors reach its output.
  ::testing::AssertionResult PostfixCommand(const std::string& args) const;
  bool WaitForSessionExit(pid_t sid, std::chrono::milliseconds timeout) const;

  Options options_;
  TempDir dir_;
  std::string config_dir_;
  std::string queue_dir_;
  std::string data_dir_;
  std::string maillog_path_;
  pid_t master_pid_ = -1;
  // Runs `postfix stop` if this test binary dies without running destructors (see Start).
  Process guard_;
};

}  // namespace testing_support
