// Unit tests for milter/mail/decision.h: the whole decision table, row by row, for both stages.
#include "milter/mail/decision.h"

#include <gtest/gtest.h>

#include <string>

namespace mail {
namespace {

using Action = Verdict::Action;

BackendOutcome Reply(std::string body, int http_status = 200) {
  BackendOutcome o;
  o.http_status = http_status;
  o.body = std::move(body);
  return o;
}

BackendOutcome Failed(base::Status s) {
  BackendOutcome o;
  o.transport = std::move(s);
  return o;
}

void ExpectVerdict(const Verdict& v, Action action, const std::string& code,
                   const std::string& enhanced, const std::string& text) {
  EXPECT_EQ(ActionName(v.action), std::string(ActionName(action)));
  EXPECT_EQ(v.smtp_code, code);
  EXPECT_EQ(v.enhanced_code, enhanced);
  EXPECT_EQ(v.text, text);
  EXPECT_EQ(v.text.find_first_of("\r\n"), std::string::npos);
  EXPECT_FALSE(v.reason.empty());
  EXPECT_EQ(v.reason.find('\n'), std::string::npos);
}

void ExpectBackendTempfail(const Verdict& v) {
  ExpectVerdict(v, Action::kTempfail, "451", "4.3.0", "Temporary failure, try again later");
}

constexpr Stage kStages[] = {Stage::kValidate, Stage::kSave};

// --- Rows shared by both stages -----------------------------------------------------------

TEST(DecideTest, TransportFailureTempfailsBothStagesAndNamesTheError) {
  for (Stage stage : kStages) {
    for (const base::Status& s :
         {base::Status::Timeout("reading reply from unix:/run/php.sock"),
          base::Status::ConnectFailed("connect unix:/run/php.sock: No such file or directory"),
          base::Status::IoError("peer closed"), base::Status::ProtocolError("bad record"),
          base::Status::Unavailable("pool exhausted")}) {
      SCOPED_TRACE(std::string(StageName(stage)) + " " + s.ToString());
      const Verdict v = Decide(stage, Failed(s));
      ExpectBackendTempfail(v);
      EXPECT_NE(v.reason.find(s.message()), std::string::npos) << v.reason;
    }
  }
}

TEST(DecideTest, TransportFailureWinsOverAnyBody) {
  BackendOutcome o = Reply("SAVED");
  o.transport = base::Status::Timeout("x");
  ExpectBackendTempfail(Decide(Stage::kSave, o));
  o.body = "PASS";
  ExpectBackendTempfail(Decide(Stage::kValidate, o));
}

TEST(DecideTest, Non2xxStatusTempfailsEvenWithKeywordBody) {
  for (Stage stage : kStages) {
    for (int status : {404, 403, 500, 502, 302, 100, 199, 300}) {
      SCOPED_TRACE(std::string(StageName(stage)) + " " + std::to_string(status));
      ExpectBackendTempfail(Decide(stage, Reply("PASS", status)));
      ExpectBackendTempfail(Decide(stage, Reply("SAVED", status)));
      ExpectBackendTempfail(Decide(stage, Reply("REJECT 550 5.1.1 no", status)));
    }
  }
}

TEST(DecideTest, Non2xxReasonNamesStatusAndFirstLine) {
  const Verdict v = Decide(Stage::kValidate, Reply("File not found.\n", 404));
  EXPECT_EQ(v.reason, "script returned Status: 404 (first line \"File not found.\")");
}

TEST(DecideTest, Any2xxStatusIsAccepted) {
  EXPECT_EQ(Decide(Stage::kValidate, Reply("PASS", 204)).action, Action::kAccept);
  EXPECT_EQ(Decide(Stage::kSave, Reply("SAVED", 299)).action, Action::kAccept);
}

TEST(DecideTest, EmptyOrWhitespaceBodyTempfailsBothStages) {
  for (Stage stage : kStages) {
    for (const char* body : {"", "\n", " \r\n\t"}) {
      SCOPED_TRACE(std::string(StageName(stage)) + " body '" + body + "'");
      const Verdict v = Decide(stage, Reply(body));
      ExpectBackendTempfail(v);
      EXPECT_NE(v.reason.find("empty"), std::string::npos) << v.reason;
    }
  }
}

// --- Validate stage ---------------------------------------------------------------------

TEST(DecideValidateTest, PassAndPassedAccept) {
  for (const char* body : {"PASS", "PASSED", "\n  PASS\n"}) {
    ExpectVerdict(Decide(Stage::kValidate, Reply(body)), Action::kAccept, "", "", "");
  }
}

TEST(DecideValidateTest, ScriptRejectIsHonoured) {
  ExpectVerdict(Decide(Stage::kValidate, Reply("REJECT 553 5.1.3 Bad address syntax")),
                Action::kReject, "553", "5.1.3", "Bad address syntax");
}

TEST(DecideValidateTest, ScriptRejectWithoutEnhancedCodeOrTextGetsDefaults) {
  ExpectVerdict(Decide(Stage::kValidate, Reply("REJECT 550")), Action::kReject, "550", "5.1.1",
                "Recipient address rejected");
}

TEST(DecideValidateTest, ScriptTempfailIsHonoured) {
  ExpectVerdict(Decide(Stage::kValidate, Reply("TEMPFAIL 452 4.2.2 Over quota")), Action::kTempfail,
                "452", "4.2.2", "Over quota");
}

TEST(DecideValidateTest, ScriptTempfailWithoutEnhancedCodeOrTextGetsDefaults) {
  ExpectVerdict(Decide(Stage::kValidate, Reply("TEMPFAIL 450")), Action::kTempfail, "450", "4.3.0",
                "Temporary failure, try again later");
}

TEST(DecideValidateTest, AnyOtherNonEmptyReplyRejectsUserUnknown) {
  for (const char* body : {"NO", "SAVED", "DISCARD", "pass", "REJECT", "<b>Fatal error</b>",
                           "550 5.1.1 no", "Warning: mailbox nearly full"}) {
    SCOPED_TRACE(body);
    const Verdict v = Decide(Stage::kValidate, Reply(body));
    ExpectVerdict(v, Action::kReject, "550", "5.1.1", "Recipient address rejected: User unknown");
    EXPECT_NE(v.reason.find(body), std::string::npos) << v.reason;
  }
}

// The script said "later" in a form the strict grammar does not know: never a 550.
TEST(DecideValidateTest, EveryFormOfTempfailIsTemporary) {
  for (const char* body :
       {"TEMPFAIL", "TEMPFAIL 4.2.1 Mailbox locked", "TEMPFAIL 550 5.1.1 x", "tempfail",
        "Tempfail: later", "REJECT 450 4.1.1 wrong class", "451 4.7.1 greylisted"}) {
    SCOPED_TRACE(body);
    for (const FailurePolicy policy :
         {FailurePolicy::kTempfail, FailurePolicy::kAccept, FailurePolicy::kReject}) {
      const Verdict v = Decide(Stage::kValidate, Reply(body), policy);
      EXPECT_EQ(v.action, Action::kTempfail);
      EXPECT_EQ(v.smtp_code[0], '4');
      EXPECT_EQ(v.enhanced_code[0], '4');
      EXPECT_FALSE(v.backend_failure);
    }
  }
  ExpectVerdict(Decide(Stage::kValidate, Reply("TEMPFAIL 4.2.1 Mailbox locked")), Action::kTempfail,
                "451", "4.2.1", "Mailbox locked");
  ExpectVerdict(Decide(Stage::kValidate, Reply("TEMPFAIL")), Action::kTempfail, "451", "4.3.0",
                "Temporary failure, try again later");
}

// A deprecation notice printed before PASS (display_errors on) is the script failing: the
// failure policy decides (temporary by default), and the reason carries PHP's text.
TEST(DecideTest, PhpErrorOutputIsAScriptFailureNotARefusal) {
  const std::string body =
      "<br />\n<b>Deprecated</b>:  strftime() is deprecated in <b>/srv/validate.php</b> on "
      "line <b>7</b><br />\nPASS";
  for (const Stage stage : kStages) {
    const Verdict v = Decide(stage, Reply(body));
    ExpectBackendTempfail(v);
    EXPECT_TRUE(v.backend_failure);
    EXPECT_NE(v.reason.find("PHP error"), std::string::npos) << v.reason;
    EXPECT_NE(v.reason.find("strftime() is deprecated in /srv/validate.php on line 7"),
              std::string::npos)
        << v.reason;
  }
}

// --- Save stage -------------------------------------------------------------------------

TEST(DecideSaveTest, SavedAccepts) {
  for (const char* body : {"SAVED", "\r\nSAVED id=7\n"}) {
    ExpectVerdict(Decide(Stage::kSave, Reply(body)), Action::kAccept, "", "", "");
  }
}

TEST(DecideSaveTest, ScriptRejectIsHonoured) {
  ExpectVerdict(Decide(Stage::kSave, Reply("REJECT 554 5.7.1 Spam, go away")), Action::kReject,
                "554", "5.7.1", "Spam, go away");
}

TEST(DecideSaveTest, ScriptRejectWithoutEnhancedCodeGetsPolicyDefault) {
  const Verdict v = Decide(Stage::kSave, Reply("REJECT 550"));
  EXPECT_EQ(v.action, Action::kReject);
  EXPECT_EQ(v.smtp_code, "550");
  EXPECT_EQ(v.enhanced_code, "5.7.1");
  EXPECT_FALSE(v.text.empty());
}

TEST(DecideSaveTest, ScriptTempfailIsHonoured) {
  ExpectVerdict(Decide(Stage::kSave, Reply("TEMPFAIL 421 4.4.5 Busy")), Action::kTempfail, "421",
                "4.4.5", "Busy");
  ExpectVerdict(Decide(Stage::kSave, Reply("TEMPFAIL 451")), Action::kTempfail, "451", "4.3.0",
                "Temporary failure, try again later");
}

TEST(DecideSaveTest, DiscardDiscards) {
  ExpectVerdict(Decide(Stage::kSave, Reply("DISCARD\n")), Action::kDiscard, "", "", "");
}

TEST(DecideSaveTest, SavedFollowedByMoreOfTheWordIsNotSaved) {
  for (const char* body : {"SAVED_FAILED could not write", "SAVEDX", "SAVED:no"}) {
    SCOPED_TRACE(body);
    ExpectBackendTempfail(Decide(Stage::kSave, Reply(body)));
  }
}

TEST(DecideSaveTest, AnythingElseTempfailsAndQuotesFirstLine) {
  for (const char* body : {"PASS", "OK", "saved", "SAVED_FAILED", "<br />\n<b>Warning</b>"}) {
    SCOPED_TRACE(body);
    const Verdict v = Decide(Stage::kSave, Reply(body));
    ExpectBackendTempfail(v);
    const std::string first_line = std::string(body).substr(0, std::string(body).find('\n'));
    EXPECT_NE(v.reason.find("\"" + first_line + "\""), std::string::npos) << v.reason;
  }
}

TEST(DecideSaveTest, NeverProducesPermanentFailureWithoutScriptRequest) {
  for (const char* body : {"", "PASS", "garbage", "REJECT", "REJECT 450", "DISCARDED",
                           "TEMPFAIL 550 5.1.1 x", "REJECT 550 4.1.1 x"}) {
    EXPECT_NE(Decide(Stage::kSave, Reply(body)).action, Action::kReject) << body;
  }
}

// --- Text safety --------------------------------------------------------------------------

TEST(DecideTest, ScriptTextCannotInjectLinesAndPercentIsLeftForTheGlue) {
  const Verdict v =
      Decide(Stage::kValidate, Reply(std::string("REJECT 550 5.1.1 100%\r off\0x\n250 ok", 35)));
  ExpectVerdict(v, Action::kReject, "550", "5.1.1", "100% offx");
}

}  // namespace
}  // namespace mail
