// Route patterns; see route.h.
#include "milter/mail/route.h"

namespace mail {

std::string RecipientDomain(std::string_view address) {
  const size_t at = address.rfind('@');
  if (at == std::string_view::npos) return "";
  std::string domain(address.substr(at + 1));
  for (char& c : domain) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  return domain;
}

bool DomainMatches(std::string_view pattern, std::string_view domain) {
  if (domain.empty()) return false;
  if (pattern.substr(0, 2) == "*.") {
    const std::string_view suffix = pattern.substr(1);  // ".example.org"
    return domain.size() > suffix.size() && domain.substr(domain.size() - suffix.size()) == suffix;
  }
  return domain == pattern;
}

}  // namespace mail
