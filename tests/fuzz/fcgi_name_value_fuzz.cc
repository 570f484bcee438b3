// Fuzz target: the FastCGI name-value pair decoder (PARAMS / GET_VALUES_RESULT bodies). Whatever
// decodes must survive an encode/decode round trip unchanged, and the request head built from it
// must split back into the same pairs.
// Thread-safety: libFuzzer calls LLVMFuzzerTestOneInput from one thread.
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "fcgi/protocol.h"
#include "tests/fuzz/fuzz_check.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view in(reinterpret_cast<const char*>(data), size);
  fcgi::Params params;
  if (!fcgi::protocol::DecodeNameValues(in, &params).ok()) return 0;

  size_t total = 0;
  for (const auto& [name, value] : params) total += name.size() + value.size();
  FUZZ_CHECK(total <= size);

  std::string encoded;
  for (const auto& [name, value] : params) fcgi::protocol::AppendNameValue(&encoded, name, value);
  FUZZ_CHECK(encoded.size() <= size);  // canonical lengths are never longer than the input's
  fcgi::Params again;
  FUZZ_CHECK(fcgi::protocol::DecodeNameValues(encoded, &again).ok());
  FUZZ_CHECK(again == params);

  // The same pairs as a request head: BEGIN_REQUEST, one PARAMS record, the empty terminator.
  std::string head;
  if (!fcgi::protocol::EncodeRequestHead(7, params, true, &head).ok()) return 0;
  fcgi::protocol::RecordReader reader;
  reader.Feed(head.data(), head.size());
  fcgi::Params from_records;
  int records = 0;
  bool terminated = false;
  for (;;) {
    std::optional<fcgi::protocol::RecordReader::Record> record;
    FUZZ_CHECK(reader.Next(&record).ok());
    if (!record) break;
    ++records;
    FUZZ_CHECK(record->request_id == 7);
    if (record->type == fcgi::protocol::RecordType::kParams) {
      if (record->content.empty()) {
        terminated = true;
      } else {
        FUZZ_CHECK(fcgi::protocol::DecodeNameValues(record->content, &from_records).ok());
      }
    }
  }
  FUZZ_CHECK(reader.buffered() == 0);
  FUZZ_CHECK(terminated);
  FUZZ_CHECK(records == 3);  // BEGIN_REQUEST, PARAMS, empty PARAMS
  FUZZ_CHECK(from_records == params);
  return 0;
}
