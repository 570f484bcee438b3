// Unit tests for milter/mail/reply.h: the script reply keywords, coded lines and their class
// checks, and what reaches the SMTP text and the log line.
#include "milter/mail/reply.h"

#include <gtest/gtest.h>

#include <string>

namespace mail {
namespace {

using Kind = ScriptReply::Kind;

TEST(ScriptReplyTest, PassAloneIsPass) {
  EXPECT_EQ(ParseScriptReply("PASS").kind, Kind::kPass);
}

TEST(ScriptReplyTest, PassedIsPassLikeTheOriginalChecked) {
  EXPECT_EQ(ParseScriptReply("PASSED").kind, Kind::kPass);
}

TEST(ScriptReplyTest, PassWithNewlineAndLeadingWhitespaceIsPass) {
  EXPECT_EQ(ParseScriptReply("PASS\n").kind, Kind::kPass);
  EXPECT_EQ(ParseScriptReply(" \r\n\t\nPASS\r\nmore").kind, Kind::kPass);
}

TEST(ScriptReplyTest, AcceptingKeywordsAreCaseSensitive) {
  EXPECT_EQ(ParseScriptReply("pass").kind, Kind::kOther);
  EXPECT_EQ(ParseScriptReply("Saved").kind, Kind::kOther);
  EXPECT_EQ(ParseScriptReply("reject 550 5.1.1 no").kind, Kind::kOther);
  EXPECT_EQ(ParseScriptReply("discard").kind, Kind::kOther);
}

TEST(ScriptReplyTest, PassMustStartTheBody) {
  EXPECT_EQ(ParseScriptReply("NOPASS").kind, Kind::kOther);
  EXPECT_EQ(ParseScriptReply("Warning: x\nPASS").kind, Kind::kOther);
  EXPECT_EQ(ParseScriptReply("PAS").kind, Kind::kOther);
}

TEST(ScriptReplyTest, SavedIsSaved) {
  EXPECT_EQ(ParseScriptReply("SAVED").kind, Kind::kSaved);
  EXPECT_EQ(ParseScriptReply("\n  SAVED id=42\n").kind, Kind::kSaved);
  EXPECT_EQ(ParseScriptReply("SAVED\tid").kind, Kind::kSaved);
  EXPECT_EQ(ParseScriptReply("SAVED\r\n").kind, Kind::kSaved);
}

// The original processor's prefix match accepted these, and the message was gone.
TEST(ScriptReplyTest, SavedMustBeTheWholeFirstWord) {
  for (const char* body :
       {"SAVED_FAILED could not write", "SAVEDX", "SAVED:", "SAVED.", "SAVEDNOT", "SAVED-FAILED"}) {
    SCOPED_TRACE(body);
    EXPECT_EQ(ParseScriptReply(body).kind, Kind::kOther);
  }
}

TEST(ScriptReplyTest, ByteOrderMarkBeforeTheKeywordIsSkipped) {
  EXPECT_EQ(ParseScriptReply("\xEF\xBB\xBFPASS").kind, Kind::kPass);
  EXPECT_EQ(ParseScriptReply("\xEF\xBB\xBF\nSAVED\n").kind, Kind::kSaved);
}

TEST(ScriptReplyTest, RejectWithCodeEnhancedCodeAndText) {
  const ScriptReply r = ParseScriptReply("REJECT 550 5.1.1 No such user here\n");
  EXPECT_EQ(r.kind, Kind::kReject);
  EXPECT_EQ(r.smtp_code, "550");
  EXPECT_EQ(r.enhanced_code, "5.1.1");
  EXPECT_EQ(r.text, "No such user here");
  EXPECT_EQ(r.first_line, "REJECT 550 5.1.1 No such user here");
}

TEST(ScriptReplyTest, RejectWithCodeOnly) {
  const ScriptReply r = ParseScriptReply("REJECT 554");
  EXPECT_EQ(r.kind, Kind::kReject);
  EXPECT_EQ(r.smtp_code, "554");
  EXPECT_EQ(r.enhanced_code, "");
  EXPECT_EQ(r.text, "");
}

TEST(ScriptReplyTest, RejectWithCodeAndTextButNoEnhancedCode) {
  const ScriptReply r = ParseScriptReply("REJECT 550 mailbox full\r\n");
  EXPECT_EQ(r.kind, Kind::kReject);
  EXPECT_EQ(r.enhanced_code, "");
  EXPECT_EQ(r.text, "mailbox full");
}

TEST(ScriptReplyTest, TextStartingWithDigitIsNotMistakenForEnhancedCode) {
  const ScriptReply r = ParseScriptReply("REJECT 550 2 many recipients");
  EXPECT_EQ(r.kind, Kind::kReject);
  EXPECT_EQ(r.enhanced_code, "");
  EXPECT_EQ(r.text, "2 many recipients");
}

TEST(ScriptReplyTest, TabsSeparateTokens) {
  const ScriptReply r = ParseScriptReply("REJECT\t553\t5.7.1\tgo away");
  EXPECT_EQ(r.kind, Kind::kReject);
  EXPECT_EQ(r.smtp_code, "553");
  EXPECT_EQ(r.enhanced_code, "5.7.1");
  EXPECT_EQ(r.text, "go away");
}

TEST(ScriptReplyTest, TempfailWithCodes) {
  const ScriptReply r = ParseScriptReply("TEMPFAIL 452 4.2.2 Mailbox over quota");
  EXPECT_EQ(r.kind, Kind::kTempfail);
  EXPECT_EQ(r.smtp_code, "452");
  EXPECT_EQ(r.enhanced_code, "4.2.2");
  EXPECT_EQ(r.text, "Mailbox over quota");
}

// A script that names a temporary code never gets a bounce, whatever the keyword.
TEST(ScriptReplyTest, RejectWithTemporaryCodeIsTempfail) {
  const ScriptReply r = ParseScriptReply("REJECT 450 4.1.1 nope");
  EXPECT_EQ(r.kind, Kind::kTempfail);
  EXPECT_EQ(r.smtp_code, "450");
  EXPECT_EQ(r.enhanced_code, "4.1.1");
  EXPECT_EQ(r.text, "nope");
  EXPECT_EQ(r.first_line, "REJECT 450 4.1.1 nope");
  EXPECT_NE(r.note.find("TEMPFAIL"), std::string::npos);
  EXPECT_EQ(ParseScriptReply("REJECT 550 4.1.1 x").kind, Kind::kTempfail);
}

// TEMPFAIL means "later" however it is written: the codes are kept where valid, else dropped
// so that the defaults (451 4.3.0) apply.
TEST(ScriptReplyTest, TempfailInAnyFormIsTempfail) {
  struct Case {
    const char* body;
    const char* code;
    const char* enhanced;
    const char* text;
  } const cases[] = {
      {"TEMPFAIL", "", "", ""},
      {"TEMPFAIL\n", "", "", ""},
      {"TEMPFAIL 4.2.1 Mailbox locked", "", "4.2.1", "Mailbox locked"},
      {"TEMPFAIL Mailbox locked", "", "", "Mailbox locked"},
      {"TEMPFAIL 550 5.1.1 nope", "", "", "nope"},
      {"TEMPFAIL 451 5.3.0 x", "451", "", "x"},
      {"TEMPFAIL 45 x", "", "", "45 x"},
      {"TEMPFAIL 4510 x", "", "", "4510 x"},
      {"tempfail 452 4.2.2 full", "452", "4.2.2", "full"},
      {"Tempfail: try later", "", "", "try later"},
      {"TEMPFAILED", "", "", ""},
      {"TEMPFAIL, disk full", "", "", "disk full"},
      {"\n\n  TEMPFAIL 421 4.4.5 Busy\r\nmore", "421", "4.4.5", "Busy"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.body);
    const ScriptReply r = ParseScriptReply(c.body);
    EXPECT_EQ(r.kind, Kind::kTempfail);
    EXPECT_EQ(r.smtp_code, c.code);
    EXPECT_EQ(r.enhanced_code, c.enhanced);
    EXPECT_EQ(r.text, c.text);
  }
  EXPECT_NE(ParseScriptReply("TEMPFAIL 550 5.1.1 nope").note.find("550"), std::string::npos);
}

TEST(ScriptReplyTest, BareTemporaryCodeLineIsTempfail) {
  const ScriptReply r = ParseScriptReply("451 4.2.1 try again later\n");
  EXPECT_EQ(r.kind, Kind::kTempfail);
  EXPECT_EQ(r.smtp_code, "451");
  EXPECT_EQ(r.enhanced_code, "4.2.1");
  EXPECT_EQ(r.text, "try again later");
  EXPECT_EQ(ParseScriptReply("450").kind, Kind::kTempfail);
  EXPECT_EQ(ParseScriptReply("4500 x").kind, Kind::kOther);
  EXPECT_EQ(ParseScriptReply("550 5.1.1 no").kind, Kind::kOther);
}

TEST(ScriptReplyTest, MismatchedEnhancedCodeClassIsOther) {
  EXPECT_EQ(ParseScriptReply("REJECT 550 2.0.0 x").kind, Kind::kOther);
}

TEST(ScriptReplyTest, MalformedCodesAreOther) {
  EXPECT_EQ(ParseScriptReply("REJECT").kind, Kind::kOther);
  EXPECT_EQ(ParseScriptReply("REJECT ").kind, Kind::kOther);
  EXPECT_EQ(ParseScriptReply("REJECT 55").kind, Kind::kOther);
  EXPECT_EQ(ParseScriptReply("REJECT 5500 x").kind, Kind::kOther);
  EXPECT_EQ(ParseScriptReply("REJECT 55x x").kind, Kind::kOther);
  EXPECT_EQ(ParseScriptReply("REJECT 550-5.1.1 x").kind, Kind::kOther);
  EXPECT_EQ(ParseScriptReply("REJECT 550 5.1 x").kind, Kind::kOther);
  EXPECT_EQ(ParseScriptReply("REJECT 550 5.1.1x y").kind, Kind::kOther);
  EXPECT_EQ(ParseScriptReply("REJECT 550 5.1234.1 y").kind, Kind::kOther);
  EXPECT_EQ(ParseScriptReply("REJECT 550 5..1 y").kind, Kind::kOther);
  EXPECT_EQ(ParseScriptReply("REJECTED 550 5.1.1 x").kind, Kind::kOther);
}

TEST(ScriptReplyTest, CodedLineMustBeTheFirstLine) {
  EXPECT_EQ(ParseScriptReply("hello\nREJECT 550 5.1.1 x").kind, Kind::kOther);
}

TEST(ScriptReplyTest, LaterLinesDoNotLeakIntoText) {
  const ScriptReply r = ParseScriptReply("REJECT 550 5.1.1 first\r\nsecond line\n");
  EXPECT_EQ(r.text, "first");
}

TEST(ScriptReplyTest, HostileTextLosesCrNulAndControlCharacters) {
  static const char kBody[] = "REJECT 550 5.1.1 a\rb\0c\x1b[31md\x7f%s\n250 ok";
  const std::string body(kBody, sizeof(kBody) - 1);
  const ScriptReply r = ParseScriptReply(body);
  ASSERT_EQ(r.kind, Kind::kReject);
  EXPECT_EQ(r.text, "abc?[31md?%s");
  EXPECT_EQ(r.text.find_first_of(std::string("\r\n\0", 3)), std::string::npos);
}

TEST(ScriptReplyTest, TextIsBoundedForTheSmtpReplyLine) {
  const ScriptReply r = ParseScriptReply("REJECT 550 5.1.1 " + std::string(5000, 'x'));
  EXPECT_EQ(r.kind, Kind::kReject);
  EXPECT_EQ(r.text.size(), kMaxReplyText);
}

TEST(ScriptReplyTest, DiscardAloneOrWithTextIsDiscard) {
  EXPECT_EQ(ParseScriptReply("DISCARD").kind, Kind::kDiscard);
  EXPECT_EQ(ParseScriptReply("DISCARD\n").kind, Kind::kDiscard);
  EXPECT_EQ(ParseScriptReply("\nDISCARD spam score 12").kind, Kind::kDiscard);
  EXPECT_EQ(ParseScriptReply("DISCARDED").kind, Kind::kOther);
}

TEST(ScriptReplyTest, EmptyAndWhitespaceBodiesAreOtherWithEmptyFirstLine) {
  for (const char* body : {"", " ", "\r\n\r\n", "\t\n "}) {
    const ScriptReply r = ParseScriptReply(body);
    EXPECT_EQ(r.kind, Kind::kOther);
    EXPECT_EQ(r.first_line, "");
  }
}

TEST(ScriptReplyTest, FirstLineIsTrimmedBoundedAndPrintable) {
  const ScriptReply r = ParseScriptReply("  \n<i>Fatal\terror</i>\x01  \r\nStack trace");
  EXPECT_EQ(r.kind, Kind::kOther);
  EXPECT_EQ(r.first_line, "<i>Fatal?error</i>?");
  const ScriptReply long_reply = ParseScriptReply(std::string(1000, 'y'));
  EXPECT_EQ(long_reply.first_line.size(), kMaxReplyFirstLine);
}

// What php-fpm prints with display_errors on (PHP's built-in default, and php.ini-development),
// with and without html_errors, the CLI form, and Xdebug's.
TEST(ScriptReplyTest, PhpErrorDisplayBeforeTheKeywordIsPhpError) {
  for (const char* body : {
           "\nDeprecated: strftime() is deprecated in /srv/v.php on line 3\nPASS",
           "<br />\n<b>Deprecated</b>:  strftime() is deprecated in <b>/srv/v.php</b> on line "
           "<b>3</b><br />\nPASS",
           "<br />\n<b>Warning</b>:  Undefined variable $x in <b>/srv/s.php</b> on line "
           "<b>9</b><br />\nSAVED",
           "PHP Notice:  Undefined index: a in /srv/v.php on line 4\nPASS",
           "\nFatal error: Uncaught Exception: boom in /srv/s.php:3\nStack trace:\n#0 {main}\n"
           "  thrown in /srv/s.php on line 3\n",
           "<br />\n<b>Parse error</b>:  syntax error in <b>/srv/v.php</b> on line <b>2</b><br />",
           "<br />\n<font size='1'><table class='xdebug-error xe-warning' dir='ltr'>PASS",
       }) {
    SCOPED_TRACE(body);
    const ScriptReply r = ParseScriptReply(body);
    EXPECT_EQ(r.kind, Kind::kPhpError);
    EXPECT_FALSE(r.php_error.empty());
    EXPECT_EQ(r.php_error.find_first_of("<>\r\n"), std::string::npos) << r.php_error;
  }
  EXPECT_EQ(ParseScriptReply("<br />\n<b>Deprecated</b>:  f() is deprecated in <b>/v.php</b> on "
                             "line <b>3</b><br />\nPASS")
                .php_error,
            "Deprecated: f() is deprecated in /v.php on line 3 PASS");
}

TEST(ScriptReplyTest, ScriptWordsThatLookLikePhpLabelsAreNotPhpErrors) {
  EXPECT_EQ(ParseScriptReply("Warning: mailbox nearly full").kind, Kind::kOther);
  EXPECT_EQ(ParseScriptReply("Notice").kind, Kind::kOther);
}

}  // namespace
}  // namespace mail
