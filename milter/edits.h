// The end-of-message edits a JSON save verdict asks of the MTA (sender, recipients, headers, body,
// quarantine), applied through libmilter. Kept apart from the callbacks so that each edit, and what
// it needs negotiated, is in one place. Thread-safety: called on the SMTP session's thread with its
// libmilter context.
#pragma once

#include <libmilter/mfapi.h>

#include "milter/mail/decision.h"

namespace milter {

// The SMFIF_* actions the daemon asks the MTA for at negotiation (the edits below need them).
unsigned long EditActions();

// Applies the parts of an accept or quarantine verdict that change the message: sender, removed
// and added recipients, header edits and inserts, body, quarantine, in that order. A failure to
// apply one (libmilter refuses an edit the MTA did not grant at negotiation) turns *v into a
// temporary failure whose reason names the edit: the script asked for something that could not
// be done, and the sender must keep the message. `leading_space`: SMFIP_HDR_LEADSPC was negotiated
// (header values then carry their own leading space).
void ApplyEndOfMessage(SMFICTX* ctx, bool leading_space, mail::Verdict* v);

}  // namespace milter
