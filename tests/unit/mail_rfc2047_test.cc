// Unit tests for milter/mail/rfc2047.h: Subject decoding to UTF-8 as Go's
// mime.WordDecoder.DecodeHeader does it, plus unfolding and literal fallbacks.
#include "milter/mail/rfc2047.h"

#include <gtest/gtest.h>
#include <time.h>

#include <string>
#include <string_view>
#include <vector>

#include "tests/fuzz/utf8_reference.h"

namespace mail {
namespace {

const std::string kFffd = "\xEF\xBF\xBD";  // U+FFFD

using fuzz::IsValidUtf8;

// A Unicode control (general category Cc) other than TAB: C0, DEL, or C1 (C2 80..C2 9F).
bool HasControl(std::string_view s) {
  for (size_t i = 0; i < s.size(); ++i) {
    const auto b = static_cast<unsigned char>(s[i]);
    if ((b < 0x20 && b != '\t') || b == 0x7F) return true;
    if (b == 0xC2 && i + 1 < s.size() && static_cast<unsigned char>(s[i + 1]) < 0xA0) return true;
  }
  return false;
}

// Decodes `raw` and checks what every decoded Subject must be: valid UTF-8, no controls.
std::string DecodeChecked(std::string_view raw) {
  std::string out = DecodeHeaderValue(raw);
  EXPECT_TRUE(IsValidUtf8(out)) << testing::PrintToString(out);
  EXPECT_FALSE(HasControl(out)) << testing::PrintToString(out);
  return out;
}

std::string Trim(std::string s) {
  while (!s.empty() && s.back() == ' ') s.pop_back();
  return s;
}

std::string Repeat(std::string_view unit, size_t min_bytes) {
  std::string out;
  out.reserve(min_bytes + unit.size());
  while (out.size() < min_bytes) out.append(unit);
  return out;
}

// CPU time of this thread, not wall time: a loaded CI machine must not fail the bound.
double ThreadCpuSeconds() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) / 1e9;
}

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

TEST(Rfc2047Test, ReplacesInvalidUtf8InPlainTextWithReplacementCharacter) {
  // Raw 8-bit bytes outside encoded words (a Latin-1 Subject sent without RFC 2047).
  EXPECT_EQ(DecodeChecked("caf\xE9 \xFF"), "caf" + kFffd + " " + kFffd);
  // Valid UTF-8 sent raw (RFC 6532) is kept.
  EXPECT_EQ(DecodeHeaderValue("Gr\xC3\xBC\xC3\x9F"
                              "e"),
            "Gr\xC3\xBC\xC3\x9F"
            "e");
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

TEST(Rfc2047Test, EncodedLineBreaksCannotInjectHeaders) {
  // Issue 10: a script that writes the subject into a header must not get a second header.
  EXPECT_EQ(DecodeChecked("=?utf-8?Q?a=0D=0AX-Injected:_1=00b?="), "a  X-Injected: 1 b");
  EXPECT_EQ(DecodeChecked("=?utf-8?B?YQ0KWC1JbmplY3RlZDogMQBi?="), "a  X-Injected: 1 b");
  EXPECT_EQ(DecodeChecked("=?iso-8859-1?Q?a=0Ab=0Dc?="), "a b c");
  EXPECT_EQ(DecodeChecked("=?us-ascii?Q?a=0Ab?="), "a b");
  EXPECT_EQ(DecodeChecked("=?windows-1252?Q?a=0D=0Ab?="), "a  b");
  EXPECT_EQ(DecodeChecked("=?koi8-r?B?YQpi?="), "a b");  // through iconv
}

TEST(Rfc2047Test, ReplacesEveryControlCharacterExceptTabWithSpace) {
  EXPECT_EQ(DecodeChecked("=?utf-8?Q?a=01b=1Bc=7Fd=09e?="), "a b c d\te");
  EXPECT_EQ(DecodeChecked(std::string_view("a\x00"
                                           "b\x1B[2Jc\x7F"
                                           "d",
                                           10)),
            "a b [2Jc d");
  // C1 controls: NEL (U+0085) and CSI (U+009B) as UTF-8 and as Latin-1.
  EXPECT_EQ(DecodeChecked("=?utf-8?Q?a=C2=85b=C2=9Bc=C2=A0d?="),
            "a b c\xC2\xA0"
            "d");
  EXPECT_EQ(DecodeChecked("=?iso-8859-1?Q?a=85b=9Bc?="), "a b c");
  EXPECT_EQ(DecodeChecked("a\xC2\x85"
                          "b"),
            "a b");
}

TEST(Rfc2047Test, LineBreakThatIsNotAFoldBecomesOneSpace) {
  EXPECT_EQ(DecodeChecked("a\r\nX-Injected: 1"), "a X-Injected: 1");
  EXPECT_EQ(DecodeChecked("a\nb"), "a b");
  EXPECT_EQ(DecodeChecked("a\rb"), "a b");
  EXPECT_EQ(DecodeChecked("a\r\n\r\n b"), "a  b");  // a break, then a fold
  // A line break between two encoded words is whitespace between them: dropped.
  EXPECT_EQ(DecodeChecked("=?utf-8?Q?a?=\r\n=?utf-8?Q?b?="), "ab");
  EXPECT_EQ(DecodeChecked("=?utf-8?Q?a?=\r\n \r\n\t=?utf-8?Q?b?="), "ab");
  EXPECT_EQ(DecodeChecked("subject\r\n"), "subject");
}

TEST(Rfc2047Test, ReplacesInvalidUtf8FromUtf8WordPerMaximalSubpart) {
  EXPECT_EQ(DecodeChecked("=?utf-8?Q?a=FFb?="), "a" + kFffd + "b");
  // The example of Unicode 15 section 3.9 (Table 3-8): 61 F1 80 80 E1 80 C2 62 80 63 80 BF 64.
  EXPECT_EQ(DecodeChecked("=?utf-8?Q?a=F1=80=80=E1=80=C2b=80c=80=BFd?="),
            "a" + kFffd + kFffd + kFffd + "b" + kFffd + "c" + kFffd + kFffd + "d");
  // A character cut off by the end of the value.
  EXPECT_EQ(DecodeChecked("=?utf-8?Q?a=E2=82?="), "a" + kFffd);
}

TEST(Rfc2047Test, ReplacesOverlongSurrogateAndOutOfRangeSequences) {
  EXPECT_EQ(DecodeChecked("=?utf-8?Q?=C0=AF?="), kFffd + kFffd);             // overlong '/'
  EXPECT_EQ(DecodeChecked("=?utf-8?Q?=E0=80=AF?="), kFffd + kFffd + kFffd);  // overlong '/'
  EXPECT_EQ(DecodeChecked("=?utf-8?Q?=F0=80=80=AF?="), kFffd + kFffd + kFffd + kFffd);
  EXPECT_EQ(DecodeChecked("=?utf-8?Q?=C0=8A?="), kFffd + kFffd);  // overlong LF: not a LF either
  EXPECT_EQ(DecodeChecked("=?utf-8?Q?=ED=A0=80?="), kFffd + kFffd + kFffd);             // U+D800
  EXPECT_EQ(DecodeChecked("=?utf-8?Q?=ED=BF=BF?="), kFffd + kFffd + kFffd);             // U+DFFF
  EXPECT_EQ(DecodeChecked("=?utf-8?Q?=F4=90=80=80?="), kFffd + kFffd + kFffd + kFffd);  // U+110000
  EXPECT_EQ(DecodeChecked("=?utf-8?Q?=F5=80?="), kFffd + kFffd);
  EXPECT_EQ(DecodeChecked("=?utf-8?Q?=FE=FF?="), kFffd + kFffd);
  // The edges that are valid stay.
  EXPECT_EQ(DecodeChecked("=?utf-8?Q?=ED=9F=BF=EE=80=80=F4=8F=BF=BF=F0=90=80=80?="),
            "\xED\x9F\xBF\xEE\x80\x80\xF4\x8F\xBF\xBF\xF0\x90\x80\x80");
  // The same bytes raw, outside encoded words.
  EXPECT_EQ(
      DecodeChecked("x \xC0\xAF \xED\xA0\x80 \xF4\x90\x80\x80"),
      "x " + kFffd + kFffd + " " + kFffd + kFffd + kFffd + " " + kFffd + kFffd + kFffd + kFffd);
}

TEST(Rfc2047Test, RejoinsCharacterSplitAcrossAdjacentUtf8Words) {
  // Some mailers cut a multi-byte character between two words; the bytes are joined before
  // they are checked, so the character survives.
  EXPECT_EQ(DecodeChecked("=?utf-8?Q?=E2=82?= =?utf-8?Q?=ACx?="),
            "\xE2\x82\xAC"
            "x");
  // Not joined with unrelated text between the words: each half is invalid on its own.
  EXPECT_EQ(DecodeChecked("=?utf-8?Q?=E2=82?= - =?utf-8?Q?=AC?="), kFffd + " - " + kFffd);
}

TEST(Rfc2047Test, IconvOutputIsCheckedToo) {
  // iconv resynchronises byte by byte after an error, so a lone surrogate in UTF-16 or a code
  // point above U+10FFFF in UTF-32 leaves misaligned units behind (glibc makes a NUL of the
  // latter): whatever comes out is checked like everything else.
  EXPECT_EQ(DecodeChecked("=?UTF-16BE?B?2ABhAA==?=").find('\0'), std::string::npos);
  EXPECT_EQ(DecodeChecked("=?UTF-32BE?B?ABEAAAAAAGE=?=").find('\0'), std::string::npos);
  DecodeChecked("=?UTF-7?Q?+2AA-a?=");
  // A valid surrogate pair is one character.
  EXPECT_EQ(DecodeChecked("=?UTF-16BE?B?2ADcAABh?="),
            "\xF0\x90\x80\x80"
            "a");
  // A truncated multi-byte Shift_JIS character.
  EXPECT_EQ(DecodeChecked("=?Shift_JIS?Q?a=82?="), "a" + kFffd);
}

TEST(Rfc2047Test, EachWordStartsInItsCharsetsInitialState) {
  // Byte-order marks are read per word; an ISO-2022-JP word without an escape is ASCII.
  EXPECT_EQ(DecodeChecked("=?UTF-16?B?/v8AYQ==?= =?UTF-16?B?//5hAA==?="), "aa");
  EXPECT_EQ(DecodeChecked("=?ISO-2022-JP?B?GyRCRnw=?= =?ISO-2022-JP?B?Rnw=?="),
            "\xE6\x97\xA5"
            "F|");
}

TEST(Rfc2047Test, DecodesWordsCyclingThroughSeveralCharsets) {
  // а (KOI8-R), ą (ISO-8859-2), а (Windows-1251), あ (Shift_JIS), and round again.
  const std::string cycle =
      "=?koi8-r?Q?=C1?= =?iso-8859-2?Q?=B1?= =?windows-1251?Q?=E0?= =?shift_jis?Q?=82=A0?= ";
  EXPECT_EQ(DecodeChecked(cycle + cycle),
            "\xD0\xB0\xC4\x85\xD0\xB0\xE3\x81\x82"
            "\xD0\xB0\xC4\x85\xD0\xB0\xE3\x81\x82");
}

TEST(Rfc2047Test, AsksIconvForAtMostSixteenCharsetsPerValue) {
  // Unknown names count: after sixteen, a known charset that needs iconv stays literal too.
  std::string in;
  for (int i = 0; i < 16; ++i) in += "=?x-unknown-" + std::to_string(i) + "?Q?a?= ";
  EXPECT_EQ(DecodeChecked(in + "=?koi8-r?Q?=C1?="), Trim(in) + " =?koi8-r?Q?=C1?=");
  // Charsets converted without iconv are not limited.
  EXPECT_EQ(DecodeChecked(in + "=?utf-8?Q?=C3=A9?= =?iso-8859-1?Q?=E9?="),
            Trim(in) + " \xC3\xA9\xC3\xA9");
  // Fifteen unknown names leave room for one more.
  std::string fifteen;
  for (int i = 0; i < 15; ++i) fifteen += "=?x-unknown-" + std::to_string(i) + "?Q?a?= ";
  EXPECT_EQ(DecodeChecked(fifteen + "=?koi8-r?Q?=C1?="), fifteen + "\xD0\xB0");
}

TEST(Rfc2047Test, HostileValuesStayValidUtf8WithoutControls) {
  const std::vector<std::string> inputs = {
      std::string("\x00\x01\x02\r\n\x7F\x80\xFF", 8),
      "=?utf-8?Q?=00=0A=0D=7F=80=C2=85?= \xE2\x80 =?utf-8?B?/w0K?=",
      "=?utf-8?Q?a?=\n=?bad-charset?Q?=0A?=\n=?utf-8?Q?=0A?=",
      "=?iso-8859-1?Q?=00=FF?==?us-ascii?Q?=80=0A?=",
      "\xF0\x9F\x98",
      "=?utf-8?Q?\xF0\x9F\x98?=",
      "\xED\xA0\x80\xED\xB0\x80",  // CESU-8 pair: two surrogates, not a character
  };
  for (const std::string& in : inputs) DecodeChecked(in);
}

TEST(Rfc2047Test, DecodingIsLinearOnHostileInput) {
  // Issue 10: searching for "?=" again from every "=?" made 100 KB of "=?a?Q?x" cost over a
  // second and 1 MB minutes. Each input here is 1 MB; linear decoding takes milliseconds even
  // under ASan, so a 2 s CPU bound per input is far from both.
  constexpr size_t kSize = 1 << 20;
  struct Case {
    const char* name;
    std::string input;
  };
  const std::vector<Case> cases = {
      {"unclosed Q words", Repeat("=?a?Q?x", kSize)},
      {"one close at the end", Repeat("=?a?Q?x", kSize) + "?="},
      {"B words closed at the end", Repeat("=?a?B?QUJD", kSize) + "?="},
      {"utf-8 Q openers", Repeat("=?utf-8?Q?", kSize)},
      {"bare openers", Repeat("=?", kSize)},
      {"openers closed at the end", Repeat("=?", kSize) + "?="},
      {"mix",
       Repeat("=?utf-8?Q?=?a?Q?x=?=?utf-8?B?=?utf-8?Q?=C3=A9?= \r\n \xFF=?a?Q?", kSize) + "?="},
      {"valid words with line breaks", Repeat("=?utf-8?Q?a=0D=0A?= ", kSize)},
      {"iconv words", Repeat("=?koi8-r?Q?x?= ", kSize)},
      {"unknown charset words", Repeat("=?x-unknown?Q?x?= ", kSize)},
      // glibc used to load and unload a conversion module for every word of such a cycle.
      {"cycling charsets",
       Repeat("=?koi8-r?Q?x?= =?iso-8859-2?Q?x?= =?windows-1251?Q?x?= =?shift_jis?Q?x?= "
              "=?euc-kr?Q?x?= =?big5?Q?x?= ",
              kSize)},
  };
  for (const Case& c : cases) {
    const double start = ThreadCpuSeconds();
    const std::string out = DecodeHeaderValue(c.input);
    const double seconds = ThreadCpuSeconds() - start;
    EXPECT_LT(seconds, 2.0) << c.name;
    EXPECT_TRUE(IsValidUtf8(out)) << c.name;
    EXPECT_FALSE(HasControl(out)) << c.name;
    EXPECT_GT(out.size(), 0u) << c.name;
  }
  // What the unclosed words decode to: themselves, nothing lost.
  EXPECT_EQ(DecodeHeaderValue(cases[0].input), cases[0].input);
  EXPECT_EQ(DecodeHeaderValue(cases[4].input), cases[4].input);
  const size_t words = cases[7].input.size() / std::string_view("=?utf-8?Q?a=0D=0A?= ").size();
  EXPECT_EQ(DecodeHeaderValue(cases[7].input), Repeat("a  ", 3 * words));
}

}  // namespace
}  // namespace mail
