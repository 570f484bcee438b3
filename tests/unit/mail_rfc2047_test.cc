// Unit tests for milter/mail/rfc2047.h: Subject decoding to UTF-8 as Go's
// mime.WordDecoder.DecodeHeader does it, plus unfolding and literal fallbacks.
#include "milter/mail/rfc2047.h"

#include <gtest/gtest.h>

#include <string>

namespace mail {
namespace {

TEST(Rfc2047Test, EmptyValueDecodesToEmpty) {
  EXPECT_EQ(DecodeHeaderValue(""), "");
  EXPECT_EQ(DecodeHeaderValue(" \t "), "");
}

TEST(Rfc2047Test, PlainAsciiPassesThroughTrimmed) {
  EXPECT_EQ(DecodeHeaderValue(" Hello, world  "), "Hello, world");
  EXPECT_EQ(DecodeHeaderValue("100% = 2?"), "100% = 2?");
}

TEST(Rfc2047Test, DecodesUtf8QuotedPrintableWord) {
  EXPECT_EQ(DecodeHeaderValue("=?UTF-8?Q?J=C3=BCrgen_M=C3=BCller?="),
            "J\xC3\xBCrgen M\xC3\xBCller");
}

TEST(Rfc2047Test, DecodesUtf8Base64Word) {
  // "Grüße" in UTF-8.
  EXPECT_EQ(DecodeHeaderValue("=?utf-8?B?R3LDvMOfZQ==?="),
            "Gr\xC3\xBC\xC3\x9F"
            "e");
}

TEST(Rfc2047Test, DecodesIsoLatin1QuotedPrintableWord) {
  EXPECT_EQ(DecodeHeaderValue("=?ISO-8859-1?Q?Caf=E9?="), "Caf\xC3\xA9");
}

TEST(Rfc2047Test, DecodesIsoLatin1Base64Word) {
  // "Café" in ISO-8859-1 is 43 61 66 E9.
  EXPECT_EQ(DecodeHeaderValue("=?iso-8859-1?b?Q2Fm6Q==?="), "Caf\xC3\xA9");
}

TEST(Rfc2047Test, EncodingLetterIsCaseInsensitive) {
  EXPECT_EQ(DecodeHeaderValue("=?utf-8?q?a_b?="), "a b");
  EXPECT_EQ(DecodeHeaderValue("=?utf-8?b?YWI=?="), "ab");
}

TEST(Rfc2047Test, DecodesIso885915EuroSign) {
  EXPECT_EQ(DecodeHeaderValue("=?ISO-8859-15?Q?=A4?="), "\xE2\x82\xAC");
}

TEST(Rfc2047Test, DecodesWindows1252ThroughIconv) {
  // 0x80 is the euro sign and 0x93/0x94 curly quotes in Windows-1252.
  EXPECT_EQ(DecodeHeaderValue("=?windows-1252?Q?=93=80=94?="),
            "\xE2\x80\x9C\xE2\x82\xAC\xE2\x80\x9D");
}

TEST(Rfc2047Test, AcceptsRfc2231LanguageSuffix) {
  EXPECT_EQ(DecodeHeaderValue("=?US-ASCII*EN?Q?Keith_Moore?="), "Keith Moore");
  EXPECT_EQ(DecodeHeaderValue("=?iso-8859-1*de?Q?Gr=FC=DFe?="),
            "Gr\xC3\xBC\xC3\x9F"
            "e");
}

TEST(Rfc2047Test, DropsWhitespaceBetweenAdjacentEncodedWords) {
  EXPECT_EQ(DecodeHeaderValue("=?UTF-8?Q?Hello,?= =?UTF-8?Q?_world?="), "Hello, world");
  EXPECT_EQ(DecodeHeaderValue("=?UTF-8?Q?a?=\t  =?ISO-8859-1?Q?b?=  =?UTF-8?B?Yw==?="), "abc");
}

TEST(Rfc2047Test, KeepsPlainTextAndSpacesBetweenEncodedWords) {
  EXPECT_EQ(DecodeHeaderValue("Re: =?UTF-8?Q?caf=C3=A9?= and =?ISO-8859-1?Q?th=E9?= now"),
            "Re: caf\xC3\xA9 and th\xC3\xA9 now");
}

TEST(Rfc2047Test, UnfoldsLfTabBetweenEncodedWords) {
  // Postfix joins folded lines with a bare LF.
  EXPECT_EQ(DecodeHeaderValue(" =?UTF-8?Q?first?=\n\t=?UTF-8?Q?_second?="), "first second");
}

TEST(Rfc2047Test, UnfoldsCrlfSpaceInPlainText) {
  EXPECT_EQ(DecodeHeaderValue("a long\r\n subject line"), "a long subject line");
  EXPECT_EQ(DecodeHeaderValue("tab\n\tfolded"), "tab\tfolded");
}

TEST(Rfc2047Test, UnfoldsFoldedPlainTextBeforeEncodedWord) {
  EXPECT_EQ(DecodeHeaderValue("Price:\r\n =?UTF-8?Q?=E2=82=AC5?="),
            "Price: \xE2\x82\xAC"
            "5");
}

TEST(Rfc2047Test, KeepsMalformedQuotedPrintableWordLiterally) {
  EXPECT_EQ(DecodeHeaderValue("=?UTF-8?Q?bad=ZZ?="), "=?UTF-8?Q?bad=ZZ?=");
  EXPECT_EQ(DecodeHeaderValue("=?UTF-8?Q?trunc=4?="), "=?UTF-8?Q?trunc=4?=");
}

TEST(Rfc2047Test, KeepsMalformedBase64WordLiterally) {
  EXPECT_EQ(DecodeHeaderValue("=?UTF-8?B?!!!!?="), "=?UTF-8?B?!!!!?=");
  EXPECT_EQ(DecodeHeaderValue("=?UTF-8?B?QUJDR?="), "=?UTF-8?B?QUJDR?=");
}

TEST(Rfc2047Test, KeepsWordWithUnknownEncodingLetterLiterally) {
  EXPECT_EQ(DecodeHeaderValue("=?UTF-8?X?abc?="), "=?UTF-8?X?abc?=");
}

TEST(Rfc2047Test, KeepsUnterminatedWordLiterally) {
  EXPECT_EQ(DecodeHeaderValue("=?UTF-8?Q?never closed"), "=?UTF-8?Q?never closed");
  EXPECT_EQ(DecodeHeaderValue("=?"), "=?");
  EXPECT_EQ(DecodeHeaderValue("a =?UTF-8"), "a =?UTF-8");
}

TEST(Rfc2047Test, KeepsUnknownCharsetWordLiterally) {
  EXPECT_EQ(DecodeHeaderValue("=?x-no-such-charset?Q?abc?="), "=?x-no-such-charset?Q?abc?=");
}

TEST(Rfc2047Test, RefusesCharsetNamesThatCouldSteerIconv) {
  EXPECT_EQ(DecodeHeaderValue("=?UTF-8//TRANSLIT?Q?abc?="), "=?UTF-8//TRANSLIT?Q?abc?=");
}

TEST(Rfc2047Test, MalformedWordDoesNotSwallowFollowingGoodWord) {
  EXPECT_EQ(DecodeHeaderValue("=?UTF-8?X?bad?= =?UTF-8?Q?good?="), "=?UTF-8?X?bad?= good");
}

TEST(Rfc2047Test, WhitespaceAfterMalformedWordIsKept) {
  EXPECT_EQ(DecodeHeaderValue("=?UTF-8?Q?a?= =?zz-unknown?Q?b?= =?UTF-8?Q?c?="),
            "a =?zz-unknown?Q?b?= c");
}

TEST(Rfc2047Test, LeavesInvalidUtf8InPlainTextAsBytes) {
  EXPECT_EQ(DecodeHeaderValue("caf\xE9 \xFF"), "caf\xE9 \xFF");
}

TEST(Rfc2047Test, DecodesEmptyEncodedWord) {
  EXPECT_EQ(DecodeHeaderValue("a =?UTF-8?Q?"
                              "?= b"),
            "a  b");
}

TEST(Rfc2047Test, ReplacesBytesInvalidInDeclaredCharset) {
  // 0x81 is unassigned in Windows-1252: marked, the rest still decoded.
  EXPECT_EQ(DecodeHeaderValue("=?windows-1252?Q?a=81b?="),
            "a\xEF\xBF\xBD"
            "b");
}

TEST(Rfc2047Test, DecodesStatefulIso2022Jp) {
  // "日本" in ISO-2022-JP: ESC $ B 46 7C 4B 5C ESC ( B.
  EXPECT_EQ(DecodeHeaderValue("=?ISO-2022-JP?B?GyRCRnxLXBsoQg==?="), "\xE6\x97\xA5\xE6\x9C\xAC");
}

TEST(Rfc2047Test, DecodesQuestionMarkAndUnderscoreInQWord) {
  EXPECT_EQ(DecodeHeaderValue("=?UTF-8?Q?why=3F_=5F_?="), "why? _ ");
}

}  // namespace
}  // namespace mail
