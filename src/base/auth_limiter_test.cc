#include "base/auth_limiter.h"

#include <gtest/gtest.h>

#include <string>

namespace distri::base {
namespace {

TEST(AuthLimiterTest, RefusesAnAddressAfterTooManyFailuresInOneSecond) {
  AuthLimiter limiter(3);
  for (int i = 0; i < 3; i++) {
    ASSERT_TRUE(limiter.Allowed("10.0.0.1:5000", 1000 + i));
    limiter.RecordFailure("10.0.0.1:" + std::to_string(5000 + i), 1000 + i);
  }
  EXPECT_FALSE(limiter.Allowed("10.0.0.1:6000", 1500));  // any port of the address
  EXPECT_TRUE(limiter.Allowed("10.0.0.2:5000", 1500));   // other addresses are unaffected
  EXPECT_TRUE(limiter.Allowed("10.0.0.1:6000", 2000));   // the next window
}

TEST(AuthLimiterTest, ZeroDisables) {
  AuthLimiter limiter(0);
  for (int i = 0; i < 100; i++) limiter.RecordFailure("10.0.0.1:1", 0);
  EXPECT_TRUE(limiter.Allowed("10.0.0.1:1", 0));
  EXPECT_EQ(limiter.size(), 0u);
}

TEST(AuthLimiterTest, KeysIpv6ByPrefixAndMappedIpv4ByAddress) {
  EXPECT_EQ(AuthLimiter::KeyFor("127.0.0.1:7379"), "127.0.0.1");
  EXPECT_EQ(AuthLimiter::KeyFor("2001:db8:1:2:3:4:5:6:443"), "2001:db8:1:2::/64");
  EXPECT_EQ(AuthLimiter::KeyFor("::ffff:10.1.2.3:80"), "10.1.2.3");
}

TEST(AuthLimiterTest, TableStaysBoundedUnderAFloodOfAddresses) {
  AuthLimiter limiter(2, 100);
  int64_t now = 0;
  for (int i = 0; i < 10000; i++) {
    std::string peer = "10.0." + std::to_string(i / 256) + "." + std::to_string(i % 256) + ":1";
    if (limiter.Allowed(peer, now)) limiter.RecordFailure(peer, now);
    ASSERT_LE(limiter.size(), 100u);
  }
  // The flood shares the overflow entry, which is exhausted now.
  EXPECT_FALSE(limiter.Allowed("192.168.0.1:1", now));
  // Once the window passes, expired entries are swept and new addresses fit.
  now += 1000;
  EXPECT_TRUE(limiter.Allowed("192.168.0.1:1", now));
  limiter.RecordFailure("192.168.0.1:1", now);
  EXPECT_LE(limiter.size(), 100u);
}

}  // namespace
}  // namespace distri::base
