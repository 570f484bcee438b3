// Unit tests for keys the loader turns into typed values: save_mode, php_max_input_vars, and the
// TCP port derived from milter_socket.
#include <gtest/gtest.h>

#include <string>

#include "config/config.h"
#include "tests/unit/config_with_key.h"

namespace config {
namespace {

using testing::WithKey;

TEST(ConfigSaveKeys, DefaultsAreTheFormAndPhpsDefaultMaxInputVars) {
  const LoadResult r = WithKey("\"log_level\": \"info\"");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r.config.save_mode, SaveMode::kForm);
  EXPECT_EQ(r.config.php_max_input_vars, 1000u);
}

TEST(ConfigSaveKeys, SaveModeTakesFormOrRawInAnyCase) {
  EXPECT_EQ(WithKey("\"save_mode\": \"raw\"").config.save_mode, SaveMode::kRaw);
  EXPECT_EQ(WithKey("\"save_mode\": \"RAW\"").config.save_mode, SaveMode::kRaw);
  EXPECT_EQ(WithKey("\"save_mode\": \"form\"").config.save_mode, SaveMode::kForm);
  const LoadResult bad = WithKey("\"save_mode\": \"multipart\"");
  ASSERT_EQ(bad.errors.size(), 1u);
  EXPECT_NE(bad.errors[0].find("save_mode"), std::string::npos) << bad.errors[0];
}

TEST(ConfigSaveKeys, PhpMaxInputVarsIsZeroOrAtLeastOneRecipientsWorth) {
  EXPECT_EQ(WithKey("\"php_max_input_vars\": 0").config.php_max_input_vars, 0u);
  EXPECT_EQ(WithKey("\"php_max_input_vars\": 17").config.php_max_input_vars, 17u);
  EXPECT_EQ(WithKey("\"php_max_input_vars\": 5000").config.php_max_input_vars, 5000u);
  for (const char* bad : {"16", "-1", "\"1000\"", "1.5", "true"}) {
    SCOPED_TRACE(bad);
    const LoadResult r = WithKey(std::string("\"php_max_input_vars\": ") + bad);
    ASSERT_EQ(r.errors.size(), 1u);
    EXPECT_NE(r.errors[0].find("php_max_input_vars"), std::string::npos) << r.errors[0];
  }
}

}  // namespace
}  // namespace config

namespace config {
namespace {

TEST(ConfigTypedKeys, MilterSocketPortIsTheInetPortOrZeroForUnix) {
  EXPECT_EQ(WithKey("\"milter_socket\": \"inet:8894@127.0.0.1\"").config.milter_socket_port, 8894);
  EXPECT_EQ(WithKey("\"milter_socket\": \"inet6:9000@[::1]\"").config.milter_socket_port, 9000);
  EXPECT_EQ(WithKey("\"milter_socket\": \"unix:/run/m.sock\"").config.milter_socket_port, 0);
  EXPECT_EQ(WithKey("\"log_level\": \"info\"").config.milter_socket_port, 0);  // default unix:
}

}  // namespace
}  // namespace config

namespace config {
namespace {

TEST(ConfigTypedKeys, MilterSocketPathAndHostAreParsedAtLoad) {
  const Config unix_c = WithKey("\"milter_socket\": \"local:/run/m.sock\"").config;
  EXPECT_EQ(unix_c.milter_socket_path, "/run/m.sock");
  EXPECT_EQ(unix_c.milter_socket_host, "");
  const Config v6 = WithKey("\"milter_socket\": \"inet6:9000@[::1]\"").config;
  EXPECT_EQ(v6.milter_socket_path, "");
  EXPECT_EQ(v6.milter_socket_host, "::1");
  EXPECT_EQ(WithKey("\"log_level\": \"info\"").config.milter_socket_path,
            "/run/fcgi-milter/fcgi-milter.sock");
}

}  // namespace
}  // namespace config
