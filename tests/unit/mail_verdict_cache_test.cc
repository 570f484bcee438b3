// Unit tests for milter/mail/verdict_cache.h: what may be cached, for how long, how many.
#include "milter/mail/verdict_cache.h"

#include <gtest/gtest.h>

#include <chrono>
#include <string>

namespace mail {
namespace {

using namespace std::chrono_literals;

Verdict Of(Verdict::Action action, bool backend_failure = false) {
  Verdict v;
  v.action = action;
  v.backend_failure = backend_failure;
  v.reason = "script replied";
  return v;
}

TEST(VerdictCacheTest, AcceptAndRejectAreKeptForTheirTtl) {
  VerdictCache cache(10);
  const auto t0 = VerdictCache::Clock::now();
  EXPECT_TRUE(cache.Store("a", Of(Verdict::Action::kAccept), 60s, t0));
  EXPECT_TRUE(cache.Store("r", Of(Verdict::Action::kReject), 60s, t0));
  ASSERT_TRUE(cache.Find("a", t0 + 59s).has_value());
  EXPECT_EQ(cache.Find("r", t0 + 59s)->action, Verdict::Action::kReject);
  EXPECT_FALSE(cache.Find("a", t0 + 60s).has_value());
  EXPECT_FALSE(cache.Find("a", t0 + 1s).has_value());  // an expired entry is gone for good
}

TEST(VerdictCacheTest, NeverATempfailNorABackendFailureNorAZeroTtl) {
  VerdictCache cache(10);
  EXPECT_FALSE(cache.Store("t", Of(Verdict::Action::kTempfail), 60s));
  EXPECT_FALSE(cache.Store("b", Of(Verdict::Action::kAccept, true), 60s));  // failure policy
  EXPECT_FALSE(cache.Store("b", Of(Verdict::Action::kReject, true), 60s));
  EXPECT_FALSE(cache.Store("z", Of(Verdict::Action::kAccept), 0s));
  EXPECT_EQ(cache.size(), 0u);
  VerdictCache off(0);
  EXPECT_FALSE(off.Store("a", Of(Verdict::Action::kAccept), 60s));
}

TEST(VerdictCacheTest, TheLeastRecentlyUsedEntryGoesWhenFull) {
  VerdictCache cache(2);
  EXPECT_TRUE(cache.Store("a", Of(Verdict::Action::kAccept), 60s));
  EXPECT_TRUE(cache.Store("b", Of(Verdict::Action::kAccept), 60s));
  EXPECT_TRUE(cache.Find("a").has_value());  // a is now the most recent
  EXPECT_TRUE(cache.Store("c", Of(Verdict::Action::kAccept), 60s));
  EXPECT_EQ(cache.size(), 2u);
  EXPECT_TRUE(cache.Find("a").has_value());
  EXPECT_FALSE(cache.Find("b").has_value());
  EXPECT_TRUE(cache.Find("c").has_value());
}

TEST(VerdictCacheTest, KeyIsTheRecipientAsGivenAndTheSendersDomainInAnyCase) {
  EXPECT_EQ(VerdictCache::Key("u@x.test", "a@Example.TEST"),
            VerdictCache::Key("u@x.test", "b@example.test"));
  EXPECT_NE(VerdictCache::Key("u@x.test", "a@example.test"),
            VerdictCache::Key("u@x.test", "a@other.test"));
  EXPECT_NE(VerdictCache::Key("U@x.test", "a@example.test"),
            VerdictCache::Key("u@x.test", "a@example.test"));
  EXPECT_NE(VerdictCache::Key("u@x.test", ""), VerdictCache::Key("u@x.test", "a@example.test"));
}

}  // namespace
}  // namespace mail
