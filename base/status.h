// Status: the result of a fallible call, in the leveldb habit: ok, or a kind and a readable
// message. [[nodiscard]]: a Status dropped on the floor is a failure nobody hears of; write
// (void) where ignoring one is really meant. Thread-safety: a value type; copies are independent.
#pragma once

#include <string>
#include <utility>

namespace base {

class [[nodiscard]] Status {
 public:
  enum class Code {
    kOk,
    kInvalidArgument,  // caller passed something malformed (bad address, bad record)
    kConnectFailed,    // backend refused, missing socket, permission denied
    kTimeout,          // a deadline passed
    kIoError,          // read/write failed, peer closed early
    kProtocolError,    // the peer spoke broken FastCGI or CGI
    kTooLarge,         // a configured size limit was exceeded
    kUnavailable,      // no backend can take the request now
  };

  Status() = default;
  static Status Ok() { return Status(); }
  static Status InvalidArgument(std::string m) {
    return Status(Code::kInvalidArgument, std::move(m));
  }
  static Status ConnectFailed(std::string m) { return Status(Code::kConnectFailed, std::move(m)); }
  static Status Timeout(std::string m) { return Status(Code::kTimeout, std::move(m)); }
  static Status IoError(std::string m) { return Status(Code::kIoError, std::move(m)); }
  static Status ProtocolError(std::string m) { return Status(Code::kProtocolError, std::move(m)); }
  static Status TooLarge(std::string m) { return Status(Code::kTooLarge, std::move(m)); }
  static Status Unavailable(std::string m) { return Status(Code::kUnavailable, std::move(m)); }
  // errno-based failure: "what: strerror(err)".
  static Status FromErrno(Code code, const std::string& what, int err);

  bool ok() const { return code_ == Code::kOk; }
  Code code() const { return code_; }
  const std::string& message() const { return message_; }
  // "timeout: reading reply from unix:/run/php.sock" style, for logs.
  std::string ToString() const;
  static const char* CodeName(Code code);

 private:
  Status(Code code, std::string message) : code_(code), message_(std::move(message)) {}
  Code code_ = Code::kOk;
  std::string message_;
};

}  // namespace base
