#include "fcgi/response.h"

#include <strings.h>

#include <charconv>

namespace fcgi {
namespace {

std::string_view Trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r'))
    s.remove_suffix(1);
  return s;
}

bool EqualsIgnoreCase(std::string_view a, std::string_view b) {
  return a.size() == b.size() && strncasecmp(a.data(), b.data(), a.size()) == 0;
}

}  // namespace

std::string Response::Header(std::string_view name) const {
  for (const auto& [k, v] : headers) {
    if (EqualsIgnoreCase(k, name)) return v;
  }
  return {};
}

Status ParseCgiOutput(std::string_view output, Response* out) {
  if (output.empty()) return Status::ProtocolError("empty reply (no CGI headers, no body)");
  size_t pos = 0;
  for (;;) {
    const size_t eol = output.find('\n', pos);
    if (eol == std::string_view::npos) {
      return Status::ProtocolError("reply has no end of CGI headers (no empty line)");
    }
    std::string_view line = output.substr(pos, eol - pos);
    pos = eol + 1;
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line.empty()) break;
    const size_t colon = line.find(':');
    if (colon == std::string_view::npos || colon == 0) {
      return Status::ProtocolError("malformed CGI header line: " + std::string(line.substr(0, 80)));
    }
    std::string_view name = line.substr(0, colon);
    std::string_view value = Trim(line.substr(colon + 1));
    if (EqualsIgnoreCase(name, "Status")) {
      int code = 0;
      auto [p, ec] = std::from_chars(value.data(), value.data() + value.size(), code);
      if (ec != std::errc() || code < 100 || code > 999) {
        return Status::ProtocolError("malformed Status header: " +
                                     std::string(value.substr(0, 80)));
      }
      (void)p;
      out->status = code;
    }
    out->headers.emplace_back(std::string(name), std::string(value));
  }
  out->body.assign(output.substr(pos));
  return Status::Ok();
}

Status ResponseCollector::Consume(const protocol::RecordReader::Record& record) {
  using protocol::RecordType;
  if (done_) return Status::ProtocolError("record after END_REQUEST");
  started_ = true;
  if (record.request_id != request_id_) {
    return Status::ProtocolError("record for request id " + std::to_string(record.request_id) +
                                 ", expected " + std::to_string(request_id_));
  }
  switch (record.type) {
    case RecordType::kStdout:
      if (stdout_.size() + record.content.size() > max_stdout_) {
        return Status::TooLarge("reply is larger than " + std::to_string(max_stdout_) + " bytes");
      }
      stdout_.append(record.content);
      return Status::Ok();
    case RecordType::kStderr: {
      const size_t room = max_stderr_ > stderr_.size() ? max_stderr_ - stderr_.size() : 0;
      if (record.content.size() > room) stderr_truncated_ = true;
      stderr_.append(record.content.substr(0, room));
      return Status::Ok();
    }
    case RecordType::kEndRequest: {
      Status s = protocol::DecodeEndRequest(record.content, &end_);
      if (!s.ok()) return s;
      switch (end_.protocol_status) {
        case protocol::ProtocolStatus::kRequestComplete: break;
        case protocol::ProtocolStatus::kOverloaded:
          return Status::Unavailable("backend is overloaded (FCGI_OVERLOADED)");
        case protocol::ProtocolStatus::kCantMpxConn:
          return Status::ProtocolError("backend refused the request (FCGI_CANT_MPX_CONN)");
        case protocol::ProtocolStatus::kUnknownRole:
          return Status::ProtocolError("backend does not play the responder role");
        default:
          return Status::ProtocolError("END_REQUEST with unknown protocol status " +
                                       std::to_string(static_cast<int>(end_.protocol_status)));
      }
      done_ = true;
      return Status::Ok();
    }
    case RecordType::kUnknownType:
      return Status::ProtocolError("backend did not understand a record we sent (UNKNOWN_TYPE)");
    default:
      return Status::ProtocolError("unexpected record type " +
                                   std::to_string(static_cast<int>(record.type)) +
                                   " in a response");
  }
}

Status ResponseCollector::Finish(Response* out) {
  if (!done_) return Status::ProtocolError("reply ended before END_REQUEST");
  *out = Response();
  out->app_status = end_.app_status;
  out->stderr_output = TakeStderr();
  return ParseCgiOutput(stdout_, out);
}

std::string ResponseCollector::TakeStderr() {
  std::string out = std::move(stderr_);
  stderr_.clear();
  if (stderr_truncated_) out += " [truncated]";
  stderr_truncated_ = false;
  return out;
}

}  // namespace fcgi
