// FakeFcgi: see fake_fcgi.h. One thread accepts; each connection is served on its own thread,
// which polls stop_ so that Stop never waits on a silent peer.
#include "tests/support/fake_fcgi.h"

#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <chrono>
#include <cstring>

namespace testing_support {
namespace {

constexpr uint8_t kEndRequest = 3;
constexpr uint8_t kStdin = 5;
constexpr uint8_t kStdout = 6;

std::string Header(uint8_t version, uint8_t type, int id, size_t length) {
  std::string h(8, '\0');
  h[0] = static_cast<char>(version);
  h[1] = static_cast<char>(type);
  h[2] = static_cast<char>((id >> 8) & 0xff);
  h[3] = static_cast<char>(id & 0xff);
  h[4] = static_cast<char>((length >> 8) & 0xff);
  h[5] = static_cast<char>(length & 0xff);
  return h;
}

std::string Record(uint8_t version, uint8_t type, int id, const std::string& content) {
  return Header(version, type, id, content.size()) + content;
}

std::string WholeReply(uint8_t version, int id) {
  const std::string out = "Status: 200 OK\r\nContent-Type: text/plain\r\n\r\nSAVED\n";
  return Record(version, kStdout, id, out) + Record(version, kStdout, id, "") +
         Record(version, kEndRequest, id, std::string(8, '\0'));
}

// Reads records until the empty STDIN record ends the request, the peer closes, 5 s pass or stop
// is set. Returns the request id (1 if none was seen).
int ReadRequest(int fd, const std::atomic<bool>& stop) {
  std::string buf;
  int id = 1;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while (!stop && std::chrono::steady_clock::now() < deadline) {
    pollfd p{fd, POLLIN, 0};
    if (poll(&p, 1, 100) <= 0) continue;
    char chunk[16384];
    ssize_t n = read(fd, chunk, sizeof chunk);
    if (n <= 0) return id;
    buf.append(chunk, static_cast<size_t>(n));
    size_t at = 0;
    while (buf.size() - at >= 8) {
      const auto* h = reinterpret_cast<const unsigned char*>(buf.data() + at);
      const size_t len = (size_t{h[4]} << 8) | h[5];
      const size_t total = 8 + len + h[6];
      if (buf.size() - at < total) break;
      id = (h[2] << 8) | h[3];
      if (h[1] == kStdin && len == 0) return id;
      at += total;
    }
    buf.erase(0, at);
  }
  return id;
}

void WriteAll(int fd, const std::string& data) {
  size_t off = 0;
  while (off < data.size()) {
    ssize_t n = send(fd, data.data() + off, data.size() - off, MSG_NOSIGNAL);
    if (n <= 0) return;
    off += static_cast<size_t>(n);
  }
}

}  // namespace

const char* FakeFcgi::FaultName(Fault fault) {
  switch (fault) {
    case Fault::kWrongVersion: return "wrong-version";
    case Fault::kTruncatedRecord: return "truncated-record";
    case Fault::kCloseMidHeader: return "close-mid-header";
    case Fault::kGarbage: return "garbage";
    case Fault::kNoEndRequest: return "no-end-request";
    case Fault::kWrongRequestId: return "wrong-request-id";
    case Fault::kSilent: return "silent";
  }
  return "?";
}

FakeFcgi::FakeFcgi(std::string socket_path) : socket_path_(std::move(socket_path)) {}

FakeFcgi::~FakeFcgi() {
  Stop();
}

::testing::AssertionResult FakeFcgi::Start() {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (socket_path_.size() >= sizeof addr.sun_path) {
    return ::testing::AssertionFailure() << "socket path too long: " << socket_path_;
  }
  std::memcpy(addr.sun_path, socket_path_.c_str(), socket_path_.size() + 1);
  unlink(socket_path_.c_str());
  listen_fd_ = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (listen_fd_ < 0 || bind(listen_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
      listen(listen_fd_, 64) != 0) {
    return ::testing::AssertionFailure()
           << "fake fcgi: " << socket_path_ << ": " << std::strerror(errno);
  }
  chmod(socket_path_.c_str(), 0666);
  stop_ = false;
  acceptor_ = std::thread([this] { AcceptLoop(); });
  return ::testing::AssertionSuccess();
}

void FakeFcgi::Stop() {
  stop_ = true;
  if (acceptor_.joinable()) acceptor_.join();
  std::vector<std::thread> workers;
  {
    std::lock_guard<std::mutex> lock(mu_);
    workers.swap(workers_);
  }
  for (auto& t : workers) t.join();
  if (listen_fd_ >= 0) {
    close(listen_fd_);
    listen_fd_ = -1;
    unlink(socket_path_.c_str());
  }
}

void FakeFcgi::AcceptLoop() {
  while (!stop_) {
    pollfd p{listen_fd_, POLLIN, 0};
    if (poll(&p, 1, 100) <= 0) continue;
    int fd = accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) continue;
    const int n = connections_++;
    const auto fault = static_cast<Fault>(n % kFaultCount);
    served_[static_cast<int>(fault)]++;
    std::lock_guard<std::mutex> lock(mu_);
    workers_.emplace_back([this, fd, fault] { Serve(fd, fault); });
  }
}

void FakeFcgi::Serve(int fd, Fault fault) {
  const int id = ReadRequest(fd, stop_);
  switch (fault) {
    case Fault::kWrongVersion: WriteAll(fd, WholeReply(2, id)); break;
    case Fault::kTruncatedRecord: WriteAll(fd, Header(1, kStdout, id, 1000) + "Status: 20"); break;
    case Fault::kCloseMidHeader: WriteAll(fd, Header(1, kStdout, id, 20).substr(0, 3)); break;
    case Fault::kGarbage:
      WriteAll(fd, "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nSAVED\xff\xfe\x01");
      break;
    case Fault::kNoEndRequest:
      WriteAll(fd, Record(1, kStdout, id, "Status: 200\r\n\r\nSAVED\n"));
      break;
    case Fault::kWrongRequestId: WriteAll(fd, WholeReply(1, id + 1)); break;
    case Fault::kSilent:
      // Hold the connection until the client gives up (closes) or the test stops.
      while (!stop_) {
        pollfd p{fd, POLLIN, 0};
        if (poll(&p, 1, 100) > 0) {
          char c[4096];
          if (read(fd, c, sizeof c) <= 0) break;
        }
      }
      break;
  }
  close(fd);
}

}  // namespace testing_support
