// Backend addresses (unix path, host:port, [v6]:port) and socket helpers.
// Thread-safety: BackendAddress is an immutable value; a UniqueFd belongs to one owner.
#pragma once

#include <sys/socket.h>
#include <sys/types.h>

#include <string>
#include <string_view>

#include "base/status.h"
#include "base/unique_fd.h"

namespace fcgi {

using base::Status;
using base::UniqueFd;

class BackendAddress {
 public:
  enum class Kind { kUnix, kTcp };

  // type is "unix" or "tcp"; address a socket path, or host:port with a numeric host or a name
  // resolved now ("localhost:9000", "127.0.0.1:9000", "[::1]:9000").
  static Status Parse(std::string_view type, std::string_view address, BackendAddress* out);

  Kind kind() const { return kind_; }
  const sockaddr* sockaddr_ptr() const { return reinterpret_cast<const sockaddr*>(&storage_); }
  socklen_t sockaddr_len() const { return length_; }
  // "unix:/run/php/php8.2-fpm.sock" or "tcp:127.0.0.1:9000", for logs.
  const std::string& ToString() const { return display_; }
  const std::string& path() const { return path_; }

  // A non-blocking socket with a connect() in progress (or done). *in_progress tells which.
  Status StartConnect(UniqueFd* fd, bool* in_progress) const;

 private:
  Kind kind_ = Kind::kUnix;
  sockaddr_storage storage_{};
  socklen_t length_ = 0;
  std::string display_;
  std::string path_;
};

// Blocking check used at start-up and by `-t`: can we connect within timeout_ms? Explains the
// usual causes in plain words (missing socket, permissions with the socket's owner/group/mode,
// refused port).
Status ProbeBackend(const BackendAddress& address, int timeout_ms);

// Users and groups by name or id through the reentrant getpw*_r/getgr*_r (the plain forms
// share one static buffer between threads). False when there is no such entry.
struct UserEntry {
  std::string name;
  uid_t uid = 0;
  gid_t gid = 0;  // primary group
};
bool LookupUser(const std::string& name, UserEntry* out);
bool LookupUser(uid_t uid, UserEntry* out);
bool LookupGroup(const std::string& name, gid_t* gid);
// The name, or the number when there is none.
std::string UserName(uid_t uid);
std::string GroupName(gid_t gid);

// Explains a connect() errno for this address in plain words.
Status DescribeConnectError(const BackendAddress& address, int err);

}  // namespace fcgi
