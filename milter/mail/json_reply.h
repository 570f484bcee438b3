// JSON replies: a script that answers with Content-Type application/json can say more than
// yes or no: the SMTP reply (multi-line), header edits, per-recipient refusals, quarantine.
// The schema is strict: an unknown key, a code of the wrong class or a malformed header is an
// error (a temporary failure with one log line naming the problem), never a guess.
// Thread-safety: pure functions, reentrant.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "milter/mail/decision.h"

namespace mail {

// "application/json", with or without parameters ("; charset=utf-8"), any letter case.
bool IsJsonContentType(std::string_view content_type);

// Keys (docs/json-replies.md):
//   action          "accept" | "reject" | "tempfail" | "discard" | "quarantine" (required;
//                   validate allows accept/reject/tempfail)
//   smtp_code       "550" or 550: 5xx with reject, 4xx with tempfail (default 550 / 451)
//   enhanced_code   "5.7.1": same class as smtp_code (default 5.1.1 / 5.7.1 / 4.3.0)
//   text            a string, or an array of up to 32 strings for a multi-line reply
//   reason          quarantine only: why (Sendmail keeps it; Postfix only logs the hold)
//   add_headers     save only: [{"name": "X-Spam-Score", "value": "3.1"}]
//   change_headers  save only: [{"name": "Subject", "value": "[SPAM] hi", "index": 1}]
//   remove_headers  save only: [{"name": "X-Internal", "index": 1}]
//   reject_recipients  save only: ["a@example.test"]: these do not get the message
//   insert_headers  save only: [{"name": "X-First", "value": "1", "index": 0}] (0 = the top)
//   add_recipients  save only: ["a@b"] or [{"address": "a@b", "args": "NOTIFY=NEVER"}]
//   change_from     save only: "a@b" or {"address": "a@b", "args": "RET=HDRS"}
//   replace_body    save only: the new body (LF line endings become CRLF)
//   cache_ttl       validate only: seconds this answer may be reused
// Returns the verdict, or nullopt with *error saying what was wrong.
std::optional<Verdict> ParseJsonVerdict(Stage stage, std::string_view body, std::string* error);

}  // namespace mail
