#include "base/status.h"

#include <cstring>

namespace base {

Status Status::FromErrno(Code code, const std::string& what, int err) {
  return Status(code, what + ": " + std::strerror(err));
}

const char* Status::CodeName(Code code) {
  switch (code) {
    case Code::kOk: return "ok";
    case Code::kInvalidArgument: return "invalid argument";
    case Code::kConnectFailed: return "connect failed";
    case Code::kTimeout: return "timeout";
    case Code::kIoError: return "I/O error";
    case Code::kProtocolError: return "protocol error";
    case Code::kTooLarge: return "too large";
    case Code::kUnavailable: return "unavailable";
  }
  return "unknown";
}

std::string Status::ToString() const {
  if (ok()) return "ok";
  return std::string(CodeName(code_)) + ": " + message_;
}

}  // namespace base
