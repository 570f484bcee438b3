// `fcgi-milter -t` against a real php-fpm: a reachable backend is ok, a socket the daemon's user
// may not connect to is explained with the fix, deadlines close to the MTA's are warned about.
#include <gtest/gtest.h>
#include <unistd.h>
#include <nlohmann/json.hpp>

#include "tests/support/milter_daemon.h"
#include "tests/support/php_fpm.h"
#include "tests/support/process.h"
#include "tests/support/temp_dir.h"

namespace {

using testing_support::PhpFpm;

std::string WriteConfig(const testing_support::TempDir& dir, const PhpFpm& php,
                        nlohmann::json extra = {}) {
  nlohmann::json c = {{"fcgi_connection_type", php.connection_type()},
                      {"fcgi_connection_address", php.address()},
                      {"fcgi_script_filename_save", "/srv/save.php"},
                      {"milter_socket", "inet:10025@127.0.0.1"},
                      {"spool_directory", "/tmp"}};
  for (auto& [k, v] : extra.items()) c[k] = v;
  return dir.Write("fcgi-milter.json", c.dump(2), 0644);
}

TEST(CheckCommand, ReachableBackendIsOk) {
  PhpFpm php;
  ASSERT_TRUE(php.Start());
  testing_support::TempDir dir;
  const std::string config = WriteConfig(dir, php);
  auto r = testing_support::RunCommand({testing_support::MilterBinary(), "-t", "-c", config});
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find(config + ": ok"), std::string::npos) << r.output;
}

TEST(CheckCommand, SocketThePermissionsRefuseIsExplainedWithTheFix) {
  PhpFpm::Options o;
  o.extra_pool_lines = {"listen.mode = 0660"};  // php-fpm's default: owner and group only
  PhpFpm php(o);
  ASSERT_TRUE(php.Start());
  testing_support::TempDir dir;
  const std::string config = WriteConfig(dir, php);
  // As a user outside group www-data, the way a daemon without the group would run.
  auto r =
      testing_support::RunCommand({"setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups",
                                   "--", testing_support::MilterBinary(), "-t", "-c", config});
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(r.output.find("permission denied"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("www-data:www-data mode 0660"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("usermod -a -G www-data"), std::string::npos) << r.output;
}

// As root, -t probes the backend as the configured `user` (a child drops to it and its groups),
// not as root, who may open any socket: nobody, outside group www-data, is refused by a 0660
// socket, and the report says which user was tried. It used to pass as root.
TEST(CheckCommand, AsRootTheBackendIsCheckedAsTheConfiguredUser) {
  ASSERT_EQ(geteuid(), 0u) << "needs root, as the daemon's start-up does";
  PhpFpm::Options o;
  o.extra_pool_lines = {"listen.mode = 0660"};
  PhpFpm php(o);
  ASSERT_TRUE(php.Start());
  testing_support::TempDir dir;
  const std::string refused = WriteConfig(dir, php, {{"user", "nobody"}});
  auto r = testing_support::RunCommand({testing_support::MilterBinary(), "-t", "-c", refused});
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(r.output.find("FastCGI backend (as user nobody): unix:" + php.socket_path() +
                          ": permission denied"),
            std::string::npos)
      << r.output;
  EXPECT_NE(r.output.find("usermod -a -G www-data"), std::string::npos) << r.output;

  // The pool's own user gets in: ok, naming it.
  const std::string allowed = WriteConfig(dir, php, {{"user", "www-data"}});
  auto ok = testing_support::RunCommand({testing_support::MilterBinary(), "-t", "-c", allowed});
  EXPECT_EQ(ok.exit_code, 0) << ok.output;
  EXPECT_NE(ok.output.find(allowed + ": ok (FastCGI backend reachable as user www-data)"),
            std::string::npos)
      << ok.output;

  // Without `user` the daemon stays root, and so does the check.
  const std::string as_root = WriteConfig(dir, php);
  auto root = testing_support::RunCommand({testing_support::MilterBinary(), "-t", "-c", as_root});
  EXPECT_EQ(root.exit_code, 0) << root.output;
  EXPECT_NE(root.output.find("reachable as user root"), std::string::npos) << root.output;
}

// Run by someone else than root and the configured user, -t cannot switch: it says so.
TEST(CheckCommand, NotRootCannotCheckAsTheConfiguredUserAndSaysSo) {
  PhpFpm php;
  ASSERT_TRUE(php.Start());
  testing_support::TempDir dir;
  const std::string config = WriteConfig(dir, php, {{"user", "www-data"}});
  auto r =
      testing_support::RunCommand({"setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups",
                                   "--", testing_support::MilterBinary(), "-t", "-c", config});
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(r.output.find("checked as user nobody, not as the configured user www-data"),
            std::string::npos)
      << r.output;
}

TEST(CheckCommand, DeadlineCloseToPostfixsIsWarnedAboutButNotAnError) {
  PhpFpm php;
  ASSERT_TRUE(php.Start());
  testing_support::TempDir dir;
  const std::string config = WriteConfig(dir, php, {{"validate_timeout", 28}});
  auto r = testing_support::RunCommand({testing_support::MilterBinary(), "-t", "-c", config});
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("warning: key 'validate_timeout' (28 s)"), std::string::npos) << r.output;
}

TEST(CheckCommand, ConfigErrorsAreListedOnePerLine) {
  testing_support::TempDir dir;
  const std::string config = dir.Write(
      "bad.json", R"({"fcgi_connection_type": "udp", "save_timout": 10, "validate_timeout": "x"})");
  auto r = testing_support::RunCommand({testing_support::MilterBinary(), "-t", "-c", config});
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(r.output.find("key 'fcgi_connection_type'"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("did you mean 'save_timeout'"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("key 'validate_timeout'"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("missing required key 'fcgi_script_filename_save'"), std::string::npos)
      << r.output;
}

}  // namespace

namespace {

// A route's own backend is probed like the top-level one: a dead one is named.
TEST(CheckCommand, ARoutesBackendIsProbedToo) {
  PhpFpm php;
  ASSERT_TRUE(php.Start());
  testing_support::TempDir dir;
  const std::string dead = dir.path() + "/no-such-php-fpm.sock";
  const std::string config = WriteConfig(
      dir, php,
      {{"routes", nlohmann::json::array(
                      {{{"domains", {"example.org"}}, {"fcgi_backends", {"unix:" + dead}}}})}});
  auto r = testing_support::RunCommand({testing_support::MilterBinary(), "-t", "-c", config});
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(r.output.find(dead), std::string::npos) << r.output;
}

}  // namespace
