// SmtpClient: poll-based blocking I/O with a deadline per call, MSG_NOSIGNAL instead of touching
// the process's SIGPIPE disposition. Thread-safety: see smtp_client.h.
#include "tests/support/smtp_client.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cctype>
#include <cerrno>
#include <cstring>
#include <ctime>

namespace testing_support {
namespace {

using Clock = std::chrono::steady_clock;

int MillisLeft(Clock::time_point deadline) {
  auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
  return left.count() < 0 ? 0 : static_cast<int>(left.count());
}

SmtpClient::Reply Failure(const std::string& why) {
  return SmtpClient::Reply{0, why};
}

std::string Bracket(const std::string& address) {
  if (!address.empty() && address[0] == '<') return address;
  return "<" + address + ">";
}

}  // namespace

SmtpClient::SmtpClient(std::chrono::milliseconds timeout) : timeout_(timeout) {}

SmtpClient::~SmtpClient() {
  Close();
}

void SmtpClient::Close() {
  if (fd_ >= 0) close(fd_);
  fd_ = -1;
  buffer_.clear();
}

SmtpClient::Reply SmtpClient::Connect(int port, const std::string& host) {
  Close();
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  if (inet_pton(AF_INET, host.c_str(), &addr.sin_addr) != 1) {
    return Failure("bad IPv4 address " + host);
  }
  fd_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd_ < 0) return Failure(std::string("socket: ") + std::strerror(errno));
  std::string where = host + ":" + std::to_string(port);
  if (connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    if (errno != EINPROGRESS) {
      std::string why = "connect " + where + ": " + std::strerror(errno);
      Close();
      return Failure(why);
    }
    pollfd pfd{fd_, POLLOUT, 0};
    int ready = poll(&pfd, 1, static_cast<int>(timeout_.count()));
    int err = 0;
    socklen_t len = sizeof err;
    if (ready <= 0) {
      Close();
      return Failure("connect " + where + ": timed out");
    }
    getsockopt(fd_, SOL_SOCKET, SO_ERROR, &err, &len);
    if (err != 0) {
      Close();
      return Failure("connect " + where + ": " + std::strerror(err));
    }
  }
  return ReadReply();
}

bool SmtpClient::SendAll(const std::string& data, std::string* error) {
  if (fd_ < 0) {
    *error = "not connected";
    return false;
  }
  auto deadline = Clock::now() + timeout_;
  size_t done = 0;
  while (done < data.size()) {
    ssize_t n = send(fd_, data.data() + done, data.size() - done, MSG_NOSIGNAL);
    if (n > 0) {
      done += static_cast<size_t>(n);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      pollfd pfd{fd_, POLLOUT, 0};
      if (poll(&pfd, 1, MillisLeft(deadline)) <= 0) {
        *error = "send timed out after " + std::to_string(done) + " of " +
                 std::to_string(data.size()) + " bytes";
        return false;
      }
      continue;
    }
    *error = std::string("send: ") + std::strerror(errno);
    return false;
  }
  return true;
}

SmtpClient::Reply SmtpClient::ReadReply() {
  if (fd_ < 0) return Failure("not connected");
  auto deadline = Clock::now() + timeout_;
  Reply reply;
  while (true) {
    size_t eol = buffer_.find('\n');
    if (eol != std::string::npos) {
      std::string line = buffer_.substr(0, eol);
      buffer_.erase(0, eol + 1);
      if (!line.empty() && line.back() == '\r') line.pop_back();
      if (!reply.text.empty()) reply.text += "\n";
      reply.text += line;
      bool well_formed = line.size() >= 3 && std::isdigit(static_cast<unsigned char>(line[0])) &&
                         std::isdigit(static_cast<unsigned char>(line[1])) &&
                         std::isdigit(static_cast<unsigned char>(line[2]));
      if (!well_formed) {
        reply.code = 0;
        reply.text = "malformed reply line: " + reply.text;
        return reply;
      }
      // "250-" continues, "250 " or a bare "250" ends the reply.
      if (line.size() == 3 || line[3] != '-') {
        reply.code = std::stoi(line.substr(0, 3));
        return reply;
      }
      continue;
    }
    pollfd pfd{fd_, POLLIN, 0};
    int ready = poll(&pfd, 1, MillisLeft(deadline));
    if (ready < 0 && errno == EINTR) continue;
    if (ready <= 0) {
      return Failure("timed out after " + std::to_string(timeout_.count()) +
                     " ms waiting for a reply; got so far: " + reply.text + buffer_);
    }
    char buf[4096];
    ssize_t n = recv(fd_, buf, sizeof buf, 0);
    if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
    if (n <= 0) {
      std::string why = n == 0 ? "connection closed by server" : std::strerror(errno);
      std::string partial = reply.text + buffer_;
      Close();
      return Failure(why + (partial.empty() ? "" : "; partial reply: " + partial));
    }
    buffer_.append(buf, static_cast<size_t>(n));
  }
}

SmtpClient::Reply SmtpClient::Command(const std::string& line) {
  std::string error;
  if (!SendAll(line + "\r\n", &error)) return Failure(error);
  return ReadReply();
}

std::string SmtpClient::EncodeData(const std::string& message) {
  std::string out;
  out.reserve(message.size() + message.size() / 50 + 8);
  bool line_start = true;
  for (size_t i = 0; i < message.size(); ++i) {
    char c = message[i];
    if (line_start && c == '.') out += '.';
    if (c == '\n' && (i == 0 || message[i - 1] != '\r')) out += '\r';
    out += c;
    line_start = c == '\n';
  }
  if (!out.empty() && !line_start) out += "\r\n";
  out += ".\r\n";
  return out;
}

SmtpClient::Reply SmtpClient::SendData(const std::string& message) {
  Reply go_ahead = Command("DATA");
  if (go_ahead.code != 354) return go_ahead;
  std::string error;
  if (!SendAll(EncodeData(message), &error)) return Failure(error);
  return ReadReply();
}

SmtpClient::Reply SmtpClient::Quit() {
  Reply reply = Command("QUIT");
  Close();
  return reply;
}

std::ostream& operator<<(std::ostream& out, const SmtpClient::Reply& reply) {
  return out << "[" << reply.code << "] " << reply.text;
}

std::ostream& operator<<(std::ostream& out, const MailResult& result) {
  out << "banner " << result.banner << "\nEHLO " << result.ehlo << "\nMAIL " << result.mail_from;
  for (const auto& rcpt : result.rcpts) out << "\nRCPT " << rcpt;
  return out << "\nDATA " << result.data;
}

MailResult SendMail(int port, const std::string& from, const std::vector<std::string>& rcpts,
                    const std::string& message, const std::string& helo,
                    std::chrono::milliseconds timeout) {
  MailResult result;
  SmtpClient client(timeout);
  result.data = Failure("DATA not sent");
  result.banner = client.Connect(port);
  if (result.banner.code != 220) return result;
  result.ehlo = client.Command("EHLO " + helo);
  if (result.ehlo.code != 250) return result;
  result.mail_from = client.Command("MAIL FROM:" + Bracket(from));
  if (result.mail_from.code != 250) {
    client.Quit();
    return result;
  }
  bool any_accepted = false;
  for (const auto& rcpt : rcpts) {
    result.rcpts.push_back(client.Command("RCPT TO:" + Bracket(rcpt)));
    if (result.rcpts.back().code == 250 || result.rcpts.back().code == 251) any_accepted = true;
    if (!client.connected()) return result;
  }
  if (any_accepted) {
    result.data = client.SendData(message);
  } else {
    result.data = Failure("DATA skipped: no recipient accepted");
  }
  if (client.connected()) client.Quit();
  return result;
}

std::string MakeMessage(const std::string& from, const std::string& to, const std::string& subject,
                        const std::string& body) {
  static std::atomic<unsigned> counter{0};
  char date[64];
  std::time_t now = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&now, &tm);
  std::strftime(date, sizeof date, "%a, %d %b %Y %H:%M:%S +0000", &tm);
  return "From: " + from + "\nTo: " + to + "\nSubject: " + subject + "\nDate: " + date +
         "\nMessage-ID: <test-" + std::to_string(getpid()) + "-" + std::to_string(++counter) +
         "@client.example.test>\n\n" + body;
}

}  // namespace testing_support
