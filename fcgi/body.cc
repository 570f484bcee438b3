#include "fcgi/body.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <vector>

namespace fcgi {
namespace {

constexpr size_t kFlushSize = 64 * 1024;

Status PwriteAll(int fd, const char* data, size_t n, uint64_t offset) {
  while (n > 0) {
    ssize_t w = ::pwrite(fd, data, n, static_cast<off_t>(offset));
    if (w < 0) {
      if (errno == EINTR) continue;
      return Status::FromErrno(Status::Code::kIoError, "writing spool file", errno);
    }
    data += w;
    n -= static_cast<size_t>(w);
    offset += static_cast<uint64_t>(w);
  }
  return Status::Ok();
}

}  // namespace

Status StringBody::ReadAt(uint64_t offset, char* buf, size_t n, size_t* got) const {
  if (offset >= data_.size()) {
    *got = 0;
    return Status::Ok();
  }
  *got = std::min<uint64_t>(n, data_.size() - offset);
  std::memcpy(buf, data_.data() + offset, *got);
  return Status::Ok();
}

ConcatBody::ConcatBody(std::vector<std::shared_ptr<const Body>> parts) : parts_(std::move(parts)) {
  for (const auto& part : parts_) size_ += part->size();
}

Status ConcatBody::ReadAt(uint64_t offset, char* buf, size_t n, size_t* got) const {
  *got = 0;
  for (const auto& part : parts_) {
    const uint64_t part_size = part->size();
    if (offset < part_size) return part->ReadAt(offset, buf, n, got);
    offset -= part_size;
  }
  return Status::Ok();
}

Spool::Spool(std::string directory, uint64_t threshold)
    : directory_(std::move(directory)), threshold_(threshold) {}

Status Spool::Spill() {
  // O_TMPFILE: the file never has a name, so nothing is left behind after a crash.
  int fd = ::open(directory_.c_str(), O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
  if (fd < 0 && (errno == EOPNOTSUPP || errno == EISDIR || errno == EINVAL)) {
    std::string templ = directory_ + "/fcgi-milter-spool.XXXXXX";
    std::vector<char> name(templ.begin(), templ.end());
    name.push_back('\0');
    fd = ::mkostemp(name.data(), O_CLOEXEC);
    if (fd >= 0) ::unlink(name.data());
  }
  if (fd < 0) {
    return Status::FromErrno(Status::Code::kIoError, "creating spool file in " + directory_, errno);
  }
  fd_.Reset(fd);
  Status s = PwriteAll(fd_.get(), memory_.data(), memory_.size(), 0);
  file_size_ = memory_.size();
  memory_.clear();
  memory_.shrink_to_fit();
  return s;
}

Status Spool::FlushPending() {
  if (pending_.empty()) return Status::Ok();
  Status s = PwriteAll(fd_.get(), pending_.data(), pending_.size(), file_size_);
  if (!s.ok()) return s;
  file_size_ += pending_.size();
  pending_.clear();
  return Status::Ok();
}

Status Spool::Append(std::string_view data) {
  if (!sticky_error_.ok()) return sticky_error_;
  size_ += data.size();
  if (!fd_.valid()) {
    memory_.append(data);
    if (memory_.size() <= threshold_) return Status::Ok();
    sticky_error_ = Spill();
    return sticky_error_;
  }
  pending_.append(data);
  if (pending_.size() >= kFlushSize) sticky_error_ = FlushPending();
  return sticky_error_;
}

Status Spool::ReadAt(uint64_t offset, char* buf, size_t n, size_t* got) const {
  *got = 0;
  if (!sticky_error_.ok()) return sticky_error_;
  if (offset >= size_) return Status::Ok();
  n = std::min<uint64_t>(n, size_ - offset);
  if (!fd_.valid()) {
    std::memcpy(buf, memory_.data() + offset, n);
    *got = n;
    return Status::Ok();
  }
  if (offset >= file_size_) {
    std::memcpy(buf, pending_.data() + (offset - file_size_), n);
    *got = n;
    return Status::Ok();
  }
  n = std::min<uint64_t>(n, file_size_ - offset);
  for (;;) {
    ssize_t r = ::pread(fd_.get(), buf, n, static_cast<off_t>(offset));
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) return Status::FromErrno(Status::Code::kIoError, "reading spool file", errno);
    if (r == 0) return Status::IoError("spool file shorter than expected");
    *got = static_cast<size_t>(r);
    return Status::Ok();
  }
}

}  // namespace fcgi
