// application/x-www-form-urlencoded encoding for FastCGI QUERY_STRING and POST bodies.
// Only RFC 3986 unreserved bytes pass through, so any byte (NUL, 8-bit, '+', '&', '%') reaches
// PHP's $_GET/$_POST byte-exact whichever decoder variant (urldecode or rawurldecode) it uses.
// Thread-safety: free functions are reentrant; a FormBuilder belongs to one thread at a time.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <utility>

namespace mail {

// Returns `in` with every byte outside ALPHA DIGIT "-._~" written as %XX (uppercase hex).
std::string PercentEncode(std::string_view in);

// Appends the encoding of `in` to *out with at most one reallocation (sized for the 3x worst
// case), for multi-MiB message bodies.
void PercentEncodeAppend(std::string_view in, std::string* out);

// The exact size of PercentEncode(in), without encoding.
size_t PercentEncodedSize(std::string_view in);

// Upper bound of the encoded size of n bytes.
constexpr size_t PercentEncodedMaxSize(size_t n) {
  return n * 3;
}

// Builds "name=value&name2=value2" with both parts percent-encoded.
class FormBuilder {
 public:
  void Add(std::string_view name, std::string_view value);
  // Appends "[&]name=" and leaves the value to the caller, who appends already-encoded bytes
  // elsewhere (e.g. a message body streamed by RawMessageEncoder after this prefix).
  void BeginField(std::string_view name);
  const std::string& str() const { return str_; }
  std::string Take() { return std::move(str_); }

 private:
  std::string str_;
};

}  // namespace mail
