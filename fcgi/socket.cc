#include "fcgi/socket.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <grp.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pwd.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstddef>
#include <cstdio>
#include <cstring>
#include <vector>

namespace fcgi {

namespace {

Status ParsePort(std::string_view text, uint16_t* port) {
  unsigned value = 0;
  auto [p, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || p != text.data() + text.size() || value == 0 || value > 65535) {
    return Status::InvalidArgument("invalid port '" + std::string(text) + "'");
  }
  *port = static_cast<uint16_t>(value);
  return Status::Ok();
}

// getpw*_r / getgr*_r with a buffer that grows until the entry fits: the plain forms return a
// static buffer another thread may overwrite (a connect error is explained on a session thread
// while another does the same, or the reload thread looks a user up).
template <typename Entry, typename Call>
bool LookupEntry(Call call, Entry* entry, std::vector<char>* buffer) {
  long hint = sysconf(_SC_GETPW_R_SIZE_MAX);
  buffer->resize(hint > 0 ? static_cast<size_t>(hint) : 1024);
  for (;;) {
    Entry* result = nullptr;
    const int rc = call(entry, buffer->data(), buffer->size(), &result);
    if (rc == ERANGE && buffer->size() < (1u << 20)) {
      buffer->resize(buffer->size() * 2);
      continue;
    }
    return rc == 0 && result != nullptr;
  }
}

bool FromPasswd(const passwd& pw, UserEntry* out) {
  out->name = pw.pw_name;
  out->uid = pw.pw_uid;
  out->gid = pw.pw_gid;
  return true;
}

}  // namespace

bool LookupUser(const std::string& name, UserEntry* out) {
  passwd pw{};
  std::vector<char> buffer;
  if (!LookupEntry<passwd>([&](passwd* e, char* b, size_t n,
                               passwd** r) { return getpwnam_r(name.c_str(), e, b, n, r); },
                           &pw, &buffer)) {
    return false;
  }
  return FromPasswd(pw, out);
}

bool LookupUser(uid_t uid, UserEntry* out) {
  passwd pw{};
  std::vector<char> buffer;
  if (!LookupEntry<passwd>(
          [&](passwd* e, char* b, size_t n, passwd** r) { return getpwuid_r(uid, e, b, n, r); },
          &pw, &buffer)) {
    return false;
  }
  return FromPasswd(pw, out);
}

bool LookupGroup(const std::string& name, gid_t* gid) {
  group gr{};
  std::vector<char> buffer;
  if (!LookupEntry<group>([&](group* e, char* b, size_t n,
                              group** r) { return getgrnam_r(name.c_str(), e, b, n, r); },
                          &gr, &buffer)) {
    return false;
  }
  *gid = gr.gr_gid;
  return true;
}

std::string UserName(uid_t uid) {
  UserEntry u;
  if (LookupUser(uid, &u)) return u.name;
  return std::to_string(uid);
}

std::string GroupName(gid_t gid) {
  group gr{};
  std::vector<char> buffer;
  if (LookupEntry<group>(
          [&](group* e, char* b, size_t n, group** r) { return getgrgid_r(gid, e, b, n, r); }, &gr,
          &buffer)) {
    return gr.gr_name;
  }
  return std::to_string(gid);
}

Status BackendAddress::Parse(std::string_view type, std::string_view address, BackendAddress* out) {
  BackendAddress a;
  if (type == "unix") {
    if (address.empty() || address.front() != '/') {
      return Status::InvalidArgument("unix socket path must be absolute, got '" +
                                     std::string(address) + "'");
    }
    sockaddr_un sun{};
    if (address.size() >= sizeof(sun.sun_path)) {
      return Status::InvalidArgument("unix socket path is too long: " + std::string(address));
    }
    sun.sun_family = AF_UNIX;
    std::memcpy(sun.sun_path, address.data(), address.size());
    std::memcpy(&a.storage_, &sun, sizeof sun);
    a.length_ = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + address.size() + 1);
    a.kind_ = Kind::kUnix;
    a.path_ = std::string(address);
    a.display_ = "unix:" + a.path_;
    *out = a;
    return Status::Ok();
  }
  if (type != "tcp") {
    return Status::InvalidArgument("connection type must be 'unix' or 'tcp', got '" +
                                   std::string(type) + "'");
  }
  std::string host;
  std::string_view port_text;
  if (!address.empty() && address.front() == '[') {
    const size_t close = address.find(']');
    if (close == std::string_view::npos || close + 1 >= address.size() ||
        address[close + 1] != ':') {
      return Status::InvalidArgument("expected [ipv6]:port, got '" + std::string(address) + "'");
    }
    host = std::string(address.substr(1, close - 1));
    port_text = address.substr(close + 2);
  } else {
    const size_t colon = address.rfind(':');
    if (colon == std::string_view::npos || colon == 0) {
      return Status::InvalidArgument("expected host:port, got '" + std::string(address) + "'");
    }
    host = std::string(address.substr(0, colon));
    port_text = address.substr(colon + 1);
    if (host.find(':') != std::string::npos) {
      return Status::InvalidArgument("an IPv6 address needs brackets: [" + host + "]:port");
    }
  }
  uint16_t port = 0;
  if (Status s = ParsePort(port_text, &port); !s.ok()) return s;
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* res = nullptr;
  if (int rc = getaddrinfo(host.c_str(), nullptr, &hints, &res); rc != 0 || res == nullptr) {
    return Status::InvalidArgument("cannot resolve '" + host + "': " + gai_strerror(rc));
  }
  std::memcpy(&a.storage_, res->ai_addr, res->ai_addrlen);
  a.length_ = res->ai_addrlen;
  freeaddrinfo(res);
  if (a.storage_.ss_family == AF_INET) {
    reinterpret_cast<sockaddr_in*>(&a.storage_)->sin_port = htons(port);
  } else {
    reinterpret_cast<sockaddr_in6*>(&a.storage_)->sin6_port = htons(port);
  }
  a.kind_ = Kind::kTcp;
  a.display_ = "tcp:" + std::string(address);
  *out = a;
  return Status::Ok();
}

Status BackendAddress::StartConnect(UniqueFd* fd, bool* in_progress) const {
  const int family = kind_ == Kind::kUnix ? AF_UNIX : storage_.ss_family;
  UniqueFd s(::socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!s.valid()) return Status::FromErrno(Status::Code::kConnectFailed, "socket()", errno);
  if (kind_ == Kind::kTcp) {
    int one = 1;
    ::setsockopt(s.get(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  }
  int rc;
  do {
    rc = ::connect(s.get(), sockaddr_ptr(), length_);
  } while (rc < 0 && errno == EINTR);
  *in_progress = false;
  if (rc < 0) {
    if (errno != EINPROGRESS) return DescribeConnectError(*this, errno);
    *in_progress = true;
  }
  *fd = std::move(s);
  return Status::Ok();
}

Status DescribeConnectError(const BackendAddress& address, int err) {
  const std::string where = address.ToString();
  if (address.kind() == BackendAddress::Kind::kUnix) {
    struct stat st {};
    if (err == ENOENT) {
      return Status::ConnectFailed(where + ": the socket does not exist (is php-fpm running, " +
                                   "and is this its 'listen' path?)");
    }
    if (err == EACCES && ::stat(address.path().c_str(), &st) == 0) {
      char mode[8];
      std::snprintf(mode, sizeof mode, "%04o", st.st_mode & 07777);
      return Status::ConnectFailed(
          where + ": permission denied; the socket is owned by " + UserName(st.st_uid) + ":" +
          GroupName(st.st_gid) + " mode " + mode + "; run fcgi-milter as a user in group '" +
          GroupName(st.st_gid) + "' (usermod -a -G " + GroupName(st.st_gid) +
          " <user>) or set listen.acl_users / listen.mode in the php-fpm pool");
    }
    if (err == ECONNREFUSED) {
      return Status::ConnectFailed(where + ": connection refused (socket file exists but nothing " +
                                   "listens: php-fpm stopped?)");
    }
    if (err == EAGAIN) {
      return Status::ConnectFailed(where + ": listen backlog full (php-fpm overloaded)");
    }
  } else if (err == ECONNREFUSED) {
    return Status::ConnectFailed(where + ": connection refused (is php-fpm listening there?)");
  }
  return Status::FromErrno(Status::Code::kConnectFailed, "connecting to " + where, err);
}

Status ProbeBackend(const BackendAddress& address, int timeout_ms) {
  UniqueFd fd;
  bool in_progress = false;
  if (Status s = address.StartConnect(&fd, &in_progress); !s.ok()) return s;
  if (!in_progress) return Status::Ok();
  pollfd p{fd.get(), POLLOUT, 0};
  int rc;
  do {
    rc = ::poll(&p, 1, timeout_ms);
  } while (rc < 0 && errno == EINTR);
  if (rc == 0) return Status::Timeout("connecting to " + address.ToString());
  int err = 0;
  socklen_t len = sizeof err;
  ::getsockopt(fd.get(), SOL_SOCKET, SO_ERROR, &err, &len);
  if (err != 0) return DescribeConnectError(address, err);
  return Status::Ok();
}

}  // namespace fcgi
