// The key table is the one list of config keys; the reference (docs/config.md) and the man page
// (packaging/man/fcgi-milter.json.5) must describe every key in it and no key it does not have.
#include <gtest/gtest.h>

#include <fstream>
#include <regex>
#include <set>
#include <sstream>
#include <string>

#include "config/config.h"

namespace config {
namespace {

std::string ReadSource(const std::string& relative) {
  std::ifstream in(std::string(FCGI_MILTER_SOURCE_DIR) + "/" + relative);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

std::set<std::string> KeysOfTheTable() {
  std::set<std::string> keys;
  for (const auto& [key, value] : Summarize(Config{})) keys.insert(key);
  return keys;
}

// Keys named in a file by `pattern` (its first group).
std::set<std::string> Named(const std::string& text, const std::string& pattern) {
  std::set<std::string> found;
  const std::regex re(pattern);
  for (auto it = std::sregex_iterator(text.begin(), text.end(), re); it != std::sregex_iterator();
       ++it) {
    found.insert((*it)[1]);
  }
  return found;
}

TEST(ConfigDocs, TheReferenceDescribesEveryKeyAndNoOther) {
  const std::string doc = ReadSource("docs/config.md");
  ASSERT_FALSE(doc.empty());
  // Rows of the reference table: "| `key` | type | default | meaning |".
  EXPECT_EQ(Named(doc, "\\n\\| `([a-z0-9_]+)` \\|"), KeysOfTheTable());
}

TEST(ConfigDocs, TheManPageDescribesEveryKeyAndNoOther) {
  const std::string man = ReadSource("packaging/man/fcgi-milter.json.5");
  ASSERT_FALSE(man.empty());
  // Each key is a .TP entry starting ".BR key " or ".B key".
  std::set<std::string> named = Named(man, "\\n\\.TP\\n\\.BR? ([a-z0-9_]+)[ \\n]");
  EXPECT_EQ(named, KeysOfTheTable());
}

}  // namespace
}  // namespace config
