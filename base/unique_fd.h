// UniqueFd: a file descriptor that closes itself, moved but never copied.
// Thread-safety: a UniqueFd belongs to one owner at a time.
#pragma once

namespace base {

class UniqueFd {
 public:
  UniqueFd() = default;
  explicit UniqueFd(int fd) : fd_(fd) {}
  ~UniqueFd() { Reset(); }
  UniqueFd(UniqueFd&& other) noexcept : fd_(other.Release()) {}
  UniqueFd& operator=(UniqueFd&& other) noexcept {
    if (this != &other) Reset(other.Release());
    return *this;
  }
  UniqueFd(const UniqueFd&) = delete;
  UniqueFd& operator=(const UniqueFd&) = delete;

  int get() const { return fd_; }
  bool valid() const { return fd_ >= 0; }
  [[nodiscard]] int Release() {
    int fd = fd_;
    fd_ = -1;
    return fd;
  }
  // Closes the descriptor held (close() is not retried on EINTR: on Linux the descriptor is
  // gone either way) and holds fd instead.
  void Reset(int fd = -1);

 private:
  int fd_ = -1;
};

}  // namespace base
