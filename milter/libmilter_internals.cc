// libmilter internals; see libmilter_internals.h.
#include "milter/libmilter_internals.h"

#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <string>

#include "fcgi/socket.h"
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

// The listening socket smfi_opensocket made: the one listening socket of the process right
// after it (nothing else listens yet). -1 if there is not exactly one.
int FindListeningSocket(const config::Config& cfg) {
  int found = -1;
  for (int fd = 0; fd < 1024; ++fd) {
    int listening = 0;
    socklen_t len = sizeof listening;
    if (::getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &len) != 0 || listening == 0) {
      continue;
    }
    sockaddr_storage addr{};
    socklen_t addr_len = sizeof addr;
    if (::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &addr_len) != 0) continue;
    if ((addr.ss_family == AF_UNIX) != !cfg.milter_socket_path.empty()) continue;
    if (found >= 0) return -1;
    found = fd;
  }
  return found;
}

// Connects once to our own milter socket, so a listener sleeping in poll() on it wakes up.
static void WakeListener(const config::Config& cfg) {
  fcgi::BackendAddress address;
  base::Status s;
  if (!cfg.milter_socket_path.empty()) {
    s = fcgi::BackendAddress::Parse("unix", cfg.milter_socket_path, &address);
  } else {
    const bool v6 = cfg.milter_socket_host.find(':') != std::string::npos;
    s = fcgi::BackendAddress::Parse(
        "tcp",
        (v6 ? "[" + cfg.milter_socket_host + "]" : cfg.milter_socket_host) + ":" +
            std::to_string(cfg.milter_socket_port),
        &address);
  }
  if (s.ok()) (void)fcgi::ProbeBackend(address, 200);
}

// Stops new MTA connections without libmilter's stop: the listening descriptor is replaced
// (dup3) by a listening socket nobody else knows (an unnamed unix socket, autobound in the
// abstract namespace, non-blocking). libmilter's listener sleeps in poll() registered on the
// old socket, which it holds until poll() returns; woken, poll() rescans the descriptor number
// and finds the new socket. So we queue one connection on the new socket, then connect to the
// old address: poll() wakes, sees the new socket readable and returns, the listener accepts our
// connection (a session that ends at once: we hang up) and lets go of the old socket, which
// closes. The MTA's next connect is refused (Postfix applies milter_default_action); the
// listener goes on polling a socket nobody connects to.
void StopAccepting(const config::Config& cfg, int listen_fd) {
  if (listen_fd < 0) {
    LOG_WARNING("stopping: the milter socket was not found among our descriptors and stays open");
    return;
  }
  int listening = 0;
  socklen_t len = sizeof listening;
  if (::getsockopt(listen_fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &len) != 0 || listening == 0) {
    LOG_WARNING("stopping: descriptor %d is no longer the milter socket; it stays open", listen_fd);
    return;
  }
  base::UniqueFd quiet(::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  sockaddr_un name{};
  name.sun_family = AF_UNIX;
  socklen_t name_len = sizeof(sa_family_t);
  if (!quiet.valid() ||
      ::bind(quiet.get(), reinterpret_cast<sockaddr*>(&name), sizeof(sa_family_t)) != 0 ||
      ::listen(quiet.get(), 4) != 0 ||
      ::getsockname(quiet.get(), reinterpret_cast<sockaddr*>(&name), &(name_len = sizeof name)) !=
          0 ||
      ::dup3(quiet.get(), listen_fd, O_CLOEXEC) < 0) {
    LOG_WARNING("stopping: cannot close the milter socket (%s); it stays open",
                std::strerror(errno));
    return;
  }
  base::UniqueFd queued(::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!queued.valid() ||
      ::connect(queued.get(), reinterpret_cast<sockaddr*>(&name), name_len) != 0) {
    LOG_WARNING(
        "stopping: cannot wake libmilter's listener (%s); the milter socket closes "
        "within its poll interval",
        std::strerror(errno));
    return;
  }
  WakeListener(cfg);
}

}  // namespace milter::libmilter
