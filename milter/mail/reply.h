// Parsing of a FastCGI script's reply body (STDOUT after the CGI headers) into the keyword the
// script contract knows: PASS, SAVED, REJECT/TEMPFAIL with an SMTP code, DISCARD.
// Thread-safety: pure functions, reentrant.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace mail {

struct ScriptReply {
  // kPhpError: the output starts with PHP reporting an error (display_errors on): the script
  // failed, whatever it printed after.
  enum class Kind { kPass, kSaved, kReject, kTempfail, kDiscard, kPhpError, kOther };
  Kind kind = Kind::kOther;
  std::string smtp_code;      // "550" for REJECT/TEMPFAIL lines, else empty
  std::string enhanced_code;  // "5.1.1" if given, else empty
  std::string text;           // rest of the line, CR/LF/NUL removed, may be empty
  std::string first_line;     // first line (trimmed, max 200 bytes, control chars replaced by '?')
  std::string note;           // why a malformed code was replaced by the default, for the log
  std::string php_error;      // kPhpError: PHP's message, HTML tags removed, one line, bounded
};

// Longest first_line kept, and longest text kept (an SMTP reply line is at most 512 bytes).
inline constexpr size_t kMaxReplyFirstLine = 200;
inline constexpr size_t kMaxReplyText = 400;

// Leading whitespace and a UTF-8 byte order mark are skipped. Then, in order:
// - PHP's own error display ("Warning: … on line 3", "<b>Fatal error</b>: …", "PHP Deprecated: …",
//   Xdebug's table) -> kPhpError: the script failed, it did not refuse.
// - "PASS…" -> kPass (a prefix, so "PASSED" passes, as the original processor checked).
// - "SAVED" as the whole first word (end of output or whitespace after it) -> kSaved;
//   "SAVED_FAILED" and "SAVEDX" are not SAVED.
// - A first word starting with TEMPFAIL, in any case ("TEMPFAIL", "Tempfail:", "TEMPFAILED")
//   -> kTempfail, always: a valid 4xx code and 4.y.z code are kept, anything else gives way to
//   the defaults (empty fields, `note` says what was dropped). The script said "later".
// - A first line starting with a 4xx code ("451 4.2.1 busy") -> kTempfail the same way.
// - "REJECT 5xx [5.y.z] [text]" -> kReject. REJECT with a 4xx code or a 4.y.z code is read as
//   kTempfail (a script that named a temporary code never gets a bounce); other malformed
//   REJECT lines -> kOther (validate: 550 User unknown; save: 451).
// - "DISCARD" (alone or followed by whitespace) -> kDiscard.
// PASS, SAVED, REJECT and DISCARD are case-sensitive; anything else is kOther.
ScriptReply ParseScriptReply(std::string_view body);

const char* ScriptReplyKindName(ScriptReply::Kind kind);

}  // namespace mail
