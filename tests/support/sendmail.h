// Sendmail: a private, real Sendmail 8.17 daemon on a loopback port with INPUT_MAIL_FILTER in front
// of a milter, for end-to-end tests. Sendmail is not installed (sendmail-bin conflicts with
// postfix): scripts/fetch-sendmail unpacks Debian's packages into a cache root; see
// docs/platform-notes.md, Sendmail. Thread-safety: not thread-safe; the test thread owns it.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "tests/support/process.h"
#include "tests/support/temp_dir.h"

namespace testing_support {

class Sendmail {
 public:
  struct Options {
    int port = 0;             // SMTP port on 127.0.0.1; 0: FreeTcpPort()
    std::string milter;       // S= in Sendmail's syntax: "inet:PORT@127.0.0.1", "local:/path"
    std::string flags = "T";  // F=: T tempfails when the filter is unreachable, R rejects
    std::string timeouts = "C:30s;S:10s;R:35s;E:5m";  // T=
    std::vector<std::string> extra_mc;                // .mc lines added before MAILER(...)
    // `-d` debug categories (e.g. "64.10": milter), written to debug_log_path() with -D; empty:
    // the environment variable FCGI_MILTER_SENDMAIL_DEBUG, if set.
    std::string debug;
    std::string root;  // the unpacked packages; empty: DefaultRoot()
  };

  enum class FetchOutcome { kReady, kArchiveUnreachable, kFailed };
  struct FetchResult {
    FetchOutcome outcome = FetchOutcome::kFailed;
    std::string output;  // what scripts/fetch-sendmail printed
  };

  // <build dir>/sendmail-root, the build dir being the one the daemon under test was built in.
  static std::string DefaultRoot();
  // Runs scripts/fetch-sendmail ROOT (a no-op once unpacked). Thread-compatible across processes
  // (the script takes a lock).
  static FetchResult Fetch(const std::string& root = DefaultRoot());

  explicit Sendmail(Options options);
  // Stops the daemon and every process of its instance.
  ~Sendmail();
  Sendmail(const Sendmail&) = delete;
  Sendmail& operator=(const Sendmail&) = delete;

  // Writes the .mc, builds the .cf with the unpacked m4, starts `sendmail -bD` under
  // `unshare -u -m` (FQDN host name mx.example.test, private hosts file: no 60 s sleep), and
  // waits (15 s) for the 220 banner. Fetch must have succeeded. A failure carries the output.
  [[nodiscard]] ::testing::AssertionResult Start();
  // SIGTERM to the daemon, then SIGKILL to anything left in its namespaces; returns when no
  // process of this instance is alive (so the port is free again).
  [[nodiscard]] ::testing::AssertionResult Stop();
  bool running() const { return pid_ > 0; }

  int port() const { return options_.port; }
  const std::string& dir() const { return dir_.path(); }
  const std::string& mc_path() const { return mc_path_; }
  const std::string& cf_path() const { return cf_path_; }
  const std::string& queue_dir() const { return queue_dir_; }
  std::string debug_log_path() const { return dir_.Path("debug.log"); }
  // The INPUT_MAIL_FILTER line of the .mc, as written.
  std::string InputMailFilterLine() const;

  // The daemon's stdout/stderr and the -D debug file (Sendmail has no log file: it logs to
  // syslog only, and this machine has no syslog).
  std::string log() const;
  // Contents of the qf (envelope) files in the queue: one per accepted message (delivery mode is
  // queueonly, so an accepted message stays there). Sorted by file name.
  std::vector<std::string> QueuedEnvelopes() const;
  // The df (body) file paired with each entry of QueuedEnvelopes(), same order.
  std::vector<std::string> QueuedBodies() const;
  // Contents of the hf files: the envelopes of quarantined messages (Sendmail renames qf to hf).
  std::vector<std::string> QuarantinedEnvelopes() const;

 private:
  std::string McText() const;
  // The `kind`f file of each message whose `listed`f file exists.
  std::vector<std::string> QueueFiles(char kind, char listed = 'q') const;
  std::vector<pid_t> InstanceProcesses() const;

  Options options_;
  TempDir dir_;
  std::string mc_path_;
  std::string cf_path_;
  std::string queue_dir_;
  Process process_;
  pid_t pid_ = -1;
  std::string uts_ns_;  // /proc/<pid>/ns/uts of the daemon: shared by all its processes
};

}  // namespace testing_support
