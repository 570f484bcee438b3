// Sendmail fixture, per docs/platform-notes.md: the unpacked Debian packages, every compiled-in
// path moved into a private dir by the .mc, `-bD` in the foreground under `unshare -u -m` with an
// FQDN host name. Delivery mode is queueonly: an accepted message stays in the private queue,
// nothing is delivered and no delivery process outlives the test. Thread-safety: see sendmail.h.
#include "tests/support/sendmail.h"

#include <dirent.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <sstream>

#include "tests/support/net.h"
#include "tests/support/smtp_client.h"

#ifndef FCGI_MILTER_BINARY
#error "FCGI_MILTER_BINARY must be defined (tests/CMakeLists.txt does)"
#endif
#ifndef FCGI_MILTER_SOURCE_DIR
#error "FCGI_MILTER_SOURCE_DIR must be defined (tests/CMakeLists.txt does)"
#endif

namespace testing_support {
namespace {

constexpr const char* kHostName = "mx.example.test";

std::string ReadLink(const std::string& path) {
  char buf[256];
  ssize_t n = readlink(path.c_str(), buf, sizeof buf - 1);
  return n > 0 ? std::string(buf, static_cast<size_t>(n)) : std::string();
}

// State letter from /proc/<pid>/stat ('?' if gone): zombies are dead already.
char ProcState(pid_t pid) {
  std::string text = ReadFile("/proc/" + std::to_string(pid) + "/stat");
  size_t paren = text.rfind(')');
  return paren == std::string::npos || paren + 2 >= text.size() ? '?' : text[paren + 2];
}

}  // namespace

std::string Sendmail::DefaultRoot() {
  if (const char* env = std::getenv("FCGI_MILTER_SENDMAIL_ROOT"); env != nullptr && *env) {
    return env;
  }
  // FCGI_MILTER_BINARY is <build dir>/milter/fcgi-milter.
  std::filesystem::path build =
      std::filesystem::path(FCGI_MILTER_BINARY).parent_path().parent_path();
  return (build / "sendmail-root").string();
}

Sendmail::FetchResult Sendmail::Fetch(const std::string& root) {
  FetchResult result;
  CommandResult run =
      RunCommand({std::string(FCGI_MILTER_SOURCE_DIR) + "/scripts/fetch-sendmail", root},
                 std::chrono::seconds(300));
  result.output = run.output;
  result.outcome = run.exit_code == 0   ? FetchOutcome::kReady
                   : run.exit_code == 2 ? FetchOutcome::kArchiveUnreachable
                                        : FetchOutcome::kFailed;
  return result;
}

Sendmail::Sendmail(Options options) : options_(std::move(options)) {
  if (options_.port == 0) options_.port = FreeTcpPort();
  if (options_.root.empty()) options_.root = DefaultRoot();
  dir_.Mkdir("etc", 0755);
  // Sendmail refuses a queue directory others can read or write.
  queue_dir_ = dir_.Mkdir("queue", 0700);
  dir_.Mkdir("hoststat", 0700);
  mc_path_ = dir_.Path("etc/test.mc");
  cf_path_ = dir_.Path("etc/test.cf");
}

Sendmail::~Sendmail() {
  if (pid_ > 0) {
    auto stopped = Stop();
    if (!stopped) std::fprintf(stderr, "Sendmail: %s\n", stopped.message());
  }
}

std::string Sendmail::InputMailFilterLine() const {
  std::string equates = "S=" + options_.milter;
  if (!options_.flags.empty()) equates += ", F=" + options_.flags;
  if (!options_.timeouts.empty()) equates += ", T=" + options_.timeouts;
  return "INPUT_MAIL_FILTER(`fcgi-milter', `" + equates + "')";
}

std::string Sendmail::McText() const {
  const std::string d = dir_.path();
  std::ostringstream mc;
  mc << "divert(-1)\n"
     << "# Written by the test fixture tests/support/sendmail.cc\n"
     << "divert(0)dnl\n"
     << "OSTYPE(`linux')dnl\n"
     // Every compiled-in path of Debian's build, moved into the instance dir.
     << "define(`MAIL_SETTINGS_DIR', `" << d << "/etc/')dnl\n"
     << "define(`QUEUE_DIR', `" << queue_dir_ << "')dnl\n"
     << "define(`confPID_FILE', `" << d << "/sendmail.pid')dnl\n"
     << "define(`STATUS_FILE', `" << d << "/statistics')dnl\n"
     << "define(`ALIAS_FILE', `" << d << "/etc/aliases')dnl\n"
     << "define(`confSERVICE_SWITCH_FILE', `" << d << "/etc/service.switch')dnl\n"
     << "define(`confDEAD_LETTER_DROP', `" << d << "/dead.letter')dnl\n"
     << "define(`confHOST_STATUS_DIRECTORY', `" << d << "/hoststat')dnl\n"
     << "define(`confDONT_PROBE_INTERFACES', `True')dnl\n"
     << "define(`confDOMAIN_NAME', `" << kHostName
     << "')dnl\n"
     // Accepted mail stays queued: proof of acceptance, and no delivery process to outlive Stop.
     << "define(`confDELIVERY_MODE', `queueonly')dnl\n"
     // Nothing slow per connection (ident) and no refusal on a busy build machine.
     << "define(`confTO_IDENT', `0s')dnl\n"
     << "define(`confREFUSE_LA', `1000')dnl\n"
     << "define(`confQUEUE_LA', `1000')dnl\n"
     << "define(`confDELAY_LA', `0')dnl\n"
     << "define(`confMIN_FREE_BLOCKS', `0')dnl\n"
     << "FEATURE(`no_default_msa')dnl\n"
     << "FEATURE(`promiscuous_relay')dnl\n"
     // Test domains do not resolve; Sendmail would refuse such senders otherwise.
     << "FEATURE(`accept_unresolvable_domains')dnl\n"
     << "FEATURE(`nocanonify')dnl\n"
     << "DAEMON_OPTIONS(`Port=" << options_.port << ", Addr=127.0.0.1, Name=MTA')dnl\n"
     << InputMailFilterLine() << "dnl\n";
  for (const auto& line : options_.extra_mc) mc << line << "\n";
  mc << "MAILER(`local')dnl\n"
     << "MAILER(`smtp')dnl\n";
  return mc.str();
}

::testing::AssertionResult Sendmail::Start() {
  if (pid_ > 0) return ::testing::AssertionFailure() << "Sendmail already started";
  if (geteuid() != 0) {
    return ::testing::AssertionFailure() << "the Sendmail fixture needs root (unshare, mount)";
  }
  const std::string root = options_.root;
  const std::string binary = root + "/usr/libexec/sendmail/sendmail";
  if (access(binary.c_str(), X_OK) != 0) {
    return ::testing::AssertionFailure()
           << binary << " not found: run scripts/fetch-sendmail " << root << " (Sendmail::Fetch)";
  }
  const std::string d = dir_.path();
  if (!WriteFile(mc_path_, McText()) ||
      !WriteFile(d + "/etc/service.switch", "hosts files\naliases files\n") ||
      !WriteFile(d + "/etc/aliases", "") ||
      // Both families: Sendmail looks its own name up on either, and sleeps 60 s if it fails.
      !WriteFile(d + "/etc/hosts", std::string("127.0.0.1 ") + kHostName + " mx localhost\n::1 " +
                                       kHostName + " mx localhost\n")) {
    return ::testing::AssertionFailure() << "cannot write the config in " << d << "/etc";
  }
  const std::string cf_dir = root + "/usr/share/sendmail/cf/";
  CommandResult m4 = RunCommand(
      {"/bin/sh", "-c",
       ShellJoin({root + "/usr/bin/m4", "-D_CF_DIR_=" + cf_dir, cf_dir + "m4/cf.m4", mc_path_}) +
           " > " + ShellQuote(cf_path_)});
  if (!m4.ok() || ReadFile(cf_path_).find("\nXfcgi-milter,") == std::string::npos) {
    return ::testing::AssertionFailure()
           << "m4 could not build " << cf_path_ << " (exit " << m4.exit_code << "):\n"
           << m4.output;
  }
  std::vector<std::string> sendmail_argv = {binary, "-C", cf_path_, "-bD"};
  std::string debug = options_.debug;
  if (const char* env = std::getenv("FCGI_MILTER_SENDMAIL_DEBUG");
      debug.empty() && env != nullptr) {
    debug = env;
  }
  if (!debug.empty()) {
    // -D: debug output into a file; plain -d in daemon mode would write into the SMTP stream.
    sendmail_argv.insert(sendmail_argv.end(), {"-D", debug_log_path(), "-d" + debug});
  }
  // A new UTS namespace for the FQDN host name, a new mount namespace for a hosts file that
  // maps it; the shell execs Sendmail, so the pid stays the daemon's.
  const std::string script = "set -e; hostname " + std::string(kHostName) + "; mount --bind " +
                             ShellQuote(d + "/etc/hosts") + " /etc/hosts; exec " +
                             ShellJoin(sendmail_argv);
  Process::Options po;
  po.output_dir = d;
  po.name = "sendmail";
  po.env["LD_LIBRARY_PATH"] = root + "/usr/lib/x86_64-linux-gnu";
  auto started = process_.Start({"unshare", "-u", "-m", "/bin/sh", "-c", script}, po);
  if (!started) return started;
  pid_ = process_.pid();

  SmtpClient::Reply banner;
  bool exited = false;
  bool ready = WaitUntil(
      [&] {
        if (!process_.Running()) {
          exited = true;
          return true;
        }
        SmtpClient client(std::chrono::seconds(2));
        banner = client.Connect(options_.port);
        if (banner.code != 220) return false;
        client.Quit();
        return true;
      },
      std::chrono::seconds(15));
  if (exited || !ready) {
    std::string why = exited
                          ? "exited with " + std::to_string(process_.exit_status().value_or(-1))
                          : "gave no 220 banner within 15 s (last: " + std::to_string(banner.code) +
                                " " + banner.text + ")";
    auto stopped = Stop();
    return ::testing::AssertionFailure()
           << "Sendmail on port " << options_.port << " " << why << "\n--- output ---\n"
           << Tail(log()) << (stopped ? "" : stopped.message());
  }
  uts_ns_ = ReadLink("/proc/" + std::to_string(pid_) + "/ns/uts");
  return ::testing::AssertionSuccess();
}

std::vector<pid_t> Sendmail::InstanceProcesses() const {
  std::vector<pid_t> members;
  if (uts_ns_.empty() || uts_ns_ == ReadLink("/proc/self/ns/uts")) return members;
  DIR* proc = opendir("/proc");
  if (proc == nullptr) return members;
  while (dirent* entry = readdir(proc)) {
    char* end;
    long pid = std::strtol(entry->d_name, &end, 10);
    if (*end != '\0' || pid <= 0) continue;
    const std::string base = "/proc/" + std::string(entry->d_name);
    if (ReadLink(base + "/ns/uts") != uts_ns_) continue;
    char state = ProcState(static_cast<pid_t>(pid));
    if (state != 'Z' && state != 'X' && state != '?') members.push_back(static_cast<pid_t>(pid));
  }
  closedir(proc);
  return members;
}

::testing::AssertionResult Sendmail::Stop() {
  if (pid_ <= 0) return ::testing::AssertionSuccess();
  pid_ = -1;
  // SIGTERM: the daemon signals its SMTP children and exits; its process group goes next.
  process_.Stop(std::chrono::seconds(5));
  // Children that left the group (setsid) still share the namespaces.
  if (WaitUntil([&] { return InstanceProcesses().empty(); }, std::chrono::seconds(2))) {
    uts_ns_.clear();
    return ::testing::AssertionSuccess();
  }
  for (pid_t pid : InstanceProcesses()) kill(pid, SIGKILL);
  bool gone = WaitUntil([&] { return InstanceProcesses().empty(); }, std::chrono::seconds(3));
  uts_ns_.clear();
  if (gone) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << "Sendmail processes survive SIGKILL";
}

std::string Sendmail::log() const {
  std::string out = ReadFile(process_.stdout_path()) + ReadFile(process_.stderr_path());
  std::string debug = ReadFile(debug_log_path());
  if (!debug.empty()) out += "--- " + debug_log_path() + " ---\n" + debug;
  return out;
}

std::vector<std::string> Sendmail::QueueFiles(char kind, char listed) const {
  std::vector<std::string> names;
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator(queue_dir_, ec)) {
    const std::string name = e.path().filename().string();
    if (name.size() > 2 && name[0] == listed && name[1] == 'f') names.push_back(name.substr(2));
  }
  std::sort(names.begin(), names.end());
  std::vector<std::string> out;
  for (const auto& id : names) out.push_back(ReadFile(queue_dir_ + "/" + kind + "f" + id));
  return out;
}

std::vector<std::string> Sendmail::QueuedEnvelopes() const {
  return QueueFiles('q');
}

std::vector<std::string> Sendmail::QueuedBodies() const {
  return QueueFiles('d');
}

std::vector<std::string> Sendmail::QuarantinedEnvelopes() const {
  return QueueFiles('h', 'h');
}

}  // namespace testing_support
