// Hostile input end to end through a real Postfix: control characters in envelope, HELO and
// headers, a 50 KB header line, thousands of recipients, empty and header-less messages, clients
// that hang up at every stage (no spill file, fd or thread may outlive them), and the daemon's
// own files when it runs as nobody. Thread-safety: one test thread.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <arpa/inet.h>
#include <dirent.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <sstream>
#include <thread>

#include "tests/support/milter_daemon.h"
#include "tests/support/net.h"
#include "tests/support/php_fpm.h"
#include "tests/support/postfix.h"
#include "tests/support/smtp_client.h"
#include "tests/support/temp_dir.h"

namespace {

using nlohmann::json;
using testing_support::MilterDaemon;
using testing_support::PhpFpm;
using testing_support::Postfix;
using testing_support::SmtpClient;
using namespace std::chrono_literals;

// Stores each save as <n>.json (fields, body excluded, JSON with invalid UTF-8 escaped as bytes
// via base64) and <n>.body.
const char* kRecordingSave = R"php(<?php
usleep((int)(getenv('SAVE_SLEEP_MS') ?: 0) * 1000);
$dir = getenv('DUMP_DIR');
$name = sprintf('%020d', hrtime(true));
$fields = [];
foreach ($_POST as $k => $v) {
  if ($k !== 'body' && $k !== 'rcpt_to') $fields[$k] = base64_encode($v);
}
$fields['_rcpt_array'] = count($_POST['rcpt_to'] ?? []);
file_put_contents("$dir/$name.body", $_POST['body'] ?? '');
file_put_contents("$dir/$name.json", json_encode($fields));
echo "SAVED\n";
)php";

std::string Base64Decode(const std::string& in) {
  static const std::string chars =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  int val = 0, bits = -8;
  for (char c : in) {
    const size_t p = chars.find(c);
    if (p == std::string::npos) break;
    val = (val << 6) + static_cast<int>(p);
    bits += 6;
    if (bits >= 0) {
      out.push_back(static_cast<char>((val >> bits) & 0xff));
      bits -= 8;
    }
  }
  return out;
}

std::string Base64Encode(const std::string& in) {
  static const char* chars = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  int val = 0, bits = -6;
  for (unsigned char c : in) {
    val = (val << 8) + c;
    bits += 8;
    while (bits >= 0) {
      out.push_back(chars[(val >> bits) & 0x3f]);
      bits -= 6;
    }
  }
  if (bits > -6) out.push_back(chars[((val << 8) >> (bits + 8)) & 0x3f]);
  while (out.size() % 4) out.push_back('=');
  return out;
}

struct Saved {
  std::map<std::string, std::string> fields;  // decoded
  int rcpt_array = 0;
  std::string body;
};

// A raw SMTP connection for sessions SmtpClient will not produce: hanging up mid-DATA.
class RawSmtp {
 public:
  explicit RawSmtp(int port) {
    fd_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(static_cast<uint16_t>(port));
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) Close();
    Read();
  }
  ~RawSmtp() { Close(); }
  // Sends bytes as they are; with expect_reply, reads until a final reply line ("NNN ").
  std::string Send(const std::string& bytes, bool expect_reply = true) {
    if (fd_ < 0) return {};
    (void)!write(fd_, bytes.data(), bytes.size());
    return expect_reply ? Read() : std::string();
  }
  void Close() {
    if (fd_ >= 0) close(fd_);
    fd_ = -1;
  }

 private:
  std::string Read() {
    std::string got;
    const auto deadline = std::chrono::steady_clock::now() + 30s;
    while (fd_ >= 0 && std::chrono::steady_clock::now() < deadline) {
      pollfd p{fd_, POLLIN, 0};
      if (poll(&p, 1, 100) <= 0) continue;
      char buf[4096];
      ssize_t n = read(fd_, buf, sizeof buf);
      if (n <= 0) break;
      got.append(buf, static_cast<size_t>(n));
      // Complete when the last line is "NNN text\r\n".
      size_t last = got.rfind('\n', got.size() - 2);
      last = last == std::string::npos ? 0 : last + 1;
      if (got.ends_with("\r\n") && got.size() - last >= 4 && got[last + 3] == ' ') break;
    }
    return got;
  }
  int fd_ = -1;
};

int CountFds(pid_t pid) {
  int n = 0;
  DIR* d = opendir(("/proc/" + std::to_string(pid) + "/fd").c_str());
  if (d == nullptr) return -1;
  while (dirent* e = readdir(d)) {
    if (e->d_name[0] != '.') n++;
  }
  closedir(d);
  return n;
}

int CountThreads(pid_t pid) {
  const std::string s = testing_support::ReadFile("/proc/" + std::to_string(pid) + "/status");
  const size_t at = s.find("Threads:");
  return at == std::string::npos ? -1 : std::atoi(s.c_str() + at + 8);
}

// /proc/<pid>/fd entries whose target lies in dir: "fd -> target".
std::vector<std::pair<std::string, std::string>> FdsInto(pid_t pid, const std::string& dir) {
  std::vector<std::pair<std::string, std::string>> out;
  const std::string base = "/proc/" + std::to_string(pid) + "/fd";
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator(base, ec)) {
    const auto target = std::filesystem::read_symlink(e.path(), ec);
    if (!ec && target.string().rfind(dir + "/", 0) == 0) {
      out.emplace_back(e.path().string(), target.string());
    }
  }
  return out;
}

class HostileE2eTest : public ::testing::Test {
 protected:
  void StartAll(json extra = {}, std::vector<std::string> main_cf = {}, int save_sleep_ms = 0) {
    PhpFpm::Options o;
    o.post_max_size = "64M";
    o.env["SAVE_SLEEP_MS"] = std::to_string(save_sleep_ms);
    o.extra_pool_lines = {"php_admin_value[max_input_vars] = 50000"};
    php_ = std::make_unique<PhpFpm>(o);
    const std::string validate = php_->AddScript("validate.php", "<?php echo \"PASS\\n\";");
    const std::string save = php_->AddScript("save.php", kRecordingSave);
    ASSERT_TRUE(php_->Start());
    spool_ = tmp_.Mkdir("spool", 0700);
    // A daemon that drops to nobody needs its spool to be nobody's (0700 stays private).
    if (extra.is_object() && extra.value("user", "") == "nobody" &&
        chown(spool_.c_str(), 65534, 65534) != 0) {
      FAIL() << "chown " << spool_;
    }
    json config = {{"fcgi_connection_type", php_->connection_type()},
                   {"fcgi_connection_address", php_->address()},
                   {"fcgi_script_filename_validate", validate},
                   {"fcgi_script_filename_save", save},
                   {"spool_directory", spool_},
                   {"spool_threshold", 0},
                   {"validate_timeout", 10},
                   {"save_timeout", 60},
                   {"log_level", "debug"}};
    for (auto& [k, v] : extra.items()) config[k] = v;
    daemon_ = std::make_unique<MilterDaemon>(config);
    ASSERT_TRUE(daemon_->Start());
    Postfix::Options po;
    po.milters = daemon_->postfix_milters();
    po.extra_main_cf = std::move(main_cf);
    postfix_ = std::make_unique<Postfix>(po);
    ASSERT_TRUE(postfix_->Start());
  }

  std::vector<Saved> ReadSaved() const {
    std::vector<std::string> names;
    for (const auto& e : std::filesystem::directory_iterator(php_->data_dir())) {
      if (e.path().extension() == ".json") names.push_back(e.path().stem().string());
    }
    std::sort(names.begin(), names.end());
    std::vector<Saved> out;
    for (const auto& n : names) {
      Saved s;
      json j = json::parse(testing_support::ReadFile(php_->data_dir() + "/" + n + ".json"));
      for (auto& [k, v] : j.items()) {
        if (k == "_rcpt_array") {
          s.rcpt_array = v.get<int>();
        } else {
          s.fields[k] = Base64Decode(v.get<std::string>());
        }
      }
      s.body = testing_support::ReadFile(php_->data_dir() + "/" + n + ".body");
      out.push_back(std::move(s));
    }
    return out;
  }

  // Every line the daemon wrote to stderr starts with its prefix: no input split a line.
  ::testing::AssertionResult LogLinesIntact() const {
    std::istringstream in(testing_support::ReadFile(daemon_->process().stderr_path()));
    std::string line;
    int n = 0;
    while (std::getline(in, line)) {
      n++;
      if (line.rfind("fcgi-milter: ", 0) != 0) {
        return ::testing::AssertionFailure()
               << "log line " << n << " is broken: \"" << line << "\"";
      }
    }
    return ::testing::AssertionSuccess() << n << " lines";
  }

  std::string Logs() const {
    return "\n--- daemon ---\n" + testing_support::Tail(daemon_ ? daemon_->log() : "") +
           "\n--- postfix ---\n" + testing_support::Tail(postfix_ ? postfix_->maillog() : "");
  }

  testing_support::TempDir tmp_;
  std::string spool_;
  std::unique_ptr<PhpFpm> php_;
  std::unique_ptr<MilterDaemon> daemon_;
  std::unique_ptr<Postfix> postfix_;
};

TEST_F(HostileE2eTest, ControlCharactersArriveAsDataAndNeverSplitADaemonLogLine) {
  StartAll();
  SmtpClient smtp;
  ASSERT_EQ(smtp.Connect(postfix_->port()).code, 220);
  // HELO with a control character and a quoted local part with a tab and a quoted quote: what
  // SMTP lets through (CR and LF end the command line, so they can only come from headers).
  ASSERT_EQ(smtp.Command("EHLO bad\x01helo").code, 250);
  ASSERT_EQ(smtp.Command("MAIL FROM:<\"we\\\"ird\\\tsender\"@client.test>").code, 250) << Logs();
  const auto rcpt = smtp.Command("RCPT TO:<\"x\\\ty z\"@example.test>");
  ASSERT_EQ(rcpt.code, 250) << rcpt << Logs();
  // Encoded words decode to CR, LF and NUL; a bare CR in a header value.
  const std::string evil = "line1\r\nfcgi-milter: forged\nX\0Y\rZ";
  const std::string message =
      "From: x@client.test\n"
      "To: y@example.test\n"
      "Subject: =?UTF-8?B?" +
      Base64Encode(std::string(evil.data(), evil.size())) +
      "?=\n"
      "X-Raw: value\rwith bare CR\n"
      "\nbody\n";
  auto data = smtp.SendData(message);
  ASSERT_EQ(data.code, 250) << data << Logs();
  smtp.Quit();
  auto saved = ReadSaved();
  ASSERT_EQ(saved.size(), 1u) << Logs();
  EXPECT_EQ(saved[0].fields["helo"], "bad\x01helo");
  EXPECT_EQ(saved[0].fields["mail_from"], "\"we\\\"ird\\\tsender\"@client.test");
  EXPECT_EQ(saved[0].fields["rcpt_to_0"], "\"x\\\ty z\"@example.test");
  // The decoded subject carries the control characters as data (or drops them); either way the
  // forged line must not become a log line of its own.
  EXPECT_NE(saved[0].fields["subject"].find("forged"), std::string::npos)
      << saved[0].fields["subject"];
  EXPECT_TRUE(LogLinesIntact()) << Logs();
}

TEST_F(HostileE2eTest, HugeHeaderEmptyBodyAndHeaderlessMessagesAreSavedByteExact) {
  StartAll();
  const std::string huge = "X-Huge: " + std::string(50 * 1024, 'h') + "\n\nbody\n";
  const std::string empty_body = "From: a@client.test\nSubject: empty\n\n";
  const std::string headerless = "\njust a body, no header at all\n";
  for (const auto& m : {huge, empty_body, headerless}) {
    auto r = testing_support::SendMail(postfix_->port(), "a@client.test", {"u@example.test"}, m);
    EXPECT_TRUE(r.accepted()) << r << Logs();
  }
  auto saved = ReadSaved();
  ASSERT_EQ(saved.size(), 3u) << Logs();
  // Postfix may add headers (Received is not, Message-ID/Date/From may be); what the client sent
  // must be in the body as sent.
  EXPECT_NE(saved[0].body.find(std::string(50 * 1024, 'h')), std::string::npos);
  // Postfix appends Message-Id and Date; the body stays empty.
  EXPECT_EQ(saved[1].body.rfind("From: a@client.test\nSubject: empty\n", 0), 0u) << saved[1].body;
  const size_t end_of_headers = saved[1].body.find("\n\n");
  EXPECT_TRUE(end_of_headers == std::string::npos || end_of_headers + 2 == saved[1].body.size())
      << testing_support::Tail(saved[1].body, 300);
  EXPECT_NE(saved[2].body.find("just a body, no header at all\n"), std::string::npos);
  EXPECT_TRUE(LogLinesIntact());
}

TEST_F(HostileE2eTest, TenThousandRecipientsInOneTransactionAllReachTheSaveForm) {
  const int n = std::getenv("FCGI_MILTER_HOSTILE_RCPTS")
                    ? std::atoi(std::getenv("FCGI_MILTER_HOSTILE_RCPTS"))
                    : 10000;
  // The pool's max_input_vars is 50000, and the daemon is told so (php_max_input_vars): with
  // both raised together, one transaction carries every recipient.
  StartAll({{"php_max_input_vars", 50000}},
           {"smtpd_recipient_limit = " + std::to_string(n + 10),
            "smtpd_recipient_overshoot_limit = " + std::to_string(n + 10)});
  SmtpClient smtp;
  ASSERT_EQ(smtp.Connect(postfix_->port()).code, 220);
  ASSERT_EQ(smtp.Command("EHLO many.test").code, 250);
  ASSERT_EQ(smtp.Command("MAIL FROM:<a@client.test>").code, 250);
  const auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < n; ++i) {
    auto r = smtp.Command("RCPT TO:<r" + std::to_string(i) + "@example.test>");
    ASSERT_EQ(r.code, 250) << "recipient " << i << ": " << r << Logs();
  }
  const auto t1 = std::chrono::steady_clock::now();
  auto data = smtp.SendData("Subject: many\n\nhello\n");
  ASSERT_EQ(data.code, 250) << data << Logs();
  smtp.Quit();
  std::printf("[ FIGURES  ] %d recipients: RCPT phase %.1f s, save %.1f s\n", n,
              std::chrono::duration<double>(t1 - t0).count(),
              std::chrono::duration<double>(std::chrono::steady_clock::now() - t1).count());
  auto saved = ReadSaved();
  ASSERT_EQ(saved.size(), 1u);
  EXPECT_EQ(saved[0].fields["rcpt_count"], std::to_string(n));
  EXPECT_EQ(saved[0].rcpt_array, n);
  EXPECT_EQ(saved[0].fields["rcpt_to_0"], "r0@example.test");
  EXPECT_EQ(saved[0].fields["rcpt_to_" + std::to_string(n - 1)],
            "r" + std::to_string(n - 1) + "@example.test");
}

TEST_F(HostileE2eTest, ClientsHangingUpAtEveryStageLeaveNoSpillFileFdOrThread) {
  StartAll();
  const pid_t pid = daemon_->process().pid();
  // One full message first so lazily created things (connections to php-fpm, threads) exist.
  auto warm = testing_support::SendMail(postfix_->port(), "a@client.test", {"u@example.test"},
                                        "Subject: warm\n\nwarm\n");
  ASSERT_TRUE(warm.accepted()) << warm << Logs();
  std::this_thread::sleep_for(500ms);
  const int base_fds = CountFds(pid);
  const int base_threads = CountThreads(pid);

  const std::string big(256 * 1024, 'b');
  for (int round = 0; round < 3; ++round) {
    for (int stage = 0; stage < 5; ++stage) {
      RawSmtp s(postfix_->port());
      s.Send("EHLO drop.test\r\n");
      s.Send("MAIL FROM:<a@client.test>\r\n");
      if (stage == 0) continue;  // after MAIL
      s.Send("RCPT TO:<u@example.test>\r\n");
      if (stage == 1) continue;  // after RCPT
      s.Send("DATA\r\n");
      if (stage == 2) continue;  // after DATA's 354
      s.Send("Subject: cut\r\nX-A: b\r\n", false);
      if (stage == 3) {  // inside the header section
        std::this_thread::sleep_for(100ms);
        continue;
      }
      // After the headers, mid-body. Postfix hands the message to the milter only once DATA is
      // complete, so this drop reaches the daemon as an abort after RCPT; the spill-file check
      // below still pins that nothing is left. (Spill files in flight: the nobody test.)
      s.Send("\r\n" + big, false);
      std::this_thread::sleep_for(100ms);
    }
  }
  auto after = testing_support::SendMail(postfix_->port(), "a@client.test", {"u@example.test"},
                                         "Subject: after\n\nafter\n");
  EXPECT_TRUE(after.accepted()) << after << Logs();
  const bool settled = testing_support::WaitUntil(
      [&] {
        return FdsInto(pid, spool_).empty() && CountFds(pid) <= base_fds &&
               CountThreads(pid) <= base_threads;
      },
      10s);
  std::string fds;
  for (const auto& [fd, target] : FdsInto(pid, spool_)) fds += fd + " -> " + target + "\n";
  EXPECT_TRUE(settled) << "fds " << base_fds << " -> " << CountFds(pid) << ", threads "
                       << base_threads << " -> " << CountThreads(pid) << "\n"
                       << fds << Logs();
  EXPECT_TRUE(std::filesystem::is_empty(spool_)) << "files left in " << spool_;
  EXPECT_EQ(ReadSaved().size(), 2u);
  EXPECT_TRUE(LogLinesIntact());
}

TEST_F(HostileE2eTest, AsNobodyTheSocketAndSpillFilesAreNotWorldAccessible) {
  const std::string sock_dir = tmp_.Mkdir("sock", 0755);
  StartAll({{"user", "nobody"},
            {"group", "nogroup"},
            {"milter_socket", "unix:" + sock_dir + "/fcgi-milter.sock"},
            {"milter_socket_group", "postfix"}},
           {}, 2000);
  struct stat st {};
  ASSERT_EQ(stat((sock_dir + "/fcgi-milter.sock").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07, 0u) << std::oct << (st.st_mode & 0777);

  const pid_t pid = daemon_->process().pid();
  testing_support::MailResult r;
  std::thread sender([&] {
    r = testing_support::SendMail(postfix_->port(), "a@client.test", {"u@example.test"},
                                  "Subject: big\n\n" + std::string(2 * 1024 * 1024, 'x') + "\n");
  });
  // The save script sleeps 2 s with the spilled message open.
  std::vector<std::pair<std::string, std::string>> spills;
  testing_support::WaitUntil(
      [&] {
        spills = FdsInto(pid, spool_);
        return !spills.empty();
      },
      10s);
  ASSERT_FALSE(spills.empty()) << Logs();
  for (const auto& [fd, target] : spills) {
    struct stat fst {};
    ASSERT_EQ(stat(fd.c_str(), &fst), 0) << fd;
    EXPECT_EQ(fst.st_mode & 077, 0u) << target << " mode " << std::oct << (fst.st_mode & 0777);
    EXPECT_EQ(fst.st_uid, 65534u) << target;
    EXPECT_EQ(fst.st_nlink, 0u) << target << " has a name";
  }
  sender.join();
  EXPECT_TRUE(r.accepted()) << r << Logs();
}

}  // namespace
