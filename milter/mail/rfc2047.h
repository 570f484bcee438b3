// RFC 2047 decoding of unstructured header values (Subject) to UTF-8, for the save form's
// `subject` field. Follows Go's mime.WordDecoder.DecodeHeader (the original processor's decoder),
// except that an undecodable word stays as its literal text instead of failing the whole value.
// Thread-safety: reentrant (each call opens its own iconv descriptor).
#pragma once

#include <string>
#include <string_view>

namespace mail {

// Unfolds `raw` (a line break followed by SP/HTAB is removed, the SP/HTAB kept), trims
// surrounding whitespace, and decodes each =?charset[*lang]?Q|B?text?= word. Whitespace between
// two adjacent encoded words is dropped. Malformed words and unknown charsets are kept literally;
// plain text passes through as bytes, valid UTF-8 or not.
std::string DecodeHeaderValue(std::string_view raw);

}  // namespace mail
