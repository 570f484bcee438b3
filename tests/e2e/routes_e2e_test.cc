// Routes end to end, through a real Postfix and php-fpm: a recipient's domain picks its validate
// and save scripts and its backend; recipients of another save route get 452 4.5.3 and come in
// their own transaction, so every message is saved once, by one script, with only its own
// recipients.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <filesystem>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "tests/support/mail_lab.h"
#include "tests/support/php_fpm.h"
#include "tests/support/process.h"
#include "tests/support/smtp_client.h"

namespace {

using nlohmann::json;
using testing_support::MailLab;
using testing_support::SendMail;

// The route's save script: records $_POST but body in DUMP_DIR/org/<hrtime>.json, SAVED.
constexpr const char* kOrgSave = R"php(<?php
$dir = getenv('DUMP_DIR') . '/org';
@mkdir($dir);
$f = $_POST; unset($f['body']);
file_put_contents("$dir/" . hrtime(true) . '.json', json_encode($f));
echo "SAVED\n";
)php";

// The route's validate script: only alice@ exists.
constexpr const char* kOrgValidate = R"php(<?php
echo str_starts_with($_GET['rcpt_to'] ?? '', 'alice@') ? "PASS\n" : "REJECT 550 5.1.1 no such user here\n";
)php";

std::vector<json> OrgSaves(MailLab& lab) {
  std::vector<std::string> names;
  const std::string dir = lab.php().data_dir() + "/org";
  if (!std::filesystem::exists(dir)) return {};
  for (const auto& e : std::filesystem::directory_iterator(dir)) names.push_back(e.path());
  std::sort(names.begin(), names.end());
  std::vector<json> out;
  for (const std::string& n : names) out.push_back(json::parse(testing_support::ReadFile(n)));
  return out;
}

std::string Message(const std::string& to) {
  return testing_support::MakeMessage("sender@client.test", to, "routes", "hello\n");
}

// Validate: everyone at example.test exists; the route for example.org has its own scripts.
class RoutesE2eTest : public ::testing::Test {
 protected:
  void Start(std::function<void(json&, const std::map<std::string, std::string>&)> more = {}) {
    MailLab::Options o;
    o.validate = "<?php echo \"PASS\\n\";";
    o.scripts["org-validate.php"] = kOrgValidate;
    o.scripts["org-save.php"] = kOrgSave;
    o.shape = [more](json& config, const std::map<std::string, std::string>& paths) {
      config["routes"] =
          json::array({{{"domains", json::array({"Example.ORG"})},
                        {"fcgi_script_filename_validate", paths.at("org-validate.php")},
                        {"fcgi_script_filename_save", paths.at("org-save.php")}}});
      if (more) more(config, paths);
    };
    ASSERT_TRUE(lab_.Start(std::move(o)));
  }

  MailLab lab_;
};

TEST_F(RoutesE2eTest, RecipientsOfAnotherRouteComeInTheirOwnTransactionAndAreSavedThere) {
  Start();
  // First recipient on the top-level route: the example.org ones wait for their own transaction.
  auto r = SendMail(lab_.port(), "sender@client.test",
                    {"u@example.test", "alice@example.org", "v@example.test"},
                    Message("u@example.test"));
  ASSERT_TRUE(r.accepted()) << r << lab_.Diagnostics();
  ASSERT_EQ(r.rcpts.size(), 3u);
  EXPECT_EQ(r.rcpts[0].code, 250);
  EXPECT_EQ(r.rcpts[1].code, 452) << r;
  EXPECT_NE(r.rcpts[1].text.find("4.5.3"), std::string::npos) << r;
  EXPECT_EQ(r.rcpts[2].code, 250);
  // First recipient on the route: its validate script answers, the others wait.
  r = SendMail(lab_.port(), "sender@client.test",
               {"alice@EXAMPLE.org", "bob@example.org", "u@example.test"},
               Message("alice@example.org"));
  ASSERT_TRUE(r.accepted()) << r << lab_.Diagnostics();
  EXPECT_EQ(r.rcpts[0].code, 250);
  EXPECT_EQ(r.rcpts[1].code, 550) << r;
  EXPECT_NE(r.rcpts[1].text.find("no such user here"), std::string::npos) << r;
  EXPECT_EQ(r.rcpts[2].code, 452) << r;

  const auto top = lab_.Saved();
  ASSERT_EQ(top.size(), 1u) << lab_.Diagnostics();
  EXPECT_EQ(top[0].fields["rcpt_to"], json::array({"u@example.test", "v@example.test"}));
  const auto org = OrgSaves(lab_);
  ASSERT_EQ(org.size(), 1u) << lab_.Diagnostics();
  EXPECT_EQ(org[0]["rcpt_to"], json::array({"alice@EXAMPLE.org"}));
}

TEST_F(RoutesE2eTest, AWildcardRouteSendsItsSubdomainsToTheirOwnPhpFpm) {
  // A second php-fpm: the route's backend. Its save script records in its own data dir.
  testing_support::PhpFpm other;
  const std::string other_save = other.AddScript("save.php", testing_support::kRecordingSaveScript);
  ASSERT_TRUE(other.Start());
  Start([&](json& config, const std::map<std::string, std::string>&) {
    config["routes"].push_back({{"domains", json::array({"*.example.net"})},
                                {"fcgi_script_filename_save", other_save},
                                {"fcgi_backends", json::array({"unix:" + other.socket_path()})}});
  });
  for (const char* to : {"x@sub.example.net", "y@deep.sub.example.net", "z@example.net"}) {
    const auto r = SendMail(lab_.port(), "sender@client.test", {to}, Message(to));
    EXPECT_TRUE(r.accepted()) << to << r << lab_.Diagnostics();
  }
  const auto routed = testing_support::ReadSavedMessages(other.data_dir());
  ASSERT_EQ(routed.size(), 2u) << lab_.Diagnostics();
  EXPECT_EQ(routed[0].fields["rcpt_to"], json::array({"x@sub.example.net"}));
  EXPECT_EQ(routed[1].fields["rcpt_to"], json::array({"y@deep.sub.example.net"}));
  EXPECT_NE(routed[0].body.find("Subject: routes"), std::string::npos);
  // "*.example.net" is its subdomains only: example.net itself takes the top-level route.
  const auto top = lab_.Saved();
  ASSERT_EQ(top.size(), 1u);
  EXPECT_EQ(top[0].fields["rcpt_to"], json::array({"z@example.net"}));
}

}  // namespace
