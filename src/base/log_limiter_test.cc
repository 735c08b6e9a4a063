#include "base/log_limiter.h"

#include <gtest/gtest.h>

namespace distri::base {
namespace {

TEST(LogLimiterTest, FirstEventThenOnePerInterval) {
  LogLimiter limiter(1000);
  uint64_t suppressed = 99;
  EXPECT_TRUE(limiter.Allow(5000, &suppressed));
  EXPECT_EQ(suppressed, 0u);
  // 2,000 events within the interval: none logged, all counted.
  for (int i = 0; i < 2000; i++) EXPECT_FALSE(limiter.Allow(5000 + i % 1000, &suppressed));
  EXPECT_EQ(limiter.suppressed(), 2000u);
  EXPECT_TRUE(limiter.Allow(6000, &suppressed));
  EXPECT_EQ(suppressed, 2000u);
  EXPECT_EQ(limiter.suppressed(), 0u);
  EXPECT_FALSE(limiter.Allow(6999, &suppressed));
  EXPECT_TRUE(limiter.Allow(7000, &suppressed));
  EXPECT_EQ(suppressed, 1u);
}

TEST(LogLimiterTest, ResetLogsTheNextEventAtOnce) {
  LogLimiter limiter(60000);
  uint64_t suppressed = 0;
  EXPECT_TRUE(limiter.Allow(0, &suppressed));
  EXPECT_FALSE(limiter.Allow(10, &suppressed));
  limiter.Reset();
  EXPECT_EQ(limiter.suppressed(), 0u);
  EXPECT_TRUE(limiter.Allow(20, &suppressed));
  EXPECT_EQ(suppressed, 0u);
}

TEST(LogLimiterTest, ZeroIntervalLogsEverything) {
  LogLimiter limiter(0);
  uint64_t suppressed = 0;
  for (int i = 0; i < 10; i++) EXPECT_TRUE(limiter.Allow(7, &suppressed));
  EXPECT_EQ(suppressed, 0u);
}

TEST(LogLimiterTest, SuppressedNote) {
  EXPECT_EQ(SuppressedNote(0), "");
  EXPECT_EQ(SuppressedNote(3), " (3 more since the last such line, not logged)");
}

}  // namespace
}  // namespace distri::base
