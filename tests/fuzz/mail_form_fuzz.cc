// Fuzz target: the form encoder round trip. Arbitrary fields go through FormBuilder (Add and
// BeginField + PercentEncodeAppend), are split and decoded by an independent strict decoder, and
// must come back byte-exact.
// Thread-safety: libFuzzer calls LLVMFuzzerTestOneInput from one thread.
#include <fuzzer/FuzzedDataProvider.h>

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "milter/mail/form.h"
#include "tests/fuzz/fuzz_check.h"

namespace {

using Fields = std::vector<std::pair<std::string, std::string>>;

// Splits "a=b&c=d"; encoded names and values never contain '&' or '='.
std::optional<Fields> DecodeForm(std::string_view form) {
  Fields fields;
  if (form.empty()) return fields;
  size_t pos = 0;
  for (;;) {
    const size_t amp = form.find('&', pos);
    const std::string_view pair =
        form.substr(pos, amp == std::string_view::npos ? std::string_view::npos : amp - pos);
    const size_t eq = pair.find('=');
    if (eq == std::string_view::npos) return std::nullopt;
    auto name = fuzz::StrictPercentDecode(pair.substr(0, eq));
    auto value = fuzz::StrictPercentDecode(pair.substr(eq + 1));
    if (!name || !value) return std::nullopt;
    fields.emplace_back(std::move(*name), std::move(*value));
    if (amp == std::string_view::npos) break;
    pos = amp + 1;
  }
  return fields;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  FuzzedDataProvider in(data, size);
  Fields fields;
  mail::FormBuilder form;
  std::string text;
  while (in.remaining_bytes() > 0 && fields.size() < 64) {
    const bool streamed = in.ConsumeBool();
    std::string name = in.ConsumeRandomLengthString(32);
    std::string value = in.ConsumeRandomLengthString(1024);
    if (streamed) {
      // The save path's last field: "name=" from the builder, the value (a message body)
      // encoded straight after it.
      form.BeginField(name);
      text = form.Take();
      mail::PercentEncodeAppend(value, &text);
      fields.emplace_back(std::move(name), std::move(value));
      break;
    }
    form.Add(name, value);
    fields.emplace_back(std::move(name), std::move(value));
  }
  if (text.empty()) text = form.Take();

  const std::optional<Fields> decoded = DecodeForm(text);
  FUZZ_CHECK(decoded.has_value());
  FUZZ_CHECK(*decoded == fields);

  // The standalone encoder agrees with the appending one and keeps within its size bound.
  const std::string whole(reinterpret_cast<const char*>(data), size);
  const std::string encoded = mail::PercentEncode(whole);
  FUZZ_CHECK(encoded.size() <= mail::PercentEncodedMaxSize(size));
  std::string appended = "prefix";
  mail::PercentEncodeAppend(whole, &appended);
  FUZZ_CHECK(appended == "prefix" + encoded);
  const std::optional<std::string> back = fuzz::StrictPercentDecode(encoded);
  FUZZ_CHECK(back.has_value() && *back == whole);
  return 0;
}
