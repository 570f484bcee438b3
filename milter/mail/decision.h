// The decision table: the one place that maps a backend outcome (transport result, CGI status,
// script reply) to the SMTP verdict for the validate (RCPT) or save (end of message) stage.
// Backend trouble is always temporary; a permanent failure only comes from a script's reply.
// Thread-safety: pure function, reentrant.
#pragma once

#include <string>

#include "fcgi/status.h"

namespace mail {

enum class Stage { kValidate, kSave };

struct BackendOutcome {
  fcgi::Status transport;  // not ok: connect/timeout/io/protocol failure
  int http_status = 200;   // from CGI Status: header (default 200)
  std::string body;        // reply body (after CGI headers)
};

struct Verdict {
  enum class Action { kAccept, kReject, kTempfail, kDiscard };
  Action action = Action::kTempfail;
  std::string smtp_code;      // "451", "550", ... empty for accept/discard
  std::string enhanced_code;  // "4.3.0", "5.1.1", ...
  std::string text;           // human text for the SMTP reply (no CR/LF; '%' not yet doubled)
  std::string reason;         // one-line reason for the log (why this verdict)
};

// validate: PASS -> accept; script REJECT/TEMPFAIL honoured; other non-empty reply -> 550 5.1.1.
// save: SAVED -> accept; REJECT/TEMPFAIL/DISCARD honoured; anything else -> 451 4.3.0.
// Both: transport failure, non-2xx status or an empty reply -> 451 4.3.0.
Verdict Decide(Stage stage, const BackendOutcome& outcome);

const char* StageName(Stage stage);
const char* ActionName(Verdict::Action action);

}  // namespace mail
