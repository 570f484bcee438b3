// MilterDaemon: the built fcgi-milter binary run in the foreground (`fcgi-milter -c FILE`) with a
// config the test supplies as JSON, for end-to-end tests. Thread-safety: not thread-safe; the test
// thread owns it.
#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "tests/support/php_fpm.h"
#include "tests/support/process.h"
#include "tests/support/temp_dir.h"

namespace testing_support {

// Path of the daemon built with the tests (FCGI_MILTER_BINARY).
std::string MilterBinary();

// The Postfix smtpd_milters form of a libmilter socket spec: "inet:PORT@HOST" -> "inet:HOST:PORT",
// "unix:/p" and "local:/p" -> "unix:/p"; "" if the spec is not understood.
std::string PostfixMilterSpec(const std::string& milter_socket);

// The config every end-to-end test starts from: the php-fpm backend, the scripts (validate
// may be ""), a private spool directory, deadlines short enough for tests, debug logging.
nlohmann::json BaseDaemonConfig(const PhpFpm& php, const std::string& validate,
                                const std::string& save, const std::string& spool_dir);

class MilterDaemon {
 public:
  // If config has no "milter_socket", "inet:<FreeTcpPort()>@127.0.0.1" is added.
  explicit MilterDaemon(nlohmann::json config);
  ~MilterDaemon();
  MilterDaemon(const MilterDaemon&) = delete;
  MilterDaemon& operator=(const MilterDaemon&) = delete;

  // Writes the config, starts `fcgi-milter -c FILE` plus extra_args, and waits until the milter
  // socket accepts connections. Fails with the daemon's log if it exits or never listens.
  [[nodiscard]] ::testing::AssertionResult Start(
      const std::vector<std::string>& extra_args = {},
      std::chrono::milliseconds timeout = std::chrono::seconds(10));
  // SIGTERM, waits; returns the exit status (nullopt if it was not running).
  std::optional<int> Stop(std::chrono::milliseconds timeout = std::chrono::seconds(10));
  bool Running() { return process_.Running(); }
  bool Signal(int sig) { return process_.Signal(sig); }
  // Rewrites the config file (e.g. before a reload signal); the next Start uses it too.
  bool WriteConfig(const nlohmann::json& config);

  const nlohmann::json& config() const { return config_; }
  const std::string& config_path() const { return config_path_; }
  const std::string& dir() const { return dir_.path(); }
  // The milter_socket value, and the same in Postfix syntax for Postfix::Options::milters.
  std::string milter_socket() const;
  std::string postfix_milters() const { return PostfixMilterSpec(milter_socket()); }
  // stderr (the daemon logs there), and stdout if it wrote any.
  std::string log() const;
  Process& process() { return process_; }

  // Runs the binary with args (e.g. {"-t", "-c", config_path()}) to completion.
  CommandResult Run(const std::vector<std::string>& args,
                    std::chrono::milliseconds timeout = std::chrono::seconds(30)) const;

 private:
  bool SocketAcceptsConnections() const;

  nlohmann::json config_;
  TempDir dir_;
  std::string config_path_;
  Process process_;
};

}  // namespace testing_support
