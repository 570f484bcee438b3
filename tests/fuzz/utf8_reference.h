// A reference UTF-8 matcher for the tests of the Subject decoder (the fuzz target and the unit
// tests), independent of the decoder's own check.
// Thread-safety: pure functions.
#pragma once

#include <cstddef>
#include <string_view>

namespace fuzz {

// Independent of the decoder's own check: the rows of Table 3-7 of the Unicode standard (one
// byte range per position of a well-formed sequence). Returns how many bytes at s[i] form a
// character, or, negated, the length of the maximal subpart to replace by one U+FFFD.
inline int MatchUtf8(std::string_view s, size_t i) {
  struct Row {
    int len;
    unsigned char lo[4], hi[4];
  };
  static constexpr Row kRows[] = {
      {1, {0x00}, {0x7F}},
      {2, {0xC2, 0x80}, {0xDF, 0xBF}},
      {3, {0xE0, 0xA0, 0x80}, {0xE0, 0xBF, 0xBF}},
      {3, {0xE1, 0x80, 0x80}, {0xEC, 0xBF, 0xBF}},
      {3, {0xED, 0x80, 0x80}, {0xED, 0x9F, 0xBF}},
      {3, {0xEE, 0x80, 0x80}, {0xEF, 0xBF, 0xBF}},
      {4, {0xF0, 0x90, 0x80, 0x80}, {0xF0, 0xBF, 0xBF, 0xBF}},
      {4, {0xF1, 0x80, 0x80, 0x80}, {0xF3, 0xBF, 0xBF, 0xBF}},
      {4, {0xF4, 0x80, 0x80, 0x80}, {0xF4, 0x8F, 0xBF, 0xBF}},
  };
  int longest_prefix = 1;
  for (const Row& r : kRows) {
    int k = 0;
    while (k < r.len && i + k < s.size()) {
      const auto b = static_cast<unsigned char>(s[i + k]);
      if (b < r.lo[k] || b > r.hi[k]) break;
      ++k;
    }
    if (k == r.len) return k;
    if (k > longest_prefix) longest_prefix = k;
  }
  return -longest_prefix;
}

// Whether s is well-formed UTF-8 throughout.
inline bool IsValidUtf8(std::string_view s) {
  for (size_t i = 0; i < s.size();) {
    const int m = MatchUtf8(s, i);
    if (m < 0) return false;
    i += static_cast<size_t>(m);
  }
  return true;
}

}  // namespace fuzz
