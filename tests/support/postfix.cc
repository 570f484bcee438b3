// Postfix fixture, per docs/platform-notes.md: private config/queue/data dirs, chroot off, a
// maillog file instead of syslog, `script -qec` around postfix commands so their fatal errors are
// not lost. Thread-safety: see postfix.h.
#include "tests/support/postfix.h"

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <filesystem>
#include <optional>
#include <sstream>
#include <thread>

#include "tests/support/net.h"
#include "tests/support/process.h"
#include "tests/support/smtp_client.h"

namespace testing_support {
namespace {

constexpr const char* kPostfix = "/usr/sbin/postfix";

std::vector<std::string> SplitFields(const std::string& line) {
  std::istringstream in(line);
  std::vector<std::string> fields;
  std::string field;
  while (in >> field) fields.push_back(field);
  return fields;
}

std::string StripCr(std::string text) {
  std::erase(text, '\r');
  return text;
}

struct ProcStat {
  char state = '?';
  pid_t session = -1;
};

// State and session id from /proc/<pid>/stat; nullopt if the process is gone.
std::optional<ProcStat> ReadProcStat(pid_t pid) {
  std::string text = ReadFile("/proc/" + std::to_string(pid) + "/stat");
  size_t paren = text.rfind(')');
  if (paren == std::string::npos) return std::nullopt;
  // After "pid (comm)": state ppid pgrp session ...
  std::istringstream in(text.substr(paren + 1));
  ProcStat stat;
  pid_t ppid, pgrp;
  if (!(in >> stat.state >> ppid >> pgrp >> stat.session)) return std::nullopt;
  return stat;
}

// Live (not zombie) processes whose session id is sid. Postfix's master calls setsid(), so its
// session holds exactly the instance's processes, even after they were reparented.
std::vector<pid_t> LiveSessionMembers(pid_t sid) {
  std::vector<pid_t> members;
  DIR* proc = opendir("/proc");
  if (proc == nullptr) return members;
  while (dirent* entry = readdir(proc)) {
    char* end;
    long pid = std::strtol(entry->d_name, &end, 10);
    if (*end != '\0' || pid <= 0) continue;
    auto stat = ReadProcStat(static_cast<pid_t>(pid));
    if (stat && stat->session == sid && stat->state != 'Z' && stat->state != 'X') {
      members.push_back(static_cast<pid_t>(pid));
    }
  }
  closedir(proc);
  return members;
}

void BackdateFile(const std::string& path) {
  timespec times[2];
  clock_gettime(CLOCK_REALTIME, &times[0]);
  times[0].tv_sec -= 60;
  times[1] = times[0];
  utimensat(AT_FDCWD, path.c_str(), times, 0);
}

}  // namespace

Postfix::Postfix() : Postfix(Options()) {}

Postfix::Postfix(Options options) : options_(std::move(options)) {
  if (options_.port == 0) options_.port = FreeTcpPort();
  config_dir_ = dir_.Mkdir("etc", 0755);
  // postfix chdirs into the queue directory first, then creates its subdirectories; the data
  // directory it must create itself (owner postfix: a root-owned one makes master fail).
  queue_dir_ = dir_.Mkdir("queue", 0755);
  data_dir_ = dir_.Path("data");
  maillog_path_ = dir_.Path("maillog");
}

Postfix::~Postfix() {
  if (master_pid_ > 0) {
    auto stopped = Stop();
    if (!stopped) std::fprintf(stderr, "Postfix: %s\n", stopped.message());
  }
}

std::string Postfix::MainCf() const {
  std::ostringstream c;
  c << "# Written by the test fixture tests/support/postfix.cc\n"
    << "compatibility_level = 3.6\n"
    << "config_directory = " << config_dir_ << "\n"
    << "queue_directory = " << queue_dir_ << "\n"
    << "data_directory = " << data_dir_ << "\n"
    << "maillog_file = " << maillog_path_ << "\n"
    << "maillog_file_prefixes = " << dir_.path() << "\n"
    << "inet_interfaces = 127.0.0.1\n"
    << "inet_protocols = ipv4\n"
    << "myhostname = mx.example.test\n"
    << "mydomain = example.test\n"
    << "mynetworks = 127.0.0.0/8\n"
    << "smtpd_relay_restrictions = permit_mynetworks, reject\n"
    // Every recipient domain is "remote" and relayed from mynetworks, then thrown away.
    << "mydestination =\n"
    << "relay_domains =\n"
    << "local_recipient_maps =\n"
    << "alias_maps =\n"
    << "alias_database =\n"
    << "default_transport = discard\n"
    << "local_transport = discard\n"
    << "relay_transport = discard\n"
    << "smtputf8_enable = no\n"
    << "biff = no\n"
    << "append_dot_mydomain = no\n"
    << "in_flow_delay = 0s\n"
    // Tests send many rejected recipients; Postfix's tarpit would slow them or hang up.
    << "smtpd_error_sleep_time = 0s\n"
    << "smtpd_soft_error_limit = 1000\n"
    << "smtpd_hard_error_limit = 1000\n"
    << "mailbox_size_limit = 0\n"
    << "message_size_limit = 52428800\n"
    << "smtpd_milters = " << options_.milters << "\n"
    << "milter_default_action = tempfail\n"
    << "milter_protocol = 6\n";
  for (const auto& line : options_.extra_main_cf) c << line << "\n";
  return c.str();
}

std::string Postfix::MasterCf(std::string* error) const {
  std::string templ;
  for (const char* path : {"/etc/postfix/master.cf", "/etc/postfix/master.cf.proto",
                           "/usr/share/postfix/master.cf.dist"}) {
    templ = ReadFile(path);
    if (!templ.empty()) break;
  }
  if (templ.empty()) {
    *error = "no master.cf template in /etc/postfix or /usr/share/postfix";
    return {};
  }
  std::istringstream in(templ);
  std::ostringstream out;
  std::string line;
  bool skipping = false;  // inside a dropped service's continuation lines
  bool has_postlog = false;
  bool has_smtpd = false;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == '#') {
      out << line << "\n";
      continue;
    }
    if (line[0] == ' ' || line[0] == '\t') {
      if (!skipping) out << line << "\n";
      continue;
    }
    skipping = false;
    std::vector<std::string> f = SplitFields(line);
    if (f.size() < 8) {
      out << line << "\n";
      continue;
    }
    if (f[1] == "inet") {
      // Only our smtpd listens: another inet service (submission...) would collide between
      // instances.
      if (f[0] != "smtp" || has_smtpd) {
        skipping = true;
        continue;
      }
      f[0] = "127.0.0.1:" + std::to_string(options_.port);
      has_smtpd = true;
    }
    if (f[0] == "postlog") has_postlog = true;
    f[4] = "n";  // chroot off: the queue is not under /var/spool/postfix
    std::string rebuilt;
    for (const auto& field : f) rebuilt += (rebuilt.empty() ? "" : " ") + field;
    out << rebuilt << "\n";
  }
  if (!has_smtpd) {
    out << "127.0.0.1:" << options_.port << " inet n - n - - smtpd\n";
  }
  if (!has_postlog) out << "postlog unix-dgram n - n - 1 postlogd\n";
  return out.str();
}

::testing::AssertionResult Postfix::PostfixCommand(const std::string& args) const {
  std::string command = std::string(kPostfix) + " -c " + ShellQuote(config_dir_) + " " + args;
  CommandResult result;
  // Without a terminal or syslog, postfix prints its fatal errors nowhere: give it a pty.
  if (access("/usr/bin/script", X_OK) == 0) {
    result =
        RunCommand({"/usr/bin/script", "-qec", command, "/dev/null"}, std::chrono::seconds(60));
  } else {
    result = RunCommand({"/bin/sh", "-c", command}, std::chrono::seconds(60));
  }
  if (result.ok()) return ::testing::AssertionSuccess() << StripCr(result.output);
  return ::testing::AssertionFailure()
         << "`" << command << "` exited with " << result.exit_code << ":\n"
         << StripCr(result.output) << "--- maillog ---\n"
         << Tail(maillog());
}

::testing::AssertionResult Postfix::Start() {
  if (master_pid_ > 0) return ::testing::AssertionFailure() << "Postfix already started";
  if (geteuid() != 0) {
    return ::testing::AssertionFailure() << "the Postfix fixture needs root (postfix start)";
  }
  if (access(kPostfix, X_OK) != 0) {
    return ::testing::AssertionFailure()
           << kPostfix << " not found: install postfix (scripts/install-deps) to run this test";
  }
  std::string error;
  std::string master_cf = MasterCf(&error);
  if (master_cf.empty()) return ::testing::AssertionFailure() << error;
  if (!WriteFile(config_dir_ + "/master.cf", master_cf) ||
      !WriteFile(config_dir_ + "/main.cf", MainCf())) {
    return ::testing::AssertionFailure() << "cannot write the config in " << config_dir_;
  }
  // Postfix waits (in 300 ms naps, in every postfix/postconf run) until a config file is older
  // than the clock's current second, in case an editor is still writing it: backdate ours.
  BackdateFile(config_dir_ + "/master.cf");
  BackdateFile(config_dir_ + "/main.cf");
  auto started = PostfixCommand("start");
  if (!started) {
    // `start` may only say "startup failed"; `check` names the problem.
    auto checked = PostfixCommand("check");
    return ::testing::AssertionFailure() << started.message() << "\n--- postfix check ---\n"
                                         << checked.message();
  }
  std::string pid_text = ReadFile(queue_dir_ + "/pid/master.pid");
  master_pid_ = static_cast<pid_t>(std::atoi(pid_text.c_str()));
  if (master_pid_ <= 0) {
    return ::testing::AssertionFailure() << "postfix start succeeded but " << queue_dir_
                                         << "/pid/master.pid holds '" << pid_text << "'\n"
                                         << Tail(maillog());
  }
  // Postfix daemonizes, so it is no child of ours: a guard child (which gets SIGTERM when this
  // process dies, see Process::Start) stops the instance if a killed test binary cannot.
  Process::Options guard_options;
  guard_options.output_dir = dir_.path();
  guard_options.name = "guard";
  auto guarded = guard_.Start({"/bin/sh", "-c",
                               "trap '" + std::string(kPostfix) + " -c " + config_dir_ +
                                   " stop >/dev/null 2>&1; kill $s; exit 0' TERM; "
                                   "while :; do sleep 3600 & s=$!; wait $s; done"},
                              guard_options);
  if (!guarded) return guarded;
  SmtpClient::Reply banner;
  bool ready = WaitUntil(
      [&] {
        SmtpClient client(std::chrono::seconds(2));
        banner = client.Connect(options_.port);
        if (banner.code != 220) return false;
        client.Quit();
        return true;
      },
      std::chrono::seconds(10));
  if (!ready) {
    return ::testing::AssertionFailure()
           << "Postfix gave no 220 banner on port " << options_.port
           << " within 10 s (last: " << banner.code << " " << banner.text << ")\n"
           << Tail(maillog());
  }
  return ::testing::AssertionSuccess();
}

bool Postfix::WaitForSessionExit(pid_t sid, std::chrono::milliseconds timeout) const {
  return WaitUntil([&] { return LiveSessionMembers(sid).empty(); }, timeout);
}

::testing::AssertionResult Postfix::Stop() {
  if (master_pid_ <= 0) return ::testing::AssertionSuccess();
  pid_t sid = master_pid_;
  master_pid_ = -1;
  // SIGKILL, not SIGTERM: the guard's trap would run a second `postfix stop`.
  guard_.Signal(SIGKILL);
  guard_.Stop();
  auto stopped = PostfixCommand("stop");
  if (WaitForSessionExit(sid, std::chrono::seconds(10))) return ::testing::AssertionSuccess();
  auto aborted = PostfixCommand("abort");
  if (WaitForSessionExit(sid, std::chrono::seconds(3))) return ::testing::AssertionSuccess();
  for (pid_t pid : LiveSessionMembers(sid)) kill(pid, SIGKILL);
  if (WaitForSessionExit(sid, std::chrono::seconds(3))) {
    return ::testing::AssertionFailure() << "Postfix ignored stop and abort; killed it\n"
                                         << stopped.message() << "\n"
                                         << aborted.message();
  }
  return ::testing::AssertionFailure()
         << "Postfix processes of session " << sid << " survive even SIGKILL";
}

::testing::AssertionResult Postfix::Restart() {
  auto stopped = Stop();
  if (!stopped) return stopped;
  return Start();
}

std::string Postfix::maillog() const {
  return ReadFile(maillog_path_);
}

::testing::AssertionResult Postfix::WaitForLog(const std::string& needle,
                                               std::chrono::milliseconds timeout) {
  if (WaitUntil([&] { return maillog().find(needle) != std::string::npos; }, timeout)) {
    return ::testing::AssertionSuccess();
  }
  return ::testing::AssertionFailure()
         << "maillog has no '" << needle << "' after " << timeout.count() << " ms:\n"
         << Tail(maillog());
}

bool Postfix::QueueIsEmpty() const {
  for (const char* sub : {"maildrop", "incoming", "active", "deferred", "hold"}) {
    std::error_code ec;
    std::filesystem::recursive_directory_iterator it(queue_dir_ + "/" + sub, ec);
    for (; !ec && it != std::filesystem::recursive_directory_iterator(); it.increment(ec)) {
      if (it->is_regular_file(ec)) return false;
    }
  }
  return true;
}

::testing::AssertionResult Postfix::WaitForQueueEmpty(std::chrono::milliseconds timeout) {
  if (WaitUntil([&] { return QueueIsEmpty(); }, timeout)) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure()
         << "Postfix queue not empty after " << timeout.count() << " ms:\n"
         << QueueListing() << "--- maillog ---\n"
         << Tail(maillog());
}

std::string Postfix::QueueListing() const {
  return StripCr(RunCommand({"/usr/sbin/postqueue", "-c", config_dir_, "-p"}).output);
}

}  // namespace testing_support
