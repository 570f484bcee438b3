// SHA-256 through OpenSSL's EVP; see digest.h.
#include "milter/mail/digest.h"

#include <openssl/evp.h>

#include <stdexcept>

namespace mail {

struct Sha256::Context {
  EVP_MD_CTX* ctx = nullptr;
  ~Context() { EVP_MD_CTX_free(ctx); }
};

namespace {

// EVP fails only without memory or with a broken library: nothing a message could cause.
void Check(int ok, const char* what) {
  if (ok != 1) throw std::runtime_error(std::string("OpenSSL SHA-256: ") + what + " failed");
}

}  // namespace

Sha256::Sha256() : context_(std::make_unique<Context>()) {
  context_->ctx = EVP_MD_CTX_new();
  if (context_->ctx == nullptr) throw std::runtime_error("OpenSSL SHA-256: no context");
  Check(EVP_DigestInit_ex(context_->ctx, EVP_sha256(), nullptr), "init");
}

Sha256::~Sha256() = default;

void Sha256::Update(std::string_view bytes) {
  if (!bytes.empty()) Check(EVP_DigestUpdate(context_->ctx, bytes.data(), bytes.size()), "update");
}

Sha256::Digest Sha256::Finish() {
  Digest out{};
  unsigned int len = 0;
  Check(EVP_DigestFinal_ex(context_->ctx, out.data(), &len), "final");
  Check(EVP_DigestInit_ex(context_->ctx, EVP_sha256(), nullptr), "init");
  return out;
}

std::string Sha256::Hex(const Digest& digest) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  out.reserve(digest.size() * 2);
  for (const uint8_t b : digest) {
    out.push_back(kHex[b >> 4]);
    out.push_back(kHex[b & 0xF]);
  }
  return out;
}

}  // namespace mail
