// End-of-message edits; see edits.h.
#include "milter/edits.h"

#include <climits>
#include <string>

namespace milter {
namespace {

// The reason of the temporary failure when libmilter refuses an edit: it does so when the MTA
// did not grant `flag` at negotiation (an older MTA, or one configured with an older protocol),
// and when the connection to the MTA broke.
mail::Verdict NotAllowed(const std::string& edit, const char* flag) {
  return mail::TemporaryFailure("could not " + edit + ": the MTA did not allow it (" + flag +
                                " not granted at negotiation) or the connection to it broke");
}

std::string Bracketed(const std::string& address) {
  return "<" + address + ">";
}

// The header value as libmilter sends it: with SMFIP_HDR_LEADSPC the value carries its own space.
std::string HeaderValue(const std::string& value, bool leading_space) {
  return leading_space ? " " + value : value;
}

// Each step applies one kind of edit; false: *v is now the temporary failure.
bool ChangeSender(SMFICTX* ctx, mail::Verdict* v) {
  if (!v->new_sender) return true;
  std::string from = Bracketed(v->new_sender->address);
  std::string args = v->new_sender->args;
  if (smfi_chgfrom(ctx, from.data(), args.empty() ? nullptr : args.data()) == MI_SUCCESS) {
    return true;
  }
  *v = NotAllowed("change the sender to " + from, "SMFIF_CHGFROM");
  return false;
}

bool RemoveRecipients(SMFICTX* ctx, mail::Verdict* v) {
  for (const std::string& rcpt : v->refused_recipients) {
    std::string bracketed = Bracketed(rcpt);
    if (smfi_delrcpt(ctx, bracketed.data()) != MI_SUCCESS) {
      *v = NotAllowed("remove refused recipient " + bracketed, "SMFIF_DELRCPT");
      return false;
    }
  }
  return true;
}

bool AddRecipients(SMFICTX* ctx, mail::Verdict* v) {
  for (const mail::Verdict::Address& a : v->added_recipients) {
    std::string rcpt = Bracketed(a.address);
    std::string args = a.args;
    // Without parameters the older request, which every MTA that adds recipients knows.
    const bool ok = args.empty() ? smfi_addrcpt(ctx, rcpt.data()) == MI_SUCCESS
                                 : smfi_addrcpt_par(ctx, rcpt.data(), args.data()) == MI_SUCCESS;
    if (!ok) {
      *v = args.empty()
               ? NotAllowed("add recipient " + rcpt, "SMFIF_ADDRCPT")
               : NotAllowed("add recipient " + rcpt + " with ESMTP arguments \"" + args + "\"",
                            "SMFIF_ADDRCPT_PAR");
      return false;
    }
  }
  return true;
}

bool EditHeaders(SMFICTX* ctx, bool leading_space, mail::Verdict* v) {
  for (const mail::HeaderEdit& e : v->header_edits) {
    std::string name = e.name;
    std::string value = HeaderValue(e.value, leading_space);
    int rc = MI_FAILURE;
    switch (e.kind) {
      case mail::HeaderEdit::Kind::kAdd: rc = smfi_addheader(ctx, name.data(), value.data()); break;
      case mail::HeaderEdit::Kind::kChange:
        rc = smfi_chgheader(ctx, name.data(), e.index, value.data());
        break;
      case mail::HeaderEdit::Kind::kRemove:
        rc = smfi_chgheader(ctx, name.data(), e.index, nullptr);
        break;
    }
    if (rc != MI_SUCCESS) {
      *v = NotAllowed("edit header " + e.name,
                      e.kind == mail::HeaderEdit::Kind::kAdd ? "SMFIF_ADDHDRS" : "SMFIF_CHGHDRS");
      return false;
    }
  }
  for (const mail::Verdict::HeaderInsert& h : v->inserted_headers) {
    std::string name = h.name;
    std::string value = HeaderValue(h.value, leading_space);
    if (smfi_insheader(ctx, h.index, name.data(), value.data()) != MI_SUCCESS) {
      *v = NotAllowed("insert header " + h.name + " at index " + std::to_string(h.index),
                      "SMFIF_ADDHDRS");
      return false;
    }
  }
  return true;
}

bool ReplaceBody(SMFICTX* ctx, mail::Verdict* v) {
  if (!v->new_body) return true;
  std::string& body = *v->new_body;
  if (body.size() > static_cast<size_t>(INT_MAX)) {
    *v = mail::TemporaryFailure("could not replace the body: " + std::to_string(body.size()) +
                                " bytes is more than libmilter can send");
    return false;
  }
  // libmilter cuts it into protocol chunks (64 KiB) itself.
  if (smfi_replacebody(ctx, reinterpret_cast<unsigned char*>(body.data()),
                       static_cast<int>(body.size())) != MI_SUCCESS) {
    *v =
        NotAllowed("replace the body (" + std::to_string(body.size()) + " bytes)", "SMFIF_CHGBODY");
    return false;
  }
  return true;
}

}  // namespace

unsigned long EditActions() {
  return SMFIF_ADDHDRS | SMFIF_CHGHDRS | SMFIF_DELRCPT | SMFIF_QUARANTINE | SMFIF_ADDRCPT |
         SMFIF_ADDRCPT_PAR | SMFIF_CHGFROM | SMFIF_CHGBODY;
}

void ApplyEndOfMessage(SMFICTX* ctx, bool leading_space, mail::Verdict* v) {
  using Action = mail::Verdict::Action;
  if (v->action != Action::kAccept && v->action != Action::kQuarantine) return;
  // Envelope, headers, body; the first edit the MTA refuses stops the rest.
  if (!ChangeSender(ctx, v) || !RemoveRecipients(ctx, v) || !AddRecipients(ctx, v) ||
      !EditHeaders(ctx, leading_space, v) || !ReplaceBody(ctx, v)) {
    return;
  }
  if (v->action == Action::kQuarantine &&
      smfi_quarantine(ctx, v->quarantine_reason.data()) != MI_SUCCESS) {
    *v = NotAllowed("quarantine", "SMFIF_QUARANTINE");
  }
}

}  // namespace milter
