// End-of-message edits; see edits.h.
#include "milter/edits.h"

#include <string>

namespace milter {

unsigned long EditActions() {
  return SMFIF_ADDHDRS | SMFIF_CHGHDRS | SMFIF_DELRCPT | SMFIF_QUARANTINE;
}

void ApplyEndOfMessage(SMFICTX* ctx, bool leading_space, mail::Verdict* v) {
  using Action = mail::Verdict::Action;
  if (v->action != Action::kAccept && v->action != Action::kQuarantine) return;
  for (const std::string& rcpt : v->refused_recipients) {
    std::string bracketed = "<" + rcpt + ">";
    if (smfi_delrcpt(ctx, bracketed.data()) != MI_SUCCESS) {
      *v = mail::TemporaryFailure("could not remove refused recipient <" + rcpt + ">");
      return;
    }
  }
  for (const mail::HeaderEdit& e : v->header_edits) {
    std::string name = e.name;
    std::string value = " " + e.value;  // LEADSPC convention: the value carries its space
    if (!leading_space) value = e.value;
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
      *v = mail::TemporaryFailure("could not edit header " + e.name);
      return;
    }
  }
  if (v->action == Action::kQuarantine &&
      smfi_quarantine(ctx, v->quarantine_reason.data()) != MI_SUCCESS) {
    *v = mail::TemporaryFailure("could not quarantine");
  }
}

}  // namespace milter
