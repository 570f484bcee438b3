// Unit tests for milter/mail/form.h: percent-encoding pinned byte by byte, and round trips
// through PHP's own form decoder (parse_str, the code behind $_GET and $_POST).
#include "milter/mail/envelope.h"
#include "milter/mail/form.h"

#include <gtest/gtest.h>

#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <string>

namespace mail {
namespace {

std::string AllBytes() {
  std::string s;
  for (int i = 0; i < 256; ++i) s.push_back(static_cast<char>(i));
  return s;
}

TEST(PercentEncodeTest, KeepsUnreservedCharacters) {
  const std::string unreserved =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~";
  EXPECT_EQ(PercentEncode(unreserved), unreserved);
}

TEST(PercentEncodeTest, EncodesSpaceAsPercent20AndPlusAsPercent2B) {
  EXPECT_EQ(PercentEncode("a b"), "a%20b");
  EXPECT_EQ(PercentEncode("c+d"), "c%2Bd");
}

TEST(PercentEncodeTest, EncodesFormDelimitersAndPercent) {
  EXPECT_EQ(PercentEncode("a&b=c%d"), "a%26b%3Dc%25d");
  EXPECT_EQ(PercentEncode("\"a b\"@x"), "%22a%20b%22%40x");
}

TEST(PercentEncodeTest, EncodesNulAndEightBitBytesWithUppercaseHex) {
  EXPECT_EQ(PercentEncode(std::string("\0\xff\xab\n", 4)), "%00%FF%AB%0A");
}

TEST(PercentEncodeTest, EncodesEveryByteOutsideUnreservedAsThreeCharacters) {
  const std::string encoded = PercentEncode(AllBytes());
  // 66 unreserved bytes stay single, the other 190 become %XX.
  EXPECT_EQ(encoded.size(), 66u + 190u * 3u);
  static const char kHex[] = "0123456789ABCDEF";
  size_t pos = 0;
  for (int i = 0; i < 256; ++i) {
    const char c = static_cast<char>(i);
    const bool unreserved = std::isalnum(i) || c == '-' || c == '.' || c == '_' || c == '~';
    if (unreserved && i < 128) {
      ASSERT_EQ(encoded[pos], c) << "byte " << i;
      pos += 1;
    } else {
      ASSERT_EQ(encoded.substr(pos, 3), std::string({'%', kHex[i >> 4], kHex[i & 15]}))
          << "byte " << i;
      pos += 3;
    }
  }
  EXPECT_EQ(pos, encoded.size());
}

TEST(PercentEncodeTest, EmptyInputGivesEmptyOutput) {
  EXPECT_EQ(PercentEncode(""), "");
  std::string out = "keep";
  PercentEncodeAppend("", &out);
  EXPECT_EQ(out, "keep");
}

TEST(PercentEncodeTest, AppendKeepsExistingContent) {
  std::string out = "body=";
  PercentEncodeAppend("x y", &out);
  PercentEncodeAppend("&", &out);
  EXPECT_EQ(out, "body=x%20y%26");
}

TEST(FormBuilderTest, JoinsFieldsWithAmpersandAndEncodesNamesAndValues) {
  FormBuilder form;
  form.Add("rcpt_to", "a&b=c+d@example.test");
  form.Add("mail from", "");
  form.Add("tls_on", "true");
  EXPECT_EQ(form.str(), "rcpt_to=a%26b%3Dc%2Bd%40example.test&mail%20from=&tls_on=true");
}

TEST(FormBuilderTest, EmptyBuilderIsEmptyString) {
  FormBuilder form;
  EXPECT_EQ(form.str(), "");
}

TEST(FormBuilderTest, BeginFieldLeavesValueToCaller) {
  FormBuilder form;
  form.Add("a", "1");
  form.BeginField("body");
  EXPECT_EQ(form.str(), "a=1&body=");
  std::string taken = form.Take();
  PercentEncodeAppend("x+y", &taken);
  EXPECT_EQ(taken, "a=1&body=x%2By");
}

// --- Round trips through PHP -------------------------------------------------------------

bool HavePhp() {
  return std::system("php -v >/dev/null 2>&1") == 0;
}

int HexNibble(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  return c - 'a' + 10;
}

// Runs PHP's parse_str on `query` and returns the decoded fields (name -> value bytes).
std::map<std::string, std::string> PhpParseStr(const std::string& query) {
  char path[] = "/tmp/mail_form_test_XXXXXX";
  const int fd = mkstemp(path);
  EXPECT_GE(fd, 0);
  close(fd);
  {
    std::ofstream f(path, std::ios::binary);
    f.write(query.data(), static_cast<std::streamsize>(query.size()));
  }
  const std::string cmd =
      std::string("php -n -d memory_limit=512M -r '") +
      "parse_str(file_get_contents($argv[1]), $o);"
      "foreach ($o as $k => $v) { echo bin2hex($k), \" \", bin2hex($v), \"\\n\"; }' " +
      path;
  std::map<std::string, std::string> fields;
  FILE* p = popen(cmd.c_str(), "r");
  EXPECT_NE(p, nullptr);
  if (p == nullptr) return fields;
  std::string out;
  char buf[65536];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
  EXPECT_EQ(pclose(p), 0);
  unlink(path);
  auto unhex = [](std::string_view h) {
    std::string s;
    for (size_t i = 0; i + 1 < h.size(); i += 2) {
      s.push_back(static_cast<char>(HexNibble(h[i]) << 4 | HexNibble(h[i + 1])));
    }
    return s;
  };
  size_t pos = 0;
  while (pos < out.size()) {
    const size_t nl = out.find('\n', pos);
    const std::string_view line(out.data() + pos,
                                (nl == std::string::npos ? out.size() : nl) - pos);
    const size_t sp = line.find(' ');
    if (sp != std::string_view::npos)
      fields[unhex(line.substr(0, sp))] = unhex(line.substr(sp + 1));
    if (nl == std::string::npos) break;
    pos = nl + 1;
  }
  return fields;
}

TEST(FormPhpRoundTripTest, PhpParseStrGivesBackHostileValuesByteExact) {
  if (!HavePhp()) GTEST_SKIP() << "php not installed";
  const std::map<std::string, std::string> sent = {
      {"rcpt_to", "a&b=c+d@example.test"},
      {"quoted", "\"a b\"@x"},
      {"percent", "100%"},
      {"all_bytes", AllBytes()},
      {"empty", ""},
      {"literal_escape", "%41%2"},
      {"plus_only", "+"},
      {"brackets", "a[b]=c;d"},
      {"utf8", "J\xC3\xBCrgen \xE2\x82\xAC"},
      {"crlf", "line1\r\nline2\n"},
  };
  FormBuilder form;
  for (const auto& [name, value] : sent) form.Add(name, value);
  EXPECT_EQ(PhpParseStr(form.str()), sent);
}

TEST(FormPhpRoundTripTest, PhpParseStrGivesBackLargeBinaryValue) {
  if (!HavePhp()) GTEST_SKIP() << "php not installed";
  std::string big;
  big.reserve(1 << 20);
  uint32_t x = 12345;
  for (size_t i = 0; i < (1u << 20); ++i) {
    x = x * 1103515245u + 12345u;
    big.push_back(static_cast<char>(x >> 24));
  }
  FormBuilder form;
  form.Add("remote_ip", "192.0.2.1");
  form.Add("body", big);
  const auto got = PhpParseStr(form.str());
  ASSERT_EQ(got.size(), 2u);
  EXPECT_EQ(got.at("remote_ip"), "192.0.2.1");
  EXPECT_TRUE(got.at("body") == big) << "1 MiB binary value differs after PHP decoding";
}

}  // namespace
}  // namespace mail

namespace mail {
namespace {

// PHP counts every name=value pair (each rcpt_to[] element too) against max_input_vars: the
// count the daemon plans with must be the count it sends, in both save modes.
TEST(SaveFormTest, VariableCountMatchesTheFieldsSent) {
  for (const size_t n : {size_t{0}, size_t{1}, size_t{7}, size_t{492}}) {
    Envelope e;
    e.subject = "a&b=c";
    for (size_t i = 0; i < n; ++i) e.recipients.push_back("u" + std::to_string(i) + "@x.test");
    const std::string form = std::string(kSaveFormBodyPrefix) + "x%26y" + BuildSaveFormFields(e);
    EXPECT_EQ(static_cast<size_t>(std::count(form.begin(), form.end(), '&')) + 1,
              SaveVariables(SaveMode::kForm, n))
        << n;
    const std::string query = BuildSaveQuery(e);
    EXPECT_EQ(static_cast<size_t>(std::count(query.begin(), query.end(), '&')) + 1,
              SaveVariables(SaveMode::kRaw, n))
        << n;
  }
}

TEST(SaveFormTest, BodyIsTheFirstVariable) {
  Envelope e;
  e.recipients = {"a@x.test"};
  EXPECT_EQ(kSaveFormBodyPrefix, "body=");
  EXPECT_EQ(BuildSaveFormFields(e).rfind("&remote_ip=", 0), 0u);
}

TEST(SaveFormTest, MostRecipientsWithinPhpDefaultMaxInputVars) {
  EXPECT_EQ(MaxRecipientsWithin(SaveMode::kForm, 1000), 492u);
  EXPECT_EQ(MaxRecipientsWithin(SaveMode::kRaw, 1000), 986u);
  for (const SaveMode mode : {SaveMode::kForm, SaveMode::kRaw}) {
    const size_t most = MaxRecipientsWithin(mode, 1000);
    EXPECT_LE(SaveVariables(mode, most), 1000u);
    EXPECT_GT(SaveVariables(mode, most + 1), 1000u);
  }
  EXPECT_EQ(MaxRecipientsWithin(SaveMode::kForm, 15), 0u);
  EXPECT_EQ(MaxRecipientsWithin(SaveMode::kForm, 17), 1u);
}

TEST(SaveFormTest, RoomForOneMoreRecipient) {
  Envelope e;
  for (size_t i = 0; i < 491; ++i) e.recipients.push_back("u" + std::to_string(i) + "@x.test");
  EXPECT_TRUE(SaveHasRoomFor(SaveMode::kForm, 1000, e, "next@x.test"));
  e.recipients.push_back("last@x.test");
  EXPECT_FALSE(SaveHasRoomFor(SaveMode::kForm, 1000, e, "next@x.test"));
  EXPECT_TRUE(SaveHasRoomFor(SaveMode::kForm, 0, e, "next@x.test"));
  EXPECT_TRUE(SaveHasRoomFor(SaveMode::kRaw, 1000, e, "next@x.test"));
  // Raw mode: the query string has a byte budget as well, whatever max_input_vars says.
  Envelope big;
  const std::string long_local(200, 'a');
  while (SaveHasRoomFor(SaveMode::kRaw, 0, big, long_local + "@x.test")) {
    big.recipients.push_back(long_local + "@x.test");
  }
  EXPECT_GT(big.recipients.size(), 50u);
  EXPECT_LE(BuildSaveQuery(big).size(), kRawQueryRecipientBytes + 4096);
}

TEST(SaveQueryTest, RecipientsAreAnArrayAndTheSubjectIsCutOnACharacterBoundary) {
  Envelope e;
  e.recipients = {"a&b@x.test", "c@x.test"};
  e.subject = std::string(997, 'x') + "\xC3\xA9" + std::string(100, 'y');  // é across 998
  const std::string q = BuildSaveQuery(e);
  EXPECT_NE(q.find("rcpt_to%5B%5D=a%26b%40x.test&rcpt_to%5B%5D=c%40x.test"), std::string::npos);
  EXPECT_EQ(q.find("rcpt_to_0"), std::string::npos);
  EXPECT_NE(q.find("subject=" + std::string(997, 'x') + "&"), std::string::npos);
  EXPECT_EQ(q.find("body="), std::string::npos);
}

TEST(IdempotencyKeyTest, SameForARetryDifferentForAnotherMessageOrRecipientSet) {
  Sha256 h;
  h.Update("Subject: a\n\nhello\n");
  const Sha256::Digest message = h.Finish();
  h.Update("Subject: a\n\nhello!\n");
  const Sha256::Digest other_message = h.Finish();

  Envelope e;
  e.mail_from = "s@x.test";
  e.recipients = {"b@x.test", "a@x.test"};
  e.queue_id = "ABC";
  e.client_ip = "192.0.2.1";
  const std::string key = IdempotencyKey(e, message);
  EXPECT_EQ(key.size(), 64u);
  EXPECT_EQ(key.find_first_not_of("0123456789abcdef"), std::string::npos);

  Envelope retry = e;  // a new transaction: new queue id, another client address, RCPT order
  retry.queue_id = "DEF";
  retry.client_ip = "192.0.2.99";
  retry.recipients = {"a@x.test", "b@x.test", "a@x.test"};
  EXPECT_EQ(IdempotencyKey(retry, message), key);

  EXPECT_NE(IdempotencyKey(e, other_message), key);
  Envelope fewer = e;
  fewer.recipients = {"a@x.test"};
  EXPECT_NE(IdempotencyKey(fewer, message), key);
  Envelope sender = e;
  sender.mail_from = "";
  EXPECT_NE(IdempotencyKey(sender, message), key);
  // An address cannot forge the text's structure.
  Envelope forged = e;
  forged.recipients = {"a@x.test\nrcpt_to=b@x.test"};
  EXPECT_NE(IdempotencyKey(forged, message), key);
}

TEST(Sha256Test, KnownVector) {
  Sha256 h;
  h.Update("abc");
  EXPECT_EQ(Sha256::Hex(h.Finish()),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

}  // namespace
}  // namespace mail

namespace mail {
namespace {

TEST(PercentEncodedSizeTest, IsTheSizeOfTheEncoding) {
  for (const std::string& s : {std::string(), std::string("abc-._~"), std::string("a b&c=d+%"),
                               std::string("\xC3\xA9\0x", 4)}) {
    EXPECT_EQ(PercentEncodedSize(s), PercentEncode(s).size()) << s;
  }
}

}  // namespace
}  // namespace mail
