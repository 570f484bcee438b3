// MilterDaemon fixture: config file in a private temp dir, readiness = the milter socket accepts.
// Thread-safety: see milter_daemon.h.
#include "tests/support/milter_daemon.h"

#include <unistd.h>

#include <cstdlib>
#include <cstring>

#include "tests/support/net.h"

#ifndef FCGI_MILTER_BINARY
#error "FCGI_MILTER_BINARY must be defined (tests/CMakeLists.txt does)"
#endif

namespace testing_support {
namespace {

struct SocketSpec {
  bool unix_socket = false;
  std::string path;  // unix
  std::string host;  // inet
  int port = 0;
};

std::optional<SocketSpec> ParseSocketSpec(const std::string& spec) {
  SocketSpec parsed;
  for (const char* prefix : {"unix:", "local:"}) {
    if (spec.rfind(prefix, 0) == 0) {
      parsed.unix_socket = true;
      parsed.path = spec.substr(std::strlen(prefix));
      if (parsed.path.empty()) return std::nullopt;
      return parsed;
    }
  }
  if (spec.rfind("inet:", 0) != 0) return std::nullopt;
  std::string rest = spec.substr(5);
  size_t at = rest.find('@');
  std::string port = rest.substr(0, at);
  parsed.host = at == std::string::npos ? "127.0.0.1" : rest.substr(at + 1);
  if (parsed.host.empty() || parsed.host == "0.0.0.0" || parsed.host == "localhost") {
    parsed.host = "127.0.0.1";
  }
  if (port.empty() || port.find_first_not_of("0123456789") != std::string::npos)
    return std::nullopt;
  parsed.port = std::stoi(port);
  return parsed;
}

}  // namespace

nlohmann::json BaseDaemonConfig(const PhpFpm& php, const std::string& validate,
                                const std::string& save, const std::string& spool_dir) {
  return {{"fcgi_connection_type", php.connection_type()},
          {"fcgi_connection_address", php.address()},
          {"fcgi_script_filename_validate", validate},
          {"fcgi_script_filename_save", save},
          {"spool_directory", spool_dir},
          {"validate_timeout", 5},
          {"save_timeout", 10},
          {"log_level", "debug"}};
}

std::string MilterBinary() {
  // FCGI_MILTER_TEST_BINARY runs the suites against another build (an installed package, or an
  // older commit to show that a new test fails there).
  if (const char* other = std::getenv("FCGI_MILTER_TEST_BINARY"); other != nullptr && *other) {
    return other;
  }
  return FCGI_MILTER_BINARY;
}

std::string PostfixMilterSpec(const std::string& milter_socket) {
  auto spec = ParseSocketSpec(milter_socket);
  if (!spec) return {};
  if (spec->unix_socket) return "unix:" + spec->path;
  return "inet:" + spec->host + ":" + std::to_string(spec->port);
}

MilterDaemon::MilterDaemon(nlohmann::json config) : config_(std::move(config)) {
  if (!config_.is_object()) config_ = nlohmann::json::object();
  if (!config_.contains("milter_socket")) {
    config_["milter_socket"] = "inet:" + std::to_string(FreeTcpPort()) + "@127.0.0.1";
  }
  config_path_ = dir_.Path("fcgi-milter.json");
}

MilterDaemon::~MilterDaemon() {
  Stop();
}

bool MilterDaemon::WriteConfig(const nlohmann::json& config) {
  config_ = config;
  return WriteFile(config_path_, config_.dump(2) + "\n", 0644);
}

std::string MilterDaemon::milter_socket() const {
  const auto& value = config_["milter_socket"];
  return value.is_string() ? value.get<std::string>() : std::string();
}

bool MilterDaemon::SocketAcceptsConnections() const {
  auto spec = ParseSocketSpec(milter_socket());
  if (!spec) return false;
  return spec->unix_socket ? CanConnectUnix(spec->path) : CanConnectTcp(spec->port, spec->host);
}

::testing::AssertionResult MilterDaemon::Start(const std::vector<std::string>& extra_args,
                                               std::chrono::milliseconds timeout) {
  std::string binary = MilterBinary();
  if (access(binary.c_str(), X_OK) != 0) {
    return ::testing::AssertionFailure() << "fcgi-milter binary not built: " << binary;
  }
  if (!ParseSocketSpec(milter_socket())) {
    return ::testing::AssertionFailure()
           << "MilterDaemon cannot parse milter_socket '" << milter_socket() << "'";
  }
  if (!WriteConfig(config_)) {
    return ::testing::AssertionFailure() << "cannot write " << config_path_;
  }
  std::vector<std::string> argv = {binary, "-c", config_path_};
  argv.insert(argv.end(), extra_args.begin(), extra_args.end());
  Process::Options options;
  options.output_dir = dir_.path();
  options.name = "fcgi-milter";
  auto started = process_.Start(argv, options);
  if (!started) return started;
  bool ready =
      WaitUntil([&] { return !process_.Running() || SocketAcceptsConnections(); }, timeout);
  if (!process_.Running()) {
    return ::testing::AssertionFailure()
           << "fcgi-milter exited with status " << process_.exit_status().value_or(-1)
           << " during start (config " << config_path_ << ": " << config_.dump() << ")\n"
           << log();
  }
  if (!ready) {
    process_.Stop();
    return ::testing::AssertionFailure()
           << "fcgi-milter did not accept connections on " << milter_socket() << " within "
           << timeout.count() << " ms\n"
           << log();
  }
  return ::testing::AssertionSuccess();
}

std::optional<int> MilterDaemon::Stop(std::chrono::milliseconds timeout) {
  return process_.Stop(timeout);
}

std::string MilterDaemon::log() const {
  std::string text = "--- fcgi-milter stderr ---\n" + Tail(ReadFile(process_.stderr_path()), 16000);
  std::string out = ReadFile(process_.stdout_path());
  if (!out.empty()) text += "--- fcgi-milter stdout ---\n" + Tail(out);
  return text;
}

CommandResult MilterDaemon::Run(const std::vector<std::string>& args,
                                std::chrono::milliseconds timeout) const {
  std::vector<std::string> argv = {MilterBinary()};
  argv.insert(argv.end(), args.begin(), args.end());
  return RunCommand(argv, timeout);
}

}  // namespace testing_support
