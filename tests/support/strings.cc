// Text assertions.
// Thread-safety: see strings.h.
#include "tests/support/strings.h"

#include "tests/support/temp_dir.h"

namespace testing_support {

::testing::AssertionResult Contains(const std::string& text, const std::string& needle) {
  if (text.find(needle) != std::string::npos) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << "expected to find \"" << needle << "\" in:\n"
                                       << Tail(text);
}

}  // namespace testing_support
