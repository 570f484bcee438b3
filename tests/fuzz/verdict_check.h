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
  // Only the save stage may discard, quarantine, edit the headers, the envelope or the body.
  if (stage != mail::Stage::kSave) {
    FUZZ_CHECK(v.action != mail::Verdict::Action::kDiscard &&
               v.action != mail::Verdict::Action::kQuarantine);
    FUZZ_CHECK(v.header_edits.empty() && v.refused_recipients.empty());
    FUZZ_CHECK(v.inserted_headers.empty() && v.added_recipients.empty());
    FUZZ_CHECK(!v.new_sender && !v.new_body);
  }
  if (stage != mail::Stage::kValidate) FUZZ_CHECK(!v.cache_ttl_seconds);
  // What libmilter passes on verbatim must not break the MTA's envelope or header lines.
  const auto check_address = [](const mail::Verdict::Address& a) {
    FUZZ_CHECK(!a.address.empty() && a.address.size() <= 512);
    FUZZ_CHECK(a.address.find_first_of(std::string(" <>\r\n\t\0", 7)) == std::string::npos);
    FUZZ_CHECK(!HasLineBreakOrNul(a.args));
  };
  for (const mail::Verdict::Address& a : v.added_recipients) check_address(a);
  if (v.new_sender) check_address(*v.new_sender);
  for (const mail::Verdict::HeaderInsert& h : v.inserted_headers) {
    FUZZ_CHECK(!h.name.empty() && h.name.find_first_of(": \r\n\t") == std::string::npos);
    FUZZ_CHECK(!HasLineBreakOrNul(h.value) && h.index >= 0);
  }
  if (v.new_body) {
    // CRLF line endings only: no bare LF or CR.
    const std::string& b = *v.new_body;
    for (size_t i = 0; i < b.size(); ++i) {
      if (b[i] == '\n') FUZZ_CHECK(i > 0 && b[i - 1] == '\r');
      if (b[i] == '\r') FUZZ_CHECK(i + 1 < b.size() && b[i + 1] == '\n');
    }
  }
  for (const mail::HeaderEdit& edit : v.header_edits) {
    FUZZ_CHECK(!edit.name.empty());
    FUZZ_CHECK(edit.name.find_first_of(": \r\n\t") == std::string::npos);
    FUZZ_CHECK(edit.index >= 1 || edit.kind == mail::HeaderEdit::Kind::kAdd);
  }
}

}  // namespace fuzz
