// PhpFpm: a private php-fpm master (one static pool running as www-data) in its own temp dir, for
// integration and end-to-end tests that need a real FastCGI responder.
// Thread-safety: not thread-safe; the test thread owns it (requests to it may come from any
// thread).
#pragma once

#include <chrono>
#include <map>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "tests/support/process.h"
#include "tests/support/temp_dir.h"

namespace testing_support {

// Absolute path of a script shipped in tests/scripts/ of the source tree (not readable by www-data
// when the checkout lives under /root: copy it with PhpFpm::CopyScript before use).
std::string TestScriptPath(const std::string& name);

class PhpFpm {
 public:
  static constexpr const char* kDefaultBinary = "/usr/sbin/php-fpm8.2";

  struct Options {
    int max_children = 4;  // pm.max_children (pm = static)
    bool tcp = false;      // listen on 127.0.0.1:<free port> instead of a unix socket
    std::map<std::string, std::string> env;  // env[NAME] = value in the pool (clear_env stays yes)
    std::string post_max_size = "8M";        // php_admin_value[post_max_size]
    int request_terminate_timeout_seconds = 60;  // 0: unlimited
    int max_requests = 0;  // pm.max_requests; 0: unlimited (kept connections then live on)
    std::vector<std::string> extra_pool_lines;  // appended verbatim to the pool section
    std::string binary = kDefaultBinary;
  };

  // Creates the temp dir (scripts/, data/) so scripts can be added before Start.
  PhpFpm();
  explicit PhpFpm(Options options);
  ~PhpFpm();
  PhpFpm(const PhpFpm&) = delete;
  PhpFpm& operator=(const PhpFpm&) = delete;

  // Writes <tmp>/scripts/<name> (mode 0644) and returns its absolute path.
  std::string AddScript(const std::string& name, const std::string& php_source);
  // Copies a file into <tmp>/scripts/ (name defaults to its basename); returns the absolute path,
  // or an empty string (and a non-fatal gtest failure) if the source cannot be read.
  std::string CopyScript(const std::string& source_path, const std::string& name = "");
  // CopyScript(TestScriptPath(name)).
  std::string CopyTestScript(const std::string& name);

  // Writes the config and starts php-fpm, then waits (up to 10 s) until its socket accepts
  // connections. On failure the message carries php-fpm's logs.
  [[nodiscard]] ::testing::AssertionResult Start();
  // SIGTERM to the master (the workers go with it); waits for it to exit.
  void Stop();
  [[nodiscard]] ::testing::AssertionResult Restart();
  bool Running();

  // "unix" or "tcp": the value for the daemon's fcgi_connection_type.
  std::string connection_type() const { return options_.tcp ? "tcp" : "unix"; }
  // socket_path() or tcp_address(), whichever is active: the daemon's fcgi_connection_address.
  std::string address() const { return options_.tcp ? tcp_address() : socket_path(); }
  const std::string& socket_path() const { return socket_path_; }
  std::string tcp_address() const { return "127.0.0.1:" + std::to_string(port_); }
  int tcp_port() const { return port_; }

  const std::string& dir() const { return dir_.path(); }
  const std::string& scripts_dir() const { return scripts_dir_; }
  // A directory the pool user can write to (mode 0777); the pool's env DUMP_DIR points here
  // unless Options::env sets DUMP_DIR.
  const std::string& data_dir() const { return data_dir_; }
  // php-fpm's own log, the PHP error log and the master's stderr, labelled.
  std::string error_log() const;
  const std::string& config_path() const { return config_path_; }
  const Options& options() const { return options_; }

  // Contents of the *.json files in data_dir(), oldest first by name (dump.php names them
  // <hrtime>-<random>.json). Files that do not parse are returned as a JSON string.
  std::vector<nlohmann::json> ReadDumps() const;
  // Waits until data_dir() holds at least count *.json files.
  [[nodiscard]] ::testing::AssertionResult WaitForDumps(size_t count,
                                                        std::chrono::milliseconds timeout);

 private:
  std::string ConfigText() const;

  Options options_;
  TempDir dir_;
  std::string scripts_dir_;
  std::string data_dir_;
  std::string socket_path_;
  std::string config_path_;
  std::string log_path_;
  std::string php_error_log_path_;
  int port_ = 0;
  Process process_;
};

}  // namespace testing_support
