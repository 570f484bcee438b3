// SmtpSink: Postfix's smtp-sink on a free loopback port, writing every transaction it receives to
// a file of its own (the envelope as X-* lines, then the message): what an MTA relayed, for the
// tests that check edits the MTA applied. Needs root (it runs as nobody).
// Thread-safety: not thread-safe; the test thread owns it.
#pragma once

#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "tests/support/process.h"

namespace testing_support {

class SmtpSink {
 public:
  // Dumps go to `dir`, created world-writable for smtp-sink's user.
  explicit SmtpSink(std::string dir);

  // Starts smtp-sink and waits (5 s) until it accepts connections.
  [[nodiscard]] ::testing::AssertionResult Start();
  int port() const { return port_; }
  // main.cf lines that make a Postfix instance relay everything it accepts here.
  std::vector<std::string> RelayMainCf() const;
  // Every dump so far, in arrival order.
  std::vector<std::string> Files() const;
  // Forgets what was received so far.
  void Clear();

 private:
  std::string dir_;
  int port_ = 0;
  Process process_;
};

}  // namespace testing_support
