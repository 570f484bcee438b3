// RFC 2047 header decoding; see rfc2047.h.
#include "milter/mail/rfc2047.h"

#include <iconv.h>

#include <array>
#include <cerrno>
#include <cstdint>
#include <optional>

namespace mail {
namespace {

constexpr std::string_view kReplacement = "\xEF\xBF\xBD";  // U+FFFD in UTF-8

bool IsWsp(char c) {
  return c == ' ' || c == '\t';
}
bool IsLinearSpace(char c) {
  return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

bool HasNonWhitespace(std::string_view s) {
  for (char c : s) {
    if (!IsLinearSpace(c)) return true;
  }
  return false;
}

std::string Unfold(std::string_view raw) {
  std::string out;
  out.reserve(raw.size());
  const size_t n = raw.size();
  for (size_t i = 0; i < n; ++i) {
    const char c = raw[i];
    if (c == '\r' && i + 2 < n && raw[i + 1] == '\n' && IsWsp(raw[i + 2])) {
      ++i;  // drop CR LF, the WSP is copied next round
      continue;
    }
    if (c == '\n' && i + 1 < n && IsWsp(raw[i + 1])) continue;
    out.push_back(c);
  }
  return out;
}

std::string_view Trim(std::string_view s) {
  while (!s.empty() && IsLinearSpace(s.front())) s.remove_prefix(1);
  while (!s.empty() && IsLinearSpace(s.back())) s.remove_suffix(1);
  return s;
}

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;
}

// Q encoding as Go's qDecode: '_' is a space, =XX a byte, other printable ASCII literal.
bool DecodeQ(std::string_view in, std::string* out) {
  out->reserve(in.size());
  for (size_t i = 0; i < in.size(); ++i) {
    const char c = in[i];
    if (c == '_') {
      out->push_back(' ');
    } else if (c == '=') {
      if (i + 2 >= in.size()) return false;
      const int hi = HexValue(in[i + 1]);
      const int lo = HexValue(in[i + 2]);
      if (hi < 0 || lo < 0) return false;
      out->push_back(static_cast<char>(hi << 4 | lo));
      i += 2;
    } else if ((c >= ' ' && c <= '~') || c == '\t' || c == '\r' || c == '\n') {
      out->push_back(c);
    } else {
      return false;
    }
  }
  return true;
}

constexpr std::array<int8_t, 256> MakeBase64Table() {
  std::array<int8_t, 256> t{};
  for (auto& v : t) v = -1;
  const char* alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  for (int i = 0; i < 64; ++i) t[static_cast<unsigned char>(alphabet[i])] = static_cast<int8_t>(i);
  return t;
}
constexpr std::array<int8_t, 256> kBase64 = MakeBase64Table();

// Standard alphabet; padding may be missing (some mailers drop it), but misplaced padding,
// foreign characters or a dangling 6-bit group make the word malformed.
bool DecodeB(std::string_view in, std::string* out) {
  size_t pad = 0;
  while (!in.empty() && in.back() == '=' && pad < 2) {
    in.remove_suffix(1);
    ++pad;
  }
  if (pad > 0 && (in.size() + pad) % 4 != 0) return false;
  if (in.size() % 4 == 1) return false;
  out->reserve(in.size() * 3 / 4);
  uint32_t acc = 0;
  int bits = 0;
  for (char c : in) {
    const int v = kBase64[static_cast<unsigned char>(c)];
    if (v < 0) return false;
    acc = (acc << 6) | static_cast<uint32_t>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out->push_back(static_cast<char>((acc >> bits) & 0xFF));
    }
  }
  return true;
}

std::string Lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  return out;
}

// Charset names go to iconv_open: refuse anything that could smuggle "//TRANSLIT" or similar.
bool IsSafeCharsetName(std::string_view s) {
  if (s.empty() || s.size() > 64) return false;
  for (char c : s) {
    const bool ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                    c == '-' || c == '_' || c == '.' || c == ':' || c == '+' || c == '(' ||
                    c == ')';
    if (!ok) return false;
  }
  return true;
}

void AppendUtf8(uint32_t cp, std::string* out) {
  if (cp < 0x80) {
    out->push_back(static_cast<char>(cp));
  } else {
    out->push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

bool IconvToUtf8(const std::string& charset, std::string_view in, std::string* out) {
  iconv_t cd = iconv_open("UTF-8", charset.c_str());
  if (cd == reinterpret_cast<iconv_t>(-1)) return false;
  char* src = const_cast<char*>(in.data());  // iconv's signature predates const
  size_t src_left = in.size();
  std::array<char, 1024> buf;
  while (true) {
    char* dst = buf.data();
    size_t dst_left = buf.size();
    const size_t rc = iconv(cd, src_left > 0 ? &src : nullptr, &src_left, &dst, &dst_left);
    const int err = errno;
    out->append(buf.data(), buf.size() - dst_left);
    if (rc != static_cast<size_t>(-1)) {
      if (src_left == 0) {
        // Flush any shift state (stateful charsets such as ISO-2022-JP).
        dst = buf.data();
        dst_left = buf.size();
        iconv(cd, nullptr, nullptr, &dst, &dst_left);
        out->append(buf.data(), buf.size() - dst_left);
        break;
      }
      continue;
    }
    if (err == E2BIG) continue;
    // Invalid or truncated input: mark it and resynchronise on the next byte, as Go's
    // charset readers do, rather than dropping the whole word.
    out->append(kReplacement);
    if (err == EILSEQ && src_left > 0) {
      ++src;
      --src_left;
      if (src_left > 0) continue;
    }
    break;
  }
  iconv_close(cd);
  return true;
}

// Appends `content` (in `charset`) as UTF-8; false when the charset is unknown.
bool ConvertToUtf8(std::string_view charset_spec, std::string_view content, std::string* out) {
  // RFC 2231 allows "charset*language".
  const size_t star = charset_spec.find('*');
  if (star != std::string_view::npos) charset_spec = charset_spec.substr(0, star);
  if (!IsSafeCharsetName(charset_spec)) return false;
  const std::string cs = Lower(charset_spec);
  if (cs == "utf-8" || cs == "utf8") {
    out->append(content);  // as Go: no validation, bytes pass through
    return true;
  }
  if (cs == "us-ascii" || cs == "ascii") {
    for (char c : content) {
      if (static_cast<unsigned char>(c) < 0x80) {
        out->push_back(c);
      } else {
        out->append(kReplacement);
      }
    }
    return true;
  }
  if (cs == "iso-8859-1" || cs == "iso8859-1" || cs == "latin1") {
    for (char c : content) AppendUtf8(static_cast<unsigned char>(c), out);
    return true;
  }
  return IconvToUtf8(cs, content, out);
}

struct EncodedWord {
  std::string_view charset;
  char encoding;
  std::string_view text;
  size_t end;  // index just past "?="
};

// Parses "=?charset?X?text?=" at s[start]; the rules mirror Go's DecodeHeader scanner.
std::optional<EncodedWord> ParseWord(std::string_view s, size_t start) {
  size_t cur = start + 2;
  const size_t q = s.find('?', cur);
  if (q == std::string_view::npos) return std::nullopt;
  EncodedWord w;
  w.charset = s.substr(cur, q - cur);
  cur = q + 1;
  if (s.size() < cur + 4) return std::nullopt;  // room for the encoding letter, "?", "?="
  w.encoding = s[cur];
  if (s[cur + 1] != '?') return std::nullopt;
  cur += 2;
  const size_t e = s.find("?=", cur);
  if (e == std::string_view::npos) return std::nullopt;
  w.text = s.substr(cur, e - cur);
  w.end = e + 2;
  return w;
}

bool DecodeWord(const EncodedWord& w, std::string* out) {
  std::string bytes;
  bool ok = false;
  switch (w.encoding) {
    case 'Q':
    case 'q': ok = DecodeQ(w.text, &bytes); break;
    case 'B':
    case 'b': ok = DecodeB(w.text, &bytes); break;
    default: ok = false;
  }
  if (!ok) return false;
  return ConvertToUtf8(w.charset, bytes, out);
}

}  // namespace

std::string DecodeHeaderValue(std::string_view raw) {
  const std::string unfolded = Unfold(raw);
  const std::string_view s = Trim(unfolded);
  if (s.find("=?") == std::string_view::npos) return std::string(s);

  std::string out;
  out.reserve(s.size());
  size_t pos = 0;           // where to look for the next "=?"
  size_t literal_from = 0;  // start of text not yet copied to out
  bool between_words = false;
  while (true) {
    const size_t start = s.find("=?", pos);
    if (start == std::string_view::npos) break;
    const std::optional<EncodedWord> word = ParseWord(s, start);
    std::string decoded;
    if (!word || !DecodeWord(*word, &decoded)) {
      // Not a word we can decode: its "=?" stays literal and scanning resumes after it, so a
      // valid word later on the line is still found.
      pos = start + 2;
      between_words = false;
      continue;
    }
    const std::string_view gap = s.substr(literal_from, start - literal_from);
    if (!between_words || HasNonWhitespace(gap)) out.append(gap);
    out.append(decoded);
    literal_from = pos = word->end;
    between_words = true;
  }
  out.append(s.substr(literal_from));
  return out;
}

}  // namespace mail
