// SmtpSink; see smtp_sink.h.
#include "tests/support/smtp_sink.h"

#include <algorithm>
#include <filesystem>
#include <utility>

#include "tests/support/net.h"
#include "tests/support/temp_dir.h"

namespace testing_support {

namespace {

void MakeWorldWritable(const std::string& dir) {
  std::filesystem::create_directories(dir);
  std::filesystem::permissions(dir, std::filesystem::perms::all);
}

}  // namespace

SmtpSink::SmtpSink(std::string dir) : dir_(std::move(dir)) {
  MakeWorldWritable(dir_);
}

::testing::AssertionResult SmtpSink::Start() {
  port_ = FreeTcpPort();
  if (auto started = process_.Start({"/usr/sbin/smtp-sink", "-u", "nobody", "-d", dir_ + "/%M.",
                                     "127.0.0.1:" + std::to_string(port_), "50"});
      !started) {
    return started << "\n(starting smtp-sink)";
  }
  if (!WaitUntil([this] { return CanConnectTcp(port_); }, std::chrono::seconds(5))) {
    return ::testing::AssertionFailure() << "smtp-sink does not listen on port " << port_;
  }
  return ::testing::AssertionSuccess();
}

std::vector<std::string> SmtpSink::RelayMainCf() const {
  return {"default_transport = smtp", "relay_transport = smtp",
          "relayhost = [127.0.0.1]:" + std::to_string(port_), "smtp_tls_security_level = none"};
}

std::vector<std::string> SmtpSink::Files() const {
  std::vector<std::string> names;
  for (const auto& e : std::filesystem::directory_iterator(dir_)) names.push_back(e.path());
  std::sort(names.begin(), names.end());  // %M: smtp-sink names them by arrival
  std::vector<std::string> out;
  for (const std::string& n : names) out.push_back(ReadFile(n));
  return out;
}

void SmtpSink::Clear() {
  std::filesystem::remove_all(dir_);
  MakeWorldWritable(dir_);
}

}  // namespace testing_support
