// Request bodies (FastCGI STDIN): a read-only positional source, and Spool, which keeps small
// bodies in memory and spills large ones to an unlinked 0600 temp file so memory stays bounded.
// Thread-safety: Body reads are const and safe from any one thread at a time; Spool is written
// by one thread, then handed off read-only.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"
#include "fcgi/socket.h"

namespace fcgi {

using base::Status;

class Body {
 public:
  virtual ~Body() = default;
  virtual uint64_t size() const = 0;
  // Copies up to n bytes starting at offset into buf; *got is 0 only at the end.
  virtual Status ReadAt(uint64_t offset, char* buf, size_t n, size_t* got) const = 0;
};

class StringBody final : public Body {
 public:
  explicit StringBody(std::string data) : data_(std::move(data)) {}
  uint64_t size() const override { return data_.size(); }
  Status ReadAt(uint64_t offset, char* buf, size_t n, size_t* got) const override;

 private:
  std::string data_;
};

// Several bodies sent one after the other (a small prefix, then a spooled part).
class ConcatBody final : public Body {
 public:
  explicit ConcatBody(std::vector<std::shared_ptr<const Body>> parts);
  uint64_t size() const override { return size_; }
  Status ReadAt(uint64_t offset, char* buf, size_t n, size_t* got) const override;

 private:
  std::vector<std::shared_ptr<const Body>> parts_;
  uint64_t size_ = 0;
};

// Append-only buffer: memory up to `threshold` bytes, then everything moves to a temp file
// created (O_TMPFILE, or mkstemp+unlink) in `directory`.
class Spool final : public Body {
 public:
  Spool(std::string directory, uint64_t threshold);
  Spool(const Spool&) = delete;
  Spool& operator=(const Spool&) = delete;

  Status Append(std::string_view data);
  uint64_t size() const override { return size_; }
  Status ReadAt(uint64_t offset, char* buf, size_t n, size_t* got) const override;
  bool spilled() const { return fd_.valid(); }

 private:
  Status Spill();
  Status FlushPending();

  std::string directory_;
  uint64_t threshold_;
  std::string memory_;
  std::string pending_;  // write buffer in front of the file, flushed at kFlushSize
  UniqueFd fd_;          // the temp file once spilled; it has no name, closing it frees it
  uint64_t size_ = 0;
  uint64_t file_size_ = 0;
  Status sticky_error_;  // the first write failure: every later Append and ReadAt returns it
};

}  // namespace fcgi
