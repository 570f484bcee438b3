// The JSON reply schema and the failure policy: every action, codes of the wrong class, hostile
// text, header edits, per-recipient refusals, unknown keys.
#include <gtest/gtest.h>

#include "milter/mail/decision.h"
#include "milter/mail/json_reply.h"

namespace mail {
namespace {

using Action = Verdict::Action;

Verdict DecideJson(Stage stage, const std::string& body,
                   FailurePolicy policy = FailurePolicy::kTempfail) {
  BackendOutcome o;
  o.content_type = "application/json; charset=utf-8";
  o.body = body;
  return Decide(stage, o, policy);
}

TEST(JsonReply, ContentTypeIsRecognisedWithParametersAndAnyCase) {
  EXPECT_TRUE(IsJsonContentType("application/json"));
  EXPECT_TRUE(IsJsonContentType("Application/JSON; charset=UTF-8"));
  EXPECT_FALSE(IsJsonContentType("text/html; charset=UTF-8"));
  EXPECT_FALSE(IsJsonContentType("application/jsonp"));
  EXPECT_FALSE(IsJsonContentType(""));
}

TEST(JsonReply, PlainTextRepliesStillWorkWhenContentTypeIsHtml) {
  BackendOutcome o;
  o.content_type = "text/html; charset=UTF-8";
  o.body = "PASS";
  EXPECT_EQ(Decide(Stage::kValidate, o).action, Action::kAccept);
}

// Found by the fuzzer: an empty text gave a reply line with no text at all.
TEST(JsonReply, AnEmptyTextGetsTheDefaultText) {
  for (const char* text : {R"("")", R"([""])", R"(["", "second"])"}) {
    const Verdict v =
        DecideJson(Stage::kMailFrom, std::string(R"({"action":"reject","text":)") + text + "}");
    EXPECT_EQ(v.action, Action::kReject) << text;
    EXPECT_EQ(v.text, "Sender address rejected") << text;
  }
}

TEST(JsonReply, EveryValidateActionMaps) {
  EXPECT_EQ(DecideJson(Stage::kValidate, R"({"action":"accept"})").action, Action::kAccept);
  Verdict r = DecideJson(Stage::kValidate, R"({"action":"reject"})");
  EXPECT_EQ(r.action, Action::kReject);
  EXPECT_EQ(r.smtp_code, "550");
  EXPECT_EQ(r.enhanced_code, "5.1.1");
  Verdict t = DecideJson(Stage::kValidate, R"({"action":"tempfail","smtp_code":452,
      "enhanced_code":"4.2.2","text":"Mailbox full"})");
  EXPECT_EQ(t.action, Action::kTempfail);
  EXPECT_EQ(t.smtp_code, "452");
  EXPECT_EQ(t.enhanced_code, "4.2.2");
  EXPECT_EQ(t.text, "Mailbox full");
  EXPECT_FALSE(t.backend_failure);
}

TEST(JsonReply, EverySaveActionMaps) {
  EXPECT_EQ(DecideJson(Stage::kSave, R"({"action":"accept"})").action, Action::kAccept);
  EXPECT_EQ(DecideJson(Stage::kSave, R"({"action":"discard"})").action, Action::kDiscard);
  Verdict q = DecideJson(Stage::kSave, R"({"action":"quarantine","reason":"looks like spam"})");
  EXPECT_EQ(q.action, Action::kQuarantine);
  EXPECT_EQ(q.quarantine_reason, "looks like spam");
  Verdict r = DecideJson(Stage::kSave, R"({"action":"reject","smtp_code":"554"})");
  EXPECT_EQ(r.action, Action::kReject);
  EXPECT_EQ(r.smtp_code, "554");
  EXPECT_EQ(r.enhanced_code, "5.7.1");
}

TEST(JsonReply, DiscardAndQuarantineAreNotValidateActions) {
  for (const char* body : {R"({"action":"discard"})", R"({"action":"quarantine"})"}) {
    Verdict v = DecideJson(Stage::kValidate, body);
    EXPECT_EQ(v.action, Action::kTempfail) << body;
    EXPECT_TRUE(v.backend_failure);
    EXPECT_NE(v.reason.find("invalid JSON reply: key 'action'"), std::string::npos) << v.reason;
  }
}

TEST(JsonReply, CodeOfTheWrongClassIsRefusedOrReadTheSafeWay) {
  // "reject" with a temporary code: the safe reading, a tempfail with the script's code.
  Verdict a = DecideJson(Stage::kSave, R"({"action":"reject","smtp_code":450})");
  EXPECT_EQ(a.action, Action::kTempfail);
  EXPECT_EQ(a.smtp_code, "450");
  EXPECT_FALSE(a.backend_failure);
  Verdict c =
      DecideJson(Stage::kSave, R"({"action":"reject","smtp_code":550,"enhanced_code":"4.7.1"})");
  EXPECT_EQ(c.action, Action::kTempfail);
  EXPECT_EQ(c.smtp_code, "451");
  EXPECT_EQ(c.enhanced_code, "4.7.1");
  Verdict d = DecideJson(Stage::kSave, R"({"action":"reject","smtp_code":"55x"})");
  EXPECT_TRUE(d.backend_failure);
  EXPECT_NE(d.reason.find("does not go with reject"), std::string::npos) << d.reason;
  Verdict e = DecideJson(Stage::kSave, R"({"action":"accept","smtp_code":250})");
  EXPECT_NE(e.reason.find("only go with reject or tempfail"), std::string::npos) << e.reason;
}

// "tempfail" means later whatever else the reply gets wrong, and whatever the failure policy.
TEST(JsonReply, TempfailIsTemporaryEvenWhenTheRestOfTheReplyIsWrong) {
  for (const char* body :
       {R"({"action":"tempfail","smtp_code":550})",
        R"({"action":"tempfail","enhanced_code":"5.1.1"})", R"({"action":"tempfail","x":1})",
        R"({"action":"TEMPFAIL"})", R"({"action":"Tempfail","text":7})"}) {
    for (const Stage stage : {Stage::kValidate, Stage::kSave}) {
      for (const FailurePolicy policy :
           {FailurePolicy::kTempfail, FailurePolicy::kAccept, FailurePolicy::kReject}) {
        SCOPED_TRACE(body);
        const Verdict v = DecideJson(stage, body, policy);
        EXPECT_EQ(v.action, Action::kTempfail);
        EXPECT_EQ(v.smtp_code, "451");
        EXPECT_EQ(v.enhanced_code, "4.3.0");
        EXPECT_FALSE(v.backend_failure);
      }
    }
  }
  const Verdict v = DecideJson(Stage::kValidate, R"({"action":"tempfail","smtp_code":550})");
  EXPECT_NE(v.reason.find("does not go with tempfail"), std::string::npos) << v.reason;
}

TEST(JsonReply, ValidateRepliesMaySayHowLongTheyHold) {
  const Verdict v = DecideJson(Stage::kValidate, R"({"action":"accept","cache_ttl":300})");
  EXPECT_EQ(v.action, Action::kAccept);
  ASSERT_TRUE(v.cache_ttl_seconds.has_value());
  EXPECT_EQ(*v.cache_ttl_seconds, 300);
  EXPECT_FALSE(DecideJson(Stage::kValidate, R"({"action":"accept"})").cache_ttl_seconds);
  const Verdict bad = DecideJson(Stage::kValidate, R"({"action":"accept","cache_ttl":-1})");
  EXPECT_TRUE(bad.backend_failure);
  EXPECT_NE(bad.reason.find("'cache_ttl'"), std::string::npos) << bad.reason;
  const Verdict in_save = DecideJson(Stage::kSave, R"({"action":"accept","cache_ttl":5})");
  EXPECT_TRUE(in_save.backend_failure);
  EXPECT_NE(in_save.reason.find("only allowed in a validate reply"), std::string::npos);
}

TEST(JsonReply, ActionNamesAreCaseInsensitive) {
  EXPECT_EQ(DecideJson(Stage::kValidate, R"({"action":"Accept"})").action, Action::kAccept);
  EXPECT_EQ(DecideJson(Stage::kSave, R"({"action":"REJECT"})").action, Action::kReject);
}

TEST(JsonReply, HostileTextLosesItsLineBreaks) {
  Verdict v = DecideJson(Stage::kSave, R"({"action":"reject","text":"no\r\n250 ok\u0000 100%"})");
  EXPECT_EQ(v.action, Action::kReject);
  EXPECT_EQ(v.text, "no  250 ok  100%");
  EXPECT_EQ(v.text.find('\n'), std::string::npos);
}

TEST(JsonReply, MultiLineTextIsKeptLineByLine) {
  Verdict v = DecideJson(Stage::kSave, R"({"action":"reject","text":["first","second","third"]})");
  EXPECT_EQ(v.text, "first");
  EXPECT_EQ(v.more_lines, (std::vector<std::string>{"second", "third"}));
  std::string too_many = R"({"action":"reject","text":[)";
  for (int i = 0; i < 33; ++i) too_many += std::string(i ? "," : "") + "\"l\"";
  too_many += "]}";
  EXPECT_TRUE(DecideJson(Stage::kSave, too_many).backend_failure);
}

TEST(JsonReply, HeaderEditsAreParsedInOrder) {
  Verdict v = DecideJson(Stage::kSave, R"({"action":"accept",
      "add_headers":[{"name":"X-Spam-Score","value":"3.1"}],
      "change_headers":[{"name":"Subject","value":"[SPAM] hi","index":2}],
      "remove_headers":[{"name":"X-Internal"}]})");
  ASSERT_EQ(v.action, Action::kAccept) << v.reason;
  ASSERT_EQ(v.header_edits.size(), 3u);
  EXPECT_EQ(v.header_edits[0].kind, HeaderEdit::Kind::kAdd);
  EXPECT_EQ(v.header_edits[0].name, "X-Spam-Score");
  EXPECT_EQ(v.header_edits[0].value, "3.1");
  EXPECT_EQ(v.header_edits[1].kind, HeaderEdit::Kind::kChange);
  EXPECT_EQ(v.header_edits[1].index, 2);
  EXPECT_EQ(v.header_edits[2].kind, HeaderEdit::Kind::kRemove);
  EXPECT_EQ(v.header_edits[2].index, 1);
}

TEST(JsonReply, BadHeaderNamesAndValuesAreMadeSafeOrRefused) {
  EXPECT_TRUE(DecideJson(Stage::kSave, R"({"action":"accept",
      "add_headers":[{"name":"X-Bad: injected","value":"v"}]})")
                  .backend_failure);
  EXPECT_TRUE(DecideJson(Stage::kSave, R"({"action":"accept",
      "add_headers":[{"name":"X-A"}]})")
                  .backend_failure);
  Verdict v = DecideJson(Stage::kSave, R"({"action":"accept",
      "add_headers":[{"name":"X-A","value":"a\r\nBcc: victim@example.test"}]})");
  ASSERT_EQ(v.header_edits.size(), 1u);
  EXPECT_EQ(v.header_edits[0].value, "a  Bcc: victim@example.test");
}

TEST(JsonReply, SaveOnlyKeysAreRefusedInValidate) {
  Verdict v = DecideJson(Stage::kValidate,
                         R"({"action":"accept","add_headers":[{"name":"X","value":"y"}]})");
  EXPECT_TRUE(v.backend_failure);
  EXPECT_NE(v.reason.find("only allowed in a save reply"), std::string::npos) << v.reason;
}

TEST(JsonReply, RejectRecipientsListsAddresses) {
  Verdict v = DecideJson(Stage::kSave,
                         R"({"action":"accept","reject_recipients":["a@x.test","b@x.test"]})");
  EXPECT_EQ(v.refused_recipients, (std::vector<std::string>{"a@x.test", "b@x.test"}));
  EXPECT_TRUE(
      DecideJson(Stage::kSave, R"({"action":"accept","reject_recipients":"a@x"})").backend_failure);
}

TEST(JsonReply, UnknownKeysAndInvalidJsonAreBackendFailuresNamingTheProblem) {
  Verdict a = DecideJson(Stage::kSave, R"({"action":"accept","acton":"x"})");
  EXPECT_EQ(a.action, Action::kTempfail);
  EXPECT_NE(a.reason.find("unknown key 'acton'"), std::string::npos) << a.reason;
  Verdict b = DecideJson(Stage::kSave, R"({"action":"accept")");
  EXPECT_NE(b.reason.find("not valid JSON"), std::string::npos) << b.reason;
  Verdict c = DecideJson(Stage::kSave, R"(["accept"])");
  EXPECT_NE(c.reason.find("JSON object"), std::string::npos) << c.reason;
  Verdict d = DecideJson(Stage::kSave, R"({"smtp_code":550})");
  EXPECT_NE(d.reason.find("missing key 'action'"), std::string::npos) << d.reason;
}

TEST(FailurePolicy, AcceptPolicyAcceptsOnBackendFailureButNotOnScriptRefusal) {
  BackendOutcome down;
  down.transport = base::Status::ConnectFailed("no php-fpm");
  Verdict v = Decide(Stage::kValidate, down, FailurePolicy::kAccept);
  EXPECT_EQ(v.action, Action::kAccept);
  EXPECT_TRUE(v.backend_failure);
  EXPECT_NE(v.reason.find("no php-fpm"), std::string::npos);
  BackendOutcome refused;
  refused.body = "REJECT 550 5.1.1 no such user";
  EXPECT_EQ(Decide(Stage::kValidate, refused, FailurePolicy::kAccept).action, Action::kReject);
}

TEST(FailurePolicy, RejectPolicyRejectsPermanentlyOnBackendFailure) {
  BackendOutcome bad_status;
  bad_status.http_status = 500;
  Verdict v = Decide(Stage::kSave, bad_status, FailurePolicy::kReject);
  EXPECT_EQ(v.action, Action::kReject);
  EXPECT_EQ(v.smtp_code, "550");
  EXPECT_EQ(v.enhanced_code, "5.3.0");
}

TEST(FailurePolicy, DefaultIsTemporaryFailure) {
  BackendOutcome empty;
  Verdict v = Decide(Stage::kSave, empty);
  EXPECT_EQ(v.action, Action::kTempfail);
  EXPECT_EQ(v.smtp_code, "451");
  EXPECT_TRUE(v.backend_failure);
}

}  // namespace
}  // namespace mail

namespace mail {
namespace {

TEST(ResolveRefusals, DropsUnknownAddressesAndKeepsTheOthers) {
  Verdict v;
  v.action = Verdict::Action::kAccept;
  v.refused_recipients = {"b@x.test", "stranger@x.test", "b@x.test"};
  auto unknown = ResolveRefusals({"a@x.test", "b@x.test"}, &v);
  EXPECT_EQ(unknown, (std::vector<std::string>{"stranger@x.test"}));
  EXPECT_EQ(v.refused_recipients, (std::vector<std::string>{"b@x.test"}));
  EXPECT_EQ(v.action, Verdict::Action::kAccept);
}

TEST(ResolveRefusals, RefusingEveryRecipientRejectsTheMessage) {
  Verdict v;
  v.action = Verdict::Action::kAccept;
  v.refused_recipients = {"a@x.test", "b@x.test"};
  v.header_edits.push_back({});
  ResolveRefusals({"a@x.test", "b@x.test"}, &v);
  EXPECT_EQ(v.action, Verdict::Action::kReject);
  EXPECT_EQ(v.smtp_code, "550");
  EXPECT_EQ(v.enhanced_code, "5.7.1");
  EXPECT_TRUE(v.header_edits.empty());
}

TEST(ResolveRefusals, RefusingEveryRecipientWhileAddingOthersRedirectsTheMessage) {
  Verdict v;
  v.action = Verdict::Action::kAccept;
  v.refused_recipients = {"a@x.test", "b@x.test"};
  v.added_recipients.push_back({"review@x.test", ""});
  ResolveRefusals({"a@x.test", "b@x.test"}, &v);
  EXPECT_EQ(v.action, Verdict::Action::kAccept);
  EXPECT_EQ(v.refused_recipients, (std::vector<std::string>{"a@x.test", "b@x.test"}));
  ASSERT_EQ(v.added_recipients.size(), 1u);
}

}  // namespace
}  // namespace mail
