// PhpFpm fixture: config per docs/platform-notes.md (foreground master, static pool as www-data,
// private socket). Thread-safety: see php_fpm.h.
#include "tests/support/php_fpm.h"

#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <sstream>
#include <utility>

#include "tests/support/net.h"

#ifndef FCGI_MILTER_SOURCE_DIR
#error "FCGI_MILTER_SOURCE_DIR must be defined (tests/CMakeLists.txt does)"
#endif

namespace testing_support {

std::string TestScriptPath(const std::string& name) {
  return std::string(FCGI_MILTER_SOURCE_DIR) + "/tests/scripts/" + name;
}

PhpFpm::PhpFpm() : PhpFpm(Options()) {}

PhpFpm::PhpFpm(Options options) : options_(std::move(options)) {
  scripts_dir_ = dir_.Mkdir("scripts", 0755);
  data_dir_ = dir_.Mkdir("data", 0777);
  socket_path_ = dir_.Path("php-fpm.sock");
  config_path_ = dir_.Path("php-fpm.conf");
  log_path_ = dir_.Path("php-fpm.log");
  php_error_log_path_ = dir_.Path("php-errors.log");
  if (options_.tcp) port_ = FreeTcpPort();
  if (options_.env.count("DUMP_DIR") == 0) options_.env["DUMP_DIR"] = data_dir_;
}

PhpFpm::~PhpFpm() {
  Stop();
}

std::string PhpFpm::AddScript(const std::string& name, const std::string& php_source) {
  return dir_.Write("scripts/" + name, php_source, 0644);
}

std::string PhpFpm::CopyScript(const std::string& source_path, const std::string& name) {
  std::error_code ec;
  if (!std::filesystem::is_regular_file(source_path, ec)) {
    ADD_FAILURE() << "PhpFpm::CopyScript: no such file " << source_path;
    return {};
  }
  std::string target = name.empty() ? std::filesystem::path(source_path).filename().string() : name;
  return AddScript(target, ReadFile(source_path));
}

std::string PhpFpm::CopyTestScript(const std::string& name) {
  return CopyScript(TestScriptPath(name), name);
}

std::string PhpFpm::ConfigText() const {
  std::ostringstream c;
  c << "[global]\n"
    << "pid = " << dir_.Path("php-fpm.pid") << "\n"
    << "error_log = " << log_path_ << "\n"
    << "daemonize = no\n"
    << "\n[test]\n";
  // Only root can switch users; a non-root developer run keeps its own uid throughout.
  bool root = geteuid() == 0;
  if (root) c << "user = www-data\ngroup = www-data\n";
  if (options_.tcp) {
    c << "listen = 127.0.0.1:" << port_ << "\n";
  } else {
    c << "listen = " << socket_path_ << "\n";
    if (root) c << "listen.owner = www-data\nlisten.group = www-data\n";
    c << "listen.mode = 0666\n";
  }
  c << "pm = static\n"
    << "pm.max_children = " << options_.max_children << "\n"
    << "pm.max_requests = " << options_.max_requests << "\n"
    << "catch_workers_output = yes\n"
    << "decorate_workers_output = no\n"
    << "request_terminate_timeout = " << options_.request_terminate_timeout_seconds << "\n"
    << "php_admin_value[error_log] = " << php_error_log_path_ << "\n"
    << "php_admin_flag[log_errors] = on\n"
    << "php_admin_value[post_max_size] = " << options_.post_max_size << "\n";
  for (const auto& [name, value] : options_.env) c << "env[" << name << "] = " << value << "\n";
  for (const auto& line : options_.extra_pool_lines) c << line << "\n";
  return c.str();
}

::testing::AssertionResult PhpFpm::Start() {
  if (access(options_.binary.c_str(), X_OK) != 0) {
    return ::testing::AssertionFailure()
           << "php-fpm not found at " << options_.binary
           << ": install it (apt-get install php8.2-fpm) to run this test";
  }
  if (process_.Running()) return ::testing::AssertionFailure() << "php-fpm already running";
  if (!WriteFile(config_path_, ConfigText())) {
    return ::testing::AssertionFailure() << "cannot write " << config_path_;
  }
  // Workers run as www-data and write this log themselves.
  if (access(php_error_log_path_.c_str(), F_OK) != 0) WriteFile(php_error_log_path_, "", 0666);
  unlink(socket_path_.c_str());
  Process::Options popts;
  popts.output_dir = dir_.path();
  popts.name = "php-fpm";
  auto started = process_.Start({options_.binary, "-F", "-y", config_path_}, popts);
  if (!started) return started;
  bool ready = WaitUntil(
      [&] {
        if (!process_.Running()) return true;
        return options_.tcp ? CanConnectTcp(port_) : CanConnectUnix(socket_path_);
      },
      std::chrono::seconds(10));
  if (!process_.Running()) {
    return ::testing::AssertionFailure()
           << "php-fpm exited with status " << process_.exit_status().value_or(-1)
           << " during start; config " << config_path_ << "\n"
           << error_log();
  }
  if (!ready) {
    process_.Stop();
    return ::testing::AssertionFailure()
           << "php-fpm did not accept connections on " << address() << " within 10 s\n"
           << error_log();
  }
  return ::testing::AssertionSuccess();
}

void PhpFpm::Stop() {
  process_.Stop(std::chrono::seconds(10));
}

::testing::AssertionResult PhpFpm::Restart() {
  Stop();
  return Start();
}

bool PhpFpm::Running() {
  return process_.Running();
}

std::string PhpFpm::error_log() const {
  return "--- php-fpm log (" + log_path_ + ") ---\n" + Tail(ReadFile(log_path_)) +
         "--- PHP error log (" + php_error_log_path_ + ") ---\n" +
         Tail(ReadFile(php_error_log_path_)) + "--- php-fpm stderr ---\n" +
         Tail(ReadFile(process_.stderr_path()));
}

std::vector<nlohmann::json> PhpFpm::ReadDumps() const {
  std::vector<std::string> files;
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator(data_dir_, ec)) {
    if (entry.path().extension() == ".json") files.push_back(entry.path().string());
  }
  std::sort(files.begin(), files.end());
  std::vector<nlohmann::json> dumps;
  for (const auto& file : files) {
    std::string text = ReadFile(file);
    nlohmann::json parsed = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
    dumps.push_back(parsed.is_discarded() ? nlohmann::json(text) : parsed);
  }
  return dumps;
}

::testing::AssertionResult PhpFpm::WaitForDumps(size_t count, std::chrono::milliseconds timeout) {
  size_t seen = 0;
  if (WaitUntil(
          [&] {
            seen = 0;
            std::error_code ec;
            for (const auto& entry : std::filesystem::directory_iterator(data_dir_, ec)) {
              if (entry.path().extension() == ".json") ++seen;
            }
            return seen >= count;
          },
          timeout)) {
    return ::testing::AssertionSuccess();
  }
  return ::testing::AssertionFailure()
         << "expected " << count << " dump files in " << data_dir_ << ", found " << seen << "\n"
         << error_log();
}

}  // namespace testing_support
