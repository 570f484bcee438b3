#include "config/network.h"

#include <arpa/inet.h>
#include <sys/socket.h>

#include <cstring>

namespace config {
namespace {

// Text to (family, 16 bytes); IPv4-mapped IPv6 addresses count as IPv4.
bool ToBytes(const std::string& text, int* family, std::array<uint8_t, 16>* bytes) {
  bytes->fill(0);
  if (inet_pton(AF_INET, text.c_str(), bytes->data()) == 1) {
    *family = AF_INET;
    return true;
  }
  if (inet_pton(AF_INET6, text.c_str(), bytes->data()) != 1) return false;
  static const uint8_t kMapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
  if (std::memcmp(bytes->data(), kMapped, 12) == 0) {
    std::memmove(bytes->data(), bytes->data() + 12, 4);
    std::memset(bytes->data() + 4, 0, 12);
    *family = AF_INET;
    return true;
  }
  *family = AF_INET6;
  return true;
}

}  // namespace

bool NetworkList::Parse(const std::vector<std::string>& entries, std::string* bad) {
  networks_.clear();
  entries_.clear();
  for (const std::string& entry : entries) {
    const size_t slash = entry.find('/');
    Network n{};
    if (!ToBytes(entry.substr(0, slash), &n.family, &n.bytes)) {
      *bad = entry;
      return false;
    }
    const int max = n.family == AF_INET ? 32 : 128;
    n.prefix = max;
    if (slash != std::string::npos) {
      const std::string bits = entry.substr(slash + 1);
      if (bits.empty() || bits.size() > 3 ||
          bits.find_first_not_of("0123456789") != std::string::npos || std::stoi(bits) > max) {
        *bad = entry;
        return false;
      }
      n.prefix = std::stoi(bits);
    }
    networks_.push_back(n);
  }
  entries_ = entries;
  return true;
}

bool NetworkList::Contains(const std::string& address) const {
  int family = 0;
  std::array<uint8_t, 16> bytes{};
  if (!ToBytes(address, &family, &bytes)) return false;
  for (const Network& n : networks_) {
    if (n.family != family) continue;
    const int full = n.prefix / 8;
    const int rest = n.prefix % 8;
    if (std::memcmp(n.bytes.data(), bytes.data(), static_cast<size_t>(full)) != 0) continue;
    if (rest != 0) {
      const auto mask = static_cast<uint8_t>(0xff << (8 - rest));
      if ((n.bytes[static_cast<size_t>(full)] & mask) !=
          (bytes[static_cast<size_t>(full)] & mask)) {
        continue;
      }
    }
    return true;
  }
  return false;
}

}  // namespace config
