// RFC 2047 decoding of unstructured header values (Subject) to UTF-8, for the save form's
// `subject` field. Follows Go's mime.WordDecoder.DecodeHeader (the original processor's decoder),
// except that an undecodable word stays as its literal text instead of failing the whole value,
// and that the result is cleaned to valid UTF-8 without control characters (see below).
// Thread-safety: reentrant (each call opens its own iconv descriptors).
#pragma once

#include <string>
#include <string_view>

namespace mail {

// Unfolds `raw` (a line break followed by SP/HTAB is removed, the SP/HTAB kept; any other line
// break becomes one space), trims surrounding whitespace, and decodes each
// =?charset[*lang]?Q|B?text?= word. Whitespace between two adjacent encoded words is dropped.
// Malformed words and unknown charsets are kept literally, and so are words in charsets beyond
// the first 16 distinct names one value asks iconv for (UTF-8, US-ASCII and Latin-1 need no
// iconv and are not counted).
//
// The result is always well-formed UTF-8 with no control characters except TAB, whatever the
// input: scripts put it into headers, logs and terminals.
// - Every control character (Unicode Cc: U+0000..U+001F, U+007F..U+009F; C0, DEL and C1) other
//   than TAB becomes a space, whether it came from an encoded word (=0D=0A) or plain text, so a
//   decoded Subject cannot carry a CR LF into a new header line.
// - Bytes that are not UTF-8 (raw 8-bit text, a bad charset=utf-8 word, overlong forms,
//   surrogates, values above U+10FFFF) become U+FFFD, one per maximal subpart of an ill-formed
//   sequence (Unicode section 3.9, as WHATWG decoders do). This check runs once over the joined
//   value, so a character split between two adjacent utf-8 words is kept.
// Time and memory are linear in raw.size(): one left-to-right scan (hostile 1 MB values decode
// in milliseconds).
std::string DecodeHeaderValue(std::string_view raw);

}  // namespace mail
