// LD_PRELOAD library for one test: plays the attacker who wins the race between the daemon's
// bind() of its unix milter socket and its change of the socket's owner. The first time the
// daemon (root) touches FCGI_RACE_PATH with open(O_PATH), chown, lchown or chmod, the path is
// swapped for a symlink to FCGI_RACE_TARGET just before the real call runs. Code that changes
// ownership by path would then change the target's; code that checks what it opened refuses.
#include <dlfcn.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#include <atomic>
#include <cstdarg>
#include <cstdlib>
#include <cstring>

namespace {

std::atomic<bool> g_swapped{false};

void SwapOnce(const char* path) {
  const char* race = std::getenv("FCGI_RACE_PATH");
  const char* target = std::getenv("FCGI_RACE_TARGET");
  if (race == nullptr || target == nullptr || path == nullptr || std::strcmp(path, race) != 0) {
    return;
  }
  if (g_swapped.exchange(true)) return;
  ::unlink(race);
  (void)!::symlink(target, race);
}

template <typename F>
F Real(const char* name) {
  return reinterpret_cast<F>(::dlsym(RTLD_NEXT, name));
}

// open/open64: the mode argument exists only with O_CREAT or O_TMPFILE.
int OpenVia(const char* real, const char* path, int flags, va_list ap) {
  const mode_t mode =
      (flags & (O_CREAT | O_TMPFILE)) != 0 ? static_cast<mode_t>(va_arg(ap, int)) : 0;
  if ((flags & O_PATH) != 0) SwapOnce(path);
  return Real<int (*)(const char*, int, ...)>(real)(path, flags, mode);
}

}  // namespace

extern "C" {

int open(const char* path, int flags, ...) {
  va_list ap;
  va_start(ap, flags);
  const int fd = OpenVia("open", path, flags, ap);
  va_end(ap);
  return fd;
}

int open64(const char* path, int flags, ...) {
  va_list ap;
  va_start(ap, flags);
  const int fd = OpenVia("open64", path, flags, ap);
  va_end(ap);
  return fd;
}

int chown(const char* path, uid_t uid, gid_t gid) {
  SwapOnce(path);
  return Real<int (*)(const char*, uid_t, gid_t)>("chown")(path, uid, gid);
}

int lchown(const char* path, uid_t uid, gid_t gid) {
  SwapOnce(path);
  return Real<int (*)(const char*, uid_t, gid_t)>("lchown")(path, uid, gid);
}

int chmod(const char* path, mode_t mode) {
  SwapOnce(path);
  return Real<int (*)(const char*, mode_t)>("chmod")(path, mode);
}

}  // extern "C"
