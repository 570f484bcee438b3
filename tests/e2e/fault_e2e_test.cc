// Fault injection end to end: a sending Postfix relays N messages (FCGI_MILTER_FAULT_MESSAGES,
// default 2000) to a receiving Postfix that runs fcgi-milter + php-fpm, while the test breaks the
// backend in every way it can (php-fpm SIGKILLed, scripts that hang, die, lie or flood, a FastCGI
// server speaking broken protocol, a full spool, reloads). Afterwards every message must have been
// saved, none bounced, and duplicates only where a fault struck after the script had saved.
// Thread-safety: one test thread plus injector threads that share nothing but atomics.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <signal.h>
#include <sys/mount.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <thread>

#include "tests/support/fake_fcgi.h"
#include "tests/support/milter_daemon.h"
#include "tests/support/net.h"
#include "tests/support/php_fpm.h"
#include "tests/support/postfix.h"
#include "tests/support/smtp_client.h"
#include "tests/support/temp_dir.h"

namespace {

using nlohmann::json;
using testing_support::FakeFcgi;
using testing_support::MilterDaemon;
using testing_support::PhpFpm;
using testing_support::Postfix;
using testing_support::SmtpClient;
using namespace std::chrono_literals;

constexpr int kSaveTimeout = 2;

// Every script that stores a message appends "<kind> <seq> <queue id> <unix time>" to saves.log;
// every fault script appends "<kind> <seq>" to hits.log when it is reached.
const char* kPreamble = R"php(<?php
$dir = getenv('DUMP_DIR');
$seq = preg_match('/^X-Seq: (\d+)/m', $_POST['body'] ?? '', $m) ? $m[1] : '-';
function record($kind) {
  global $dir, $seq;
  file_put_contents("$dir/saves.log", sprintf("%s %s %s %.3f\n", $kind, $seq,
                    $_POST['queue_id'] ?? '-', microtime(true)), FILE_APPEND | LOCK_EX);
}
function hit($kind) {
  global $dir, $seq;
  file_put_contents("$dir/hits.log", "$kind $seq\n", FILE_APPEND | LOCK_EX);
}
)php";

std::map<std::string, std::string> FaultScripts() {
  return {
      {"save.php",
       "if ($seq === '-') { echo \"TEMPFAIL 451 4.3.0 no X-Seq\\n\"; exit; }\n"
       "record('ok');\necho \"SAVED\\n\";\n"},
      {"hang.php",
       "hit('hang');\nsleep(" + std::to_string(kSaveTimeout + 2) + ");\necho 'SAVED';\n"},
      // Even: stored, then killed mid-reply (a duplicate the sender cannot avoid). Odd: partial
      // output and exit() before storing.
      {"die.php",
       "hit('die');\nif ((int)$seq % 2 == 0) { record('died');\n"
       "  echo 'SAV'; flush(); posix_kill(getmypid(), 9); }\n"
       "echo 'SAV'; flush(); exit(1);\n"},
      {"status500.php",
       "hit('status500');\nheader('Status: 500 Internal Server Error');\n"
       "echo \"SAVED\\n\";\n"},
      {"garbage.php",
       "hit('garbage');\necho \"\\0\\x01\\xffgarbage\\r\\n\\r\\nSAVED?\", "
       "random_bytes(300);\n"},
      {"huge.php", "hit('huge');\necho \"SAVED\\n\";\necho str_repeat(\"x\", 2 * 1024 * 1024);\n"},
  };
}

std::string Message(int seq) {
  return "From: sender@client.test\nTo: user@example.test\nSubject: fault " + std::to_string(seq) +
         "\nMessage-ID: <seq-" + std::to_string(seq) +
         "@fault.test>\nX-Seq: " + std::to_string(seq) + "\n\nbody of message " +
         std::to_string(seq) + "\n";
}

int CountOf(const std::string& text, const std::string& needle) {
  int n = 0;
  for (size_t at = text.find(needle); at != std::string::npos; at = text.find(needle, at + 1)) n++;
  return n;
}

class FaultE2eTest : public ::testing::Test {
 protected:
  void TearDown() override {
    if (!tmpfs_.empty()) umount2(tmpfs_.c_str(), MNT_DETACH);
  }

  json Config(const std::string& save_script) const {
    json c = base_;
    c["fcgi_script_filename_save"] = php_->scripts_dir() + "/" + save_script;
    return c;
  }

  // Rewrites the config, sends SIGUSR1 and waits for the daemon to log that it reloaded.
  ::testing::AssertionResult Reload(const json& config) {
    // The whole stderr file: MilterDaemon::log() is a tail, in which a count can stand still.
    const auto reloads = [&] {
      return CountOf(testing_support::ReadFile(daemon_->process().stderr_path()), "reloaded ");
    };
    const int before = reloads();
    if (!daemon_->WriteConfig(config)) return ::testing::AssertionFailure() << "write config";
    if (!daemon_->Signal(SIGUSR1)) return ::testing::AssertionFailure() << "daemon gone";
    if (!testing_support::WaitUntil([&] { return reloads() > before; }, 5s)) {
      return ::testing::AssertionFailure() << "no reload logged\n"
                                           << testing_support::Tail(daemon_->log(), 2000);
    }
    reloads_++;
    return ::testing::AssertionSuccess();
  }

  // SIGKILL to php-fpm's whole process group (master and workers), then a fresh start.
  ::testing::AssertionResult KillAndRestartPhp(std::chrono::milliseconds down) {
    const std::string pid_text = testing_support::ReadFile(php_->dir() + "/php-fpm.pid");
    const int pid = std::atoi(pid_text.c_str());
    // Only ever a php-fpm master leading its own group: a half-written pid file must not make
    // this kill somebody else's process group.
    if (pid <= 0 || getpgid(pid) != pid ||
        testing_support::ReadFile("/proc/" + std::to_string(pid) + "/cmdline").find("php-fpm") ==
            std::string::npos) {
      return ::testing::AssertionFailure() << "no php-fpm master at pid \"" << pid_text << "\"";
    }
    kill_times_.push_back(
        std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count());
    kill(-pid, SIGKILL);
    testing_support::WaitUntil([&] { return !php_->Running(); }, 5s);
    std::this_thread::sleep_for(down);
    return php_->Start();
  }

  // The daemon on Config("save.php"), a receiving Postfix in front of it, and a sending Postfix
  // that relays everything to the receiver and retries deferred mail every 1-2 s.
  void StartRelay() {
    daemon_ = std::make_unique<MilterDaemon>(Config("save.php"));
    ASSERT_TRUE(daemon_->Start());
    base_["milter_socket"] = daemon_->milter_socket();  // or a reload logs a restart-only change
    Postfix::Options ro;
    ro.milters = daemon_->postfix_milters();
    receiver_ = std::make_unique<Postfix>(ro);
    ASSERT_TRUE(receiver_->Start());
    Postfix::Options so;
    so.extra_main_cf = {"myhostname = sender.example.test",
                        "relayhost = [127.0.0.1]:" + std::to_string(receiver_->port()),
                        "default_transport = smtp",
                        "relay_transport = smtp",
                        "minimal_backoff_time = 1s",
                        "maximal_backoff_time = 2s",
                        "queue_run_delay = 1s",
                        "smtp_connect_timeout = 5s",
                        "smtp_tls_security_level = none",
                        "default_destination_concurrency_limit = 10"};
    sender_ = std::make_unique<Postfix>(so);
    ASSERT_TRUE(sender_->Start());
  }

  // Threads that hand messages 0..total-1 (Message(seq)) to the sending Postfix from `sessions`
  // SMTP sessions, paced evenly over `window`; they give up a minute after it.
  std::vector<std::thread> Inject(int total, int sessions, std::chrono::milliseconds window,
                                  std::atomic<int>* injected, std::atomic<int>* errors) {
    std::vector<std::thread> threads;
    const auto start = std::chrono::steady_clock::now();
    for (int t = 0; t < sessions; ++t) {
      threads.emplace_back([=, this] {
        SmtpClient smtp(10s);
        bool up = false;
        for (int seq = t; seq < total; seq += sessions) {
          std::this_thread::sleep_until(start + window * seq / total);
          if (std::chrono::steady_clock::now() > start + window + 60s) break;  // give up
          for (int attempt = 0; attempt < 3; ++attempt) {
            if (!up) {
              up = smtp.Connect(sender_->port()).code == 220 &&
                   smtp.Command("EHLO injector.test").code == 250;
              if (!up) continue;
            }
            if (smtp.Command("MAIL FROM:<sender@client.test>").code == 250 &&
                smtp.Command("RCPT TO:<user@example.test>").code == 250 &&
                smtp.SendData(Message(seq)).code == 250) {
              (*injected)++;
              break;
            }
            (*errors)++;
            smtp.Close();
            up = false;
          }
        }
        if (up) smtp.Quit();
      });
    }
    return threads;
  }

  // Waits for both queues to empty. A message deferred while its delivery agent still held the
  // queue file is put back into the sender's incoming queue ("skipped, still being delivered"),
  // which qmgr scans only when new mail arrives; with no traffic left, `postqueue -f` every few
  // seconds stands in for it.
  void Drain(std::chrono::seconds limit) {
    const auto deadline = std::chrono::steady_clock::now() + limit;
    while (!sender_->QueueIsEmpty() && std::chrono::steady_clock::now() < deadline) {
      testing_support::RunCommand({"/usr/sbin/postqueue", "-c", sender_->config_dir(), "-f"});
      for (int i = 0; i < 30 && !sender_->QueueIsEmpty(); ++i) std::this_thread::sleep_for(100ms);
    }
    EXPECT_TRUE(sender_->WaitForQueueEmpty(std::chrono::seconds(1))) << Logs();
    EXPECT_TRUE(receiver_->WaitForQueueEmpty(std::chrono::seconds(30))) << Logs();
  }

  std::string Logs() const {
    return "\n--- daemon ---\n" + testing_support::Tail(daemon_->log()) +
           "\n--- receiving postfix ---\n" + testing_support::Tail(receiver_->maillog()) +
           "\n--- sending postfix ---\n" + testing_support::Tail(sender_->maillog());
  }

  testing_support::TempDir tmp_;
  std::unique_ptr<PhpFpm> php_;
  std::unique_ptr<MilterDaemon> daemon_;
  std::unique_ptr<Postfix> receiver_;
  std::unique_ptr<Postfix> sender_;
  json base_;
  std::string tmpfs_;
  std::vector<double> kill_times_;
  int reloads_ = 0;
};

TEST_F(FaultE2eTest, RelayedMailIsSavedThroughEveryBackendFaultWithoutLossOrBounce) {
  int total = 2000;
  if (const char* env = std::getenv("FCGI_MILTER_FAULT_MESSAGES")) total = std::atoi(env);
  ASSERT_GT(total, 0);
  const auto started = std::chrono::steady_clock::now();

  PhpFpm::Options po;
  po.max_children = 6;
  po.request_terminate_timeout_seconds = 0;
  php_ = std::make_unique<PhpFpm>(po);
  php_->AddScript("validate.php", "<?php echo \"PASS\\n\";");
  for (const auto& [name, body] : FaultScripts()) php_->AddScript(name, kPreamble + body);
  ASSERT_TRUE(php_->Start());
  const std::string saves_log = php_->data_dir() + "/saves.log";
  const std::string hits_log = php_->data_dir() + "/hits.log";

  base_ = {{"fcgi_connection_type", "unix"},
           {"fcgi_connection_address", php_->address()},
           {"fcgi_script_filename_validate", php_->scripts_dir() + "/validate.php"},
           {"spool_directory", tmp_.Mkdir("spool", 0700)},
           {"fcgi_connect_timeout", 1},
           {"fcgi_max_connections", 4},
           {"validate_timeout", kSaveTimeout},
           {"save_timeout", kSaveTimeout},
           {"max_reply_size", 65536},
           {"shutdown_timeout", 5},
           {"log_level", "info"}};
  ASSERT_NO_FATAL_FAILURE(StartRelay());

  // Inject all messages into the sending Postfix from 4 sessions.
  std::atomic<int> injected{0};
  std::atomic<int> inject_errors{0};
  // Paced so that mail flows during every fault below (they take about 45 s).
  std::vector<std::thread> injectors = Inject(total, 4, 48s, &injected, &inject_errors);

  // The faults, one after the other, each for a while, with normal service in between.
  // Progress goes to stderr (unbuffered) so that a run cut short by a timeout shows where it was.
  const auto progress = [&](const std::string& what) {
    std::fprintf(stderr, "[ fault    ] %5.1f s: %s (%d injected)\n",
                 std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count(),
                 what.c_str(), injected.load());
  };
  std::map<std::string, int> injected_faults;
  const auto normal = [&](std::chrono::milliseconds d) {
    ASSERT_TRUE(Reload(Config("save.php"))) << Logs();
    std::this_thread::sleep_for(d);
  };
  std::this_thread::sleep_for(2s);
  for (int i = 0; i < 3; ++i) {
    progress("php-fpm SIGKILL");
    ASSERT_TRUE(KillAndRestartPhp(800ms)) << Logs();
    injected_faults["php-fpm SIGKILL+restart"]++;
    std::this_thread::sleep_for(1500ms);
  }
  for (const std::string script :
       {"hang.php", "die.php", "status500.php", "garbage.php", "huge.php"}) {
    progress(std::string("script ") + script);
    ASSERT_TRUE(Reload(Config(script))) << Logs();
    injected_faults["script " + script]++;
    std::this_thread::sleep_for(script == "hang.php" ? 5s : script == "die.php" ? 4s : 3s);
    // Hung workers sleep kSaveTimeout + 2 s past their request: let them finish before the next
    // fault, or it meets a busy pool instead of its script.
    normal(script == "hang.php" ? 4500ms : 1500ms);
  }

  FakeFcgi fake(tmp_.Path("fake-fcgi.sock"));
  ASSERT_TRUE(fake.Start());
  json broken = Config("save.php");
  broken["fcgi_connection_address"] = fake.socket_path();
  progress("broken FastCGI server");
  ASSERT_TRUE(Reload(broken)) << Logs();
  injected_faults["broken FastCGI server"]++;
  std::this_thread::sleep_for(4s);
  normal(500ms);
  fake.Stop();
  std::this_thread::sleep_for(1s);

  // A full spool: every message spills (threshold 0) into a 64 KiB tmpfs filled to the brim.
  tmpfs_ = tmp_.Mkdir("tiny-spool", 0700);
  ASSERT_EQ(mount("tmpfs", tmpfs_.c_str(), "tmpfs", 0, "size=64k,mode=0700"), 0)
      << "mount tmpfs: " << std::strerror(errno);
  {
    std::ofstream fill(tmpfs_ + "/filler", std::ios::binary);
    const std::string block(4096, 'f');
    for (int i = 0; i < 64 && fill.write(block.data(), block.size()); ++i) fill.flush();
  }
  json full = Config("save.php");
  full["spool_directory"] = tmpfs_;
  full["spool_threshold"] = 0;
  progress("spool full");
  ASSERT_TRUE(Reload(full)) << Logs();
  injected_faults["spool full"]++;
  std::this_thread::sleep_for(3s);
  normal(500ms);

  // Reloads in quick succession while mail flows.
  for (int i = 0; i < 4; ++i) {
    json c = Config("save.php");
    c["fcgi_max_connections"] = 2 + i % 3;
    ASSERT_TRUE(Reload(c)) << Logs();
    injected_faults["back-to-back reload"]++;
    std::this_thread::sleep_for(300ms);
  }
  normal(0ms);
  ASSERT_TRUE(KillAndRestartPhp(300ms)) << Logs();
  injected_faults["php-fpm SIGKILL+restart"]++;

  progress("faults done, joining the injectors");
  for (auto& t : injectors) t.join();
  progress("waiting for the queues to drain");
  const auto faults_done = std::chrono::steady_clock::now();
  ASSERT_EQ(injected.load(), total) << "injection errors: " << inject_errors << Logs();

  // Everything must drain: into the receiver (deferred mail is retried every 1-2 s) and out of it.
  Drain(180s);
  const auto drained = std::chrono::steady_clock::now();

  // Tally the saves.
  std::map<int, int> ok_saves;
  std::map<int, int> died_saves;
  std::map<int, double> first_ok_time;
  std::map<std::string, int> died_by_queue_id;
  {
    std::istringstream in(testing_support::ReadFile(saves_log));
    std::string kind, seq, qid;
    double when;
    while (in >> kind >> seq >> qid >> when) {
      if (seq == "-") continue;
      const int s = std::stoi(seq);
      if (kind == "ok") {
        if (ok_saves[s]++ == 0) first_ok_time[s] = when;
      } else if (kind == "died") {
        died_saves[s]++;
        died_by_queue_id[qid]++;
      }
    }
  }
  std::map<std::string, int> hits;
  {
    std::istringstream in(testing_support::ReadFile(hits_log));
    std::string kind, seq;
    while (in >> kind >> seq) hits[kind]++;
  }
  // Transactions the daemon failed although the script had stored the message (its deadline ran
  // out while php-fpm was still queueing the request behind hung workers, or the reply broke):
  // the sender retries, so these are duplicates a fault caused after the save.
  std::set<std::string> failed_queue_ids;
  {
    std::istringstream in(testing_support::ReadFile(daemon_->process().stderr_path()));
    std::string l;
    while (std::getline(in, l)) {
      const size_t colon = l.find(": client=");
      if (l.rfind("fcgi-milter: info: ", 0) == 0 && colon != std::string::npos &&
          l.find(" verdict=tempfail") != std::string::npos) {
        failed_queue_ids.insert(l.substr(19, colon - 19));
      }
    }
  }
  std::map<int, std::vector<std::string>> ok_queue_ids;
  {
    std::istringstream in(testing_support::ReadFile(saves_log));
    std::string kind, seq, qid;
    double when;
    while (in >> kind >> seq >> qid >> when) {
      if (kind == "ok" && seq != "-") ok_queue_ids[std::stoi(seq)].push_back(qid);
    }
  }
  int saved_then_failed = 0;
  for (const auto& [seq, qids] : ok_queue_ids) {
    for (const auto& q : qids) saved_then_failed += failed_queue_ids.count(q) ? 1 : 0;
  }
  int lost = 0, duplicated = 0, unexplained = 0;
  std::string lost_ids, unexplained_ids;
  for (int s = 0; s < total; ++s) {
    const int ok = ok_saves.count(s) ? ok_saves[s] : 0;
    const int died = died_saves.count(s) ? died_saves[s] : 0;
    if (ok == 0) {
      lost++;
      if (lost <= 20) lost_ids += " " + std::to_string(s);
      continue;
    }
    if (ok + died > 1) {
      duplicated++;
      // Explained: the die script stored it, or php-fpm was killed while it might have been
      // between storing and answering.
      bool explained = died > 0;
      for (const auto& q : ok_queue_ids[s]) explained = explained || failed_queue_ids.count(q);
      for (double k : kill_times_) {
        if (first_ok_time[s] > k - 3 && first_ok_time[s] < k + 1) explained = true;
      }
      if (!explained) {
        unexplained++;
        if (unexplained <= 5) {
          unexplained_ids += "\n" + std::to_string(s) + ":";
          std::istringstream in(testing_support::ReadFile(saves_log));
          std::string l;
          while (std::getline(in, l)) {
            if (l.find(" " + std::to_string(s) + " ") != std::string::npos) {
              unexplained_ids += "\n  " + l;
            }
          }
        }
      }
    }
  }
  // A save is never sent twice in one transaction (the caller marks it not idempotent): a
  // killed script must not have run twice under one queue id.
  int rerun_in_transaction = 0;
  for (const auto& [qid, n] : died_by_queue_id) rerun_in_transaction += n > 1 ? 1 : 0;
  const std::string sender_log = sender_->maillog();
  const int bounced = CountOf(sender_log, "status=bounced");
  const int said5 = CountOf(sender_log, "said: 5");
  const int deferred = CountOf(sender_log, "status=deferred");

  std::ostringstream fig;
  fig << "sent " << total << ", saved " << (total - lost) << ", duplicated " << duplicated
      << " (unexplained " << unexplained << "), lost " << lost << ", deferrals seen by the sender "
      << deferred << ", bounced " << bounced << ", reloads " << reloads_
      << ", killed saves re-run by the daemon in the same transaction " << rerun_in_transaction
      << ", saves the daemon then failed (deadline/broken reply) " << saved_then_failed << "\n";
  fig << "faults injected:";
  for (const auto& [k, v] : injected_faults) fig << " [" << k << "]=" << v;
  fig << "\nscript fault hits:";
  for (const auto& [k, v] : hits) fig << " " << k << "=" << v;
  fig << "\nbroken FastCGI connections: " << fake.connections();
  for (int f = 0; f < FakeFcgi::kFaultCount; ++f) {
    fig << " " << FakeFcgi::FaultName(static_cast<FakeFcgi::Fault>(f)) << "="
        << fake.served(static_cast<FakeFcgi::Fault>(f));
  }
  fig << "\ntimes: faults " << std::chrono::duration<double>(faults_done - started).count()
      << " s, drained after " << std::chrono::duration<double>(drained - faults_done).count()
      << " s more\n";
  std::printf("[ FIGURES  ] %s", fig.str().c_str());
  RecordProperty("figures", fig.str());

  EXPECT_EQ(lost, 0) << "first lost ids:" << lost_ids << "\n" << fig.str() << Logs();
  EXPECT_EQ(unexplained, 0) << "first unexplained duplicates:" << unexplained_ids << "\n"
                            << fig.str();
  EXPECT_EQ(bounced, 0) << fig.str() << Logs();
  EXPECT_EQ(said5, 0) << fig.str() << Logs();
  EXPECT_EQ(rerun_in_transaction, 0) << fig.str();
  // Every fault must really have been exercised, or the test proves nothing.
  for (const char* kind : {"hang", "die", "status500", "garbage", "huge"}) {
    EXPECT_GT(hits[kind], 0) << kind << " never reached\n" << fig.str();
  }
  EXPECT_GT(fake.connections(), 0) << fig.str();
  EXPECT_GT(deferred, 0) << "no fault caused a deferral\n" << fig.str();
  EXPECT_TRUE(daemon_->Running()) << Logs();
  // The daemon's log stays line-oriented and its own under all this.
  std::istringstream log(testing_support::ReadFile(daemon_->process().stderr_path()));
  int foreign = 0;
  std::string line, first_foreign;
  while (std::getline(log, line)) {
    if (line.rfind("fcgi-milter: ", 0) != 0 && foreign++ == 0) first_foreign = line;
  }
  EXPECT_EQ(foreign, 0) << "first: " << first_foreign;
}

}  // namespace

namespace {

// The shipped examples/save.php in raw mode, behind the same relaying Postfix, with the faults
// that store a message and then fail to say so in time: the worker is held past save_timeout
// after storing (a shutdown function that sleeps, and SIGSTOPped workers), or killed after the
// write. The daemon answers 4xx, the sender retries with a new transaction, and the idempotency
// key lets the example store each message exactly once: sent N, lost 0, stored twice 0.
TEST_F(FaultE2eTest, RawModeExampleStoresEveryRelayedMessageExactlyOnceThroughLateAnswers) {
  int total = 600;
  if (const char* env = std::getenv("FCGI_MILTER_FAULT_RAW_MESSAGES")) total = std::atoi(env);
  ASSERT_GT(total, 0);
  const auto started = std::chrono::steady_clock::now();

  PhpFpm::Options po;
  po.max_children = 6;
  po.request_terminate_timeout_seconds = 0;
  const std::string maildir = tmp_.Mkdir("Maildir", 0777);
  po.env["FCGI_MILTER_MAILDIR"] = maildir;
  php_ = std::make_unique<PhpFpm>(po);
  php_->CopyScript(std::string(FCGI_MILTER_SOURCE_DIR) + "/examples/save.php");
  const std::string hits = R"php(<?php
file_put_contents(getenv('DUMP_DIR') . '/hits.log', basename(__FILE__) . "\n", FILE_APPEND | LOCK_EX);
)php";
  // Stored, then the answer is held until after the daemon's deadline.
  php_->AddScript("late.php", hits + "register_shutdown_function(function () { sleep(" +
                                  std::to_string(kSaveTimeout + 1) +
                                  "); });\nrequire __DIR__ . '/save.php';\n");
  // Stored, then the worker dies before it answers.
  php_->AddScript("killed.php",
                  hits +
                      "register_shutdown_function(function () { posix_kill(getmypid(), 9); "
                      "});\nrequire __DIR__ . '/save.php';\n");
  ASSERT_TRUE(php_->Start());

  base_ = {{"fcgi_connection_type", "unix"},
           {"fcgi_connection_address", php_->address()},
           {"spool_directory", tmp_.Mkdir("spool", 0700)},
           {"fcgi_connect_timeout", 1},
           {"fcgi_max_connections", 4},
           {"save_timeout", kSaveTimeout},
           {"save_mode", "raw"},
           {"shutdown_timeout", 5},
           {"log_level", "info"}};
  ASSERT_NO_FATAL_FAILURE(StartRelay());
  std::atomic<int> injected{0};
  std::atomic<int> inject_errors{0};
  std::vector<std::thread> injectors = Inject(total, 3, 20s, &injected, &inject_errors);

  std::this_thread::sleep_for(2s);
  ASSERT_TRUE(Reload(Config("late.php"))) << Logs();
  std::this_thread::sleep_for(4s);
  ASSERT_TRUE(Reload(Config("save.php"))) << Logs();
  std::this_thread::sleep_for(kSaveTimeout * 1s + 1500ms);  // the held workers finish
  ASSERT_TRUE(Reload(Config("killed.php"))) << Logs();
  std::this_thread::sleep_for(3s);
  ASSERT_TRUE(Reload(Config("save.php"))) << Logs();
  std::this_thread::sleep_for(1s);
  // Workers frozen mid-request past the deadline, then thawed: they finish storing late.
  int frozen_rounds = 0;
  for (int round = 0; round < 3; ++round) {
    const int master = std::atoi(testing_support::ReadFile(php_->dir() + "/php-fpm.pid").c_str());
    std::vector<int> workers;
    for (const auto& e : std::filesystem::directory_iterator("/proc")) {
      const std::string name = e.path().filename();
      if (name.find_first_not_of("0123456789") != std::string::npos) continue;
      const std::string stat = testing_support::ReadFile("/proc/" + name + "/stat");
      const size_t close = stat.rfind(')');
      if (close == std::string::npos) continue;
      std::istringstream fields(stat.substr(close + 2));
      std::string state;
      int ppid = 0;
      fields >> state >> ppid;
      if (master > 0 && ppid == master) workers.push_back(std::stoi(name));
    }
    for (int w : workers) kill(w, SIGSTOP);
    frozen_rounds += workers.empty() ? 0 : 1;
    std::this_thread::sleep_for(kSaveTimeout * 1s + 1s);
    for (int w : workers) kill(w, SIGCONT);
    std::this_thread::sleep_for(1500ms);
  }
  ASSERT_TRUE(KillAndRestartPhp(500ms)) << Logs();
  for (auto& t : injectors) t.join();
  ASSERT_EQ(injected.load(), total) << Logs();

  Drain(120s);

  // Count the stored copies of each message by its X-Seq header.
  std::map<int, int> copies;
  for (const char* sub : {"/new", "/cur"}) {
    if (!std::filesystem::exists(maildir + sub)) continue;
    for (const auto& e : std::filesystem::directory_iterator(maildir + sub)) {
      const std::string text = testing_support::ReadFile(e.path());
      const size_t at = text.find("\nX-Seq: ");
      if (at != std::string::npos) copies[std::atoi(text.c_str() + at + 8)]++;
    }
  }
  int lost = 0, duplicated = 0;
  for (int s = 0; s < total; ++s) {
    if (copies[s] == 0) lost++;
    if (copies[s] > 1) duplicated++;
  }
  const std::string hit_text = testing_support::ReadFile(php_->data_dir() + "/hits.log");
  const int late_hits = CountOf(hit_text, "late.php");
  const int killed_hits = CountOf(hit_text, "killed.php");
  const std::string sender_log = sender_->maillog();
  const int deferred = CountOf(sender_log, "status=deferred");
  const std::string php_log = php_->error_log();
  const int retries_recognised = CountOf(php_log, "already stored");
  std::ostringstream fig;
  fig << "raw mode, example save.php: sent " << total << ", stored " << copies.size() << ", lost "
      << lost << ", stored twice " << duplicated << ", late answers " << late_hits
      << ", killed after the write " << killed_hits << ", frozen rounds " << frozen_rounds
      << ", deferrals seen by the sender " << deferred << ", retries answered SAVED without a "
      << "second copy " << retries_recognised << ", bounced "
      << CountOf(sender_log, "status=bounced") << ", time "
      << std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count()
      << " s\n";
  std::printf("[ FIGURES  ] %s", fig.str().c_str());
  RecordProperty("figures", fig.str());

  EXPECT_EQ(lost, 0) << fig.str() << Logs();
  EXPECT_EQ(duplicated, 0) << fig.str();
  EXPECT_EQ(CountOf(sender_log, "status=bounced"), 0) << fig.str();
  // The faults that make duplicates must really have struck, or this proves nothing.
  EXPECT_GT(late_hits, 0) << fig.str();
  EXPECT_GT(killed_hits, 0) << fig.str();
  EXPECT_GT(frozen_rounds, 0) << fig.str();
  EXPECT_GT(retries_recognised, 0) << "no retry of a stored message was seen\n" << fig.str();
}

}  // namespace
