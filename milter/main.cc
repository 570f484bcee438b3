// fcgi-milter's command line: run the filter in the foreground (-c FILE), or check a config and
// the backend's reachability (-t -c FILE).
#include <getopt.h>
#include <sys/stat.h>

#include <cstdio>
#include <cstring>
#include <memory>
#include <string>

#include "config/config.h"
#include "fcgi/socket.h"
#include "milter/filter.h"
#include "milter/log.h"
#include "version.h"

namespace {

constexpr const char* kDefaultConfig = "/etc/fcgi-milter/fcgi-milter.json";

void PrintHelp() {
  std::printf(
      "Usage: fcgi-milter [-c FILE]        run the mail filter in the foreground\n"
      "       fcgi-milter -t [-c FILE]     check the config and that the FastCGI backend answers\n"
      "\n"
      "Options:\n"
      "  -c, --config FILE   configuration file (default %s)\n"
      "  -t, --test          check and exit: 0 when fine, 1 with one line per problem\n"
      "  -h, --help          show this help\n"
      "      --version       show the version\n"
      "\n"
      "Signals: SIGTERM or SIGHUP stop gracefully; SIGINT aborts.\n"
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

fcgi::Status ProbeConfiguredBackend(const config::Config& cfg) {
  fcgi::BackendAddress address;
  fcgi::Status s = fcgi::BackendAddress::Parse(
      cfg.fcgi_connection_type == config::ConnectionType::kTcp ? "tcp" : "unix",
      cfg.fcgi_connection_address, &address);
  if (!s.ok()) return s;
  return fcgi::ProbeBackend(address, static_cast<int>(cfg.fcgi_connect_timeout * 1000));
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
  if (fcgi::Status s = ProbeConfiguredBackend(cfg); !s.ok()) {
    std::fprintf(stdout, "%s: FastCGI backend: %s\n", path.c_str(), s.message().c_str());
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
  if (problems == 0) std::fprintf(stdout, "%s: ok\n", path.c_str());
  return problems == 0 ? 0 : 1;
}

int Run(const std::string& path) {
  config::LoadResult loaded = config::LoadFile(path);
  if (!loaded.ok()) {
    for (const std::string& e : loaded.errors) std::fprintf(stderr, "fcgi-milter: %s\n", e.c_str());
    return 1;
  }
  const config::Config& cfg = loaded.config;
  logging::Init(cfg.log_level, false);

  std::unique_ptr<milter::Filter> filter;
  if (fcgi::Status s = milter::Filter::Create(cfg, &filter); !s.ok()) {
    LOG_ERROR("%s: %s", path.c_str(), s.ToString().c_str());
    return 1;
  }
  // Unreachable backends are reported now, in plain words, but the filter still starts: mail
  // is tempfailed (kept by the sender) until php-fpm is there.
  if (fcgi::Status s = ProbeConfiguredBackend(cfg); !s.ok()) {
    LOG_ERROR("FastCGI backend not usable yet, mail will be tempfailed: %s", s.message().c_str());
  }

  const std::string sock = UnixSocketPath(cfg.milter_socket);
  if (smfi_setconn(const_cast<char*>(cfg.milter_socket.c_str())) != MI_SUCCESS ||
      smfi_register(*milter::Filter::Install(filter.get())) != MI_SUCCESS) {
    LOG_ERROR("cannot set up libmilter for %s", cfg.milter_socket.c_str());
    return 1;
  }
  // Opening early (and removing a stale unix socket) turns a bad spec or a busy port into a
  // clear start-up error, and lets us set the socket's mode before the MTA connects.
  if (smfi_opensocket(true) != MI_SUCCESS) {
    LOG_ERROR("cannot listen on milter_socket %s (directory missing, permissions, or address "
              "in use?)",
              cfg.milter_socket.c_str());
    return 1;
  }
  if (!sock.empty() && ::chmod(sock.c_str(), static_cast<mode_t>(cfg.milter_socket_mode)) != 0) {
    LOG_ERROR("cannot chmod %s: %s", sock.c_str(), std::strerror(errno));
    return 1;
  }
  LOG_INFO("fcgi-milter %s listening on %s, FastCGI backend %s", FCGI_MILTER_VERSION,
           cfg.milter_socket.c_str(), cfg.fcgi_connection_address.c_str());
  const int rc = smfi_main();
  LOG_INFO("stopped");
  return rc == MI_SUCCESS ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  static const option kOptions[] = {
      {"config", required_argument, nullptr, 'c'}, {"test", no_argument, nullptr, 't'},
      {"help", no_argument, nullptr, 'h'},         {"version", no_argument, nullptr, 'V'},
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
      default:
        std::fprintf(stderr, "Try 'fcgi-milter --help'.\n");
        return 2;
    }
  }
  if (optind < argc) {
    std::fprintf(stderr, "fcgi-milter: unexpected argument '%s'. Try 'fcgi-milter --help'.\n",
                 argv[optind]);
    return 2;
  }
  return test ? CheckOnly(path) : Run(path);
}
