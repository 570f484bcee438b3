// Client network lists for the validate skips.
#include <gtest/gtest.h>

#include "config/network.h"

namespace config {
namespace {

TEST(NetworkList, MatchesIpv4PrefixesIncludingPartialBytes) {
  NetworkList list;
  std::string bad;
  ASSERT_TRUE(list.Parse({"192.0.2.0/24", "198.51.100.128/25", "203.0.113.9"}, &bad));
  EXPECT_TRUE(list.Contains("192.0.2.77"));
  EXPECT_TRUE(list.Contains("198.51.100.200"));
  EXPECT_FALSE(list.Contains("198.51.100.127"));
  EXPECT_TRUE(list.Contains("203.0.113.9"));
  EXPECT_FALSE(list.Contains("203.0.113.10"));
  EXPECT_TRUE(list.Contains("::ffff:192.0.2.1"));  // IPv4-mapped counts as IPv4
  EXPECT_FALSE(list.Contains(""));
  EXPECT_FALSE(list.Contains("not an address"));
}

TEST(NetworkList, MatchesIpv6) {
  NetworkList list;
  std::string bad;
  ASSERT_TRUE(list.Parse({"2001:db8::/32", "::1"}, &bad));
  EXPECT_TRUE(list.Contains("2001:db8:1::5"));
  EXPECT_FALSE(list.Contains("2001:db9::5"));
  EXPECT_TRUE(list.Contains("::1"));
  EXPECT_FALSE(list.Contains("192.0.2.1"));
}

TEST(NetworkList, RejectsMalformedEntriesNamingThem) {
  NetworkList list;
  std::string bad;
  EXPECT_FALSE(list.Parse({"10.0.0.0/8", "10.0.0.0/33"}, &bad));
  EXPECT_EQ(bad, "10.0.0.0/33");
  EXPECT_FALSE(list.Parse({"example.test/8"}, &bad));
  EXPECT_EQ(bad, "example.test/8");
}

}  // namespace
}  // namespace config
