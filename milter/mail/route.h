// Which recipients a route's domain pattern takes: "example.org" that domain, "*.example.org"
// its subdomains (not itself). Letter case does not matter.
// Thread-safety: pure functions.
#pragma once

#include <string>
#include <string_view>

namespace mail {

// The domain of an address (after its last '@'), lower-cased; "" when there is none.
std::string RecipientDomain(std::string_view address);

// Whether `domain` (lower-case) matches `pattern` (lower-case, as the config stores it).
bool DomainMatches(std::string_view pattern, std::string_view domain);

}  // namespace mail
