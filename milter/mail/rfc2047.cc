// RFC 2047 header decoding; see rfc2047.h.
#include "milter/mail/rfc2047.h"

#include <iconv.h>

#include <array>
#include <cerrno>
#include <cstdint>
#include <optional>
#include <vector>

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

// A fold (a line break followed by SP/HTAB) is removed, the SP/HTAB kept. Any other line break
// (CRLF, bare LF or bare CR: a malformed header, or one glued together by a caller) becomes one
// space, so no line break reaches the decoded value and a break between two encoded words counts
// as the whitespace between them.
std::string Unfold(std::string_view raw) {
  std::string out;
  out.reserve(raw.size());
  const size_t n = raw.size();
  for (size_t i = 0; i < n; ++i) {
    const char c = raw[i];
    if (c != '\r' && c != '\n') {
      out.push_back(c);
      continue;
    }
    if (c == '\r' && i + 1 < n && raw[i + 1] == '\n') ++i;  // CRLF is one line break
    if (i + 1 < n && IsWsp(raw[i + 1])) continue;           // a fold: the WSP is copied next
    out.push_back(' ');
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
// Neither decoder reserves from in.size(): a malformed word's text can run to a "?=" far away
// and is rejected at its first bad byte, so the work stays proportional to what was read.
bool DecodeQ(std::string_view in, std::string* out) {
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

const iconv_t kNoIconv = reinterpret_cast<iconv_t>(-1);

// The charsets one DecodeHeaderValue call has asked iconv for, each with a descriptor held open
// until the call ends. Every word still converts with a fresh descriptor of its own (a new shift
// state, a new byte-order mark check), but that is cheap only while glibc keeps the conversion
// module loaded, and glibc unloads a module soon after its last descriptor closes: a Subject
// cycling through four or more charsets made it dlopen and dlclose a module for every word
// (about 50 us each, 5 s for 1 MB). The held descriptor pins the module. At most kMaxCharsets
// names are looked up per value, failures included; a word in yet another charset stays
// literal, as a word in an unknown charset does. Real Subjects use one or two.
class IconvCharsets {
 public:
  static constexpr size_t kMaxCharsets = 16;

  IconvCharsets() = default;
  IconvCharsets(const IconvCharsets&) = delete;
  IconvCharsets& operator=(const IconvCharsets&) = delete;
  ~IconvCharsets() {
    for (const Entry& e : entries_) {
      if (e.pin != kNoIconv) iconv_close(e.pin);
    }
  }

  // Whether `charset` (lower case) may be converted with iconv.
  bool Usable(const std::string& charset) {
    for (const Entry& e : entries_) {
      if (e.name == charset) return e.pin != kNoIconv;
    }
    if (entries_.size() >= kMaxCharsets) return false;
    entries_.push_back({charset, iconv_open("UTF-8", charset.c_str())});
    return entries_.back().pin != kNoIconv;
  }

 private:
  struct Entry {
    std::string name;
    iconv_t pin;
  };
  std::vector<Entry> entries_;
};

bool IconvToUtf8(const std::string& charset, std::string_view in, IconvCharsets* charsets,
                 std::string* out) {
  if (!charsets->Usable(charset)) return false;
  const iconv_t cd = iconv_open("UTF-8", charset.c_str());
  if (cd == kNoIconv) return false;
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

// The charset of a word as iconv would be asked for it, lower case, without an RFC 2231
// "*language" suffix; nullopt when the name is not one we hand to iconv.
std::optional<std::string> CharsetName(std::string_view spec) {
  const size_t star = spec.find('*');
  if (star != std::string_view::npos) spec = spec.substr(0, star);
  if (!IsSafeCharsetName(spec)) return std::nullopt;
  return Lower(spec);
}

// Appends `content` (in charset `cs`, from CharsetName) as UTF-8; false when the charset is
// unknown. UTF-8 content is passed on unchecked: DecodeHeaderValue checks the whole value once
// at the end, so a character split between two adjacent words is joined first.
bool ConvertToUtf8(const std::string& cs, std::string_view content, IconvCharsets* charsets,
                   std::string* out) {
  if (cs == "utf-8" || cs == "utf8") {
    out->append(content);
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
  return IconvToUtf8(cs, content, charsets, out);
}

// Copies `in` to `out` as well-formed UTF-8 that a script can put into a header, a log line or a
// terminal: every maximal subpart of an ill-formed sequence (Unicode section 3.9, "U+FFFD
// substitution of maximal subparts", which the WHATWG decoder also follows) becomes U+FFFD, so
// overlong forms, surrogates and code points above U+10FFFF never get through; every control
// character (Cc: U+0000..U+001F, U+007F..U+009F) except TAB becomes a space, so a decoded CR LF
// cannot start a new header line and an ESC or CSI cannot drive a terminal.
void AppendCleanUtf8(std::string_view in, std::string* out) {
  const size_t n = in.size();
  size_t i = 0;
  while (i < n) {
    const auto lead = static_cast<unsigned char>(in[i]);
    if (lead < 0x80) {
      const bool control = (lead < 0x20 && lead != '\t') || lead == 0x7F;
      out->push_back(control ? ' ' : static_cast<char>(lead));
      ++i;
      continue;
    }
    // Table 3-7 of the Unicode standard: the length of the sequence a lead byte starts, and the
    // range its second byte must fall in (narrowed where overlong forms, surrogates or values
    // above U+10FFFF would begin); later bytes are always 80..BF.
    size_t len = 0;
    unsigned char lo = 0x80;
    unsigned char hi = 0xBF;
    if (lead >= 0xC2 && lead <= 0xDF) {
      len = 2;
    } else if (lead == 0xE0) {
      len = 3;
      lo = 0xA0;
    } else if (lead == 0xED) {
      len = 3;
      hi = 0x9F;
    } else if (lead >= 0xE1 && lead <= 0xEF) {
      len = 3;
    } else if (lead == 0xF0) {
      len = 4;
      lo = 0x90;
    } else if (lead >= 0xF1 && lead <= 0xF3) {
      len = 4;
    } else if (lead == 0xF4) {
      len = 4;
      hi = 0x8F;
    } else {  // 80..C1 and F5..FF start no character
      out->append(kReplacement);
      ++i;
      continue;
    }
    size_t got = 1;
    while (got < len && i + got < n) {
      const auto b = static_cast<unsigned char>(in[i + got]);
      const bool ok = got == 1 ? (b >= lo && b <= hi) : (b >= 0x80 && b <= 0xBF);
      if (!ok) break;
      ++got;
    }
    if (got < len) {
      // The bytes read so far are the maximal subpart; the byte that broke it starts afresh.
      out->append(kReplacement);
      i += got;
      continue;
    }
    if (lead == 0xC2 && static_cast<unsigned char>(in[i + 1]) < 0xA0) {
      out->push_back(' ');  // a C1 control (NEL, CSI, ...)
    } else {
      out->append(in.substr(i, len));
    }
    i += len;
  }
}

struct EncodedWord {
  std::string_view charset;
  char encoding;
  std::string_view text;
  size_t end;  // index just past "?="
};

// Finds "=?charset?X?text?=" words as Go's DecodeHeader scanner does, but in one left-to-right
// pass: the "?=" found for one candidate is remembered, so the candidates that share it (100 KB
// of "=?a?Q?x" before a single "?=") do not each search the same text again, and once no "?="
// (or no "?") is left, no later "=?" can start a word either and the scan ends.
class WordScanner {
 public:
  explicit WordScanner(std::string_view s) : s_(s) {}

  enum class Result { kWord, kNotAWord, kNoMoreWords };

  // Parses the candidate at s[start] (where "=?" is) into *w.
  Result Parse(size_t start, EncodedWord* w) {
    size_t cur = start + 2;
    const size_t q = s_.find('?', cur);
    if (q == std::string_view::npos) return Result::kNoMoreWords;
    w->charset = s_.substr(cur, q - cur);
    cur = q + 1;
    // Room for the encoding letter, "?" and "?=": a later candidate has less.
    if (s_.size() < cur + 4) return Result::kNoMoreWords;
    w->encoding = s_[cur];
    if (s_[cur + 1] != '?') return Result::kNotAWord;
    cur += 2;
    const size_t e = FindClose(cur);
    if (e == std::string_view::npos) return Result::kNoMoreWords;
    w->text = s_.substr(cur, e - cur);
    w->end = e + 2;
    return Result::kWord;
  }

 private:
  // The first "?=" at or after `from`. Candidates come in increasing order, so a search result
  // stays valid until `from` passes it; each byte is searched at most once per value.
  size_t FindClose(size_t from) {
    if (!searched_ || from < searched_from_ ||
        (close_ != std::string_view::npos && from > close_)) {
      close_ = s_.find("?=", from);
      searched_from_ = from;
      searched_ = true;
    }
    return close_;
  }

  std::string_view s_;
  bool searched_ = false;
  size_t searched_from_ = 0;
  size_t close_ = 0;
};

// Decodes one word to UTF-8 (not yet checked, see ConvertToUtf8); false when it is malformed or
// its charset is unknown. The charset name is looked at first, so a word we could never convert
// costs no decoding.
bool DecodeWord(const EncodedWord& w, IconvCharsets* charsets, std::string* out) {
  const std::optional<std::string> cs = CharsetName(w.charset);
  if (!cs) return false;
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
  return ConvertToUtf8(*cs, bytes, charsets, out);
}

}  // namespace

std::string DecodeHeaderValue(std::string_view raw) {
  const std::string unfolded = Unfold(raw);
  const std::string_view s = Trim(unfolded);

  std::string joined;       // words decoded, literal text copied: bytes not yet checked
  size_t literal_from = 0;  // start of text not yet copied to joined
  if (s.find("=?") != std::string_view::npos) {
    joined.reserve(s.size());
    WordScanner scanner(s);
    IconvCharsets charsets;
    size_t pos = 0;  // where to look for the next "=?"
    bool between_words = false;
    std::string decoded;
    while (true) {
      const size_t start = s.find("=?", pos);
      if (start == std::string_view::npos) break;
      EncodedWord word;
      const WordScanner::Result r = scanner.Parse(start, &word);
      if (r == WordScanner::Result::kNoMoreWords) break;
      decoded.clear();
      if (r == WordScanner::Result::kNotAWord || !DecodeWord(word, &charsets, &decoded)) {
        // Not a word we can decode: its "=?" stays literal and scanning resumes after it, so a
        // valid word later on the line is still found.
        pos = start + 2;
        between_words = false;
        continue;
      }
      const std::string_view gap = s.substr(literal_from, start - literal_from);
      if (!between_words || HasNonWhitespace(gap)) joined.append(gap);
      joined.append(decoded);
      literal_from = pos = word.end;
      between_words = true;
    }
  }
  joined.append(s.substr(literal_from));

  std::string out;
  out.reserve(joined.size());
  AppendCleanUtf8(joined, &out);
  return out;
}

}  // namespace mail
