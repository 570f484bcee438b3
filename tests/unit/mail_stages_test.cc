// Unit tests for the pure parts of the stage scripts and routes: what each stage's request
// carries, the reply table and plain-reply grammar at each stage, and route domain patterns.
#include <gtest/gtest.h>

#include <map>
#include <string>

#include "milter/mail/decision.h"
#include "milter/mail/envelope.h"
#include "milter/mail/route.h"

namespace mail {
namespace {

// name -> value of a query string whose values have no '&' or '=' (the test's own).
std::map<std::string, std::string> Fields(const std::string& query) {
  std::map<std::string, std::string> fields;
  size_t start = 0;
  while (start <= query.size()) {
    size_t end = query.find('&', start);
    if (end == std::string::npos) end = query.size();
    const std::string pair = query.substr(start, end - start);
    const size_t eq = pair.find('=');
    fields[pair.substr(0, eq)] = eq == std::string::npos ? "" : pair.substr(eq + 1);
    start = end + 1;
  }
  return fields;
}

Envelope Sample() {
  Envelope e;
  e.client_ip = "192.0.2.1";
  e.client_name = "mx.example.net";
  e.daemon_name = "smtpd";
  e.helo = "mx.example.net";
  e.tls_on = true;
  e.tls_version = "TLSv1.3";
  e.mail_from = "a@example.net";
  e.mail_args = {"SIZE=1234", "BODY=8BITMIME"};
  e.auth_login = "alice";
  e.queue_id = "4ABC";
  e.recipients = {"u@example.test"};
  e.subject = "hi";
  e.message_size = 99;
  e.idempotency_key = "k";
  return e;
}

TEST(StageQueryTest, EachStageCarriesWhatIsKnownByThen) {
  const auto connect = Fields(BuildStageQuery(Sample(), "connect", false, false));
  EXPECT_EQ(connect.at("stage"), "connect");
  EXPECT_EQ(connect.at("remote_ip"), "192.0.2.1");
  EXPECT_EQ(connect.at("client_name"), "mx.example.net");
  EXPECT_EQ(connect.count("helo"), 0u);
  EXPECT_EQ(connect.count("mail_from"), 0u);

  const auto helo = Fields(BuildStageQuery(Sample(), "helo", true, false));
  EXPECT_EQ(helo.at("helo"), "mx.example.net");
  EXPECT_EQ(helo.at("tls_on"), "true");
  EXPECT_EQ(helo.at("tls_version"), "TLSv1.3");
  EXPECT_EQ(helo.count("mail_from"), 0u);

  const auto mail = Fields(BuildStageQuery(Sample(), "mail", true, true));
  EXPECT_EQ(mail.at("mail_from"), "a%40example.net");
  EXPECT_EQ(mail.at("esmtp_args"), "SIZE%3D1234%20BODY%3D8BITMIME");
  EXPECT_EQ(mail.at("auth_login"), "alice");
  EXPECT_EQ(mail.at("queue_id"), "4ABC");
  EXPECT_EQ(mail.count("rcpt_to"), 0u);
}

TEST(StageQueryTest, EndOfHeadersHasTheSaveFieldsButThoseOfTheWholeMessage) {
  const auto eoh = Fields(BuildHeadersQuery(Sample()));
  EXPECT_EQ(eoh.at("rcpt_to%5B%5D"), "u%40example.test");
  EXPECT_EQ(eoh.at("subject"), "hi");
  EXPECT_EQ(eoh.at("mail_from"), "a%40example.net");
  EXPECT_EQ(eoh.count("message_size"), 0u);
  EXPECT_EQ(eoh.count("idempotency_key"), 0u);
  // The save query has them.
  const auto save = Fields(BuildSaveQuery(Sample()));
  EXPECT_EQ(save.at("message_size"), "99");
  EXPECT_EQ(save.at("idempotency_key"), "k");
}

TEST(StageDecisionTest, EveryStageHasItsOwnRejectDefaultAndTheSameTempfail) {
  const struct {
    Stage stage;
    const char* code;
    const char* enhanced;
    const char* text;
  } rows[] = {
      {Stage::kConnect, "550", "5.7.1", "Access denied"},
      {Stage::kHelo, "550", "5.7.1", "Access denied"},
      {Stage::kMailFrom, "550", "5.7.1", "Sender address rejected"},
      {Stage::kValidate, "550", "5.1.1", "Recipient address rejected"},
      {Stage::kEndOfHeaders, "550", "5.7.1", "Message rejected"},
      {Stage::kSave, "550", "5.7.1", "Message rejected"},
  };
  for (const auto& r : rows) {
    const DefaultReply d = DefaultReplyFor(r.stage, Verdict::Action::kReject);
    EXPECT_STREQ(d.code, r.code) << StageName(r.stage);
    EXPECT_STREQ(d.enhanced, r.enhanced) << StageName(r.stage);
    EXPECT_STREQ(d.text, r.text) << StageName(r.stage);
    const DefaultReply t = DefaultReplyFor(r.stage, Verdict::Action::kTempfail);
    EXPECT_STREQ(t.code, "451") << StageName(r.stage);
    EXPECT_STREQ(t.enhanced, "4.3.0") << StageName(r.stage);
  }
}

TEST(StageDecisionTest, StageScriptsAnswerInTheValidateGrammar) {
  for (const Stage stage :
       {Stage::kConnect, Stage::kHelo, Stage::kMailFrom, Stage::kEndOfHeaders}) {
    BackendOutcome pass;
    pass.body = "PASS\n";
    EXPECT_EQ(Decide(stage, pass).action, Verdict::Action::kAccept) << StageName(stage);
    BackendOutcome saved;  // SAVED is a save word: at a stage it is "not PASS", a refusal
    saved.body = "SAVED\n";
    const Verdict v = Decide(stage, saved);
    EXPECT_EQ(v.action, Verdict::Action::kReject) << StageName(stage);
    EXPECT_EQ(v.text, DefaultReplyFor(stage, Verdict::Action::kReject).text) << StageName(stage);
    BackendOutcome later;
    later.body = "TEMPFAIL 421 4.7.0 slow down\n";
    const Verdict t = Decide(stage, later);
    EXPECT_EQ(t.action, Verdict::Action::kTempfail) << StageName(stage);
    EXPECT_EQ(t.smtp_code, "421") << StageName(stage);
  }
}

TEST(StageDecisionTest, ARecipientOfAnotherRouteIsAskedToComeSeparately) {
  const Verdict v = OtherRoute("b@example.org");
  EXPECT_EQ(v.action, Verdict::Action::kTempfail);
  EXPECT_EQ(v.smtp_code, "452");
  EXPECT_EQ(v.enhanced_code, "4.5.3");
  EXPECT_NE(v.reason.find("<b@example.org>"), std::string::npos);
}

TEST(RouteTest, DomainsMatchExactlyAndWildcardsTheirSubdomainsOnly) {
  EXPECT_EQ(RecipientDomain("Bob@Example.ORG"), "example.org");
  EXPECT_EQ(RecipientDomain("a@b@c.test"), "c.test");
  EXPECT_EQ(RecipientDomain("postmaster"), "");
  EXPECT_TRUE(DomainMatches("example.org", "example.org"));
  EXPECT_FALSE(DomainMatches("example.org", "sub.example.org"));
  EXPECT_FALSE(DomainMatches("example.org", "badexample.org"));
  EXPECT_TRUE(DomainMatches("*.example.org", "a.example.org"));
  EXPECT_TRUE(DomainMatches("*.example.org", "b.a.example.org"));
  EXPECT_FALSE(DomainMatches("*.example.org", "example.org"));
  EXPECT_FALSE(DomainMatches("*.example.org", "badexample.org"));
  EXPECT_FALSE(DomainMatches("*.example.org", ".example.org"));  // no label before the dot
  EXPECT_FALSE(DomainMatches("example.org", ""));
}

}  // namespace
}  // namespace mail
