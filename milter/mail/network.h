// Lists of client networks (CIDR) for policy skips, matched against the SMTP client's address.
// Thread-safety: immutable after Parse; Contains is const and reentrant.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <vector>

namespace mail {

class NetworkList {
 public:
  // Entries like "192.0.2.0/24", "2001:db8::/32", "127.0.0.1". Fails (false, *bad = the entry)
  // on anything else.
  bool Parse(const std::vector<std::string>& entries, std::string* bad);
  // address in text form as the MTA gives it ("192.0.2.7", "2001:db8::1", "::ffff:192.0.2.7").
  bool Contains(const std::string& address) const;
  bool empty() const { return networks_.empty(); }

 private:
  struct Network {
    int family;
    std::array<uint8_t, 16> bytes;
    int prefix;
  };
  std::vector<Network> networks_;
};

}  // namespace mail
