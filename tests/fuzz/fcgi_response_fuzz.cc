// Fuzz target: a FastCGI server's byte stream, cut into arbitrary reads, through RecordReader,
// ResponseCollector and the CGI parser: the path every reply from php-fpm takes.
// Thread-safety: libFuzzer calls LLVMFuzzerTestOneInput from one thread.
#include <fuzzer/FuzzedDataProvider.h>

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>

#include "fcgi/protocol.h"
#include "fcgi/response.h"
#include "tests/fuzz/fuzz_check.h"

namespace {

void CheckParsed(const fcgi::Response& r) {
  FUZZ_CHECK(r.status >= 100 && r.status <= 999);
  for (const auto& [name, value] : r.headers) {
    FUZZ_CHECK(!name.empty());
    FUZZ_CHECK(name.find('\n') == std::string::npos && value.find('\n') == std::string::npos);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  // The whole input as CGI output, too: the parser must hold on its own.
  {
    fcgi::Response direct;
    const std::string_view whole(reinterpret_cast<const char*>(data), size);
    if (fcgi::ParseCgiOutput(whole, &direct).ok()) {
      CheckParsed(direct);
      FUZZ_CHECK(direct.body.size() <= size);
    }
  }

  FuzzedDataProvider in(data, size);
  const uint16_t request_id = in.ConsumeIntegralInRange<uint16_t>(0, 3);
  const size_t max_stdout = in.ConsumeIntegralInRange<size_t>(0, 4096);
  const size_t max_stderr = in.ConsumeIntegralInRange<size_t>(0, 512);
  fcgi::protocol::RecordReader reader;
  fcgi::ResponseCollector collector(request_id, max_stdout, max_stderr);
  size_t fed = 0;
  size_t consumed = 0;
  bool failed = false;
  while (in.remaining_bytes() > 0 && !failed && !collector.done()) {
    const size_t n = in.ConsumeIntegralInRange<size_t>(1, 64);
    const std::string chunk = in.ConsumeBytesAsString(n);
    reader.Feed(chunk.data(), chunk.size());
    fed += chunk.size();
    for (;;) {
      std::optional<fcgi::protocol::RecordReader::Record> record;
      if (!reader.Next(&record).ok()) {
        failed = true;
        break;
      }
      if (!record) break;
      FUZZ_CHECK(record->content.size() <= fcgi::protocol::kMaxContentLength);
      consumed += fcgi::protocol::kHeaderSize + record->content.size();
      if (!collector.Consume(*record).ok()) {
        failed = true;
        break;
      }
      if (collector.done()) break;
    }
    FUZZ_CHECK(reader.buffered() <= fed);
    FUZZ_CHECK(consumed <= fed);
  }
  if (collector.done() && !failed) {
    fcgi::Response response;
    if (collector.Finish(&response).ok()) {
      CheckParsed(response);
      FUZZ_CHECK(response.body.size() <= max_stdout);
      FUZZ_CHECK(response.stderr_output.size() <= max_stderr + 64);  // room for a truncation mark
    }
  }
  return 0;
}
