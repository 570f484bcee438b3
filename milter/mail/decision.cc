// The decision table; see decision.h.
#include "milter/mail/decision.h"

#include <algorithm>
#include <utility>

#include "milter/mail/json_reply.h"
#include "milter/mail/reply.h"

namespace mail {
namespace {

Verdict Make(Verdict::Action action, std::string code, std::string enhanced, std::string text,
             std::string reason) {
  Verdict v;
  v.action = action;
  v.smtp_code = std::move(code);
  v.enhanced_code = std::move(enhanced);
  v.text = std::move(text);
  v.reason = std::move(reason);
  return v;
}

Verdict Accept(std::string reason) {
  return Make(Verdict::Action::kAccept, "", "", "", std::move(reason));
}

std::string Quoted(const ScriptReply& reply) {
  return "\"" + reply.first_line + "\"";
}

// A script-dictated REJECT/TEMPFAIL; the parser already guarantees the code class matches and
// leaves a code empty where the script's was missing or unusable.
Verdict Honour(Stage stage, const ScriptReply& reply) {
  const bool reject = reply.kind == ScriptReply::Kind::kReject;
  const DefaultReply d =
      DefaultReplyFor(stage, reject ? Verdict::Action::kReject : Verdict::Action::kTempfail);
  std::string code = reply.smtp_code.empty() ? d.code : reply.smtp_code;
  std::string enhanced = reply.enhanced_code.empty() ? d.enhanced : reply.enhanced_code;
  std::string text = reply.text.empty() ? d.text : reply.text;
  std::string reason = std::string("script replied ") + Quoted(reply);
  if (!reply.note.empty()) reason += " (" + reply.note + ")";
  return Make(reject ? Verdict::Action::kReject : Verdict::Action::kTempfail, std::move(code),
              std::move(enhanced), std::move(text), std::move(reason));
}

// A backend failure under the configured policy; the reason always says what failed.
Verdict Failure(Stage stage, FailurePolicy policy, std::string reason) {
  Verdict v;
  switch (policy) {
    case FailurePolicy::kTempfail: v = TemporaryFailure(std::move(reason)); break;
    case FailurePolicy::kAccept:
      v = Accept(std::move(reason) + " (accepted: failure policy)");
      break;
    case FailurePolicy::kReject: {
      const DefaultReply d =
          DefaultReplyFor(stage, Verdict::Action::kReject, ReplyCause::kFailurePolicy);
      v = Make(Verdict::Action::kReject, d.code, d.enhanced, d.text,
               std::move(reason) + " (rejected: failure policy)");
      break;
    }
  }
  v.backend_failure = true;
  return v;
}

}  // namespace

DefaultReply DefaultReplyFor(Stage stage, Verdict::Action action, ReplyCause cause) {
  switch (action) {
    case Verdict::Action::kTempfail: return {"451", "4.3.0", "Temporary failure, try again later"};
    case Verdict::Action::kReject:
      switch (stage) {
        case Stage::kConnect:
        case Stage::kHelo: return {"550", "5.7.1", "Access denied"};
        case Stage::kMailFrom: return {"550", "5.7.1", "Sender address rejected"};
        case Stage::kValidate: return {"550", "5.1.1", "Recipient address rejected"};
        case Stage::kEndOfHeaders:
        case Stage::kSave: break;
      }
      // A backend failure rejected by policy is "other mail system problem", not a judgement.
      return cause == ReplyCause::kFailurePolicy ? DefaultReply{"550", "5.3.0", "Message rejected"}
                                                 : DefaultReply{"550", "5.7.1", "Message rejected"};
    case Verdict::Action::kAccept:
    case Verdict::Action::kDiscard:
    case Verdict::Action::kQuarantine: break;
  }
  return {"", "", ""};
}

Verdict TemporaryFailure(std::string reason) {
  const DefaultReply d = DefaultReplyFor(Stage::kSave, Verdict::Action::kTempfail);
  return Make(Verdict::Action::kTempfail, d.code, d.enhanced, d.text, std::move(reason));
}

Verdict ShuttingDown() {
  return Make(Verdict::Action::kTempfail, "451", "4.3.2", "Shutting down, try again later",
              "the daemon is stopping");
}

Verdict MessageTooLarge(uint64_t limit) {
  return Make(Verdict::Action::kReject, "552", "5.3.4", "Message size exceeds fixed limit",
              "message over max_message_size (" + std::to_string(limit) + " bytes)");
}

Verdict EveryRecipientRefused(std::string reason) {
  return Make(Verdict::Action::kReject, "550", "5.7.1", "Message refused for every recipient",
              std::move(reason));
}

Verdict TooManyRecipients(size_t count) {
  return Make(Verdict::Action::kTempfail, "452", "4.5.3", "Too many recipients",
              "transaction already has " + std::to_string(count) +
                  " recipients, the most one save request carries within php_max_input_vars");
}

Verdict OtherRoute(const std::string& recipient) {
  return Make(Verdict::Action::kTempfail, "452", "4.5.3",
              "Too many recipients, send this one in another transaction",
              "<" + recipient +
                  "> routes to another save script than the first recipient: not in this "
                  "transaction");
}

Verdict Decide(Stage stage, const BackendOutcome& outcome, FailurePolicy policy) {
  if (!outcome.transport.ok()) {
    std::string reason = "backend failure: " + outcome.transport.ToString();
    // The one configured limit a transport failure can hit is the reply's: name the setting.
    if (outcome.transport.code() == base::Status::Code::kTooLarge) {
      reason +=
          " (max_reply_size; raise it for a script whose reply is large, such as a "
          "replace_body)";
    }
    return Failure(stage, policy, std::move(reason));
  }
  const ScriptReply reply = ParseScriptReply(outcome.body);
  if (outcome.http_status < 200 || outcome.http_status > 299) {
    return Failure(stage, policy,
                   "script returned Status: " + std::to_string(outcome.http_status) +
                       " (first line " + Quoted(reply) + ")");
  }
  if (IsJsonContentType(outcome.content_type)) {
    std::string error;
    std::optional<Verdict> v = ParseJsonVerdict(stage, outcome.body, &error);
    if (!v) return Failure(stage, policy, "invalid JSON reply: " + error);
    return *v;
  }
  // PHP reporting an error is the script failing (a notice printed before PASS, a fatal error
  // half-way through a save): never read as the script's judgement.
  if (reply.kind == ScriptReply::Kind::kPhpError) {
    return Failure(stage, policy, "script printed a PHP error: " + reply.php_error);
  }
  // Whitespace only counts as empty (the parser skips it): there is nothing to parse, so the
  // backend is in trouble rather than the recipient or message.
  const bool empty = reply.first_line.empty();

  using Kind = ScriptReply::Kind;
  if (stage != Stage::kSave) {
    switch (reply.kind) {
      case Kind::kPass: return Accept("script replied " + Quoted(reply));
      case Kind::kReject:
      case Kind::kTempfail: return Honour(stage, reply);
      case Kind::kSaved:
      case Kind::kDiscard:
      case Kind::kPhpError:
      case Kind::kOther: break;
    }
    if (empty) return Failure(stage, policy, "script returned an empty reply");
    // Not PASS: the script's refusal, the stage's reject default with the reason spelled out.
    const DefaultReply d = DefaultReplyFor(stage, Verdict::Action::kReject);
    return Make(Verdict::Action::kReject, d.code, d.enhanced,
                stage == Stage::kValidate ? std::string(d.text) + ": User unknown" : d.text,
                "script replied " + Quoted(reply) + " (not PASS)");
  }

  switch (reply.kind) {
    case Kind::kSaved: return Accept("script replied " + Quoted(reply));
    case Kind::kReject:
    case Kind::kTempfail: return Honour(stage, reply);
    case Kind::kDiscard:
      return Make(Verdict::Action::kDiscard, "", "", "", "script replied " + Quoted(reply));
    case Kind::kPass:
    case Kind::kPhpError:
    case Kind::kOther: break;
  }
  if (empty) return Failure(stage, policy, "script returned an empty reply (not SAVED)");
  return Failure(stage, policy, "script replied " + Quoted(reply) + " (not SAVED)");
}

std::vector<std::string> ResolveRefusals(const std::vector<std::string>& recipients, Verdict* v) {
  std::vector<std::string> unknown;
  if (v->action != Verdict::Action::kAccept && v->action != Verdict::Action::kQuarantine) {
    return unknown;
  }
  std::vector<std::string> kept;
  for (const std::string& r : v->refused_recipients) {
    const bool known = std::find(recipients.begin(), recipients.end(), r) != recipients.end();
    const bool dup = std::find(kept.begin(), kept.end(), r) != kept.end();
    if (!known) {
      unknown.push_back(r);
    } else if (!dup) {
      kept.push_back(r);
    }
  }
  v->refused_recipients = std::move(kept);
  // Refusing every recipient leaves no one to deliver to, unless the reply adds recipients (a
  // redirect): then the message goes to those alone.
  if (!v->refused_recipients.empty() && v->refused_recipients.size() >= recipients.size() &&
      v->added_recipients.empty()) {
    std::vector<std::string> refused = std::move(v->refused_recipients);
    *v = EveryRecipientRefused(v->reason + " (every recipient refused)");
    v->refused_recipients = std::move(refused);
  }
  return unknown;
}

const char* StageName(Stage stage) {
  switch (stage) {
    case Stage::kConnect: return "connect";
    case Stage::kHelo: return "helo";
    case Stage::kMailFrom: return "mail";
    case Stage::kValidate: return "validate";
    case Stage::kEndOfHeaders: return "eoh";
    case Stage::kSave: return "save";
  }
  return "unknown";
}

const char* ActionName(Verdict::Action action) {
  switch (action) {
    case Verdict::Action::kAccept: return "accept";
    case Verdict::Action::kReject: return "reject";
    case Verdict::Action::kTempfail: return "tempfail";
    case Verdict::Action::kDiscard: return "discard";
    case Verdict::Action::kQuarantine: return "quarantine";
  }
  return "unknown";
}

}  // namespace mail
