// Users and groups are looked up through the reentrant getpw*_r/getgr*_r only: the plain forms
// return one static buffer that another thread's lookup overwrites (a connect error explained on
// a session thread while another does the same, the reload thread, the start-up checks).
// Thread-safety: each test owns what it starts.
#include <grp.h>
#include <pwd.h>

#include <atomic>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "fcgi/socket.h"
#include "tests/support/milter_daemon.h"
#include "tests/support/process.h"

namespace {

// The daemon binary imports none of the non-reentrant lookups (libmilter, a separate shared
// library, is not part of this check).
TEST(UserLookup, DaemonImportsNoNonReentrantLookup) {
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
  // The sanitizer runtimes linked into the binary intercept getpwnam and friends themselves.
  GTEST_SKIP() << "a sanitizer build imports the lookups for its interceptors";
#endif
  auto r = testing_support::RunCommand(
      {"nm", "-D", "--undefined-only", testing_support::MilterBinary()});
  ASSERT_EQ(r.exit_code, 0) << r.output;
  for (const char* name :
       {"getpwuid", "getpwnam", "getgrgid", "getgrnam", "getpwent", "getgrent"}) {
    EXPECT_EQ(r.output.find(std::string(" ") + name + "@"), std::string::npos)
        << name << " is imported:\n"
        << r.output;
  }
  EXPECT_NE(r.output.find(" getpwnam_r@"), std::string::npos) << r.output;
}

TEST(UserLookup, NamesAndIdsResolve) {
  fcgi::UserEntry root;
  ASSERT_TRUE(fcgi::LookupUser("root", &root));
  EXPECT_EQ(root.uid, 0u);
  EXPECT_EQ(root.gid, 0u);
  fcgi::UserEntry nobody;
  ASSERT_TRUE(fcgi::LookupUser("nobody", &nobody));
  fcgi::UserEntry by_id;
  ASSERT_TRUE(fcgi::LookupUser(nobody.uid, &by_id));
  EXPECT_EQ(by_id.name, "nobody");
  gid_t gid = 1;
  ASSERT_TRUE(fcgi::LookupGroup("root", &gid));
  EXPECT_EQ(gid, 0u);
  EXPECT_FALSE(fcgi::LookupUser("no-such-user-fcgi-milter", &by_id));
  EXPECT_FALSE(fcgi::LookupGroup("no-such-group-fcgi-milter", &gid));
  EXPECT_EQ(fcgi::UserName(0), "root");
  EXPECT_EQ(fcgi::GroupName(0), "root");
  EXPECT_EQ(fcgi::UserName(4000000000u), "4000000000");
  EXPECT_EQ(fcgi::GroupName(4000000000u), "4000000000");
}

// Many threads asking for different entries at once each get their own answer.
TEST(UserLookup, ConcurrentLookupsGetTheirOwnAnswers) {
  fcgi::UserEntry nobody;
  ASSERT_TRUE(fcgi::LookupUser("nobody", &nobody));
  gid_t www = 0;
  ASSERT_TRUE(fcgi::LookupGroup("www-data", &www));
  std::atomic<int> wrong{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 2000; ++i) {
        if (t % 2 == 0) {
          if (fcgi::UserName(0) != "root" || fcgi::GroupName(www) != "www-data") wrong++;
        } else {
          if (fcgi::UserName(nobody.uid) != "nobody" || fcgi::GroupName(0) != "root") wrong++;
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(wrong.load(), 0);
}

}  // namespace
