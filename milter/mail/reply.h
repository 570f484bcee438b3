// Parsing of a FastCGI script's reply body (STDOUT after the CGI headers) into the keyword the
// script contract knows: PASS, SAVED, REJECT/TEMPFAIL with an SMTP code, DISCARD.
// Thread-safety: pure functions, reentrant.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace mail {

struct ScriptReply {
  enum class Kind { kPass, kSaved, kReject, kTempfail, kDiscard, kOther };
  Kind kind = Kind::kOther;
  std::string smtp_code;      // "550" for REJECT/TEMPFAIL lines, else empty
  std::string enhanced_code;  // "5.1.1" if given, else empty
  std::string text;           // rest of the line, CR/LF/NUL removed, may be empty
  std::string first_line;     // first line (trimmed, max 200 bytes, control chars replaced by '?')
};

// Longest first_line kept, and longest text kept (an SMTP reply line is at most 512 bytes).
inline constexpr size_t kMaxReplyFirstLine = 200;
inline constexpr size_t kMaxReplyText = 400;

// Leading whitespace is skipped. "PASS…" -> kPass, "SAVED…" -> kSaved (prefix match, so
// "PASSED" passes). A first line "REJECT 5xx [5.y.z] [text]" / "TEMPFAIL 4xx [4.y.z] [text]"
// -> kReject / kTempfail; a code of the wrong class or malformed -> kOther, so a script can never
// pair a 4xx code with a rejection or a 5xx with a tempfail. "DISCARD" (alone or followed by
// whitespace) -> kDiscard. Keywords are case-sensitive; anything else is kOther.
ScriptReply ParseScriptReply(std::string_view body);

const char* ScriptReplyKindName(ScriptReply::Kind kind);

}  // namespace mail
