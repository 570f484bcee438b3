// SHA-256 over a stream of bytes, through OpenSSL's EVP interface (a well-kept library rather
// than a hand-written hash), for the idempotency key a save carries.
// Thread-safety: one Sha256 per stream, used by one thread at a time.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

namespace mail {

class Sha256 {
 public:
  using Digest = std::array<uint8_t, 32>;

  Sha256();
  ~Sha256();
  Sha256(const Sha256&) = delete;
  Sha256& operator=(const Sha256&) = delete;

  void Update(std::string_view bytes);
  // The digest of everything given so far; the object starts over afterwards.
  Digest Finish();

  // Lower-case hex of a digest (64 characters).
  static std::string Hex(const Digest& digest);

 private:
  struct Context;
  std::unique_ptr<Context> context_;
};

}  // namespace mail
