// Fuzz target: the script reply parser and the decision table on arbitrary reply bodies, CGI
// statuses, content types, failure policies and transport results. Checks the promises libmilter
// depends on: a 4xx code only with TEMPFAIL, a 5xx only with REJECT, no CR/LF in reply text, and
// backend trouble always decided by the failure policy.
// Thread-safety: libFuzzer calls LLVMFuzzerTestOneInput from one thread.
#include <fuzzer/FuzzedDataProvider.h>
#include <strings.h>

#include <cctype>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "base/status.h"
#include "milter/mail/decision.h"
#include "milter/mail/reply.h"
#include "tests/fuzz/fuzz_check.h"
#include "tests/fuzz/verdict_check.h"

namespace {

void CheckReply(const mail::ScriptReply& r) {
  FUZZ_CHECK(r.first_line.size() <= mail::kMaxReplyFirstLine);
  FUZZ_CHECK(r.text.size() <= mail::kMaxReplyText);
  FUZZ_CHECK(!fuzz::HasLineBreakOrNul(r.text));
  for (const char c : r.first_line) {
    FUZZ_CHECK(static_cast<unsigned char>(c) >= 0x20 && c != 0x7f);
  }
  FUZZ_CHECK(mail::ScriptReplyKindName(r.kind) != nullptr);
  switch (r.kind) {
    case mail::ScriptReply::Kind::kReject:
      FUZZ_CHECK(fuzz::IsCode(r.smtp_code, '5'));
      FUZZ_CHECK(r.enhanced_code.empty() || r.enhanced_code.rfind("5.", 0) == 0);
      break;
    case mail::ScriptReply::Kind::kTempfail:
      // Empty: the script's code was missing or unusable, the decision supplies 451.
      FUZZ_CHECK(r.smtp_code.empty() || fuzz::IsCode(r.smtp_code, '4'));
      FUZZ_CHECK(r.enhanced_code.empty() || r.enhanced_code.rfind("4.", 0) == 0);
      break;
    default: FUZZ_CHECK(r.smtp_code.empty()); break;
  }
}

bool IsFailureVerdict(const mail::Verdict& v, mail::FailurePolicy policy) {
  switch (policy) {
    case mail::FailurePolicy::kTempfail: return v.action == mail::Verdict::Action::kTempfail;
    case mail::FailurePolicy::kAccept: return v.action == mail::Verdict::Action::kAccept;
    case mail::FailurePolicy::kReject: return v.action == mail::Verdict::Action::kReject;
  }
  return false;
}

void CheckDecision(mail::Stage stage, mail::FailurePolicy policy,
                   const mail::BackendOutcome& outcome, const mail::Verdict& v) {
  fuzz::CheckVerdict(stage, v);
  // Backend trouble follows the failure policy, and is marked as such.
  const bool trouble =
      !outcome.transport.ok() || outcome.http_status < 200 || outcome.http_status > 299;
  if (trouble) FUZZ_CHECK(v.backend_failure && IsFailureVerdict(v, policy));
  if (v.backend_failure) FUZZ_CHECK(IsFailureVerdict(v, policy));
  // A script that said TEMPFAIL (any form, any case) is never read as a bounce or an accept.
  const mail::ScriptReply reply = mail::ParseScriptReply(outcome.body);
  if (!trouble && outcome.content_type.empty() &&
      reply.kind == mail::ScriptReply::Kind::kTempfail) {
    FUZZ_CHECK(v.action == mail::Verdict::Action::kTempfail && !v.backend_failure);
  }
  std::string_view body = outcome.body;
  while (!body.empty() && (body.front() == ' ' || body.front() == '\t' || body.front() == '\r' ||
                           body.front() == '\n' || body.front() == '\v' || body.front() == '\f')) {
    body.remove_prefix(1);
  }
  if (body.size() >= 8 && strncasecmp(body.data(), "TEMPFAIL", 8) == 0) {
    FUZZ_CHECK(reply.kind == mail::ScriptReply::Kind::kTempfail ||
               reply.kind == mail::ScriptReply::Kind::kPhpError);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  FuzzedDataProvider in(data, size);
  const int selector = in.ConsumeIntegralInRange<int>(0, 7);
  const auto policy = static_cast<mail::FailurePolicy>(in.ConsumeIntegralInRange<int>(0, 2));
  mail::BackendOutcome outcome;
  // Mostly 200 and a text reply, sometimes anything: the interesting part is the body.
  outcome.http_status = selector == 0 ? in.ConsumeIntegralInRange<int>(-1, 1000) : 200;
  if (selector == 1) {
    outcome.transport = base::Status::Timeout(in.ConsumeRandomLengthString(64));
  }
  if (selector == 2) outcome.content_type = "application/json; charset=utf-8";
  outcome.body = in.ConsumeRemainingBytesAsString();

  CheckReply(mail::ParseScriptReply(outcome.body));
  for (const mail::Stage stage :
       {mail::Stage::kConnect, mail::Stage::kHelo, mail::Stage::kMailFrom, mail::Stage::kValidate,
        mail::Stage::kEndOfHeaders, mail::Stage::kSave}) {
    CheckDecision(stage, policy, outcome, mail::Decide(stage, outcome, policy));
  }
  return 0;
}
