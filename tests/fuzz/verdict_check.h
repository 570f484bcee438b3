// Invariants of a Verdict shared by the reply/decision and JSON reply fuzz targets: what
// libmilter's smfi_setreply / smfi_setmlreply accept, and what each stage may do.
// Thread-safety: pure functions.
#pragma once

#include <cctype>
#include <string>

#include "milter/mail/decision.h"
#include "tests/fuzz/fuzz_check.h"

namespace fuzz {

inline bool IsCode(const std::string& code, char cls) {
  return code.size() == 3 && code[0] == cls && std::isdigit(static_cast<unsigned char>(code[1])) &&
         std::isdigit(static_cast<unsigned char>(code[2]));
}

inline bool HasLineBreakOrNul(const std::string& s) {
  return s.find_first_of(std::string("\r\n\0", 3)) != std::string::npos;
}

// What libmilter's smfi_setreply / smfi_setmlreply accept.
inline void CheckVerdict(mail::Stage stage, const mail::Verdict& v) {
  FUZZ_CHECK(!HasLineBreakOrNul(v.text));
  for (const std::string& line : v.more_lines) FUZZ_CHECK(!HasLineBreakOrNul(line));
  FUZZ_CHECK(!HasLineBreakOrNul(v.smtp_code) && !HasLineBreakOrNul(v.enhanced_code));
  FUZZ_CHECK(!v.reason.empty());
  FUZZ_CHECK(mail::ActionName(v.action) != nullptr && mail::StageName(stage) != nullptr);
  switch (v.action) {
    case mail::Verdict::Action::kReject:
      FUZZ_CHECK(IsCode(v.smtp_code, '5'));
      FUZZ_CHECK(v.enhanced_code.rfind("5.", 0) == 0);
      FUZZ_CHECK(!v.text.empty());
      break;
    case mail::Verdict::Action::kTempfail:
      FUZZ_CHECK(IsCode(v.smtp_code, '4'));
      FUZZ_CHECK(v.enhanced_code.rfind("4.", 0) == 0);
      FUZZ_CHECK(!v.text.empty());
      break;
    case mail::Verdict::Action::kAccept:
    case mail::Verdict::Action::kDiscard:
    case mail::Verdict::Action::kQuarantine: FUZZ_CHECK(v.smtp_code.empty()); break;
  }
  // Only the save stage may discard, quarantine, edit headers or refuse single recipients.
  if (stage == mail::Stage::kValidate) {
    FUZZ_CHECK(v.action != mail::Verdict::Action::kDiscard &&
               v.action != mail::Verdict::Action::kQuarantine);
    FUZZ_CHECK(v.header_edits.empty() && v.refused_recipients.empty());
  }
  for (const mail::HeaderEdit& edit : v.header_edits) {
    FUZZ_CHECK(!edit.name.empty());
    FUZZ_CHECK(edit.name.find_first_of(": \r\n\t") == std::string::npos);
    FUZZ_CHECK(edit.index >= 1 || edit.kind == mail::HeaderEdit::Kind::kAdd);
  }
}

}  // namespace fuzz
