// Lists of client networks (CIDR) for policy skips, matched against the SMTP client's address.
// Thread-safety: immutable after Parse; Contains is const and reentrant.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <vector>

namespace config {

class NetworkList {
 public:
  // Entries like "192.0.2.0/24", "2001:db8::/32", "127.0.0.1". Fails (false, *bad = the entry)
  // on anything else.
  bool Parse(const std::vector<std::string>& entries, std::string* bad);
  // address in text form as the MTA gives it ("192.0.2.7", "2001:db8::1", "::ffff:192.0.2.7").
  bool Contains(const std::string& address) const;
  bool empty() const { return networks_.empty(); }
  // The entries as they were given, for logs and `-t`.
  const std::vector<std::string>& entries() const { return entries_; }

 private:
  struct Network {
    int family;
    std::array<uint8_t, 16> bytes;
    int prefix;
  };
  std::vector<Network> networks_;
  std::vector<std::string> entries_;
};

}  // namespace config
