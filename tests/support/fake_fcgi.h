// FakeFcgi: a FastCGI "server" on a unix socket that speaks broken protocol on purpose (wrong
// version, truncated records, a close in the middle of a record, garbage, no reply at all), for
// fault-injection tests of the daemon's FastCGI client. Each accepted connection gets the next
// fault of the cycle. Thread-safety: Start/Stop from the owning thread; the counters are atomic
// and may be read from any thread.
#pragma once

#include <array>
#include <atomic>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

namespace testing_support {

class FakeFcgi {
 public:
  enum class Fault {
    kWrongVersion,     // a well-formed reply, but every record has version 2
    kTruncatedRecord,  // a STDOUT header announcing 1000 bytes, 10 sent, then close
    kCloseMidHeader,   // 3 bytes of a record header, then close
    kGarbage,          // bytes that are no FastCGI at all ("HTTP/1.1 200 OK...")
    kNoEndRequest,     // "Status: 200\r\n\r\nSAVED" on STDOUT, then close without END_REQUEST
    kWrongRequestId,   // a whole reply, but for request id + 1
    kSilent,           // reads the request and never answers (the client's deadline must fire)
  };
  static constexpr int kFaultCount = 7;
  static const char* FaultName(Fault fault);

  explicit FakeFcgi(std::string socket_path);
  ~FakeFcgi();
  FakeFcgi(const FakeFcgi&) = delete;
  FakeFcgi& operator=(const FakeFcgi&) = delete;

  // Binds the socket (mode 0666) and starts accepting.
  [[nodiscard]] ::testing::AssertionResult Start();
  // Stops accepting, closes every connection (silent ones too), joins the threads.
  void Stop();

  const std::string& socket_path() const { return socket_path_; }
  int connections() const { return connections_.load(); }
  // Connections that got fault f.
  int served(Fault f) const { return served_[static_cast<int>(f)].load(); }

 private:
  void AcceptLoop();
  void Serve(int fd, Fault fault);

  std::string socket_path_;
  int listen_fd_ = -1;
  std::atomic<bool> stop_{false};
  std::atomic<int> connections_{0};
  std::array<std::atomic<int>, kFaultCount> served_{};
  std::thread acceptor_;
  std::mutex mu_;  // guards workers_
  std::vector<std::thread> workers_;
};

}  // namespace testing_support
