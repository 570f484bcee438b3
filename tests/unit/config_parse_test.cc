// Unit tests for config::Parse: defaults, each key's accepted forms, and every class of error
// (wrong type, out of range, unknown key, missing key, duplicate, malformed address).
// Thread-safety: tests only; no shared state.
#include <gtest/gtest.h>

#include <string>

#include "config/config.h"

namespace config {
namespace {

// gmock is not linked into the unit tests, so a plain substring assertion stands in for HasSubstr.
::testing::AssertionResult AssertContains(const char* haystack_expr, const char* needle_expr,
                                          const std::string& haystack, const std::string& needle) {
  if (haystack.find(needle) != std::string::npos) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << haystack_expr << " does not contain " << needle_expr
                                       << "\n  text: " << haystack << "\n  wanted: " << needle;
}
#define EXPECT_CONTAINS(haystack, needle) EXPECT_PRED_FORMAT2(AssertContains, haystack, needle)

constexpr const char* kOrigin = "/etc/fcgi-milter/test.json";

// The smallest valid file; `extra` is spliced in as more members.
std::string Minimal(const std::string& extra = "") {
  std::string text =
      "{\"fcgi_connection_address\": \"/run/php/php8.2-fpm.sock\",\n"
      " \"fcgi_script_filename_save\": \"/srv/save.php\"";
  if (!extra.empty()) text += ",\n " + extra;
  return text + "}\n";
}

LoadResult ParseText(const std::string& text) {
  return Parse(text, kOrigin);
}

// The one error a single bad key must produce.
std::string OnlyError(const std::string& text) {
  LoadResult r = ParseText(text);
  EXPECT_EQ(r.errors.size(), 1u) << testing::PrintToString(r.errors);
  return r.errors.empty() ? "" : r.errors.front();
}

std::string AllErrors(const LoadResult& r) {
  std::string all;
  for (const std::string& e : r.errors) all += e + "\n";
  return all;
}

TEST(ConfigParse, AppliesDefaultsToMinimalConfig) {
  LoadResult r = ParseText(Minimal());
  ASSERT_TRUE(r.ok()) << AllErrors(r);
  const Config& c = r.config;
  EXPECT_EQ(c.fcgi_connection_type, ConnectionType::kUnix);
  EXPECT_EQ(c.fcgi_connection_address, "/run/php/php8.2-fpm.sock");
  EXPECT_EQ(c.fcgi_script_filename_validate, "");
  EXPECT_EQ(c.fcgi_script_filename_save, "/srv/save.php");
  EXPECT_EQ(c.milter_socket, "unix:/run/fcgi-milter/fcgi-milter.sock");
  EXPECT_EQ(c.milter_socket_mode, 0660);
  EXPECT_DOUBLE_EQ(c.fcgi_connect_timeout, 5.0);
  EXPECT_DOUBLE_EQ(c.validate_timeout, 20.0);
  EXPECT_DOUBLE_EQ(c.save_timeout, 240.0);
  EXPECT_EQ(c.body_line_endings, LineEnding::kLf);
  EXPECT_EQ(c.spool_directory, "/var/tmp");
  EXPECT_EQ(c.spool_threshold, 1048576u);
  EXPECT_EQ(c.max_message_size, 0u);
  EXPECT_EQ(c.max_reply_size, 1048576u);
  EXPECT_EQ(c.log_level, config::LogLevel::kInfo);
  EXPECT_EQ(c.server_name, "");
}

TEST(ConfigParse, ReadsEveryKeyOfAFullConfig) {
  LoadResult r = ParseText(R"({
    "fcgi_connection_type": "tcp",
    "fcgi_connection_address": "[::1]:9000",
    "fcgi_script_filename_validate": "/srv/app/validate.php",
    "fcgi_script_filename_save": "/srv/app/save.php",
    "milter_socket": "inet:8894@127.0.0.1",
    "milter_socket_mode": "0600",
    "fcgi_connect_timeout": 2.5,
    "validate_timeout": 10,
    "save_timeout": 120.5,
    "body_line_endings": "crlf",
    "spool_directory": "/var/spool/fcgi-milter",
    "spool_threshold": 65536,
    "max_message_size": 2500000,
    "max_reply_size": 4096,
    "log_level": "debug",
    "server_name": "mx1.example.test"
  })");
  ASSERT_TRUE(r.ok()) << AllErrors(r);
  const Config& c = r.config;
  EXPECT_EQ(c.fcgi_connection_type, ConnectionType::kTcp);
  EXPECT_EQ(c.fcgi_connection_address, "[::1]:9000");
  EXPECT_EQ(c.fcgi_script_filename_validate, "/srv/app/validate.php");
  EXPECT_EQ(c.fcgi_script_filename_save, "/srv/app/save.php");
  EXPECT_EQ(c.milter_socket, "inet:8894@127.0.0.1");
  EXPECT_EQ(c.milter_socket_mode, 0600);
  EXPECT_DOUBLE_EQ(c.fcgi_connect_timeout, 2.5);
  EXPECT_DOUBLE_EQ(c.validate_timeout, 10.0);
  EXPECT_DOUBLE_EQ(c.save_timeout, 120.5);
  EXPECT_EQ(c.body_line_endings, LineEnding::kCrlf);
  EXPECT_EQ(c.spool_directory, "/var/spool/fcgi-milter");
  EXPECT_EQ(c.spool_threshold, 65536u);
  EXPECT_EQ(c.max_message_size, 2500000u);
  EXPECT_EQ(c.max_reply_size, 4096u);
  EXPECT_EQ(c.log_level, config::LogLevel::kDebug);
  EXPECT_EQ(c.server_name, "mx1.example.test");
}

TEST(ConfigParse, AcceptsConnectionTypeInAnyCase) {
  LoadResult r = ParseText(Minimal("\"fcgi_connection_type\": \"UNIX\""));
  ASSERT_TRUE(r.ok()) << AllErrors(r);
  EXPECT_EQ(r.config.fcgi_connection_type, ConnectionType::kUnix);

  r = ParseText(R"({"fcgi_connection_type": "Tcp", "fcgi_connection_address": "127.0.0.1:9000",
                    "fcgi_script_filename_save": "/srv/save.php"})");
  ASSERT_TRUE(r.ok()) << AllErrors(r);
  EXPECT_EQ(r.config.fcgi_connection_type, ConnectionType::kTcp);
}

TEST(ConfigParse, RejectsUnknownConnectionTypeWithoutAlsoBlamingTheAddress) {
  EXPECT_EQ(OnlyError(Minimal("\"fcgi_connection_type\": \"udp\"")),
            std::string(kOrigin) +
                ": key 'fcgi_connection_type': expected \"unix\" or \"tcp\", got \"udp\"");
}

TEST(ConfigParse, WrongTypeNamesKeyExpectationAndFoundValue) {
  EXPECT_EQ(OnlyError(Minimal("\"save_timeout\": \"abc\"")),
            std::string(kOrigin) +
                ": key 'save_timeout': expected a number of seconds between 0.1 and 299, got "
                "\"abc\"");
  EXPECT_CONTAINS(OnlyError(Minimal("\"spool_directory\": [\"/tmp\"]")),
                  "key 'spool_directory': expected an absolute path, got an array");
  EXPECT_CONTAINS(OnlyError(Minimal("\"log_level\": null")),
                  "key 'log_level': expected \"error\", \"warning\", \"info\", \"debug\", "
                  "got null");
  EXPECT_CONTAINS(OnlyError(Minimal("\"max_reply_size\": true")),
                  "key 'max_reply_size': expected a whole number of bytes of at least 1, "
                  "got true");
  EXPECT_CONTAINS(OnlyError(Minimal("\"server_name\": {}")),
                  "key 'server_name': expected a host name string");
}

TEST(ConfigParse, CutsLongFoundValuesInMessages) {
  std::string error = OnlyError(Minimal("\"log_level\": \"" + std::string(500, 'x') + "\""));
  EXPECT_LT(error.size(), 200u);
  EXPECT_CONTAINS(error, "xxx...");
}

TEST(ConfigParse, NamesEachMissingRequiredKey) {
  LoadResult r = ParseText("{}");
  ASSERT_EQ(r.errors.size(), 2u) << AllErrors(r);
  EXPECT_EQ(r.errors[0], std::string(kOrigin) + ": missing required key 'fcgi_connection_address'");
  EXPECT_EQ(r.errors[1],
            std::string(kOrigin) + ": missing required key 'fcgi_script_filename_save'");
}

TEST(ConfigParse, RejectsEmptyOrRelativeSaveScript) {
  EXPECT_CONTAINS(OnlyError(R"({"fcgi_connection_address": "/run/php.sock",
                            "fcgi_script_filename_save": ""})"),
                  "key 'fcgi_script_filename_save': expected an absolute path, got \"\"");
  EXPECT_CONTAINS(OnlyError(R"({"fcgi_connection_address": "/run/php.sock",
                            "fcgi_script_filename_save": "save.php"})"),
                  "expected an absolute path, got \"save.php\"");
}

TEST(ConfigParse, EmptyValidateScriptMeansNoValidation) {
  LoadResult r = ParseText(Minimal("\"fcgi_script_filename_validate\": \"\""));
  ASSERT_TRUE(r.ok()) << AllErrors(r);
  EXPECT_EQ(r.config.fcgi_script_filename_validate, "");
  EXPECT_CONTAINS(OnlyError(Minimal("\"fcgi_script_filename_validate\": \"validate.php\"")),
                  "expected an absolute path or \"\", got \"validate.php\"");
}

TEST(ConfigParse, UnknownKeySuggestsClosestKnownKey) {
  EXPECT_EQ(OnlyError(Minimal("\"save_timout\": 10")),
            std::string(kOrigin) + ": unknown key 'save_timout' (did you mean 'save_timeout'?)");
  EXPECT_CONTAINS(OnlyError(Minimal("\"Log-Level\": \"info\"")), "(did you mean 'log_level'?)");
  EXPECT_CONTAINS(OnlyError(Minimal("\"fcgi_script_filename_valid\": \"/v.php\"")),
                  "(did you mean 'fcgi_script_filename_validate'?)");
}

TEST(ConfigParse, UnknownKeyFarFromAnyKnownKeyGetsNoSuggestion) {
  EXPECT_EQ(OnlyError(Minimal("\"timeout\": 10")),
            std::string(kOrigin) + ": unknown key 'timeout'");
}

TEST(ConfigParse, UnknownObjectHoldingOurKeysSaysKeysGoAtTopLevel) {
  EXPECT_CONTAINS(OnlyError(Minimal("\"backend_config\": {\"save_timeout\": 10}")),
                  "unknown key 'backend_config' (keys go at the top level");
}

TEST(ConfigParse, CollectsEveryErrorInsteadOfStoppingAtTheFirst) {
  LoadResult r = ParseText(R"({"fcgi_connection_address": 9000, "save_timeout": 0,
                              "max_message_size": -1, "bogus": 1})");
  EXPECT_EQ(r.errors.size(), 5u) << AllErrors(r);
  std::string all = AllErrors(r);
  EXPECT_CONTAINS(all, "key 'fcgi_connection_address'");
  EXPECT_CONTAINS(all, "key 'save_timeout'");
  EXPECT_CONTAINS(all, "key 'max_message_size'");
  EXPECT_CONTAINS(all, "unknown key 'bogus'");
  EXPECT_CONTAINS(all, "missing required key 'fcgi_script_filename_save'");
}

TEST(ConfigParse, ReportsErrorsInFileOrderEvenForTheLateAddressCheck) {
  LoadResult r = ParseText(R"({"fcgi_connection_address": "::1:9000", "save_timeout": 0,
                              "fcgi_connection_type": "tcp", "fcgi_script_filename_save": "/s"})");
  ASSERT_EQ(r.errors.size(), 2u) << AllErrors(r);
  EXPECT_CONTAINS(r.errors[0], "key 'fcgi_connection_address'");
  EXPECT_CONTAINS(r.errors[1], "key 'save_timeout'");
}

TEST(ConfigParse, ReportsDuplicateKey) {
  EXPECT_EQ(OnlyError(Minimal("\"save_timeout\": 10, \"save_timeout\": 20")),
            std::string(kOrigin) + ": key 'save_timeout' appears more than once");
}

TEST(ConfigParse, DuplicateInsideNestedValueIsNotATopLevelDuplicate) {
  std::string error = OnlyError(Minimal("\"x\": {\"a\": 1, \"a\": 2}"));
  EXPECT_CONTAINS(error, "unknown key 'x'");
}

TEST(ConfigParse, TopLevelMustBeAnObject) {
  EXPECT_EQ(OnlyError("[1, 2]"),
            std::string(kOrigin) +
                ": expected a JSON object { \"key\": value, ... } at the top level, got an array");
  EXPECT_CONTAINS(OnlyError("\"just a string\""), "got \"just a string\"");
}

TEST(ConfigParse, TimeoutsMustBePositive) {
  EXPECT_CONTAINS(OnlyError(Minimal("\"fcgi_connect_timeout\": 0")),
                  "key 'fcgi_connect_timeout': expected a number of seconds between 0.1 and "
                  "29, got 0");
  EXPECT_CONTAINS(OnlyError(Minimal("\"validate_timeout\": -5")), "key 'validate_timeout'");
}

TEST(ConfigParse, ValidateTimeoutStaysBelowPostfixCommandTimeout) {
  EXPECT_TRUE(ParseText(Minimal("\"validate_timeout\": 29")).ok());
  EXPECT_CONTAINS(OnlyError(Minimal("\"validate_timeout\": 30")),
                  "key 'validate_timeout': expected a number of seconds between 0.1 and 29, "
                  "got 30");
}

TEST(ConfigParse, SaveTimeoutStaysBelowPostfixContentTimeout) {
  EXPECT_TRUE(ParseText(Minimal("\"save_timeout\": 299")).ok());
  EXPECT_CONTAINS(OnlyError(Minimal("\"save_timeout\": 300")), "got 300");
}

TEST(ConfigParse, AcceptsTcpAddressForms) {
  for (const char* address :
       {"127.0.0.1:9000", "[::1]:9000", "php-fpm:9000", "[fe80::1%eth0]:1", "localhost:65535"}) {
    LoadResult r = ParseText(std::string("{\"fcgi_connection_type\": \"tcp\", ") +
                             "\"fcgi_connection_address\": \"" + address + "\", " +
                             "\"fcgi_script_filename_save\": \"/s.php\"}");
    EXPECT_TRUE(r.ok()) << address << ": " << AllErrors(r);
  }
}

TEST(ConfigParse, RejectsMalformedTcpAddresses) {
  struct Case {
    const char* address;
    const char* why;
  };
  for (const Case& c :
       {Case{"127.0.0.1", "missing ':port'"}, Case{"::1:9000", "needs brackets"},
        Case{"[::1]9000", "missing ':port' after ']'"}, Case{"[::1:9000", "not closed"},
        Case{"[zz]:9000", "'zz' is not an IPv6 address"},
        Case{"host:0", "port '0' is not 1..65535"}, Case{"host:65536", "port '65536'"},
        Case{"host:http", "port 'http'"}, Case{":9000", "'' is not a host name"},
        Case{"/run/php.sock", "set fcgi_connection_type to \"unix\""}}) {
    std::string error = OnlyError(std::string("{\"fcgi_connection_type\": \"tcp\", ") +
                                  "\"fcgi_connection_address\": \"" + c.address + "\", " +
                                  "\"fcgi_script_filename_save\": \"/s.php\"}");
    EXPECT_CONTAINS(error, "key 'fcgi_connection_address': expected host:port") << c.address;
    EXPECT_CONTAINS(error, c.why) << c.address;
  }
}

TEST(ConfigParse, UnixAddressMustBeAbsoluteAndHintsAtTcp) {
  std::string error = OnlyError(R"({"fcgi_connection_address": "127.0.0.1:9000",
                                    "fcgi_script_filename_save": "/s.php"})");
  EXPECT_EQ(error, std::string(kOrigin) +
                       ": key 'fcgi_connection_address': expected an absolute socket path "
                       "(fcgi_connection_type is \"unix\"; for host:port set fcgi_connection_type "
                       "to \"tcp\"), got \"127.0.0.1:9000\"");
  EXPECT_CONTAINS(OnlyError(R"({"fcgi_connection_address": "php.sock",
                            "fcgi_script_filename_save": "/s.php"})"),
                  "expected an absolute socket path (fcgi_connection_type is \"unix\"), "
                  "got \"php.sock\"");
  EXPECT_CONTAINS(
      OnlyError(R"({"fcgi_connection_address": "", "fcgi_script_filename_save": "/s.php"})"),
      "key 'fcgi_connection_address': expected a socket path or host:port, "
      "got \"\"");
}

TEST(ConfigParse, UnixAddressMustFitInASocketAddress) {
  std::string at_limit = "/" + std::string(106, 'a');  // 107 bytes + NUL = sun_path
  EXPECT_TRUE(ParseText("{\"fcgi_connection_address\": \"" + at_limit +
                        "\", \"fcgi_script_filename_save\": \"/s.php\"}")
                  .ok());
  EXPECT_CONTAINS(OnlyError("{\"fcgi_connection_address\": \"" + at_limit +
                            "a\", \"fcgi_script_filename_save\": \"/s.php\"}"),
                  "108 bytes long; at most 107");
}

TEST(ConfigParse, AcceptsMilterSocketForms) {
  struct Case {
    const char* given;
    const char* stored;
  };
  for (const Case& c :
       {Case{"unix:/run/m.sock", "unix:/run/m.sock"},
        Case{"local:/run/m.sock", "local:/run/m.sock"},
        Case{"UNIX:/run/m.sock", "unix:/run/m.sock"},
        Case{"inet:8894@127.0.0.1", "inet:8894@127.0.0.1"},
        Case{"inet:8894@[127.0.0.1]", "inet:8894@[127.0.0.1]"},
        Case{"inet:8894@localhost", "inet:8894@localhost"},
        Case{"inet6:8894@::1", "inet6:8894@::1"}, Case{"Inet6:8894@[::1]", "inet6:8894@[::1]"}}) {
    LoadResult r = ParseText(Minimal(std::string("\"milter_socket\": \"") + c.given + "\""));
    ASSERT_TRUE(r.ok()) << c.given << ": " << AllErrors(r);
    EXPECT_EQ(r.config.milter_socket, c.stored);
  }
}

TEST(ConfigParse, RejectsMalformedMilterSockets) {
  for (const char* given :
       {"/run/m.sock", "unix:run/m.sock", "unix:", "inet:8894", "inet:0@127.0.0.1",
        "inet:smtp@127.0.0.1", "inet:8894@", "inet:8894@[::1]", "inet6:8894@[nope]",
        "tcp:8894@127.0.0.1", "inet:8894@a b"}) {
    std::string error = OnlyError(Minimal(std::string("\"milter_socket\": \"") + given + "\""));
    EXPECT_CONTAINS(error, "key 'milter_socket': expected \"unix:/absolute/path\"") << given;
  }
  EXPECT_CONTAINS(OnlyError(Minimal("\"milter_socket\": \"inet:8894\"")),
                  "name the address to listen on, e.g. inet:8894@127.0.0.1");
  EXPECT_CONTAINS(OnlyError(Minimal("\"milter_socket\": \"unix:/" + std::string(106, 'a') + "\"")),
                  "107 bytes long; at most 106");
}

TEST(ConfigParse, SocketModeIsAnOctalString) {
  LoadResult r = ParseText(Minimal("\"milter_socket_mode\": \"660\""));
  ASSERT_TRUE(r.ok()) << AllErrors(r);
  EXPECT_EQ(r.config.milter_socket_mode, 0660);
  EXPECT_EQ(OnlyError(Minimal("\"milter_socket_mode\": 660")),
            std::string(kOrigin) +
                ": key 'milter_socket_mode': expected an octal mode as a string, such as "
                "\"0660\", got 660");
  EXPECT_CONTAINS(OnlyError(Minimal("\"milter_socket_mode\": \"0680\"")), "got \"0680\"");
  EXPECT_CONTAINS(OnlyError(Minimal("\"milter_socket_mode\": \"1777\"")),
                  "no greater than \"0777\"");
  EXPECT_CONTAINS(OnlyError(Minimal("\"milter_socket_mode\": \"\"")), "got \"\"");
}

TEST(ConfigParse, ByteSizesAreWholeNonNegativeNumbers) {
  LoadResult r = ParseText(Minimal("\"max_message_size\": 1e7, \"spool_threshold\": 0"));
  ASSERT_TRUE(r.ok()) << AllErrors(r);
  EXPECT_EQ(r.config.max_message_size, 10000000u);
  EXPECT_EQ(r.config.spool_threshold, 0u);
  EXPECT_CONTAINS(OnlyError(Minimal("\"max_message_size\": -1")),
                  "key 'max_message_size': expected a whole number of bytes, got -1");
  EXPECT_CONTAINS(OnlyError(Minimal("\"spool_threshold\": 1.5")), "got 1.5");
  EXPECT_CONTAINS(OnlyError(Minimal("\"spool_threshold\": \"1M\"")), "got \"1M\"");
  EXPECT_CONTAINS(OnlyError(Minimal("\"max_reply_size\": 0")),
                  "expected a whole number of bytes of at least 1, got 0");
  EXPECT_CONTAINS(OnlyError(Minimal("\"max_message_size\": 1e30")), "key 'max_message_size'");
}

TEST(ConfigParse, LineEndingsAreLfOrCrlf) {
  LoadResult r = ParseText(Minimal("\"body_line_endings\": \"CRLF\""));
  ASSERT_TRUE(r.ok()) << AllErrors(r);
  EXPECT_EQ(r.config.body_line_endings, LineEnding::kCrlf);
  EXPECT_CONTAINS(OnlyError(Minimal("\"body_line_endings\": \"cr\"")),
                  "key 'body_line_endings': expected \"lf\" or \"crlf\", got \"cr\"");
}

TEST(ConfigParse, LogLevelIsStoredLowerCase) {
  LoadResult r = ParseText(Minimal("\"log_level\": \"Warning\""));
  ASSERT_TRUE(r.ok()) << AllErrors(r);
  EXPECT_EQ(r.config.log_level, config::LogLevel::kWarning);
  EXPECT_CONTAINS(OnlyError(Minimal("\"log_level\": \"warn\"")), "got \"warn\"");
}

TEST(ConfigParse, ServerNameRejectsControlCharacters) {
  EXPECT_CONTAINS(OnlyError(Minimal("\"server_name\": \"mx\\r\\nX: y\"")), "key 'server_name'");
}

TEST(ConfigParse, PathsRejectEmbeddedNul) {
  EXPECT_CONTAINS(OnlyError(Minimal("\"spool_directory\": \"/var/tmp\\u0000x\"")),
                  "key 'spool_directory': expected an absolute path");
}

// The listener takes the port as 16 bits: ":70000" used to bind port 4464 (70000 - 65536).
TEST(ConfigParse, MetricsListenPortIsInRange) {
  for (const char* good : {"127.0.0.1:1", "127.0.0.1:9466", "[::1]:65535", "localhost:00080"}) {
    LoadResult r = ParseText(Minimal(std::string("\"metrics_listen\": \"") + good + "\""));
    EXPECT_TRUE(r.ok()) << good << ": " << AllErrors(r);
  }
  for (const char* bad : {"127.0.0.1:0", "127.0.0.1:65536", "127.0.0.1:70000", "[::1]:99999",
                          "127.0.0.1:000000", "127.0.0.1:18446744073709551617"}) {
    const std::string error =
        OnlyError(Minimal(std::string("\"metrics_listen\": \"") + bad + "\""));
    EXPECT_CONTAINS(error, "key 'metrics_listen': expected \"host:port\"") << bad;
    EXPECT_CONTAINS(error, "is outside 1-65535") << bad;
  }
}

}  // namespace
}  // namespace config

namespace {

TEST(ConfigPool, MaxConnectionsAndKeepAliveAreRead) {
  auto r = config::Parse(R"({"fcgi_connection_address": "/run/php.sock",
    "fcgi_script_filename_save": "/srv/save.php", "fcgi_max_connections": 12,
    "fcgi_keep_alive": false})",
                         "t.json");
  ASSERT_TRUE(r.ok()) << r.errors[0];
  EXPECT_EQ(r.config.fcgi_max_connections, 12u);
  EXPECT_FALSE(r.config.fcgi_keep_alive);
}

TEST(ConfigPool, ZeroConnectionsAndAStringBooleanAreErrorsNamingTheKey) {
  auto r = config::Parse(R"({"fcgi_connection_address": "/run/php.sock",
    "fcgi_script_filename_save": "/srv/save.php", "fcgi_max_connections": 0,
    "fcgi_keep_alive": "yes"})",
                         "t.json");
  ASSERT_EQ(r.errors.size(), 2u);
  EXPECT_NE(r.errors[0].find("'fcgi_max_connections'"), std::string::npos) << r.errors[0];
  EXPECT_NE(r.errors[1].find("'fcgi_keep_alive'"), std::string::npos) << r.errors[1];
  EXPECT_NE(r.errors[1].find("true or false"), std::string::npos) << r.errors[1];
}

}  // namespace

namespace {

TEST(ConfigSummary, ChangedKeysNamesEachDifferenceWithOldAndNewValue) {
  config::Config a;
  config::Config b;
  b.save_timeout = 120;
  b.log_level = config::LogLevel::kDebug;
  auto changed = config::ChangedKeys(a, b);
  ASSERT_EQ(changed.size(), 2u);
  EXPECT_EQ(changed[0], "save_timeout: \"240\" -> \"120\"");
  EXPECT_EQ(changed[1], "log_level: \"info\" -> \"debug\"");
  EXPECT_TRUE(config::ChangedKeys(a, a).empty());
}

}  // namespace

namespace {

TEST(ConfigBackends, FarmIsReadInPlaceOfTheSingleAddress) {
  auto r = config::Parse(R"({"fcgi_backends": ["unix:/run/php/a.sock", "tcp:10.0.0.5:9000",
    "tcp:[::1]:9001"], "fcgi_script_filename_save": "/srv/save.php"})",
                         "t.json");
  ASSERT_TRUE(r.ok()) << r.errors[0];
  auto b = config::Backends(r.config);
  ASSERT_EQ(b.size(), 3u);
  EXPECT_EQ(b[0].type, config::ConnectionType::kUnix);
  EXPECT_EQ(b[0].address, "/run/php/a.sock");
  EXPECT_EQ(b[1].type, config::ConnectionType::kTcp);
  EXPECT_EQ(b[1].address, "10.0.0.5:9000");
  EXPECT_EQ(b[2].address, "[::1]:9001");
}

TEST(ConfigBackends, SingleAddressIsTheOnlyBackendWhenNoFarmIsGiven) {
  auto r = config::Parse(R"({"fcgi_connection_address": "/run/php.sock",
    "fcgi_script_filename_save": "/srv/save.php"})",
                         "t.json");
  ASSERT_TRUE(r.ok());
  auto b = config::Backends(r.config);
  ASSERT_EQ(b.size(), 1u);
  EXPECT_EQ(b[0].address, "/run/php.sock");
}

TEST(ConfigBackends, BothFormsOrABadEntryAreErrors) {
  auto both = config::Parse(R"({"fcgi_connection_address": "/run/php.sock",
    "fcgi_backends": ["unix:/run/b.sock"], "fcgi_script_filename_save": "/srv/save.php"})",
                            "t.json");
  ASSERT_EQ(both.errors.size(), 1u);
  EXPECT_NE(both.errors[0].find("give one or the other"), std::string::npos) << both.errors[0];
  auto bad = config::Parse(R"({"fcgi_backends": ["php:/run/b.sock"],
    "fcgi_script_filename_save": "/srv/save.php"})",
                           "t.json");
  ASSERT_EQ(bad.errors.size(), 1u);
  EXPECT_NE(bad.errors[0].find("'fcgi_backends'"), std::string::npos) << bad.errors[0];
  EXPECT_NE(bad.errors[0].find("php:/run/b.sock"), std::string::npos) << bad.errors[0];
}

TEST(ConfigPolicy, FailureActionsAndSkipNetworksAreChecked) {
  auto ok = config::Parse(R"({"fcgi_connection_address": "/run/php.sock",
    "fcgi_script_filename_save": "/srv/save.php", "save_failure_action": "accept",
    "validate_skip_networks": ["10.0.0.0/8", "2001:db8::/32", "192.0.2.1"]})",
                          "t.json");
  ASSERT_TRUE(ok.ok()) << ok.errors[0];
  EXPECT_EQ(ok.config.save_failure_action, config::FailureAction::kAccept);
  EXPECT_EQ(ok.config.validate_skip_networks.entries().size(), 3u);
  EXPECT_TRUE(ok.config.validate_skip_networks.Contains("2001:db8::7"));
  EXPECT_FALSE(ok.config.validate_skip_networks.Contains("192.0.2.2"));
  auto bad = config::Parse(R"({"fcgi_connection_address": "/run/php.sock",
    "fcgi_script_filename_save": "/srv/save.php", "save_failure_action": "drop",
    "validate_skip_networks": ["10.0.0.0/33"]})",
                           "t.json");
  ASSERT_EQ(bad.errors.size(), 2u);
  EXPECT_NE(bad.errors[0].find("'save_failure_action'"), std::string::npos);
  EXPECT_NE(bad.errors[1].find("10.0.0.0/33"), std::string::npos) << bad.errors[1];
}

}  // namespace
