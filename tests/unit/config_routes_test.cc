// Unit tests for the stage-script keys and "routes": parsed once at load into typed values, every
// problem named with the route and the key.
#include <gtest/gtest.h>

#include <string>

#include "config/config.h"
#include "tests/unit/config_with_key.h"

namespace config {
namespace {

using testing::WithKey;

std::string Errors(const LoadResult& r) {
  std::string out;
  for (const std::string& e : r.errors) out += e + "\n";
  return out;
}

TEST(ConfigStageKeys, StageScriptsAreOffByDefault) {
  const LoadResult r = WithKey("\"log_level\": \"info\"");
  ASSERT_TRUE(r.ok()) << Errors(r);
  EXPECT_TRUE(r.config.fcgi_script_filename_connect.empty());
  EXPECT_TRUE(r.config.fcgi_script_filename_helo.empty());
  EXPECT_TRUE(r.config.fcgi_script_filename_mail.empty());
  EXPECT_TRUE(r.config.fcgi_script_filename_eoh.empty());
  EXPECT_EQ(r.config.mail_timeout, 20.0);
  EXPECT_EQ(r.config.eoh_failure_action, FailureAction::kTempfail);
}

TEST(ConfigStageKeys, EachStageHasItsScriptTimeoutAndPolicy) {
  const LoadResult r = WithKey(
      "\"fcgi_script_filename_mail\": \"/srv/mail.php\", \"mail_timeout\": 3,"
      " \"mail_failure_action\": \"ACCEPT\", \"fcgi_script_filename_eoh\": \"/srv/eoh.php\","
      " \"helo_failure_action\": \"reject\"");
  ASSERT_TRUE(r.ok()) << Errors(r);
  EXPECT_EQ(r.config.fcgi_script_filename_mail, "/srv/mail.php");
  EXPECT_EQ(r.config.mail_timeout, 3.0);
  EXPECT_EQ(r.config.mail_failure_action, FailureAction::kAccept);
  EXPECT_EQ(r.config.helo_failure_action, FailureAction::kReject);
  EXPECT_EQ(r.config.fcgi_script_filename_eoh, "/srv/eoh.php");
}

TEST(ConfigStageKeys, ARelativeScriptOrAnOverlongTimeoutIsRefusedByName) {
  const LoadResult r =
      WithKey("\"fcgi_script_filename_connect\": \"connect.php\", \"helo_timeout\": 30");
  ASSERT_EQ(r.errors.size(), 2u) << Errors(r);
  EXPECT_NE(Errors(r).find("key 'fcgi_script_filename_connect'"), std::string::npos) << Errors(r);
  EXPECT_NE(Errors(r).find("key 'helo_timeout'"), std::string::npos) << Errors(r);
}

TEST(ConfigRoutes, ARouteKeepsItsDomainsLowerCaseAndItsOwnScriptsAndBackends) {
  const LoadResult r = WithKey(
      "\"routes\": [{\"domains\": [\"Example.ORG\", \"*.example.org\"],"
      " \"fcgi_script_filename_save\": \"/srv/org/save.php\","
      " \"fcgi_backends\": [\"tcp:127.0.0.1:9001\"]},"
      " {\"domains\": [\"example.net\"], \"fcgi_script_filename_validate\": \"/srv/net/v.php\"}]");
  ASSERT_TRUE(r.ok()) << Errors(r);
  ASSERT_EQ(r.config.routes.size(), 2u);
  const Route& org = r.config.routes[0];
  EXPECT_EQ(org.domains, (std::vector<std::string>{"example.org", "*.example.org"}));
  EXPECT_EQ(org.fcgi_script_filename_save, "/srv/org/save.php");
  EXPECT_TRUE(org.fcgi_script_filename_validate.empty());
  ASSERT_EQ(org.fcgi_backends.size(), 1u);
  EXPECT_EQ(org.fcgi_backends[0].type, ConnectionType::kTcp);
  EXPECT_EQ(org.fcgi_backends[0].address, "127.0.0.1:9001");
  EXPECT_EQ(r.config.routes[1].fcgi_script_filename_validate, "/srv/net/v.php");
  EXPECT_TRUE(r.config.routes[1].fcgi_backends.empty());
}

TEST(ConfigRoutes, EveryMistakeNamesTheRouteAndWhatIsWrong) {
  const struct {
    const char* routes;
    const char* says;
  } cases[] = {
      {"{\"domains\": []}", "route 1: expected an array of domains"},
      {"{\"fcgi_script_filename_save\": \"/srv/s.php\"}", "route 1: missing key 'domains'"},
      {"{\"domains\": [\"a.test\"]}, {\"domains\": [\"b.test\"], \"save\": \"/x\"}",
       "route 2: unknown key 'save'"},
      {"{\"domains\": [\"a b.test\"]}", "bad domain \"a b.test\""},
      {"{\"domains\": [\"a.*.test\"]}", "bad domain \"a.*.test\""},
      {"{\"domains\": [\"a.test\"]}, {\"domains\": [\"A.test\"]}",
       "route 2: domain \"a.test\" is in more than one route"},
      {"{\"domains\": [\"a.test\"], \"fcgi_script_filename_save\": \"save.php\"}",
       "route 1: key 'fcgi_script_filename_save'"},
      {"{\"domains\": [\"a.test\"], \"fcgi_backends\": [\"10.0.0.1:9000\"]}",
       "route 1: key 'fcgi_backends'"},
  };
  for (const auto& c : cases) {
    const LoadResult r = WithKey(std::string("\"routes\": [") + c.routes + "]");
    ASSERT_EQ(r.errors.size(), 1u) << c.routes << "\n" << Errors(r);
    EXPECT_NE(r.errors[0].find("key 'routes': "), std::string::npos) << r.errors[0];
    EXPECT_NE(r.errors[0].find(c.says), std::string::npos) << c.routes << "\n" << r.errors[0];
  }
}

TEST(ConfigRoutes, TheSummaryShowsEachRoute) {
  const LoadResult r = WithKey(
      "\"routes\": [{\"domains\": [\"example.org\"], \"fcgi_script_filename_save\": "
      "\"/srv/org/save.php\"}]");
  ASSERT_TRUE(r.ok()) << Errors(r);
  bool found = false;
  for (const auto& [key, value] : Summarize(r.config)) {
    if (key == "routes") {
      found = true;
      EXPECT_EQ(value, "example.org -> save /srv/org/save.php");
    }
  }
  EXPECT_TRUE(found);
}

}  // namespace
}  // namespace config
