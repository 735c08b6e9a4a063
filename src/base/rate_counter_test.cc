#include "base/rate_counter.h"

#include <gtest/gtest.h>

namespace distri::base {
namespace {

TEST(RateCounterTest, SecondAndMinuteRates) {
  RateCounter r;
  for (int s = 100; s < 160; s++) r.Add(s, 10);  // 10/s for a minute
  r.Add(160, 99);                                 // the current, incomplete second
  EXPECT_EQ(r.total(), 60u * 10 + 99);
  EXPECT_EQ(r.LastSecond(160), 10u);
  EXPECT_DOUBLE_EQ(r.LastMinute(160), 10.0);
  EXPECT_EQ(r.LastSecond(161), 99u);
  // Idle time ages everything out.
  EXPECT_EQ(r.LastSecond(300), 0u);
  EXPECT_DOUBLE_EQ(r.LastMinute(300), 0.0);
}

TEST(RateCounterTest, SlotReuseAfterWrapAround) {
  RateCounter r;
  r.Add(5, 7);
  r.Add(5 + 61, 1);  // same slot, a later second: the old count must not leak in
  EXPECT_EQ(r.LastSecond(67), 1u);
  EXPECT_DOUBLE_EQ(r.LastMinute(67), 1.0 / 60.0);
}

TEST(RateCounterTest, LateEventsAndGapsKeepTheWindowExact) {
  RateCounter r;
  r.Add(100, 3);
  r.Add(101, 4);
  r.Add(100, 2);  // a second ago (the clock stepped back): still counted in its second
  EXPECT_EQ(r.LastSecond(101), 5u);
  EXPECT_EQ(r.LastSecond(102), 4u);
  r.Add(130, 1);  // skips 28 seconds: they read as zero, older ones stay
  EXPECT_EQ(r.LastSecond(130), 0u);
  EXPECT_DOUBLE_EQ(r.LastMinute(131), 10.0 / 60.0);
  r.Add(20, 1);  // far back: a fresh window
  EXPECT_EQ(r.LastSecond(21), 1u);
  EXPECT_DOUBLE_EQ(r.LastMinute(21), 1.0 / 60.0);
  EXPECT_EQ(r.total(), 11u);
}

TEST(RateCounterTest, SmallEnoughToKeepPerRoom) {
  // Two per room (reads, writes): 100,000 rooms must not cost 200 MB.
  EXPECT_LE(sizeof(RateCounter), 272u);
}

}  // namespace
}  // namespace distri::base
