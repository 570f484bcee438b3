// TempDir and file helpers for the test fixtures.
// Thread-safety: see temp_dir.h.
#include "tests/support/temp_dir.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <utility>

namespace testing_support {

TempDir::TempDir() {
  char templ[] = "/tmp/fcgi-milter-test.XXXXXX";
  if (mkdtemp(templ) == nullptr) {
    std::fprintf(stderr, "TempDir: mkdtemp(/tmp/...) failed: %s\n", std::strerror(errno));
    std::abort();
  }
  path_ = templ;
  // mkdtemp makes 0700; the php-fpm pool and Postfix daemons run as other users.
  chmod(path_.c_str(), 0755);
}

TempDir::~TempDir() {
  Remove();
}

TempDir::TempDir(TempDir&& other) noexcept : path_(std::exchange(other.path_, {})) {}

TempDir& TempDir::operator=(TempDir&& other) noexcept {
  if (this != &other) {
    Remove();
    path_ = std::exchange(other.path_, {});
  }
  return *this;
}

void TempDir::Remove() {
  if (path_.empty()) return;
  if (std::getenv("FCGI_MILTER_KEEP_TEST_DIRS") != nullptr) {
    std::fprintf(stderr, "TempDir: keeping %s\n", path_.c_str());
  } else {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  path_.clear();
}

std::string TempDir::Path(const std::string& rel) const {
  return path_ + "/" + rel;
}

std::string TempDir::Write(const std::string& rel, const std::string& content, mode_t mode) const {
  std::string full = Path(rel);
  std::filesystem::path parent = std::filesystem::path(full).parent_path();
  if (parent != std::filesystem::path(path_)) {
    std::error_code ec;
    std::filesystem::create_directories(parent, ec);
  }
  if (!WriteFile(full, content, mode)) {
    std::fprintf(stderr, "TempDir: cannot write %s: %s\n", full.c_str(), std::strerror(errno));
  }
  return full;
}

std::string TempDir::Mkdir(const std::string& rel, mode_t mode) const {
  std::string full = Path(rel);
  std::error_code ec;
  std::filesystem::create_directories(full, ec);
  chmod(full.c_str(), mode);
  return full;
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return {};
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

bool WriteFile(const std::string& path, const std::string& content, mode_t mode) {
  int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
  if (fd < 0) return false;
  size_t done = 0;
  while (done < content.size()) {
    ssize_t n = write(fd, content.data() + done, content.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      close(fd);
      return false;
    }
    done += static_cast<size_t>(n);
  }
  // open() honours the umask; the pool users need the exact mode.
  fchmod(fd, mode);
  return close(fd) == 0;
}

std::string Tail(const std::string& text, size_t max_bytes) {
  if (text.size() <= max_bytes) return text;
  return "...\n" + text.substr(text.size() - max_bytes);
}

}  // namespace testing_support
