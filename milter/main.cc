// fcgi-milter's command line: run the filter in the foreground (-c FILE), or check a config and
// the backend's reachability (-t -c FILE).
#include <fcntl.h>
#include <getopt.h>
#include <grp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <systemd/sd-daemon.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <thread>
#include <vector>

#include <cstdio>
#include <cstring>
#include <memory>
#include <string>

#include "config/config.h"
#include "fcgi/socket.h"
#include "milter/filter.h"
#include "milter/libmilter_internals.h"
#include "milter/log.h"
#include "milter/metrics.h"
#include "milter/try.h"
#include "version.h"

namespace {

constexpr const char* kDefaultConfig = "/etc/fcgi-milter/fcgi-milter.json";

std::atomic<bool> g_stopping{false};

void PrintHelp() {
  std::printf(
      "Usage: fcgi-milter [-c FILE]        run the mail filter in the foreground\n"
      "       fcgi-milter -t [-c FILE]     check the config and that the FastCGI backend answers\n"
      "       fcgi-milter try [-c FILE] --rcpt ADDR [--from ADDR] [--client-ip IP]\n"
      "                       [--client-name NAME] [--helo NAME] [--tls] [--json] [MESSAGE.eml|-]\n"
      "                                    run one message through the scripts, no MTA\n"
      "\n"
      "Options:\n"
      "  -c, --config FILE   configuration file (default %s)\n"
      "  -t, --test          check and exit: 0 when fine, 1 with one line per problem\n"
      "  -h, --help          show this help\n"
      "      --version       show the version\n"
      "\n"
      "Signals: SIGTERM or SIGHUP stop gracefully; SIGINT aborts; SIGUSR1 reloads the config.\n"
      "Documentation: README.md, docs/config.md, fcgi-milter(8).\n",
      kDefaultConfig);
}

// Every backend that cannot be connected to, one problem per line.
std::vector<std::string> ProbeConfiguredBackends(const config::Config& cfg) {
  std::vector<std::string> problems;
  std::vector<fcgi::BackendAddress> addresses;
  if (base::Status s = milter::BackendAddresses(cfg, &addresses); !s.ok()) {
    problems.push_back(s.message());
  }
  for (const fcgi::BackendAddress& address : addresses) {
    base::Status s = fcgi::ProbeBackend(address, static_cast<int>(cfg.fcgi_connect_timeout * 1000));
    if (!s.ok()) problems.push_back(s.message());
  }
  return problems;
}

// The user and primary (or configured) group the daemon runs as: cfg.user/cfg.group, or the
// user it was started as when they are empty.
struct ServiceUser {
  std::string name;
  uid_t uid = 0;
  gid_t gid = 0;
};

base::Status ResolveServiceUser(const config::Config& cfg, ServiceUser* out) {
  fcgi::UserEntry user;
  const bool found =
      cfg.user.empty() ? fcgi::LookupUser(getuid(), &user) : fcgi::LookupUser(cfg.user, &user);
  if (!found) {
    if (cfg.user.empty()) {
      user.name = std::to_string(getuid());
      user.uid = getuid();
      user.gid = getgid();
    } else {
      return base::Status::InvalidArgument("key 'user': no such user '" + cfg.user + "'");
    }
  }
  out->name = user.name;
  out->uid = user.uid;
  out->gid = user.gid;
  if (!cfg.group.empty() && !fcgi::LookupGroup(cfg.group, &out->gid)) {
    return base::Status::InvalidArgument("key 'group': no such group '" + cfg.group + "'");
  }
  return base::Status::Ok();
}

// Switches to the configured user and group (with the user's supplementary groups, so
// membership of www-data reaches php-fpm's socket). Only root can; others must not ask to.
base::Status DropPrivileges(const config::Config& cfg) {
  if (cfg.user.empty() && cfg.group.empty()) return base::Status::Ok();
  ServiceUser u;
  if (base::Status s = ResolveServiceUser(cfg, &u); !s.ok()) return s;
  if (geteuid() != 0) {
    if (geteuid() == u.uid && getegid() == u.gid) return base::Status::Ok();
    return base::Status::InvalidArgument("keys 'user'/'group': only root can switch to " + u.name +
                                         "; start as root or remove the keys");
  }
  if (initgroups(u.name.c_str(), u.gid) != 0 || setgid(u.gid) != 0 || setuid(u.uid) != 0) {
    return base::Status::FromErrno(base::Status::Code::kInvalidArgument,
                                   "switching to user " + u.name, errno);
  }
  if (u.uid != 0 && setuid(0) == 0) {
    return base::Status::InvalidArgument("could regain root after dropping to " + u.name);
  }
  return base::Status::Ok();
}

// The backend problems the daemon would meet, found as the user it runs as: as root with a
// configured user, a child process drops to that user (and its groups) and probes, so a socket
// root may open but the service user may not is reported. *who names the user tried.
std::vector<std::string> ProbeAsServiceUser(const config::Config& cfg, std::string* who) {
  ServiceUser u;
  if (base::Status s = ResolveServiceUser(cfg, &u); !s.ok()) {
    *who = fcgi::UserName(geteuid());
    return {s.message()};
  }
  const bool switch_user = !(cfg.user.empty() && cfg.group.empty()) && geteuid() == 0;
  if (!switch_user) {
    *who = fcgi::UserName(geteuid());
    std::vector<std::string> problems = ProbeConfiguredBackends(cfg);
    if (!cfg.user.empty() && geteuid() != u.uid) {
      problems.push_back("checked as user " + *who + ", not as the configured user " + u.name +
                         " (only root can switch to it): run -t as root or as " + u.name);
    }
    return problems;
  }
  *who = u.name;
  int fds[2];
  if (pipe2(fds, O_CLOEXEC) != 0) return {std::string("pipe: ") + std::strerror(errno)};
  std::fflush(stdout);
  const pid_t pid = fork();
  if (pid < 0) {
    ::close(fds[0]);
    ::close(fds[1]);
    return {std::string("fork: ") + std::strerror(errno)};
  }
  if (pid == 0) {
    ::close(fds[0]);
    std::vector<std::string> problems;
    if (base::Status s = DropPrivileges(cfg); !s.ok()) {
      problems.push_back(s.message());
    } else {
      problems = ProbeConfiguredBackends(cfg);
    }
    std::string out;
    for (const std::string& p : problems) out += p + '\0';
    for (size_t done = 0; done < out.size();) {
      const ssize_t n = ::write(fds[1], out.data() + done, out.size() - done);
      if (n <= 0) break;
      done += static_cast<size_t>(n);
    }
    _exit(0);
  }
  ::close(fds[1]);
  std::string in;
  char buf[4096];
  for (;;) {
    const ssize_t n = ::read(fds[0], buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    in.append(buf, static_cast<size_t>(n));
  }
  ::close(fds[0]);
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  std::vector<std::string> problems;
  for (size_t pos = 0; pos < in.size();) {
    const size_t end = in.find('\0', pos);
    problems.push_back(in.substr(pos, end - pos));
    pos = end == std::string::npos ? in.size() : end + 1;
  }
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    problems.push_back("the check as user " + u.name + " did not finish");
  }
  return problems;
}

int CheckOnly(const std::string& path) {
  config::LoadResult loaded = config::LoadFile(path);
  int problems = 0;
  for (const std::string& e : loaded.errors) {
    std::fprintf(stdout, "%s\n", e.c_str());
    problems++;
  }
  if (!loaded.ok()) return 1;
  const config::Config& cfg = loaded.config;
  std::string who;
  for (const std::string& p : ProbeAsServiceUser(cfg, &who)) {
    std::fprintf(stdout, "%s: FastCGI backend (as user %s): %s\n", path.c_str(), who.c_str(),
                 p.c_str());
    problems++;
  }
  const std::string sock = cfg.milter_socket_path;
  if (!sock.empty()) {
    const std::string dir = sock.substr(0, sock.rfind('/'));
    struct stat st {};
    if (!dir.empty() && (::stat(dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode))) {
      std::fprintf(stdout, "%s: key 'milter_socket': directory %s does not exist\n", path.c_str(),
                   dir.c_str());
      problems++;
    }
  }
  // Deadlines within a few seconds of the MTA's: the MTA may give up first under load, and
  // then applies its default action instead of our answer.
  if (cfg.validate_timeout > 25) {
    std::fprintf(stdout,
                 "%s: warning: key 'validate_timeout' (%g s) leaves under 5 s before Postfix's "
                 "milter_command_timeout (30 s) and Sendmail's T=R:35s\n",
                 path.c_str(), cfg.validate_timeout);
  }
  if (cfg.save_timeout > 280) {
    std::fprintf(stdout,
                 "%s: warning: key 'save_timeout' (%g s) leaves under 20 s before Postfix's "
                 "milter_content_timeout (300 s) and Sendmail's T=E:5m\n",
                 path.c_str(), cfg.save_timeout);
  }
  if (cfg.fcgi_connect_timeout >= cfg.validate_timeout) {
    std::fprintf(stdout,
                 "%s: warning: key 'fcgi_connect_timeout' (%g s) is not below validate_timeout "
                 "(%g s): a slow connect uses the whole validate deadline\n",
                 path.c_str(), cfg.fcgi_connect_timeout, cfg.validate_timeout);
  }
  if (problems == 0) {
    std::fprintf(stdout, "%s: ok (FastCGI backend reachable as user %s)\n", path.c_str(),
                 who.c_str());
  }
  return problems == 0 ? 0 : 1;
}

// Opens the milter socket (smfi_opensocket, which also removes a stale unix socket) and gives a
// unix socket its mode, group and owner without a race. We are root here and the socket's
// directory may belong to the service user, who could swap the socket for a symlink to any file
// between bind() and a chmod/chown by path; root would then change that file. So:
// - the mode is set by bind() itself, through the umask around smfi_opensocket: no chmod at
//   all. (fchmod on the listening descriptor does not do it: on Linux it changes the socket's
//   own inode, not the file bind() created, whose mode is what connect() checks.)
// - owner and group are changed through an O_PATH|O_NOFOLLOW descriptor of the path, and only
//   after fstat on that descriptor shows a socket owned by us, with one link and the mode we
//   created: the change lands on exactly the inode checked (a symlink is never followed), and
//   the service user can plant neither a root-owned file there (only its own) nor a hard link
//   to one (the link count).
base::Status OpenMilterSocket(const config::Config& cfg) {
  const std::string sock = cfg.milter_socket_path;
  const mode_t mode = static_cast<mode_t>(cfg.milter_socket_mode) & 0777;
  const mode_t old_umask = sock.empty() ? 0 : ::umask(~mode & 0777);
  const int rc = smfi_opensocket(true);
  if (!sock.empty()) ::umask(old_umask);
  if (rc != MI_SUCCESS) {
    return base::Status::IoError("cannot listen on milter_socket " + cfg.milter_socket +
                                 " (directory missing, permissions, or address in use?)");
  }
  if (sock.empty()) return base::Status::Ok();
  gid_t gid = static_cast<gid_t>(-1);
  if (!cfg.milter_socket_group.empty() && !fcgi::LookupGroup(cfg.milter_socket_group, &gid)) {
    return base::Status::InvalidArgument("key 'milter_socket_group': no such group '" +
                                         cfg.milter_socket_group + "'");
  }
  uid_t uid = static_cast<uid_t>(-1);
  if (!cfg.user.empty() && geteuid() == 0) {
    fcgi::UserEntry user;
    if (fcgi::LookupUser(cfg.user, &user)) uid = user.uid;
  }
  if (uid == static_cast<uid_t>(-1) && gid == static_cast<gid_t>(-1)) return base::Status::Ok();
  base::UniqueFd fd(::open(sock.c_str(), O_PATH | O_NOFOLLOW | O_CLOEXEC));
  if (!fd.valid())
    return base::Status::FromErrno(base::Status::Code::kIoError, "open " + sock, errno);
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) {
    return base::Status::FromErrno(base::Status::Code::kIoError, "stat " + sock, errno);
  }
  if (!S_ISSOCK(st.st_mode) || st.st_uid != geteuid() || st.st_nlink != 1 ||
      (st.st_mode & 0777) != mode) {
    return base::Status::IoError("milter_socket " + sock +
                                 " was replaced after it was created (not the socket this process "
                                 "made); refusing to change its owner");
  }
  if (::fchownat(fd.get(), "", uid, gid, AT_EMPTY_PATH) != 0) {
    return base::Status::FromErrno(base::Status::Code::kIoError, "chown " + sock, errno);
  }
  return base::Status::Ok();
}

base::Status CheckSpoolDirectory(const config::Config& cfg) {
  struct stat st {};
  if (::stat(cfg.spool_directory.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
    return base::Status::InvalidArgument("key 'spool_directory': " + cfg.spool_directory +
                                         " is not a directory");
  }
  if (::access(cfg.spool_directory.c_str(), W_OK | X_OK) != 0) {
    return base::Status::InvalidArgument("key 'spool_directory': " + cfg.spool_directory +
                                         " is not writable by this user");
  }
  return base::Status::Ok();
}

// SIGUSR1: read the file again; new transactions use the new config, those in flight finish
// with the old one. A file with errors is refused and the old config stays.
void ReloadLoop(std::string path, config::Config running) {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGUSR1);
  for (;;) {
    int sig = 0;
    if (sigwait(&set, &sig) != 0 || g_stopping.load()) return;
    sd_notify(0, "RELOADING=1");
    config::LoadResult loaded = config::LoadFile(path);
    if (!loaded.ok()) {
      for (const std::string& e : loaded.errors) LOG_ERROR("reload refused: %s", e.c_str());
      LOG_ERROR("reload refused: keeping the running configuration");
      sd_notify(0, "READY=1");
      continue;
    }
    std::unique_ptr<milter::Filter> filter;
    if (base::Status s = milter::Filter::Create(loaded.config, &filter); !s.ok()) {
      LOG_ERROR("reload refused: %s; keeping the running configuration", s.ToString().c_str());
      sd_notify(0, "READY=1");
      continue;
    }
    const std::vector<std::string> changed = config::ChangedKeys(running, loaded.config);
    static const char* const kRestartOnly[] = {
        "milter_socket", "milter_socket_mode", "milter_socket_group", "user",          "group",
        "pid_file",      "log_target",         "syslog_facility",     "metrics_listen"};
    for (const std::string& c : changed) {
      bool restart_only = false;
      for (const char* key : kRestartOnly) {
        if (c.rfind(std::string(key) + ":", 0) == 0) restart_only = true;
      }
      LOG_INFO("reload: %s%s", c.c_str(), restart_only ? " (takes effect at restart)" : "");
    }
    logging::Init(loaded.config.log_level, running.log_target, running.syslog_facility);
    // Our own reference to the filter being replaced, so that SetCurrent never drops the last
    // one under its lock: destroying a filter joins its backend prober, which may be inside a
    // connect to a down backend for up to a second, and every new transaction (and /metrics)
    // would wait on that lock meanwhile. The old filter goes here, on this thread, after the
    // swap, or later with the last transaction that still uses it.
    std::shared_ptr<const milter::Filter> previous = milter::Filter::Current();
    milter::Filter::SetCurrent(std::move(filter));
    running = loaded.config;
    LOG_INFO("reloaded %s (%zu change%s)", path.c_str(), changed.size(),
             changed.size() == 1 ? "" : "s");
    sd_notify(0, "READY=1");
    // Transactions that started before the swap keep the old filter to their end. Wait (here,
    // not in their session thread, where the prober join would delay an SMTP answer) until
    // they are done, bounded by the longest a transaction may still need.
    const auto until =
        std::chrono::steady_clock::now() +
        std::chrono::milliseconds(static_cast<int64_t>((running.save_timeout + 5.0) * 1000));
    while (previous.use_count() > 1 && !g_stopping.load() &&
           std::chrono::steady_clock::now() < until) {
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    previous.reset();
  }
}

// How a stop works, and why not through libmilter.
//
// libmilter (Debian's is built with its pool of workers) stops serving every session once its
// stop flag is set: the pool controller and the workers leave their loops at the next command,
// so a message in DATA is never answered, whatever we wait for afterwards. A graceful stop must
// therefore happen while libmilter still runs: we stop accepting connections ourselves, wait for
// the open transactions, and leave with _exit without ever telling libmilter to stop.
//
// libmilter's own signal thread sigwaits for SIGTERM, SIGHUP and SIGINT (and would set that
// flag). A signal sent to the process goes to its main thread first when that thread does not
// block it (Linux, kernel/signal.c complete_signal), so the main thread, the only one that does
// not block them, catches them with a handler that writes to a pipe; libmilter's signal thread
// never sees them. smfi_main runs on a thread of its own.
int g_event_pipe[2] = {-1, -1};
constexpr char kEventMilterReturned = 0;

void OnStopSignal(int sig) {
  const int saved = errno;
  const char byte = static_cast<char>(sig);
  (void)!::write(g_event_pipe[1], &byte, 1);
  errno = saved;
}

// The next event (a signal number, or kEventMilterReturned) within timeout_ms (-1: no limit);
// -1 when none came.
int WaitForEvent(int timeout_ms) {
  pollfd p{g_event_pipe[0], POLLIN, 0};
  const int rc = ::poll(&p, 1, timeout_ms);
  if (rc <= 0) return -1;
  char byte = 0;
  if (::read(g_event_pipe[0], &byte, 1) != 1) return -1;
  return static_cast<unsigned char>(byte);
}

const char* SignalName(int sig) {
  switch (sig) {
    case SIGTERM: return "SIGTERM";
    case SIGHUP: return "SIGHUP";
    case SIGINT: return "SIGINT";
  }
  return "a signal";
}

// Flushes what stdio buffers and leaves without running static destructors or atexit handlers
// (see the end of Run). The log needs nothing more: stderr is unbuffered and syslog() sends
// each line as it is logged.
[[noreturn]] void Leave(int code) {
  std::fflush(stdout);
  std::fflush(stderr);
  _exit(code);
}

// Waits until no SMTP transaction is open, at most shutdown_timeout seconds. A SIGINT meanwhile
// cuts the wait short. Logs how many transactions it waited for and how many remained.
void DrainTransactions(double shutdown_timeout) {
  const auto start = std::chrono::steady_clock::now();
  const auto deadline =
      start + std::chrono::milliseconds(static_cast<int64_t>(shutdown_timeout * 1000));
  milter::Filter::BeginStop();
  const int open_at_stop = milter::Filter::TransactionsOpen();
  if (open_at_stop > 0) {
    LOG_INFO("stopping: waiting up to %g s for %d open SMTP transaction%s", shutdown_timeout,
             open_at_stop, open_at_stop == 1 ? "" : "s");
  }
  bool waited = false;
  while (milter::Filter::TransactionsOpen() > 0 && std::chrono::steady_clock::now() < deadline) {
    waited = true;
    const int event = WaitForEvent(20);
    if (event == SIGINT) {
      LOG_WARNING("stopping: SIGINT, not waiting for open transactions any longer");
      break;
    }
    if (event > 0)
      LOG_INFO("stopping: %s, already waiting for open transactions", SignalName(event));
  }
  const int left = milter::Filter::TransactionsOpen();
  const double waited_s =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  if (left > 0) {
    LOG_WARNING(
        "stopping with %d SMTP transaction%s still open after %.1f s (shutdown_timeout %g s): "
        "the MTA applies its milter_default_action to %s (tempfail: the sender retries; a save "
        "script still running may store a copy)",
        left, left == 1 ? "" : "s", waited_s, shutdown_timeout, left == 1 ? "it" : "them");
    return;
  }
  if (waited || open_at_stop > 0) {
    LOG_INFO("stopping: every open transaction finished (%.1f s)", waited_s);
    // The count drops when our callback returns its answer; libmilter's session thread then
    // writes it to the MTA. Give it that moment.
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
}

// What Run starts and the stop needs: the listening socket, the reload thread, the metrics.
struct Running {
  int listen_fd = -1;
  std::thread reloader;
  std::unique_ptr<metrics::HttpServer> metrics_server;
};

// Everything before the MTA may connect: the filter, libmilter, the socket (owner, mode), the pid
// file, the privilege drop, the checks that explain themselves, /metrics, the reload thread.
base::Status StartUp(const std::string& path, const config::Config& cfg, Running* running) {
  std::unique_ptr<milter::Filter> filter;
  if (base::Status s = milter::Filter::Create(cfg, &filter); !s.ok()) {
    return base::Status::InvalidArgument(path + ": " + s.ToString());
  }
  milter::Filter::SetCurrent(std::move(filter));
  if (smfi_setconn(const_cast<char*>(cfg.milter_socket.c_str())) != MI_SUCCESS ||
      smfi_register(*milter::Filter::Description()) != MI_SUCCESS) {
    return base::Status::InvalidArgument("cannot set up libmilter for " + cfg.milter_socket);
  }
  // Opening early (and removing a stale unix socket) turns a bad spec or a busy port into a
  // clear start-up error, and lets us set the socket's owner and mode before the MTA connects.
  if (base::Status s = OpenMilterSocket(cfg); !s.ok()) return s;
  running->listen_fd = milter::libmilter::FindListeningSocket(cfg);
  if (!cfg.pid_file.empty()) {
    FILE* f = std::fopen(cfg.pid_file.c_str(), "w");
    if (f == nullptr) {
      return base::Status::FromErrno(base::Status::Code::kIoError,
                                     "key 'pid_file': cannot write " + cfg.pid_file, errno);
    }
    std::fprintf(f, "%ld\n", static_cast<long>(getpid()));
    std::fclose(f);
  }
  if (base::Status s = DropPrivileges(cfg); !s.ok()) return s;
  if (base::Status s = CheckSpoolDirectory(cfg); !s.ok()) return s;
  // Unreachable backends are reported now, in plain words (as the user we run as), but the
  // filter still starts: mail is tempfailed (kept by the sender) until php-fpm is there.
  for (const std::string& p : ProbeConfiguredBackends(cfg)) {
    LOG_ERROR("FastCGI backend not usable yet (mail it would take is tempfailed): %s", p.c_str());
  }
  if (!cfg.metrics_listen.empty()) {
    base::Status s = metrics::HttpServer::Start(
        cfg.metrics_listen, [] { return milter::Filter::Current()->backends().stats(); },
        [] { return !g_stopping.load() && milter::Filter::Current()->backends().AnyConnectable(); },
        &running->metrics_server);
    if (!s.ok()) return s;
    LOG_INFO("metrics on http://%s/metrics", cfg.metrics_listen.c_str());
  }
  running->reloader = std::thread(ReloadLoop, path, cfg);
  if (::pipe2(g_event_pipe, O_CLOEXEC | O_NONBLOCK) != 0) {
    return base::Status::FromErrno(base::Status::Code::kIoError, "pipe", errno);
  }
  return base::Status::Ok();
}

// Runs smfi_main on a thread of its own and takes the stop signals on this one; returns the
// event that ended the wait (a signal, or libmilter returning).
int ServeUntilStopped() {
  std::thread([] {
    const int rc = smfi_main();
    const char byte = rc == MI_SUCCESS ? kEventMilterReturned : static_cast<char>(255);
    (void)!::write(g_event_pipe[1], &byte, 1);
  }).detach();
  // Every other thread exists now, or is started by one of them, with the stop signals
  // blocked: only this one takes them (see OnStopSignal). One that came earlier is pending and
  // arrives here now, unless libmilter's signal thread took it first (then smfi_main returns).
  struct sigaction action {};
  action.sa_handler = OnStopSignal;
  sigemptyset(&action.sa_mask);
  action.sa_flags = SA_RESTART;
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  for (int sig : {SIGTERM, SIGHUP, SIGINT}) {
    sigaction(sig, &action, nullptr);
    sigaddset(&stop_signals, sig);
  }
  pthread_sigmask(SIG_UNBLOCK, &stop_signals, nullptr);
  int event = -1;
  while (event < 0) event = WaitForEvent(-1);
  return event;
}

// After `event`: refuse new connections, let open transactions finish (a graceful stop), clean
// up the pid file and the socket, and leave.
[[noreturn]] void Stop(const config::Config& cfg, int event, Running* running) {
  int code = 0;
  if (event == SIGINT) {
    LOG_WARNING("SIGINT: aborting; open transactions get the MTA's milter_default_action");
  } else if (event == SIGTERM || event == SIGHUP) {
    LOG_INFO("%s: stopping: no new connections, open transactions get up to %g s",
             SignalName(event), cfg.shutdown_timeout);
    milter::libmilter::StopAccepting(cfg, running->listen_fd);
  } else {
    code = event == kEventMilterReturned ? 0 : 1;
    LOG_WARNING("libmilter stopped on its own (%s)",
                code == 0 ? "its stop flag was set" : "its listener failed");
  }
  sd_notify(0, "STOPPING=1");
  g_stopping = true;
  pthread_kill(running->reloader.native_handle(), SIGUSR1);
  running->reloader.join();
  // Only a graceful stop drains: libmilter still serves the sessions. (After libmilter stopped
  // itself its workers have quit too, and there is nothing left to wait for.)
  if (event == SIGTERM || event == SIGHUP) DrainTransactions(cfg.shutdown_timeout);
  if (!cfg.pid_file.empty()) ::unlink(cfg.pid_file.c_str());
  // libmilter removes its unix socket when it stops itself, which it never does here: the file
  // no longer leads anywhere, remove it (only if a socket is what is there).
  struct stat st {};
  if (!cfg.milter_socket_path.empty() && ::lstat(cfg.milter_socket_path.c_str(), &st) == 0 &&
      S_ISSOCK(st.st_mode)) {
    ::unlink(cfg.milter_socket_path.c_str());
  }
  LOG_INFO("stopped");
  // Never return through main(): static destructors (the current filter and its FastCGI
  // clients, the log's mutex, libmilter's state) would run while session threads still use
  // them, or cut off an answer half-written. _exit ends every thread at once; the MTA sees the
  // connections close and applies its default action to what was still open.
  Leave(code);
}

int Run(const std::string& path) {
  config::LoadResult loaded = config::LoadFile(path);
  if (!loaded.ok()) {
    for (const std::string& e : loaded.errors) std::fprintf(stderr, "fcgi-milter: %s\n", e.c_str());
    return 1;
  }
  const config::Config& cfg = loaded.config;
  logging::Init(cfg.log_level, cfg.log_target, cfg.syslog_facility);
  // The signals are blocked before any thread starts, so every thread inherits the mask:
  // SIGUSR1 reaches only the reload thread (sigwait), SIGTERM/SIGHUP/SIGINT only this thread,
  // which unblocks them once the others run (see OnStopSignal).
  sigset_t handled;
  sigemptyset(&handled);
  for (int sig : {SIGUSR1, SIGTERM, SIGHUP, SIGINT}) sigaddset(&handled, sig);
  pthread_sigmask(SIG_BLOCK, &handled, nullptr);

  Running running;
  if (base::Status s = StartUp(path, cfg, &running); !s.ok()) {
    LOG_ERROR("%s", s.message().c_str());
    if (running.reloader.joinable()) {
      g_stopping = true;
      pthread_kill(running.reloader.native_handle(), SIGUSR1);
      running.reloader.join();
    }
    return 1;
  }
  LOG_INFO("fcgi-milter %s listening on %s, FastCGI backend %s", FCGI_MILTER_VERSION,
           cfg.milter_socket.c_str(), milter::Filter::Current()->backends().Describe().c_str());
  sd_notify(0, "READY=1");
  Stop(cfg, ServeUntilStopped(), &running);
}
}  // namespace

int main(int argc, char** argv) {
  if (argc > 1 && std::strcmp(argv[1], "try") == 0) return milter::RunTry(argc - 1, argv + 1);
  static const option kOptions[] = {
      {"config", required_argument, nullptr, 'c'},
      {"test", no_argument, nullptr, 't'},
      {"help", no_argument, nullptr, 'h'},
      {"version", no_argument, nullptr, 'V'},
      {nullptr, 0, nullptr, 0},
  };
  std::string path = kDefaultConfig;
  bool test = false;
  int c;
  while ((c = getopt_long(argc, argv, "c:th", kOptions, nullptr)) != -1) {
    switch (c) {
      case 'c': path = optarg; break;
      case 't': test = true; break;
      case 'h': PrintHelp(); return 0;
      case 'V': std::printf("fcgi-milter %s\n", FCGI_MILTER_VERSION); return 0;
      default: std::fprintf(stderr, "Try 'fcgi-milter --help'.\n"); return 2;
    }
  }
  if (optind < argc) {
    std::fprintf(stderr, "fcgi-milter: unexpected argument '%s'. Try 'fcgi-milter --help'.\n",
                 argv[optind]);
    return 2;
  }
  return test ? CheckOnly(path) : Run(path);
}
