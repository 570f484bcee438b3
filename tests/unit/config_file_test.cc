// Unit tests for config::LoadFile and JSON syntax errors: unreadable files, line/column of a
// syntax error, hints for the usual JSON slips, and the shipped config/fcgi-milter.json.
// Thread-safety: tests only; each test uses its own temp file.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

#include "config/config.h"

namespace config {
namespace {

::testing::AssertionResult AssertContains(const char* haystack_expr, const char* needle_expr,
                                          const std::string& haystack, const std::string& needle) {
  if (haystack.find(needle) != std::string::npos) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << haystack_expr << " does not contain " << needle_expr
                                       << "\n  text: " << haystack << "\n  wanted: " << needle;
}
#define EXPECT_CONTAINS(haystack, needle) EXPECT_PRED_FORMAT2(AssertContains, haystack, needle)

// The repository root, found from this file's own path: unit tests get no source-dir define.
std::filesystem::path SourceRoot() {
  return std::filesystem::path(__FILE__).parent_path().parent_path().parent_path();
}

// A file that removes itself; its name is unique per test.
class TempFile {
 public:
  explicit TempFile(const std::string& content) {
    char name[] = "/tmp/fcgi-milter-config-test-XXXXXX";
    int fd = mkstemp(name);
    EXPECT_GE(fd, 0);
    path_ = name;
    EXPECT_EQ(write(fd, content.data(), content.size()), static_cast<ssize_t>(content.size()));
    close(fd);
  }
  ~TempFile() { std::remove(path_.c_str()); }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

std::string OnlyError(const LoadResult& r) {
  EXPECT_EQ(r.errors.size(), 1u) << testing::PrintToString(r.errors);
  return r.errors.empty() ? "" : r.errors.front();
}

TEST(ConfigFile, ShippedExampleConfigLoadsClean) {
  std::string path = (SourceRoot() / "config" / "fcgi-milter.json").string();
  LoadResult r = LoadFile(path);
  ASSERT_TRUE(r.ok()) << testing::PrintToString(r.errors);
  const Config& c = r.config;
  EXPECT_EQ(c.fcgi_connection_type, ConnectionType::kUnix);
  EXPECT_EQ(c.fcgi_connection_address, "/run/php/php8.2-fpm.sock");
  EXPECT_EQ(c.fcgi_script_filename_validate, "/usr/share/fcgi-milter/examples/validate.php");
  EXPECT_EQ(c.fcgi_script_filename_save, "/usr/share/fcgi-milter/examples/save.php");
  EXPECT_EQ(c.milter_socket, "unix:/var/spool/postfix/fcgi-milter/fcgi-milter.sock");
  // The rest spells out the defaults: the file must not drift from the code.
  Config defaults;
  EXPECT_EQ(c.milter_socket_mode, defaults.milter_socket_mode);
  EXPECT_EQ(c.fcgi_connect_timeout, defaults.fcgi_connect_timeout);
  EXPECT_EQ(c.validate_timeout, defaults.validate_timeout);
  EXPECT_EQ(c.save_timeout, defaults.save_timeout);
  EXPECT_EQ(c.body_line_endings, defaults.body_line_endings);
  EXPECT_EQ(c.spool_directory, defaults.spool_directory);
  EXPECT_EQ(c.spool_threshold, defaults.spool_threshold);
  EXPECT_EQ(c.max_message_size, defaults.max_message_size);
  EXPECT_EQ(c.max_reply_size, defaults.max_reply_size);
  EXPECT_EQ(c.log_level, defaults.log_level);
  EXPECT_EQ(c.server_name, defaults.server_name);
}

TEST(ConfigFile, MissingFileSaysCannotRead) {
  LoadResult r = LoadFile("/nonexistent/fcgi-milter.json");
  EXPECT_EQ(OnlyError(r), "/nonexistent/fcgi-milter.json: cannot read: No such file or directory");
}

TEST(ConfigFile, DirectorySaysCannotRead) {
  EXPECT_EQ(OnlyError(LoadFile("/tmp")), "/tmp: cannot read: Is a directory");
}

TEST(ConfigFile, UnreadableFileSaysPermissionDenied) {
  if (geteuid() == 0) GTEST_SKIP() << "root reads any file";
  TempFile file("{}");
  chmod(file.path().c_str(), 0);
  EXPECT_EQ(OnlyError(LoadFile(file.path())), file.path() + ": cannot read: Permission denied");
}

TEST(ConfigFile, ErrorsNameTheFile) {
  TempFile file(R"({"fcgi_connection_address": "/run/php.sock",
                    "fcgi_script_filename_save": "/s.php", "save_timeout": "abc"})");
  EXPECT_EQ(OnlyError(LoadFile(file.path())),
            file.path() +
                ": key 'save_timeout': expected a number of seconds between 0.1 and 299, got "
                "\"abc\"");
}

TEST(ConfigFile, ValidFileLoads) {
  TempFile file(R"({"fcgi_connection_address": "/run/php.sock",
                    "fcgi_script_filename_save": "/s.php"})");
  LoadResult r = LoadFile(file.path());
  EXPECT_TRUE(r.ok()) << testing::PrintToString(r.errors);
  EXPECT_EQ(r.config.fcgi_script_filename_save, "/s.php");
}

TEST(ConfigFile, RefusesHugeFileInsteadOfReadingForever) {
  EXPECT_CONTAINS(OnlyError(LoadFile("/dev/zero")),
                  "/dev/zero: cannot read: larger than 4 MiB, not a configuration file");
}

TEST(ConfigSyntax, ReportsLineAndColumnOfTheBadToken) {
  LoadResult r = Parse("{\n  \"a\": 1,\n  \"b\": abc\n}\n", "x.json");
  std::string error = OnlyError(r);
  EXPECT_EQ(error.rfind("x.json: line 3, column 8: invalid JSON: syntax error", 0), 0u) << error;
  EXPECT_EQ(error.find("[json.exception"), std::string::npos) << error;
}

TEST(ConfigSyntax, ReportsPositionOfAMissingComma) {
  // The parser notices at the end of the token after the missing comma: the closing quote of "b".
  EXPECT_CONTAINS(OnlyError(Parse("{\n  \"a\": 1\n  \"b\": 2\n}", "x.json")),
                  "x.json: line 3, column 5:");
}

TEST(ConfigSyntax, CountsColumnsInCharactersNotBytes) {
  // "é" and "ü" are two bytes each; the parser stops at the 'o' of nope, the 17th character
  // (19th byte) of line 1.
  EXPECT_CONTAINS(OnlyError(Parse("{\"\xC3\xA9\xC3\xBC\": 1, \"k\": nope}", "x.json")),
                  "line 1, column 17:");
}

TEST(ConfigSyntax, ReportsEndOfInput) {
  EXPECT_CONTAINS(OnlyError(Parse("{\n  \"a\": 1,\n", "x.json")),
                  "x.json: line 3, column 1: invalid JSON:");
  EXPECT_CONTAINS(OnlyError(Parse("", "empty.json")),
                  "empty.json: line 1, column 1: invalid JSON:");
}

TEST(ConfigSyntax, NamesCommentsAsTheProblem) {
  std::string error =
      OnlyError(Parse("{\n  // the socket\n  \"fcgi_connection_address\": \"/x\"\n}", "x.json"));
  EXPECT_CONTAINS(error, "line 2, column 3:");
  EXPECT_CONTAINS(error, "(JSON has no comments");
}

TEST(ConfigSyntax, NamesTrailingCommaAsTheProblem) {
  std::string error = OnlyError(Parse("{\"a\": 1,\n}", "x.json"));
  EXPECT_CONTAINS(error, "line 2, column 1:");
  EXPECT_CONTAINS(error, "(JSON allows no comma after the last item)");
}

TEST(ConfigSyntax, NamesSingleQuotesAsTheProblem) {
  EXPECT_CONTAINS(OnlyError(Parse("{'a': 1}", "x.json")), "(JSON strings take double quotes)");
}

TEST(ConfigSyntax, NumberOverflowIsAnErrorNotACrash) {
  EXPECT_CONTAINS(OnlyError(Parse("{\"save_timeout\": 1e400}", "x.json")),
                  "x.json: invalid JSON: number overflow");
}

TEST(ConfigSyntax, InvalidUtf8IsAnError) {
  EXPECT_CONTAINS(OnlyError(Parse("{\"server_name\": \"\xff\"}", "x.json")),
                  "x.json: line 1, column");
}

}  // namespace
}  // namespace config
