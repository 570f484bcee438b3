// Unit tests for milter/mail/verdict_cache.h: what may be cached, for how long, how many.
#include "milter/mail/verdict_cache.h"

#include <gtest/gtest.h>

#include <chrono>
#include <future>
#include <string>
#include <thread>

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

TEST(VerdictCacheTest, AConcurrentMissWaitsForTheLeadersAnswer) {
  VerdictCache cache(10);
  ASSERT_TRUE(cache.Lead("k", VerdictCache::Clock::now() + 10s));
  std::promise<void> asking;
  auto follower = std::async(std::launch::async, [&] {
    asking.set_value();
    const bool led = cache.Lead("k", VerdictCache::Clock::now() + 10s);
    return std::make_pair(led, cache.Find("k").has_value());
  });
  asking.get_future().wait();
  std::this_thread::sleep_for(50ms);  // the follower is waiting, not leading
  EXPECT_EQ(follower.wait_for(0s), std::future_status::timeout);
  EXPECT_TRUE(cache.Store("k", Of(Verdict::Action::kReject), 60s));
  cache.Land("k");
  const auto [led, found] = follower.get();
  EXPECT_FALSE(led);
  EXPECT_TRUE(found);
  // Landed: the next miss leads again.
  EXPECT_TRUE(cache.Lead("k", VerdictCache::Clock::now() + 1s));
  cache.Land("k");
}

TEST(VerdictCacheTest, AFollowerGivesUpAtItsDeadlineAndOtherKeysNeverWait) {
  VerdictCache cache(10);
  ASSERT_TRUE(cache.Lead("k", VerdictCache::Clock::now() + 10s));
  EXPECT_TRUE(cache.Lead("other", VerdictCache::Clock::now() + 10s));
  const auto start = VerdictCache::Clock::now();
  EXPECT_FALSE(cache.Lead("k", start + 100ms));
  EXPECT_GE(VerdictCache::Clock::now() - start, 100ms);
  EXPECT_FALSE(cache.Find("k").has_value());  // nothing landed: the caller asks itself
  cache.Land("k");
  cache.Land("other");
}

}  // namespace
}  // namespace mail
