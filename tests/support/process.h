// Process: a child program started by a test (php-fpm, the daemon, a client tool), in its own
// process group so that stopping it also takes its children; RunCommand for short commands with a
// deadline. Thread-safety: not thread-safe; one owner. RunCommand is thread-safe.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <gtest/gtest.h>

namespace testing_support {

class TempDir;

// The exit status the way a shell shows it: the exit code, or 128 + signal number.
int ShellStatus(int wait_status);

class Process {
 public:
  struct Options {
    // Added to (and overriding) the inherited environment.
    std::map<std::string, std::string> env;
    // Directory for <name>.stdout and <name>.stderr; empty: a TempDir the Process owns.
    std::string output_dir;
    // File stem for the output files; empty: the basename of argv[0].
    std::string name;
    // Working directory of the child; empty: inherited.
    std::string cwd;
  };

  Process();
  // Stops the child (SIGTERM, then SIGKILL to the group after 5 s) if it still runs.
  ~Process();
  Process(const Process&) = delete;
  Process& operator=(const Process&) = delete;

  // fork/exec argv (argv[0] looked up in PATH), stdin from /dev/null, stdout/stderr to files.
  // The child gets SIGTERM if the calling thread dies (PR_SET_PDEATHSIG), so a test binary killed
  // by a timeout leaves nothing behind: call from a thread that outlives the child.
  // Fails (with the reason) if already running, argv is empty, or exec fails.
  [[nodiscard]] ::testing::AssertionResult Start(const std::vector<std::string>& argv,
                                                 const Options& options);
  [[nodiscard]] ::testing::AssertionResult Start(const std::vector<std::string>& argv) {
    return Start(argv, Options());
  }

  // The child's pid (also its process group id); -1 before Start.
  pid_t pid() const { return pid_; }
  // True while the child has not exited (reaps it when it has).
  bool Running();
  // Sends sig to the child only (a daemon handles it and manages its own children). False if gone.
  bool Signal(int sig);
  // Waits for the child to exit: its ShellStatus, or nullopt on timeout / never started.
  std::optional<int> Wait(std::chrono::milliseconds timeout);
  // SIGTERM, wait up to timeout, then SIGKILL to the whole group; stragglers of the group get
  // SIGKILL too. Returns the ShellStatus (143 = died by SIGTERM), or nullopt if there was no child.
  std::optional<int> Stop(std::chrono::milliseconds timeout = std::chrono::seconds(5));
  // ShellStatus once the child exited and was reaped.
  std::optional<int> exit_status() const { return exit_status_; }

  const std::string& stdout_path() const { return stdout_path_; }
  const std::string& stderr_path() const { return stderr_path_; }
  std::string ReadStdout() const;
  std::string ReadStderr() const;

 private:
  bool Reap(bool block);

  pid_t pid_ = -1;
  bool reaped_ = true;
  bool group_killed_ = true;
  std::optional<int> exit_status_;
  std::unique_ptr<TempDir> output_dir_;
  std::string stdout_path_;
  std::string stderr_path_;
};

struct CommandResult {
  // ShellStatus; -1 if the command could not be started or timed out (output then says why).
  int exit_code = -1;
  // stdout and stderr, interleaved as written.
  std::string output;
  bool ok() const { return exit_code == 0; }
};

// Runs argv (looked up in PATH) with stdin from /dev/null and waits at most timeout; on timeout its
// process group is killed. Output a daemon keeps writing after the command itself exits is not
// awaited.
CommandResult RunCommand(const std::vector<std::string>& argv,
                         std::chrono::milliseconds timeout = std::chrono::seconds(30),
                         const std::map<std::string, std::string>& env = {});

// Quotes a word for /bin/sh (for `script -qec "..."`).
std::string ShellQuote(const std::string& word);
// argv joined with spaces, each word ShellQuote'd.
std::string ShellJoin(const std::vector<std::string>& argv);

}  // namespace testing_support
