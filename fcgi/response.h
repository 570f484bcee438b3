// A FastCGI responder's answer: CGI headers and body from STDOUT, STDERR kept apart, and the
// END_REQUEST status. ResponseCollector turns records into a Response; END_REQUEST is the only end.
// Thread-safety: value types; a collector belongs to one request on one thread.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "base/status.h"
#include "fcgi/protocol.h"

namespace fcgi {

using base::Status;

struct Response {
  int status = 200;  // from the CGI `Status:` header; 200 when absent
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;           // STDOUT after the CGI header block
  std::string stderr_output;  // STDERR, truncated at the collector's limit
  uint32_t app_status = 0;

  // First header with this name (case-insensitive), or empty.
  std::string Header(std::string_view name) const;
};

// Splits CGI output into header fields and body. Header lines end in LF or CRLF; an empty line
// ends them. Fails on output without a header block or a malformed `Status:`.
Status ParseCgiOutput(std::string_view output, Response* out);

class ResponseCollector {
 public:
  ResponseCollector(uint16_t request_id, size_t max_stdout, size_t max_stderr)
      : request_id_(request_id), max_stdout_(max_stdout), max_stderr_(max_stderr) {}

  // Takes one record; fails on a record that has no place in a response or past max_stdout.
  Status Consume(const protocol::RecordReader::Record& record);
  bool done() const { return done_; }
  // True once any byte of a response arrived (a retry is then no longer safe).
  bool started() const { return started_; }
  // After done(): parses STDOUT into *out (moves the collected data).
  Status Finish(Response* out);
  // The STDERR collected so far (moved out), marked when truncated: a failed request keeps its
  // script's warnings for the log.
  std::string TakeStderr();

 private:
  uint16_t request_id_;
  size_t max_stdout_;
  size_t max_stderr_;
  std::string stdout_;
  std::string stderr_;
  bool stderr_truncated_ = false;
  bool done_ = false;
  bool started_ = false;
  protocol::EndRequestBody end_;
};

}  // namespace fcgi
