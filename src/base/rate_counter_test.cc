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

}  // namespace
}  // namespace distri::base
