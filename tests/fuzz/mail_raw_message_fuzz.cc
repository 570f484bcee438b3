// Fuzz target: the raw message encoder. Random headers (folded with LF or CRLF, with or without
// the leading space), a random body cut into random chunks (a CRLF may straddle two chunks), both
// line-ending modes, and a sink that may fail. The decoded output must equal an independently
// computed normalisation of the same message.
// Thread-safety: libFuzzer calls LLVMFuzzerTestOneInput from one thread.
#include <fuzzer/FuzzedDataProvider.h>

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "base/status.h"
#include "milter/mail/raw_message.h"
#include "tests/fuzz/fuzz_check.h"

namespace {

// Header values: CRLF or a bare LF is a line break, a lone CR is content.
void AppendHeaderValue(std::string_view v, const std::string& eol, std::string* out) {
  for (size_t i = 0; i < v.size(); ++i) {
    if (v[i] == '\r' && i + 1 < v.size() && v[i + 1] == '\n') {
      out->append(eol);
      ++i;
    } else if (v[i] == '\n') {
      out->append(eol);
    } else {
      out->push_back(v[i]);
    }
  }
}

// The body as a whole (chunking must not matter). LF mode: CRLF -> LF, lone CR and bare LF
// kept. CRLF mode: a bare LF gains its CR, everything else is kept.
std::string NormaliseBody(std::string_view b, mail::LineEnding ending) {
  std::string out;
  for (size_t i = 0; i < b.size(); ++i) {
    if (ending == mail::LineEnding::kLf) {
      if (b[i] == '\r' && i + 1 < b.size() && b[i + 1] == '\n') {
        out.push_back('\n');
        ++i;
      } else {
        out.push_back(b[i]);
      }
    } else {
      if (b[i] == '\n' && (i == 0 || b[i - 1] != '\r')) out.push_back('\r');
      out.push_back(b[i]);
    }
  }
  return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  FuzzedDataProvider in(data, size);
  const mail::LineEnding ending =
      in.ConsumeBool() ? mail::LineEnding::kCrlf : mail::LineEnding::kLf;
  const std::string eol = ending == mail::LineEnding::kLf ? "\n" : "\r\n";
  // 0 = the sink never fails; otherwise it fails on that call and must never be called again.
  const int fail_on_call =
      in.ConsumeIntegralInRange<int>(0, 8) == 0 ? in.ConsumeIntegralInRange<int>(1, 3) : 0;

  std::string encoded;
  int sink_calls = 0;
  bool called_after_failure = false;
  mail::RawMessageEncoder encoder(ending, [&](std::string_view piece) {
    ++sink_calls;
    if (fail_on_call != 0 && sink_calls > fail_on_call) called_after_failure = true;
    if (sink_calls == fail_on_call) return base::Status::IoError("sink failed");
    encoded.append(piece);
    return base::Status::Ok();
  });

  std::string expected;
  const int headers = in.ConsumeIntegralInRange<int>(0, 8);
  for (int i = 0; i < headers; ++i) {
    const std::string name = in.ConsumeRandomLengthString(24);
    const std::string value = in.ConsumeRandomLengthString(256);
    const bool leading_space = in.ConsumeBool();
    const base::Status s = encoder.AddHeader(name, value, leading_space);
    FUZZ_CHECK(s.ok() || fail_on_call != 0);
    expected += name;
    expected += leading_space ? ":" : ": ";
    AppendHeaderValue(value, eol, &expected);
    expected += eol;
  }
  // Else AddBody / Finish imply it. A failing sink makes every later call fail.
  if (in.ConsumeBool()) FUZZ_CHECK(encoder.EndHeaders().ok() || fail_on_call != 0);
  expected += eol;

  // The body in chunks; a chunk may be repeated to push past the encoder's flush size.
  std::string body;
  while (in.remaining_bytes() > 0) {
    std::string chunk = in.ConsumeRandomLengthString(512);
    const int repeat =
        in.ConsumeIntegralInRange<int>(0, 31) == 0 ? in.ConsumeIntegralInRange<int>(1, 400) : 1;
    for (int r = 0; r < repeat; ++r) {
      FUZZ_CHECK(encoder.AddBody(chunk).ok() || fail_on_call != 0);
      body += chunk;
    }
  }
  const base::Status finished = encoder.Finish();
  FUZZ_CHECK(encoder.Finish().code() == finished.code());  // idempotent
  FUZZ_CHECK(!encoder.AddHeader("X", "y", false).ok());
  FUZZ_CHECK(!encoder.AddBody("late").ok());
  FUZZ_CHECK(!called_after_failure);

  expected += NormaliseBody(body, ending);
  if (fail_on_call != 0 && sink_calls >= fail_on_call) {
    FUZZ_CHECK(!finished.ok());  // a sink failure is sticky
    return 0;
  }
  FUZZ_CHECK(finished.ok());
  FUZZ_CHECK(encoder.raw_size() == expected.size());
  const std::optional<std::string> decoded = fuzz::StrictPercentDecode(encoded);
  FUZZ_CHECK(decoded.has_value());
  FUZZ_CHECK(*decoded == expected);
  return 0;
}
