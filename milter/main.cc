// fcgi-milter's command line: run the filter in the foreground (-c FILE), or check a config and
// the backend's reachability (-t -c FILE).
#include <getopt.h>
#include <grp.h>
#include <pthread.h>
#include <pwd.h>
#include <signal.h>
#include <sys/stat.h>
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

// The path part of a unix/local milter socket spec, or empty.
std::string UnixSocketPath(const std::string& spec) {
  for (const char* prefix : {"unix:", "local:"}) {
    if (spec.rfind(prefix, 0) == 0) return spec.substr(std::strlen(prefix));
  }
  return {};
}

// Every backend that cannot be connected to, one problem per line.
std::vector<std::string> ProbeConfiguredBackends(const config::Config& cfg) {
  std::vector<std::string> problems;
  std::vector<fcgi::BackendAddress> addresses;
  if (fcgi::Status s = milter::BackendAddresses(cfg, &addresses); !s.ok()) {
    problems.push_back(s.message());
  }
  for (const fcgi::BackendAddress& address : addresses) {
    fcgi::Status s = fcgi::ProbeBackend(address, static_cast<int>(cfg.fcgi_connect_timeout * 1000));
    if (!s.ok()) problems.push_back(s.message());
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
  for (const std::string& p : ProbeConfiguredBackends(cfg)) {
    std::fprintf(stdout, "%s: FastCGI backend: %s\n", path.c_str(), p.c_str());
    problems++;
  }
  const std::string sock = UnixSocketPath(cfg.milter_socket);
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
  if (problems == 0) std::fprintf(stdout, "%s: ok\n", path.c_str());
  return problems == 0 ? 0 : 1;
}

// Switches to the configured user and group (with the user's supplementary groups, so
// membership of www-data reaches php-fpm's socket). Only root can; others must not ask to.
fcgi::Status DropPrivileges(const config::Config& cfg) {
  if (cfg.user.empty() && cfg.group.empty()) return fcgi::Status::Ok();
  const passwd* pw = cfg.user.empty() ? getpwuid(getuid()) : getpwnam(cfg.user.c_str());
  if (pw == nullptr) {
    return fcgi::Status::InvalidArgument("key 'user': no such user '" + cfg.user + "'");
  }
  const std::string user = pw->pw_name;
  const uid_t uid = pw->pw_uid;
  gid_t gid = pw->pw_gid;
  if (!cfg.group.empty()) {
    const group* gr = getgrnam(cfg.group.c_str());
    if (gr == nullptr) {
      return fcgi::Status::InvalidArgument("key 'group': no such group '" + cfg.group + "'");
    }
    gid = gr->gr_gid;
  }
  if (geteuid() != 0) {
    if (geteuid() == uid && getegid() == gid) return fcgi::Status::Ok();
    return fcgi::Status::InvalidArgument("keys 'user'/'group': only root can switch to " + user +
                                         "; start as root or remove the keys");
  }
  if (initgroups(user.c_str(), gid) != 0 || setgid(gid) != 0 || setuid(uid) != 0) {
    return fcgi::Status::FromErrno(fcgi::Status::Code::kInvalidArgument,
                                   "switching to user " + user, errno);
  }
  if (uid != 0 && setuid(0) == 0) {
    return fcgi::Status::InvalidArgument("could regain root after dropping to " + user);
  }
  return fcgi::Status::Ok();
}

fcgi::Status PrepareSocket(const config::Config& cfg) {
  const std::string sock = UnixSocketPath(cfg.milter_socket);
  if (sock.empty()) return fcgi::Status::Ok();
  if (::chmod(sock.c_str(), static_cast<mode_t>(cfg.milter_socket_mode)) != 0) {
    return fcgi::Status::FromErrno(fcgi::Status::Code::kIoError, "chmod " + sock, errno);
  }
  gid_t gid = static_cast<gid_t>(-1);
  if (!cfg.milter_socket_group.empty()) {
    const group* gr = getgrnam(cfg.milter_socket_group.c_str());
    if (gr == nullptr) {
      return fcgi::Status::InvalidArgument("key 'milter_socket_group': no such group '" +
                                           cfg.milter_socket_group + "'");
    }
    gid = gr->gr_gid;
  }
  uid_t uid = static_cast<uid_t>(-1);
  if (!cfg.user.empty() && geteuid() == 0) {
    if (const passwd* pw = getpwnam(cfg.user.c_str())) uid = pw->pw_uid;
  }
  if ((uid != static_cast<uid_t>(-1) || gid != static_cast<gid_t>(-1)) &&
      ::chown(sock.c_str(), uid, gid) != 0) {
    return fcgi::Status::FromErrno(fcgi::Status::Code::kIoError, "chown " + sock, errno);
  }
  return fcgi::Status::Ok();
}

fcgi::Status CheckSpoolDirectory(const config::Config& cfg) {
  struct stat st {};
  if (::stat(cfg.spool_directory.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
    return fcgi::Status::InvalidArgument("key 'spool_directory': " + cfg.spool_directory +
                                         " is not a directory");
  }
  if (::access(cfg.spool_directory.c_str(), W_OK | X_OK) != 0) {
    return fcgi::Status::InvalidArgument("key 'spool_directory': " + cfg.spool_directory +
                                         " is not writable by this user");
  }
  return fcgi::Status::Ok();
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
    if (fcgi::Status s = milter::Filter::Create(loaded.config, &filter); !s.ok()) {
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
    milter::Filter::SetCurrent(std::move(filter));
    running = loaded.config;
    LOG_INFO("reloaded %s (%zu change%s)", path.c_str(), changed.size(),
             changed.size() == 1 ? "" : "s");
    sd_notify(0, "READY=1");
  }
}

// libmilter's listener notices a stop request only when its poll() times out (every 5 s). It
// exports mi_stop(), the stop state its signal thread sets; when that turns non-zero we connect
// to our own socket once so the listener wakes at once and a stop takes milliseconds.
extern "C" int mi_stop(void);

void WakeListener(const std::string& spec) {
  fcgi::BackendAddress address;
  const std::string sock = UnixSocketPath(spec);
  fcgi::Status s;
  if (!sock.empty()) {
    s = fcgi::BackendAddress::Parse("unix", sock, &address);
  } else {
    // inet:PORT@HOST or inet6:PORT@HOST -> HOST:PORT for the parser.
    const size_t colon = spec.find(':');
    const size_t at = spec.find('@');
    if (colon == std::string::npos || at == std::string::npos) return;
    std::string host = spec.substr(at + 1);
    if (host.find(':') != std::string::npos && host.front() != '[') host = "[" + host + "]";
    s = fcgi::BackendAddress::Parse("tcp", host + ":" + spec.substr(colon + 1, at - colon - 1),
                                    &address);
  }
  if (s.ok()) (void)fcgi::ProbeBackend(address, 200);
}

void StopWaker(std::string spec, std::atomic<bool>* done) {
  while (!done->load()) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    if (mi_stop() != 0) {
      WakeListener(spec);
      return;
    }
  }
}

int Run(const std::string& path) {
  config::LoadResult loaded = config::LoadFile(path);
  if (!loaded.ok()) {
    for (const std::string& e : loaded.errors) std::fprintf(stderr, "fcgi-milter: %s\n", e.c_str());
    return 1;
  }
  const config::Config& cfg = loaded.config;
  logging::Init(cfg.log_level, cfg.log_target, cfg.syslog_facility);
  // The signals we and libmilter sigwait for are blocked before any thread starts, so every
  // thread inherits the mask: SIGUSR1 reaches only the reload thread, SIGTERM/SIGHUP/SIGINT
  // only libmilter's signal thread (which would otherwise lose them to a default action).
  sigset_t handled;
  sigemptyset(&handled);
  for (int sig : {SIGUSR1, SIGTERM, SIGHUP, SIGINT}) sigaddset(&handled, sig);
  pthread_sigmask(SIG_BLOCK, &handled, nullptr);

  std::unique_ptr<milter::Filter> filter;
  if (fcgi::Status s = milter::Filter::Create(cfg, &filter); !s.ok()) {
    LOG_ERROR("%s: %s", path.c_str(), s.ToString().c_str());
    return 1;
  }
  milter::Filter::SetCurrent(std::move(filter));

  if (smfi_setconn(const_cast<char*>(cfg.milter_socket.c_str())) != MI_SUCCESS ||
      smfi_register(*milter::Filter::Description()) != MI_SUCCESS) {
    LOG_ERROR("cannot set up libmilter for %s", cfg.milter_socket.c_str());
    return 1;
  }
  // Opening early (and removing a stale unix socket) turns a bad spec or a busy port into a
  // clear start-up error, and lets us set the socket's owner and mode before the MTA connects.
  if (smfi_opensocket(true) != MI_SUCCESS) {
    LOG_ERROR(
        "cannot listen on milter_socket %s (directory missing, permissions, or address "
        "in use?)",
        cfg.milter_socket.c_str());
    return 1;
  }
  if (fcgi::Status s = PrepareSocket(cfg); !s.ok()) {
    LOG_ERROR("%s", s.ToString().c_str());
    return 1;
  }
  if (!cfg.pid_file.empty()) {
    FILE* f = std::fopen(cfg.pid_file.c_str(), "w");
    if (f == nullptr) {
      LOG_ERROR("key 'pid_file': cannot write %s: %s", cfg.pid_file.c_str(), std::strerror(errno));
      return 1;
    }
    std::fprintf(f, "%ld\n", static_cast<long>(getpid()));
    std::fclose(f);
  }
  if (fcgi::Status s = DropPrivileges(cfg); !s.ok()) {
    LOG_ERROR("%s", s.message().c_str());
    return 1;
  }
  if (fcgi::Status s = CheckSpoolDirectory(cfg); !s.ok()) {
    LOG_ERROR("%s", s.message().c_str());
    return 1;
  }
  // Unreachable backends are reported now, in plain words (as the user we run as), but the
  // filter still starts: mail is tempfailed (kept by the sender) until php-fpm is there.
  for (const std::string& p : ProbeConfiguredBackends(cfg)) {
    LOG_ERROR("FastCGI backend not usable yet (mail it would take is tempfailed): %s", p.c_str());
  }

  std::unique_ptr<metrics::HttpServer> metrics_server;
  if (!cfg.metrics_listen.empty()) {
    fcgi::Status s = metrics::HttpServer::Start(
        cfg.metrics_listen, [] { return milter::Filter::Current()->backends().stats(); },
        [] { return milter::Filter::Current()->backends().AnyConnectable(); }, &metrics_server);
    if (!s.ok()) {
      LOG_ERROR("%s", s.message().c_str());
      return 1;
    }
    LOG_INFO("metrics on http://%s/metrics", cfg.metrics_listen.c_str());
  }
  std::thread reloader(ReloadLoop, path, cfg);

  LOG_INFO("fcgi-milter %s listening on %s, FastCGI backend %s", FCGI_MILTER_VERSION,
           cfg.milter_socket.c_str(), milter::Filter::Current()->backends().Describe().c_str());
  sd_notify(0, "READY=1");
  std::atomic<bool> main_done{false};
  std::thread waker(StopWaker, cfg.milter_socket, &main_done);
  const int rc = smfi_main();
  main_done = true;
  waker.join();
  sd_notify(0, "STOPPING=1");
  g_stopping = true;
  pthread_kill(reloader.native_handle(), SIGUSR1);
  reloader.join();

  // libmilter returns without waiting for its session threads: give requests in flight (a
  // save the MTA is waiting for) their bounded time, so a stop does not turn them into 4xx.
  const auto limit = std::chrono::steady_clock::now() +
                     std::chrono::milliseconds(static_cast<int64_t>(cfg.shutdown_timeout * 1000));
  while (milter::Filter::RequestsInFlight() > 0 && std::chrono::steady_clock::now() < limit) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  if (const int left = milter::Filter::RequestsInFlight(); left > 0) {
    LOG_WARNING("stopping with %d FastCGI request(s) still in flight", left);
  } else {
    // The session thread still has to hand the last answer to the MTA.
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  if (!cfg.pid_file.empty()) ::unlink(cfg.pid_file.c_str());
  LOG_INFO("stopped");
  return rc == MI_SUCCESS ? 0 : 1;
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
