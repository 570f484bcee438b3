// libmilter internals; see libmilter_internals.h.
#include "milter/libmilter_internals.h"

#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <ctime>

#include "milter/log.h"

namespace milter::libmilter {
namespace {

// libmilter's private context (struct smfi_str in libmilter.h, 8.14 to 8.17) begins with the
// context id, the MTA socket, the debug level and the I/O timeout. The timeout must hold
// libmilter's default (we never change it): any other value means another layout.
struct ContextHead {
  long ctx_id;
  int ctx_sd;
  int ctx_dbg;
  time_t ctx_timeout;
};
constexpr time_t kDefaultTimeout = 7210;

bool PeekDisabled() {
  static const bool disabled = [] {
    const char* v = std::getenv("FCGI_MILTER_NO_CONTEXT_PEEK");
    return v != nullptr && std::strcmp(v, "1") == 0;
  }();
  return disabled;
}

Connection Unknown(const char* why) {
  static std::atomic<bool> warned{false};
  if (!warned.exchange(true)) {
    LOG_WARNING(
        "cannot find the MTA's socket in libmilter's context (%s): every stage is answered, "
        "which over inet: can cost the MTA ~40 ms a message (a unix socket avoids it)",
        why);
  }
  return Connection{};
}

int LocalPort(const sockaddr_storage& a) {
  if (a.ss_family == AF_INET) return ntohs(reinterpret_cast<const sockaddr_in&>(a).sin_port);
  if (a.ss_family == AF_INET6) return ntohs(reinterpret_cast<const sockaddr_in6&>(a).sin6_port);
  return -1;
}

}  // namespace

Connection FindConnection(SMFICTX* ctx, int milter_port) {
  if (PeekDisabled()) return Unknown("FCGI_MILTER_NO_CONTEXT_PEEK=1");
  const auto* head = reinterpret_cast<const ContextHead*>(ctx);
  const int fd = head->ctx_sd;
  if (head->ctx_timeout != kDefaultTimeout || fd < 0 || fd > 1 << 20) {
    return Unknown("its layout is not libmilter 8.14-8.17's");
  }
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISSOCK(st.st_mode)) return Unknown("no socket there");
  int type = 0;
  socklen_t len = sizeof type;
  if (::getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) != 0 || type != SOCK_STREAM) {
    return Unknown("not a stream socket");
  }
  sockaddr_storage local{};
  len = sizeof local;
  if (::getsockname(fd, reinterpret_cast<sockaddr*>(&local), &len) != 0) {
    return Unknown("getsockname failed");
  }
  if (local.ss_family == AF_UNIX) {
    if (milter_port != 0) return Unknown("a unix socket although milter_socket is inet");
    return Connection{Transport::kUnix, -1};
  }
  if (local.ss_family != AF_INET && local.ss_family != AF_INET6) return Unknown("odd family");
  if (LocalPort(local) != milter_port) return Unknown("its local port is not milter_socket's");
  sockaddr_storage peer{};
  len = sizeof peer;
  if (::getpeername(fd, reinterpret_cast<sockaddr*>(&peer), &len) != 0) {
    return Unknown("not connected");
  }
  return Connection{Transport::kTcp, fd};
}

}  // namespace milter::libmilter
