// Text assertions for tests that link only gtest (no gmock).
// Thread-safety: all functions are thread-safe.
#pragma once

#include <string>

#include <gtest/gtest.h>

namespace testing_support {

// Success if text contains needle; the failure message shows both (text cut to its tail).
::testing::AssertionResult Contains(const std::string& text, const std::string& needle);

}  // namespace testing_support
