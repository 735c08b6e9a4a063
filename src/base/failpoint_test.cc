// Tests of the failpoint grammar, the actions, and (in builds with DISTRI_FAILPOINTS on) the
// macro configured from the environment, in forked children so the process registry is
// built fresh each time.

#include "base/failpoint.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstdlib>

namespace distri::base {
namespace {

TEST(FailpointParseTest, ParsesTheGrammar) {
  auto specs = ParseFailpoints(
      " raft.persist = sleep(200) ;raft.send=drop(0.1);raft.apply=crash;snap_1=crash(0.5);"
      "x-y=off;");
  ASSERT_TRUE(specs.ok()) << specs.status().message();
  ASSERT_EQ(specs->size(), 5u);
  EXPECT_EQ((*specs)[0].name, "raft.persist");
  EXPECT_EQ((*specs)[0].action, FailpointAction::kSleep);
  EXPECT_EQ((*specs)[0].sleep_ms, 200u);
  EXPECT_EQ((*specs)[1].action, FailpointAction::kDrop);
  EXPECT_DOUBLE_EQ((*specs)[1].probability, 0.1);
  EXPECT_EQ((*specs)[2].action, FailpointAction::kCrash);
  EXPECT_DOUBLE_EQ((*specs)[2].probability, 1.0);
  EXPECT_DOUBLE_EQ((*specs)[3].probability, 0.5);
  EXPECT_EQ((*specs)[4].action, FailpointAction::kOff);
  EXPECT_TRUE(ParseFailpoints("").ok());
  EXPECT_TRUE(ParseFailpoints(" ; ;").value().empty());
}

TEST(FailpointParseTest, RejectsBadEntriesWithTheirText) {
  for (const char* bad : {"raft.send", "=drop(1)", "Raft=off", "a=drop", "a=drop(1.5)",
                          "a=drop(-0.1)", "a=drop(inf)", "a=drop(x)", "a=sleep(-1)",
                          "a=sleep(60001)", "a=sleep", "a=sleep(1", "a=off(1)", "a=panic",
                          "a=crash(2)", "a=off;a=crash", "a b=off"}) {
    auto specs = ParseFailpoints(bad);
    ASSERT_FALSE(specs.ok()) << bad;
    EXPECT_EQ(specs.status().code(), Code::kInvalidArgument);
    EXPECT_NE(specs.status().message().find("DISTRI_FAILPOINTS entry"), std::string::npos);
  }
  EXPECT_NE(ParseFailpoints("ok=off; a=nope(1)").status().message().find("'a=nope(1)'"),
            std::string::npos);
}

TEST(FailpointTest, DropFollowsItsProbability) {
  Failpoint always({"a", FailpointAction::kDrop, 1.0, 0});
  Failpoint never({"b", FailpointAction::kDrop, 0.0, 0});
  Failpoint tenth({"c", FailpointAction::kDrop, 0.1, 0});
  int dropped = 0;
  for (int i = 0; i < 10000; i++) {
    EXPECT_TRUE(always.Fire());
    EXPECT_FALSE(never.Fire());
    dropped += tenth.Fire() ? 1 : 0;
  }
  EXPECT_EQ(always.hits(), 10000u);
  EXPECT_EQ(never.hits(), 0u);
  EXPECT_EQ(tenth.hits(), static_cast<uint64_t>(dropped));
  EXPECT_GT(dropped, 700);  // 1000 expected; 7 standard deviations either way
  EXPECT_LT(dropped, 1300);
}

TEST(FailpointTest, SleepSleepsAndDoesNotDrop) {
  Failpoint fp({"s", FailpointAction::kSleep, 1.0, 30});
  auto start = std::chrono::steady_clock::now();
  EXPECT_FALSE(fp.Fire());
  EXPECT_GE(std::chrono::steady_clock::now() - start, std::chrono::milliseconds(30));
  EXPECT_EQ(fp.hits(), 1u);
}

std::atomic<int> crashes{0};
void CountCrash() { crashes++; }

TEST(FailpointTest, CrashCallsTheCrashFunction) {
  crashes = 0;
  Failpoint fp({"c", FailpointAction::kCrash, 1.0, 0}, &CountCrash);
  fp.Fire();
  EXPECT_EQ(crashes.load(), 1);
  Failpoint spared({"c", FailpointAction::kCrash, 0.0, 0}, &CountCrash);
  EXPECT_FALSE(spared.Fire());
  EXPECT_EQ(crashes.load(), 1);
}

TEST(FailpointTest, CrashExitsLikeKill9) {
  Failpoint fp({"boom", FailpointAction::kCrash, 1.0, 0});
  EXPECT_EXIT(fp.Fire(), testing::ExitedWithCode(137), "failpoint boom: crash");
}

TEST(FailpointTest, RegistryFindsConfiguredNamesOnly) {
  FailpointRegistry reg(ParseFailpoints("a=drop(1);b=off").value());
  ASSERT_NE(reg.Find("a"), nullptr);
  EXPECT_TRUE(reg.Find("a")->Fire());
  EXPECT_EQ(reg.Find("b"), nullptr);  // off is the same as absent
  EXPECT_EQ(reg.Find("c"), nullptr);
}

#if defined(DISTRI_FAILPOINTS) && DISTRI_FAILPOINTS
TEST(FailpointMacroTest, ConfiguredFromTheEnvironment) {
  EXPECT_EXIT(
      {
        setenv("DISTRI_FAILPOINTS", "t.drop=drop(1);t.crash=crash", 1);
        bool dropped = DISTRI_FAILPOINT("t.drop");
        bool other = DISTRI_FAILPOINT("t.absent");
        if (!dropped || other) _exit(1);
        (void)DISTRI_FAILPOINT("t.crash");
        _exit(0);
      },
      testing::ExitedWithCode(137), "failpoint t.crash: crash");
}

TEST(FailpointMacroTest, MalformedEnvironmentStopsWithTheEntry) {
  EXPECT_DEATH(
      {
        setenv("DISTRI_FAILPOINTS", "t.x=explode", 1);
        (void)DISTRI_FAILPOINT("t.x");
      },
      "DISTRI_FAILPOINTS entry 't.x=explode'");
}
#else
// Without the option the macro is a constant: nothing is evaluated, nothing is linked.
static_assert(!DISTRI_FAILPOINT("anything"));
TEST(FailpointMacroTest, CompiledOut) { SUCCEED(); }
#endif

}  // namespace
}  // namespace distri::base
