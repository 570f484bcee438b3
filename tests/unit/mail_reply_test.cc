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

TEST(ScriptReplyTest, KeywordsAreCaseSensitive) {
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

TEST(ScriptReplyTest, RejectWithTemporaryCodeIsOther) {
  const ScriptReply r = ParseScriptReply("REJECT 450 4.1.1 nope");
  EXPECT_EQ(r.kind, Kind::kOther);
  EXPECT_EQ(r.smtp_code, "");
  EXPECT_EQ(r.text, "");
  EXPECT_EQ(r.first_line, "REJECT 450 4.1.1 nope");
}

TEST(ScriptReplyTest, TempfailWithPermanentCodeIsOther) {
  EXPECT_EQ(ParseScriptReply("TEMPFAIL 550 5.1.1 nope").kind, Kind::kOther);
}

TEST(ScriptReplyTest, MismatchedEnhancedCodeClassIsOther) {
  EXPECT_EQ(ParseScriptReply("REJECT 550 4.1.1 x").kind, Kind::kOther);
  EXPECT_EQ(ParseScriptReply("TEMPFAIL 451 5.3.0 x").kind, Kind::kOther);
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
  EXPECT_EQ(ParseScriptReply("TEMPFAIL x").kind, Kind::kOther);
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
  const ScriptReply r = ParseScriptReply("  \n<b>Fatal\terror</b>\x01  \r\nStack trace");
  EXPECT_EQ(r.kind, Kind::kOther);
  EXPECT_EQ(r.first_line, "<b>Fatal?error</b>?");
  const ScriptReply long_reply = ParseScriptReply(std::string(1000, 'y'));
  EXPECT_EQ(long_reply.first_line.size(), kMaxReplyFirstLine);
}

TEST(ScriptReplyTest, PhpWarningBeforeKeywordIsOther) {
  EXPECT_EQ(ParseScriptReply("<br />\n<b>Warning</b>: x\nSAVED").kind, Kind::kOther);
}

}  // namespace
}  // namespace mail
