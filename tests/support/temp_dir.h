// TempDir: a private directory under /tmp for one fixture, removed with everything in it when the
// object dies. Also small file helpers the fixtures share.
// Thread-safety: not thread-safe; one owner. The free functions are thread-safe.
#pragma once

#include <sys/types.h>
#include <string>

namespace testing_support {

class TempDir {
 public:
  // Creates /tmp/fcgi-milter-test.XXXXXX with mode 0755: pool users such as www-data and postfix
  // must be able to traverse it. Aborts the test binary if /tmp is unusable (nothing else works
  // then).
  TempDir();
  // Removes the tree, unless FCGI_MILTER_KEEP_TEST_DIRS is set (then it prints the path to stderr).
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  TempDir(TempDir&& other) noexcept;
  TempDir& operator=(TempDir&& other) noexcept;

  const std::string& path() const { return path_; }
  // path() + "/" + rel.
  std::string Path(const std::string& rel) const;
  // Writes content to rel (parent dirs created, mode 0755), sets the file mode, returns its
  // absolute path.
  std::string Write(const std::string& rel, const std::string& content, mode_t mode = 0644) const;
  // Creates rel (and parents) and chmods it to mode (chmod, so the umask does not narrow it).
  std::string Mkdir(const std::string& rel, mode_t mode = 0755) const;

 private:
  void Remove();
  std::string path_;
};

// Whole file content; empty if it cannot be read (fixtures use it for logs that may not exist yet).
std::string ReadFile(const std::string& path);
// Writes (truncates) a file; false on any error.
bool WriteFile(const std::string& path, const std::string& content, mode_t mode = 0644);
// The last max_bytes of a text, prefixed by "...\n" if cut: keeps failure messages readable.
std::string Tail(const std::string& text, size_t max_bytes = 4000);

}  // namespace testing_support
