// The key table is the one list of config keys; the reference (docs/config.md) must describe every
// key in it and no key it does not have, and so must the man page the build makes from it
// (scripts/config-man: packaging/man/fcgi-milter.json.5.in plus docs/config.md's table).
#include <gtest/gtest.h>

#include <fstream>
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

// The word that follows `marker` at the start of each line that has it, up to `end` (a key name:
// lower-case letters, digits, '_'). std::regex would do, but GCC 12's warns under ASan.
std::set<std::string> Named(const std::string& text, const std::string& marker) {
  std::set<std::string> found;
  std::istringstream lines(text);
  std::string line;
  while (std::getline(lines, line)) {
    if (line.rfind(marker, 0) != 0) continue;
    size_t end = marker.size();
    while (end < line.size() && ((line[end] >= 'a' && line[end] <= 'z') ||
                                 (line[end] >= '0' && line[end] <= '9') || line[end] == '_')) {
      ++end;
    }
    if (end > marker.size()) found.insert(line.substr(marker.size(), end - marker.size()));
  }
  return found;
}

// The man page's entries: a ".TP" line, then ".BR key ..." or ".B key".
std::set<std::string> ManEntries(const std::string& man) {
  std::string entries;
  std::istringstream lines(man);
  std::string line;
  bool after_tp = false;
  while (std::getline(lines, line)) {
    if (after_tp) entries += line + "\n";
    after_tp = line == ".TP";
  }
  std::set<std::string> found = Named(entries, ".BR ");
  for (const std::string& k : Named(entries, ".B ")) found.insert(k);
  return found;
}

TEST(ConfigDocs, TheReferenceDescribesEveryKeyAndNoOther) {
  const std::string doc = ReadSource("docs/config.md");
  ASSERT_FALSE(doc.empty());
  // Rows of the reference table: "| `key` | type | default | meaning |".
  EXPECT_EQ(Named(doc, "| `"), KeysOfTheTable());
}

TEST(ConfigDocs, TheManPageDescribesEveryKeyAndNoOther) {
  std::ifstream in(FCGI_MILTER_CONFIG_MAN);
  std::stringstream made;
  made << in.rdbuf();
  const std::string man = made.str();
  ASSERT_FALSE(man.empty());
  // Each key is a .TP entry starting ".BR key " or ".B key".
  EXPECT_EQ(ManEntries(man), KeysOfTheTable());
}

}  // namespace
}  // namespace config
