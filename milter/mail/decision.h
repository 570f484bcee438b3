// The decision table: the one place that maps a backend outcome (transport result, CGI status,
// script reply) to the SMTP verdict for the validate (RCPT) or save (end of message) stage.
// Backend trouble is always temporary; a permanent failure only comes from a script's reply.
// Thread-safety: pure function, reentrant.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "base/status.h"

namespace mail {

// The scripts' stages, in SMTP order. kValidate is RCPT TO, kSave the end of message; the others
// are the optional stage scripts (connect, HELO, MAIL FROM, end of headers), which answer in the
// validate grammar (PASS / REJECT / TEMPFAIL or JSON accept/reject/tempfail).
enum class Stage { kConnect, kHelo, kMailFrom, kValidate, kEndOfHeaders, kSave };

struct BackendOutcome {
  base::Status transport;    // not ok: connect/timeout/io/protocol failure
  int http_status = 200;     // from CGI Status: header (default 200)
  std::string content_type;  // CGI Content-Type; application/json selects the JSON schema
  std::string body;          // reply body (after CGI headers)
};

// A header change a save script asked for, applied at end of message.
struct HeaderEdit {
  enum class Kind { kAdd, kChange, kRemove };
  Kind kind = Kind::kAdd;
  std::string name;
  std::string value;  // kAdd, kChange
  int index = 1;      // kChange, kRemove: which occurrence of the name (1 = first)
};

struct Verdict {
  enum class Action { kAccept, kReject, kTempfail, kDiscard, kQuarantine };
  Action action = Action::kTempfail;
  std::string smtp_code;      // "451", "550", ... empty for accept/discard
  std::string enhanced_code;  // "4.3.0", "5.1.1", ...
  std::string text;           // human text for the SMTP reply (no CR/LF; '%' not yet doubled)
  std::vector<std::string> more_lines;  // further lines of a multi-line reply (JSON replies)
  std::string reason;                   // one-line reason for the log (why this verdict)
  bool backend_failure = false;         // the backend, not the script's judgement, decided this
  // JSON save replies only:
  std::vector<HeaderEdit> header_edits;
  std::vector<std::string> refused_recipients;  // removed with smfi_delrcpt, others get the mail
  std::string quarantine_reason;                // kQuarantine
  // JSON save replies, envelope and body edits (milter/edits.cc applies them at end of message):
  struct Address {
    std::string address;  // without <>; checked: no space, CR, LF, NUL, < or >
    std::string args;     // ESMTP parameters ("NOTIFY=NEVER"); empty: none
  };
  struct HeaderInsert {
    std::string name;
    std::string value;
    int index = 0;  // position among all headers: 0 = above the first
  };
  std::vector<HeaderInsert> inserted_headers;  // smfi_insheader, after the header edits
  std::vector<Address> added_recipients;       // smfi_addrcpt / smfi_addrcpt_par
  std::optional<Address> new_sender;           // smfi_chgfrom
  std::optional<std::string> new_body;         // smfi_replacebody; CRLF line endings
  // JSON validate replies only: how long this accept or reject may be reused for the same
  // recipient and sender domain ("cache_ttl"); unset: the config's validate_cache_ttl.
  std::optional<int> cache_ttl_seconds;
};

// What a backend failure (unreachable, timeout, bad status, empty or unparsable reply) means.
// Temporary failure is the safe default: the sender keeps the message.
enum class FailurePolicy { kTempfail, kAccept, kReject };

// The reply table: every SMTP reply the daemon makes up itself, and the defaults a script's
// REJECT/TEMPFAIL (plain or JSON) gets for a code or text it left out, come from here.
struct DefaultReply {
  const char* code;
  const char* enhanced;
  const char* text;
};
// Who decided: the script (its REJECT/TEMPFAIL without code or text), or the failure policy
// (backend trouble).
enum class ReplyCause { kScript, kFailurePolicy };
// The reply for a reject or tempfail at `stage`; kAccept/kDiscard/kQuarantine have none (empty).
DefaultReply DefaultReplyFor(Stage stage, Verdict::Action action,
                             ReplyCause cause = ReplyCause::kScript);

// 451 4.3.0 "Temporary failure, try again later": the one default temporary reply, whoever
// decides it (backend trouble, a local failure, a script's unusable tempfail).
Verdict TemporaryFailure(std::string reason);

// 452 4.5.3: a transaction already holds `count` recipients, as many as one save request can
// carry; the sender sends the rest again.
Verdict TooManyRecipients(size_t count);

// 452 4.5.3: `recipient` routes to another save script than the transaction's first recipient;
// the sender sends it in another transaction, so each message is saved once, by one script.
Verdict OtherRoute(const std::string& recipient);

// 451 4.3.2: the daemon is stopping; the sender tries again (another MX, or this one restarted).
Verdict ShuttingDown();

// 552 5.3.4: the message passed max_message_size (`limit` bytes).
Verdict MessageTooLarge(uint64_t limit);

// 550 5.7.1: a save verdict refused every recipient of the message.
Verdict EveryRecipientRefused(std::string reason);

// validate: PASS -> accept; script REJECT/TEMPFAIL honoured; other non-empty reply -> 550 5.1.1.
// save: SAVED -> accept; REJECT/TEMPFAIL/DISCARD honoured; anything else -> 451 4.3.0.
// Both: a JSON reply (Content-Type application/json) follows the JSON schema (json_reply.h);
// transport failure, non-2xx status, an empty or invalid reply -> the failure policy
// (451 4.3.0 by default).
Verdict Decide(Stage stage, const BackendOutcome& outcome,
               FailurePolicy policy = FailurePolicy::kTempfail);

// Checks a save verdict's refused recipients against the message's: drops (and returns) the ones
// that are not recipients of it, and turns a verdict that refuses every recipient and adds none
// into a rejection (550 5.7.1), since a message with no recipient left cannot be accepted.
std::vector<std::string> ResolveRefusals(const std::vector<std::string>& recipients,
                                         Verdict* verdict);

const char* StageName(Stage stage);
const char* ActionName(Verdict::Action action);

}  // namespace mail
