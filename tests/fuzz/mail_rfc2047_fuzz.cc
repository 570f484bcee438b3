// Fuzz target: the RFC 2047 header decoder (Subject -> UTF-8) on arbitrary header values,
// including unknown charsets handed to iconv and truncated Q/B words.
// Thread-safety: libFuzzer calls LLVMFuzzerTestOneInput from one thread.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "milter/mail/rfc2047.h"
#include "tests/fuzz/fuzz_check.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view raw(reinterpret_cast<const char*>(data), size);
  const std::string decoded = mail::DecodeHeaderValue(raw);
  // Without an encoded word, decoding only unfolds and trims, so it never adds bytes.
  if (raw.find("=?") == std::string_view::npos) {
    FUZZ_CHECK(decoded.size() <= size);
    FUZZ_CHECK(decoded.find("=?") == std::string::npos);
    // Plain text with no line breaks or edge whitespace passes through byte for byte.
    const bool plain = raw.find_first_of("\r\n") == std::string_view::npos &&
                       (raw.empty() || (raw.front() != ' ' && raw.front() != '\t' &&
                                        raw.back() != ' ' && raw.back() != '\t'));
    if (plain) FUZZ_CHECK(decoded == raw);
  }
  // Deterministic: the decoder keeps no state between calls.
  FUZZ_CHECK(mail::DecodeHeaderValue(raw) == decoded);
  return 0;
}
