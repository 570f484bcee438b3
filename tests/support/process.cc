// Process and RunCommand: fork/exec with everything the child needs prepared before fork, so the
// child only calls async-signal-safe functions (the test binary may have threads).
// Thread-safety: see process.h.
#include "tests/support/process.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <thread>

#include "tests/support/temp_dir.h"

extern char** environ;

namespace testing_support {
namespace {

using Clock = std::chrono::steady_clock;

// argv/envp as the NUL-terminated arrays exec wants; owns the strings.
class ExecArgs {
 public:
  ExecArgs(const std::vector<std::string>& argv, const std::map<std::string, std::string>& env)
      : argv_(argv) {
    for (char** e = environ; e != nullptr && *e != nullptr; ++e) {
      std::string entry = *e;
      std::string name = entry.substr(0, entry.find('='));
      if (env.count(name) == 0) env_.push_back(entry);
    }
    for (const auto& [name, value] : env) env_.push_back(name + "=" + value);
    for (auto& a : argv_) argv_ptrs_.push_back(a.data());
    argv_ptrs_.push_back(nullptr);
    for (auto& e : env_) env_ptrs_.push_back(e.data());
    env_ptrs_.push_back(nullptr);
  }
  char* const* argv() { return argv_ptrs_.data(); }
  char* const* envp() { return env_ptrs_.data(); }

 private:
  std::vector<std::string> argv_;
  std::vector<std::string> env_;
  std::vector<char*> argv_ptrs_;
  std::vector<char*> env_ptrs_;
};

void WriteAll(int fd, const void* data, size_t size) {
  const char* p = static_cast<const char*>(data);
  while (size > 0) {
    ssize_t n = write(fd, p, size);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;
    p += n;
    size -= static_cast<size_t>(n);
  }
}

// Child side after fork: only async-signal-safe calls. Reports an exec failure's errno on err_fd.
[[noreturn]] void ExecChild(ExecArgs& args, int stdin_fd, int stdout_fd, int stderr_fd, int err_fd,
                            const char* cwd, pid_t parent) {
  setpgid(0, 0);
  // A test binary killed by a timeout runs no destructors: SIGTERM lets php-fpm or the daemon take
  // their workers down instead of lingering. (Fires when the forking thread exits: start fixtures
  // from the test's own thread.)
  prctl(PR_SET_PDEATHSIG, SIGTERM);
  if (getppid() != parent) _exit(127);
  sigset_t all;
  sigemptyset(&all);
  sigprocmask(SIG_SETMASK, &all, nullptr);
  // An ignored SIGPIPE would be inherited across exec and change the child's behaviour.
  struct sigaction dfl {};
  dfl.sa_handler = SIG_DFL;
  sigaction(SIGPIPE, &dfl, nullptr);
  dup2(stdin_fd, 0);
  dup2(stdout_fd, 1);
  dup2(stderr_fd, 2);
  // Sockets and files the test holds must not leak into long-lived children.
  for (int fd = 3; fd < 1024; ++fd) {
    if (fd != err_fd) close(fd);
  }
  if (cwd != nullptr && chdir(cwd) != 0) {
    int err = errno;
    WriteAll(err_fd, &err, sizeof err);
    _exit(127);
  }
  execvpe(args.argv()[0], args.argv(), args.envp());
  int err = errno;
  WriteAll(err_fd, &err, sizeof err);
  _exit(127);
}

// Forks argv with the given fds; returns the pid, or -1 and sets *error.
pid_t Spawn(const std::vector<std::string>& argv, const std::map<std::string, std::string>& env,
            int stdin_fd, int stdout_fd, int stderr_fd, const std::string& cwd,
            std::string* error) {
  if (argv.empty()) {
    *error = "empty argv";
    return -1;
  }
  ExecArgs args(argv, env);
  int err_pipe[2];
  if (pipe2(err_pipe, O_CLOEXEC) != 0) {
    *error = std::string("pipe2: ") + std::strerror(errno);
    return -1;
  }
  pid_t parent = getpid();
  pid_t pid = fork();
  if (pid < 0) {
    *error = std::string("fork: ") + std::strerror(errno);
    close(err_pipe[0]);
    close(err_pipe[1]);
    return -1;
  }
  if (pid == 0) {
    ExecChild(args, stdin_fd, stdout_fd, stderr_fd, err_pipe[1],
              cwd.empty() ? nullptr : cwd.c_str(), parent);
  }
  // Both sides set the group, so a signal to -pid works whichever runs first.
  setpgid(pid, pid);
  close(err_pipe[1]);
  int child_errno = 0;
  ssize_t n;
  do {
    n = read(err_pipe[0], &child_errno, sizeof child_errno);
  } while (n < 0 && errno == EINTR);
  close(err_pipe[0]);
  if (n > 0) {
    int status;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    *error = "cannot exec " + argv[0] + (cwd.empty() ? "" : " in " + cwd) + ": " +
             std::strerror(child_errno);
    return -1;
  }
  return pid;
}

std::string Basename(const std::string& path) {
  size_t slash = path.rfind('/');
  return slash == std::string::npos ? path : path.substr(slash + 1);
}

}  // namespace

int ShellStatus(int wait_status) {
  if (WIFEXITED(wait_status)) return WEXITSTATUS(wait_status);
  if (WIFSIGNALED(wait_status)) return 128 + WTERMSIG(wait_status);
  return -1;
}

Process::Process() = default;

Process::~Process() {
  if (pid_ > 0) Stop();
}

::testing::AssertionResult Process::Start(const std::vector<std::string>& argv,
                                          const Options& options) {
  if (Running()) {
    return ::testing::AssertionFailure() << "Process already running, pid " << pid_;
  }
  if (argv.empty()) return ::testing::AssertionFailure() << "Process::Start: empty argv";
  std::string dir = options.output_dir;
  if (dir.empty()) {
    if (!output_dir_) output_dir_ = std::make_unique<TempDir>();
    dir = output_dir_->path();
  }
  std::string name = options.name.empty() ? Basename(argv[0]) : options.name;
  stdout_path_ = dir + "/" + name + ".stdout";
  stderr_path_ = dir + "/" + name + ".stderr";
  int in = open("/dev/null", O_RDONLY | O_CLOEXEC);
  int out = open(stdout_path_.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  int err = open(stderr_path_.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  std::string error;
  pid_t pid = -1;
  if (in < 0 || out < 0 || err < 0) {
    error = "cannot open output files in " + dir + ": " + std::strerror(errno);
  } else {
    pid = Spawn(argv, options.env, in, out, err, options.cwd, &error);
  }
  if (in >= 0) close(in);
  if (out >= 0) close(out);
  if (err >= 0) close(err);
  if (pid < 0) return ::testing::AssertionFailure() << "Process::Start: " << error;
  pid_ = pid;
  reaped_ = false;
  group_killed_ = false;
  exit_status_.reset();
  return ::testing::AssertionSuccess();
}

bool Process::Reap(bool block) {
  if (reaped_) return true;
  int status = 0;
  pid_t r;
  do {
    r = waitpid(pid_, &status, block ? 0 : WNOHANG);
  } while (r < 0 && errno == EINTR);
  if (r == 0) return false;
  reaped_ = true;
  exit_status_ = r == pid_ ? ShellStatus(status) : -1;
  return true;
}

bool Process::Running() {
  return pid_ > 0 && !Reap(false);
}

bool Process::Signal(int sig) {
  return Running() && kill(pid_, sig) == 0;
}

std::optional<int> Process::Wait(std::chrono::milliseconds timeout) {
  if (pid_ <= 0) return std::nullopt;
  auto deadline = Clock::now() + timeout;
  while (!Reap(false)) {
    if (Clock::now() >= deadline) return std::nullopt;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return exit_status_;
}

std::optional<int> Process::Stop(std::chrono::milliseconds timeout) {
  if (pid_ <= 0) return std::nullopt;
  if (Running()) {
    kill(pid_, SIGTERM);
    if (!Wait(timeout)) {
      kill(-pid_, SIGKILL);
      Reap(true);
    }
  }
  // Workers of a killed master (or a daemon that forgot them) must not outlive the test. Once per
  // Start: later the group id may belong to someone else.
  if (!group_killed_) kill(-pid_, SIGKILL);
  group_killed_ = true;
  return exit_status_;
}

std::string Process::ReadStdout() const {
  return ReadFile(stdout_path_);
}
std::string Process::ReadStderr() const {
  return ReadFile(stderr_path_);
}

CommandResult RunCommand(const std::vector<std::string>& argv, std::chrono::milliseconds timeout,
                         const std::map<std::string, std::string>& env) {
  CommandResult result;
  int out_pipe[2];
  if (pipe2(out_pipe, O_CLOEXEC) != 0) {
    result.output = std::string("pipe2: ") + std::strerror(errno);
    return result;
  }
  int in = open("/dev/null", O_RDONLY | O_CLOEXEC);
  std::string error;
  pid_t pid = Spawn(argv, env, in, out_pipe[1], out_pipe[1], "", &error);
  close(in);
  close(out_pipe[1]);
  if (pid < 0) {
    close(out_pipe[0]);
    result.output = error;
    return result;
  }
  auto deadline = Clock::now() + timeout;
  bool exited = false;
  bool eof = false;
  int status = 0;
  char buf[4096];
  // Stop at EOF, or soon after the command exits even if a daemon it started holds the pipe.
  while (!eof) {
    if (!exited && Clock::now() >= deadline) {
      kill(-pid, SIGKILL);
      while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
      }
      close(out_pipe[0]);
      result.output += "\n[RunCommand: " + ShellJoin(argv) + " timed out after " +
                       std::to_string(timeout.count()) + " ms, killed]";
      return result;
    }
    if (!exited) {
      pid_t r = waitpid(pid, &status, WNOHANG);
      if (r == pid) exited = true;
    }
    pollfd pfd{out_pipe[0], POLLIN, 0};
    int ready = poll(&pfd, 1, exited ? 0 : 20);
    if (ready > 0) {
      ssize_t n = read(out_pipe[0], buf, sizeof buf);
      if (n > 0) {
        result.output.append(buf, static_cast<size_t>(n));
        continue;
      }
      if (n == 0 || errno != EINTR) eof = true;
    } else if (exited) {
      break;
    }
  }
  close(out_pipe[0]);
  if (!exited) {
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
  }
  result.exit_code = ShellStatus(status);
  return result;
}

std::string ShellQuote(const std::string& word) {
  if (!word.empty() && word.find_first_not_of("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                              "0123456789_-+./:=@,%") == std::string::npos) {
    return word;
  }
  std::string quoted = "'";
  for (char c : word) {
    if (c == '\'') {
      quoted += "'\\''";
    } else {
      quoted += c;
    }
  }
  return quoted + "'";
}

std::string ShellJoin(const std::vector<std::string>& argv) {
  std::string joined;
  for (const auto& word : argv) {
    if (!joined.empty()) joined += ' ';
    joined += ShellQuote(word);
  }
  return joined;
}

}  // namespace testing_support
