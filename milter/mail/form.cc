// Table-driven percent-encoding; see form.h.
#include "milter/mail/form.h"

#include <array>
#include <cstddef>
#include <cstdint>

namespace mail {
namespace {

constexpr std::array<bool, 256> MakeUnreservedTable() {
  std::array<bool, 256> t{};
  for (size_t c = 'A'; c <= 'Z'; ++c) t[c] = true;
  for (size_t c = 'a'; c <= 'z'; ++c) t[c] = true;
  for (size_t c = '0'; c <= '9'; ++c) t[c] = true;
  t['-'] = t['.'] = t['_'] = t['~'] = true;
  return t;
}

constexpr std::array<bool, 256> kUnreserved = MakeUnreservedTable();
constexpr char kHex[] = "0123456789ABCDEF";

}  // namespace

void PercentEncodeAppend(std::string_view in, std::string* out) {
  const size_t old = out->size();
  // One resize to the worst case, then a raw pointer loop: no per-byte capacity checks.
  out->resize(old + PercentEncodedMaxSize(in.size()));
  char* d = out->data() + old;
  for (const char ch : in) {
    const auto c = static_cast<unsigned char>(ch);
    if (kUnreserved[c]) {
      *d++ = ch;
    } else {
      d[0] = '%';
      d[1] = kHex[c >> 4];
      d[2] = kHex[c & 0xF];
      d += 3;
    }
  }
  out->resize(static_cast<size_t>(d - out->data()));
}

size_t PercentEncodedSize(std::string_view in) {
  size_t n = 0;
  for (const char ch : in) n += kUnreserved[static_cast<unsigned char>(ch)] ? 1 : 3;
  return n;
}

std::string PercentEncode(std::string_view in) {
  std::string out;
  PercentEncodeAppend(in, &out);
  return out;
}

void FormBuilder::Add(std::string_view name, std::string_view value) {
  BeginField(name);
  PercentEncodeAppend(value, &str_);
}

void FormBuilder::BeginField(std::string_view name) {
  if (!str_.empty()) str_.push_back('&');
  PercentEncodeAppend(name, &str_);
  str_.push_back('=');
}

}  // namespace mail
