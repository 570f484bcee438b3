// Fuzz target: the JSON reply schema (milter/mail/json_reply.h) on arbitrary bodies, for both
// stages. Malformed JSON, wrong types and huge arrays must give an error message, never a crash or
// a verdict libmilter would refuse.
// Thread-safety: libFuzzer calls LLVMFuzzerTestOneInput from one thread.
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "milter/mail/decision.h"
#include "milter/mail/json_reply.h"
#include "tests/fuzz/fuzz_check.h"
#include "tests/fuzz/verdict_check.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view body(reinterpret_cast<const char*>(data), size);
  for (const mail::Stage stage :
       {mail::Stage::kConnect, mail::Stage::kHelo, mail::Stage::kMailFrom, mail::Stage::kValidate,
        mail::Stage::kEndOfHeaders, mail::Stage::kSave}) {
    std::string error;
    const std::optional<mail::Verdict> verdict = mail::ParseJsonVerdict(stage, body, &error);
    if (!verdict) {
      FUZZ_CHECK(!error.empty());
      continue;
    }
    fuzz::CheckVerdict(stage, *verdict);
    FUZZ_CHECK(!verdict->backend_failure);
    FUZZ_CHECK(verdict->more_lines.size() < 32);  // smfi_setmlreply takes 32 lines at most
    if (verdict->action == mail::Verdict::Action::kQuarantine) {
      FUZZ_CHECK(!verdict->quarantine_reason.empty());
      FUZZ_CHECK(!fuzz::HasLineBreakOrNul(verdict->quarantine_reason));
    }
  }
  return 0;
}
