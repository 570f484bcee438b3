// The JSON save reply's envelope and body edits (add_recipients, change_from, replace_body,
// insert_headers) and which stages may carry cache_ttl: what is parsed, and what is refused with
// the parser's one-line error.
#include <gtest/gtest.h>

#include "milter/mail/decision.h"
#include "milter/mail/json_reply.h"

namespace mail {
namespace {

using Action = Verdict::Action;

// The verdict, or a failure carrying the parser's error (empty when it parsed).
struct Parsed {
  std::optional<Verdict> verdict;
  std::string error;
};

Parsed Parse(Stage stage, const std::string& body) {
  Parsed p;
  p.verdict = ParseJsonVerdict(stage, body, &p.error);
  return p;
}

Verdict Save(const std::string& body) {
  Parsed p = Parse(Stage::kSave, body);
  EXPECT_TRUE(p.verdict.has_value()) << p.error;
  return p.verdict.value_or(Verdict());
}

// The error a save reply is refused with; fails the test when it parses.
std::string SaveError(const std::string& body) {
  Parsed p = Parse(Stage::kSave, body);
  EXPECT_FALSE(p.verdict.has_value()) << body;
  return p.error;
}

TEST(JsonEdits, AddRecipientsTakesStringsAndObjectsWithArgs) {
  const Verdict v = Save(R"({"action":"accept","add_recipients":["archive@example.test",
      {"address":"audit@example.test","args":"NOTIFY=NEVER ORCPT=rfc822;audit@example.test"},
      {"address":"plain@example.test"}]})");
  EXPECT_EQ(v.action, Action::kAccept);
  ASSERT_EQ(v.added_recipients.size(), 3u);
  EXPECT_EQ(v.added_recipients[0].address, "archive@example.test");
  EXPECT_EQ(v.added_recipients[0].args, "");
  EXPECT_EQ(v.added_recipients[1].address, "audit@example.test");
  EXPECT_EQ(v.added_recipients[1].args, "NOTIFY=NEVER ORCPT=rfc822;audit@example.test");
  EXPECT_EQ(v.added_recipients[2].args, "");
  EXPECT_TRUE(Save(R"({"action":"accept","add_recipients":[]})").added_recipients.empty());
}

TEST(JsonEdits, AddRecipientsRefusesBadAddressesArgsAndShapes) {
  EXPECT_EQ(SaveError(R"({"action":"accept","add_recipients":"a@x.test"})"),
            "key 'add_recipients' must be an array of at most 1000 addresses");
  for (const char* bad : {R"("")", R"("a b@x.test")", R"("<a@x.test>")", R"("a@x.test\r\nRCPT")",
                          R"("a\u0000@x.test")", R"("a\t@x.test")"}) {
    const std::string e =
        SaveError(std::string(R"({"action":"accept","add_recipients":[)") + bad + "]}");
    EXPECT_NE(e.find("key 'add_recipients': invalid address"), std::string::npos) << bad << e;
  }
  const std::string long_address(513, 'a');
  EXPECT_NE(SaveError(R"({"action":"accept","add_recipients":[")" + long_address + R"("]})")
                .find("invalid address"),
            std::string::npos);
  EXPECT_TRUE(Save(R"({"action":"accept","add_recipients":[")" + std::string(512, 'a') + R"("]})")
                  .added_recipients.size() == 1);
  EXPECT_NE(SaveError(R"({"action":"accept","add_recipients":[
                {"address":"a@x.test","args":"NOTIFY=NEVER\r\nRCPT TO:<b@x.test>"}]})")
                .find("'args' must be ESMTP parameters"),
            std::string::npos);
  EXPECT_EQ(SaveError(R"({"action":"accept","add_recipients":[{"address":"a@x.test","arg":"x"}]})"),
            "key 'add_recipients': unknown field 'arg'");
  EXPECT_EQ(SaveError(R"({"action":"accept","add_recipients":[{"args":"NOTIFY=NEVER"}]})"),
            "missing key 'address'");
  EXPECT_EQ(SaveError(R"({"action":"accept","add_recipients":[{"address":"a@x","args":1}]})"),
            "key 'args' must be a string");
  EXPECT_NE(SaveError(R"({"action":"accept","add_recipients":[42]})")
                .find("must be an address string or an object"),
            std::string::npos);
}

TEST(JsonEdits, ChangeFromTakesAStringOrAnObject) {
  Verdict v = Save(R"({"action":"accept","change_from":"bounces@example.test"})");
  ASSERT_TRUE(v.new_sender.has_value());
  EXPECT_EQ(v.new_sender->address, "bounces@example.test");
  EXPECT_EQ(v.new_sender->args, "");
  v = Save(R"({"action":"quarantine","change_from":{"address":"b@x.test","args":"RET=HDRS"}})");
  ASSERT_TRUE(v.new_sender.has_value());
  EXPECT_EQ(v.new_sender->args, "RET=HDRS");
  EXPECT_FALSE(Save(R"({"action":"accept"})").new_sender.has_value());
  EXPECT_NE(SaveError(R"({"action":"accept","change_from":"<b@x.test>"})")
                .find("key 'change_from': invalid address \"<b@x.test>\""),
            std::string::npos);
  EXPECT_NE(SaveError(R"({"action":"accept","change_from":["b@x.test"]})")
                .find("key 'change_from' must be an address string or an object"),
            std::string::npos);
  EXPECT_EQ(SaveError(R"({"action":"accept","change_from":{"address":"b@x.test","to":"c"}})"),
            "key 'change_from': unknown field 'to'");
}

TEST(JsonEdits, ReplaceBodyGetsCrlfLineEndings) {
  EXPECT_EQ(*Save(R"({"action":"accept","replace_body":"one\ntwo\n"})").new_body, "one\r\ntwo\r\n");
  EXPECT_EQ(*Save(R"({"action":"accept","replace_body":"one\r\ntwo\r\n"})").new_body,
            "one\r\ntwo\r\n");
  EXPECT_EQ(*Save(R"({"action":"accept","replace_body":"mixed\r\nlf\n\nend"})").new_body,
            "mixed\r\nlf\r\n\r\nend");
  EXPECT_EQ(*Save(R"({"action":"accept","replace_body":"\n"})").new_body, "\r\n");
  EXPECT_FALSE(Save(R"({"action":"accept"})").new_body.has_value());
  EXPECT_EQ(SaveError(R"({"action":"accept","replace_body":""})"),
            "key 'replace_body' must be a non-empty string: the new message body");
  EXPECT_EQ(SaveError(R"({"action":"accept","replace_body":["a"]})"),
            "key 'replace_body' must be a non-empty string: the new message body");
}

TEST(JsonEdits, ReplaceBodyKeepsALargeBodyWhole) {
  std::string lines;
  for (int i = 0; i < 200000; ++i) lines += "line " + std::to_string(i) + "\\n";
  const Verdict v = Save(R"({"action":"accept","replace_body":")" + lines + R"("})");
  ASSERT_TRUE(v.new_body.has_value());
  EXPECT_EQ(v.new_body->rfind("line 199999\r\n"), v.new_body->size() - 13);
  EXPECT_EQ(v.new_body->find("line 0\r\nline 1\r\n"), 0u);
}

TEST(JsonEdits, InsertHeadersDefaultToTheTopAndKeepTheirIndex) {
  const Verdict v = Save(R"({"action":"accept","insert_headers":[
      {"name":"X-Top","value":"1"},{"name":"X-Third","value":"a\r\nBcc: x","index":2}],
      "add_headers":[{"name":"X-Bottom","value":"2"}]})");
  ASSERT_EQ(v.inserted_headers.size(), 2u);
  EXPECT_EQ(v.inserted_headers[0].name, "X-Top");
  EXPECT_EQ(v.inserted_headers[0].index, 0);
  EXPECT_EQ(v.inserted_headers[1].index, 2);
  EXPECT_EQ(v.inserted_headers[1].value, "a  Bcc: x");
  ASSERT_EQ(v.header_edits.size(), 1u);  // add_headers is unchanged
  EXPECT_EQ(v.header_edits[0].kind, HeaderEdit::Kind::kAdd);
}

TEST(JsonEdits, InsertHeadersRefusesWhatAddHeadersRefuses) {
  EXPECT_EQ(SaveError(R"({"action":"accept","insert_headers":[{"name":"X A","value":"1"}]})"),
            "key 'insert_headers': invalid header name \"X A\"");
  EXPECT_EQ(SaveError(R"({"action":"accept","insert_headers":[{"name":"X-A"}]})"),
            "missing key 'value'");
  EXPECT_EQ(SaveError(R"({"action":"accept","insert_headers":[{"name":"X","value":"1","at":0}]})"),
            "key 'insert_headers': unknown field 'at'");
  EXPECT_NE(
      SaveError(R"({"action":"accept","insert_headers":[{"name":"X","value":"1","index":-1}]})")
          .find("'index' must be a whole number from 0"),
      std::string::npos);
  EXPECT_EQ(SaveError(R"({"action":"accept","insert_headers":{"name":"X","value":"1"}})"),
            "key 'insert_headers' must be an array");
  EXPECT_EQ(SaveError(R"({"action":"accept","insert_headers":["X: 1"]})"),
            "key 'insert_headers': every entry must be an object");
}

TEST(JsonEdits, EditsAreSaveOnlyAtEveryOtherStage) {
  for (Stage stage :
       {Stage::kConnect, Stage::kHelo, Stage::kMailFrom, Stage::kValidate, Stage::kEndOfHeaders}) {
    for (const char* key : {"add_recipients", "change_from", "replace_body", "insert_headers"}) {
      const Parsed p =
          Parse(stage, std::string(R"({"action":"accept",")") + key + R"(":"x@y.test"})");
      EXPECT_FALSE(p.verdict.has_value()) << StageName(stage) << " " << key;
      EXPECT_EQ(p.error, std::string("key '") + key + "' is only allowed in a save reply");
    }
  }
}

TEST(JsonEdits, CacheTtlIsOnlyForValidate) {
  const Parsed ok = Parse(Stage::kValidate, R"({"action":"accept","cache_ttl":60})");
  ASSERT_TRUE(ok.verdict.has_value()) << ok.error;
  EXPECT_EQ(ok.verdict->cache_ttl_seconds, 60);
  for (Stage stage :
       {Stage::kConnect, Stage::kHelo, Stage::kMailFrom, Stage::kEndOfHeaders, Stage::kSave}) {
    const Parsed p = Parse(stage, R"({"action":"accept","cache_ttl":60})");
    EXPECT_FALSE(p.verdict.has_value()) << StageName(stage);
    EXPECT_EQ(p.error, "key 'cache_ttl' is only allowed in a validate reply") << StageName(stage);
  }
  // The other stages keep the validate grammar otherwise.
  const Parsed helo = Parse(Stage::kHelo, R"({"action":"reject","smtp_code":554})");
  ASSERT_TRUE(helo.verdict.has_value()) << helo.error;
  EXPECT_EQ(helo.verdict->action, Action::kReject);
  EXPECT_FALSE(Parse(Stage::kMailFrom, R"({"action":"discard"})").verdict.has_value());
}

TEST(JsonEdits, AnEditWithTheRejectActionIsParsedButNotApplied) {
  // The daemon applies edits only with accept and quarantine (milter/edits.cc); the parser keeps
  // them, as it keeps header edits, so that `fcgi-milter try` can show them.
  const Verdict v = Save(R"({"action":"reject","add_recipients":["a@x.test"]})");
  EXPECT_EQ(v.action, Action::kReject);
  EXPECT_EQ(v.added_recipients.size(), 1u);
}

}  // namespace
}  // namespace mail
