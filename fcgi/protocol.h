// FastCGI 1.0 wire format: record headers, name-value pairs, request encoding and an incremental
// record reader. Pure functions and value types; no I/O.
// Thread-safety: free functions are reentrant; a RecordReader belongs to one thread.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "base/status.h"

namespace fcgi {

using base::Status;

using Params = std::vector<std::pair<std::string, std::string>>;

namespace protocol {

constexpr uint8_t kVersion1 = 1;
constexpr size_t kHeaderSize = 8;
constexpr size_t kMaxContentLength = 65535;

enum class RecordType : uint8_t {
  kBeginRequest = 1,
  kAbortRequest = 2,
  kEndRequest = 3,
  kParams = 4,
  kStdin = 5,
  kStdout = 6,
  kStderr = 7,
  kData = 8,
  kGetValues = 9,
  kGetValuesResult = 10,
  kUnknownType = 11,
};

enum class Role : uint16_t { kResponder = 1, kAuthorizer = 2, kFilter = 3 };
constexpr uint8_t kFlagKeepConn = 1;

enum class ProtocolStatus : uint8_t {
  kRequestComplete = 0,
  kCantMpxConn = 1,
  kOverloaded = 2,
  kUnknownRole = 3,
};

struct RecordHeader {
  uint8_t version = kVersion1;
  RecordType type = RecordType::kStdin;
  uint16_t request_id = 1;
  uint16_t content_length = 0;
  uint8_t padding_length = 0;
};

void EncodeHeader(const RecordHeader& header, uint8_t out[kHeaderSize]);
RecordHeader DecodeHeader(const uint8_t in[kHeaderSize]);

// Appends one record: header, content (at most kMaxContentLength bytes) and padding to a
// multiple of 8 bytes.
void AppendRecord(std::string* out, RecordType type, uint16_t request_id, std::string_view content);

void AppendBeginRequest(std::string* out, uint16_t request_id, Role role, bool keep_conn);

// Appends one name-value pair, with 1-byte lengths below 128 and 4-byte lengths above.
void AppendNameValue(std::string* out, std::string_view name, std::string_view value);

// Decodes a whole PARAMS (or GET_VALUES) stream; fails on a truncated pair.
Status DecodeNameValues(std::string_view in, Params* out);

// BEGIN_REQUEST, all params in ONE record (php-fpm wants it so; fails with kInvalidArgument past
// 65535 bytes), and the empty PARAMS terminator.
Status EncodeRequestHead(uint16_t request_id, const Params& params, bool keep_conn,
                         std::string* out);

struct EndRequestBody {
  uint32_t app_status = 0;
  ProtocolStatus protocol_status = ProtocolStatus::kRequestComplete;
};
Status DecodeEndRequest(std::string_view content, EndRequestBody* out);

// Splits a byte stream into records. Feed bytes as they arrive, then call Next() until it
// yields nothing.
class RecordReader {
 public:
  struct Record {
    RecordType type;
    uint16_t request_id;
    std::string_view content;  // valid until the next Feed() or Next()
  };

  void Feed(const char* data, size_t n);
  // Sets *out to the next complete record, or to nullopt when more bytes are needed.
  // Fails on a version other than 1.
  Status Next(std::optional<Record>* out);
  // Bytes received but not yet part of a complete record.
  size_t buffered() const { return buffer_.size() - consumed_; }

 private:
  std::string buffer_;
  size_t consumed_ = 0;
};

}  // namespace protocol
}  // namespace fcgi
