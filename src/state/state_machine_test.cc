// The state machine tested by applying entries: no sockets, no clock.

#include "state/state_machine.h"

#include <gtest/gtest.h>

#include <vector>

namespace distri::state {
namespace {

class StateMachineTest : public ::testing::Test {
 protected:
  ApplyResult Do(Op op, std::vector<std::string_view> args, uint32_t flags = 0, int64_t num = 0,
                 std::string_view room = "default") {
    std::string buf;
    EncodeEntry(&buf, op, flags, now_, num, room, args);
    return sm_.Apply(++index_, buf);
  }
  std::string Get(std::string_view key, std::string_view room = "default") {
    const Room* r = sm_.FindRoom(room);
    const Item* item = r ? r->Get(key, now_) : nullptr;
    return item ? std::string(item->value()) : "<nil>";
  }

  StateMachine sm_;
  uint64_t index_ = 0;
  int64_t now_ = 1'000'000;
};

TEST_F(StateMachineTest, SetFlags) {
  EXPECT_EQ(Do(Op::kSet, {"a", "1"}).kind, ApplyResult::Kind::kOk);
  EXPECT_EQ(Do(Op::kSet, {"a", "2"}, kSetNx).kind, ApplyResult::Kind::kNil);
  EXPECT_EQ(Get("a"), "1");
  EXPECT_EQ(Do(Op::kSet, {"b", "2"}, kSetXx).kind, ApplyResult::Kind::kNil);
  EXPECT_EQ(Get("b"), "<nil>");
  ApplyResult r = Do(Op::kSet, {"a", "3"}, kSetGet);
  EXPECT_EQ(r.kind, ApplyResult::Kind::kBulk);
  EXPECT_EQ(r.text, "1");
  EXPECT_EQ(Get("a"), "3");
}

TEST_F(StateMachineTest, ExpiryUsesEntryClock) {
  Do(Op::kSet, {"t", "v"}, 0, now_ + 100);
  EXPECT_EQ(Get("t"), "v");
  Do(Op::kSet, {"t", "w"}, kSetKeepTtl);
  EXPECT_EQ(sm_.FindRoom("default")->Get("t", now_)->expire_at_ms(), now_ + 100);
  now_ += 100;
  EXPECT_EQ(Get("t"), "<nil>");
  // The key is still stored until an expiry entry removes it.
  EXPECT_EQ(sm_.FindRoom("default")->key_count(), 1u);
  EXPECT_EQ(Do(Op::kExpireKeys, {"t"}).integer, 1);
  EXPECT_EQ(sm_.FindRoom("default")->key_count(), 0u);
}

TEST_F(StateMachineTest, ExpireKeysSparesRenewedKeys) {
  Do(Op::kSet, {"t", "v"}, 0, now_ + 10);
  Do(Op::kExpireAt, {"t"}, 0, now_ + 1000);  // renewed before the expiry entry lands
  now_ += 20;
  EXPECT_EQ(Do(Op::kExpireKeys, {"t"}).integer, 0);
  EXPECT_EQ(Get("t"), "v");
}

TEST_F(StateMachineTest, IncrSemantics) {
  EXPECT_EQ(Do(Op::kIncrBy, {"n"}, 0, 5).integer, 5);
  EXPECT_EQ(Do(Op::kIncrBy, {"n"}, 0, -7).integer, -2);
  Do(Op::kSet, {"s", "abc"});
  EXPECT_EQ(Do(Op::kIncrBy, {"s"}, 0, 1).text, "ERR value is not an integer or out of range");
  Do(Op::kSet, {"big", "9223372036854775807"});
  EXPECT_EQ(Do(Op::kIncrBy, {"big"}, 0, 1).text, "ERR increment or decrement would overflow");
  Do(Op::kSet, {"lead", "01"});
  EXPECT_EQ(Do(Op::kIncrBy, {"lead"}, 0, 1).kind, ApplyResult::Kind::kError);
  EXPECT_EQ(Do(Op::kIncrByFloat, {"f", "10.5"}).text, "10.5");
  EXPECT_EQ(Do(Op::kIncrByFloat, {"f", "0.1"}).text, "10.6");
  EXPECT_EQ(Do(Op::kIncrByFloat, {"f", "-10.6"}).text, "0");
  // An infinite increment or value is a value, but not an acceptable result.
  EXPECT_EQ(Do(Op::kIncrByFloat, {"f", "inf"}).text, "ERR increment would produce NaN or Infinity");
  Do(Op::kSet, {"i", "-inf"});
  EXPECT_EQ(Do(Op::kIncrByFloat, {"i", "1"}).text, "ERR increment would produce NaN or Infinity");
  EXPECT_EQ(Do(Op::kIncrByFloat, {"f", "nan"}).text, "ERR value is not a valid float");
}

TEST_F(StateMachineTest, ExpireOptions) {
  Do(Op::kSet, {"k", "v"});
  EXPECT_EQ(Do(Op::kExpireAt, {"k"}, kExpireXx, now_ + 50).integer, 0);
  EXPECT_EQ(Do(Op::kExpireAt, {"k"}, kExpireNx, now_ + 50).integer, 1);
  EXPECT_EQ(Do(Op::kExpireAt, {"k"}, kExpireGt, now_ + 40).integer, 0);
  EXPECT_EQ(Do(Op::kExpireAt, {"k"}, kExpireLt, now_ + 40).integer, 1);
  EXPECT_EQ(Do(Op::kPersist, {"k"}).integer, 1);
  EXPECT_EQ(Do(Op::kPersist, {"k"}).integer, 0);
  EXPECT_EQ(Do(Op::kExpireAt, {"k"}, 0, now_ - 1).integer, 1);  // past: deleted
  EXPECT_EQ(Get("k"), "<nil>");
  EXPECT_EQ(sm_.FindRoom("default")->key_count(), 0u);
}

TEST_F(StateMachineTest, CasAndMsetNx) {
  EXPECT_EQ(Do(Op::kCas, {"c", "new"}, kCasMustNotExist).integer, 1);
  EXPECT_EQ(Do(Op::kCas, {"c", "other"}, kCasMustNotExist).integer, 0);
  EXPECT_EQ(Do(Op::kCas, {"c", "wrong", "x"}).integer, 0);
  EXPECT_EQ(Do(Op::kCas, {"c", "new", "x"}).integer, 1);
  EXPECT_EQ(Get("c"), "x");
  EXPECT_EQ(Do(Op::kMSet, {"m1", "1", "c", "2"}, kSetNx).integer, 0);
  EXPECT_EQ(Get("m1"), "<nil>");
  EXPECT_EQ(Do(Op::kMSet, {"m1", "1", "m2", "2"}, kSetNx).integer, 1);
  EXPECT_EQ(Get("m2"), "2");
}

TEST_F(StateMachineTest, RenameKeepsTtl) {
  Do(Op::kSet, {"src", "v"}, 0, now_ + 500);
  EXPECT_EQ(Do(Op::kRename, {"nope", "x"}).text, "ERR no such key");
  EXPECT_EQ(Do(Op::kRename, {"src", "dst"}).kind, ApplyResult::Kind::kOk);
  EXPECT_EQ(Get("src"), "<nil>");
  EXPECT_EQ(sm_.FindRoom("default")->Get("dst", now_)->expire_at_ms(), now_ + 500);
}

TEST_F(StateMachineTest, RoomsAreIndependent) {
  EXPECT_EQ(Do(Op::kRoomCreate, {"mine"}, 0, 0, "abc123").text, "abc123");
  Do(Op::kSet, {"k", "in-room"}, 0, 0, "abc123");
  Do(Op::kSet, {"k", "default"});
  EXPECT_EQ(Get("k", "abc123"), "in-room");
  EXPECT_EQ(Do(Op::kFlushRoom, {}, 0, 0, "abc123").kind, ApplyResult::Kind::kOk);
  EXPECT_EQ(Get("k", "abc123"), "<nil>");
  EXPECT_EQ(Get("k"), "default");
  EXPECT_EQ(Do(Op::kSet, {"k", "v"}, 0, 0, "never-created").text, "NOTFOUND no such room");
  EXPECT_EQ(Do(Op::kRoomDrop, {}, 0, 0, "abc123").kind, ApplyResult::Kind::kOk);
  EXPECT_EQ(sm_.FindRoom("abc123"), nullptr);
  EXPECT_EQ(Do(Op::kRoomDrop, {}, 0, 0, "default").kind, ApplyResult::Kind::kError);
  Do(Op::kSet, {"x", "1"}, 0, 0, "7");  // builtin rooms appear on first write
  EXPECT_EQ(Get("x", "7"), "1");
}

TEST_F(StateMachineTest, SnapshotRoundTrip) {
  Do(Op::kRoomCreate, {"named"}, 0, 0, "code1");
  for (int i = 0; i < 3000; i++) {
    std::string k = "key" + std::to_string(i);
    Do(Op::kSet, {k, std::string(100, 'a' + i % 26)}, 0, i % 2 ? now_ + 1000 : 0, i % 3 ? "default" : "code1");
  }
  std::string snap;
  ASSERT_TRUE(sm_.SaveSnapshot([&](std::string_view b) {
    snap.append(b);
    return Status::Ok();
  }).ok());
  StateMachine copy;
  ASSERT_TRUE(copy.LoadSnapshot(index_, snap).ok());
  EXPECT_EQ(copy.applied_index(), index_);
  EXPECT_EQ(copy.key_count(), sm_.key_count());
  EXPECT_EQ(copy.FindRoom("code1")->name(), "named");
  EXPECT_EQ(copy.FindRoom("default")->expiring_count(), sm_.FindRoom("default")->expiring_count());
  sm_.FindRoom("default")->keys().ForEach([&](const Item& item) {
    const Item* other = copy.FindRoom("default")->keys().Find(item.key());
    ASSERT_NE(other, nullptr);
    EXPECT_EQ(other->value(), item.value());
    EXPECT_EQ(other->expire_at_ms(), item.expire_at_ms());
  });
  // Every truncation is rejected, never half-loaded.
  for (size_t n : {size_t{0}, size_t{5}, snap.size() / 2, snap.size() - 1}) {
    StateMachine broken;
    EXPECT_EQ(broken.LoadSnapshot(index_, std::string_view(snap).substr(0, n)).code(), Code::kCorruption);
  }
}

TEST_F(StateMachineTest, BuiltinRooms) {
  EXPECT_TRUE(IsBuiltinRoom("default"));
  EXPECT_TRUE(IsBuiltinRoom("1"));
  EXPECT_TRUE(IsBuiltinRoom("15"));
  EXPECT_FALSE(IsBuiltinRoom("0"));
  EXPECT_FALSE(IsBuiltinRoom("16"));
  EXPECT_FALSE(IsBuiltinRoom("01"));
}

}  // namespace
}  // namespace distri::state

namespace distri::state {
namespace {

// Records every change as "kind rev key=value@expiry".
class Recorder : public ChangeObserver {
 public:
  void OnChange(const Change& c) override {
    std::string s = c.kind == Change::Kind::kSet ? "set" : c.kind == Change::Kind::kDel ? "del" : "flush";
    s += " " + std::to_string(c.revision) + " " + std::string(c.room) + ":" + std::string(c.key);
    if (c.kind == Change::Kind::kSet) s += "=" + std::string(c.value) + "@" + std::to_string(c.expire_at_ms);
    if (c.expired) s += " expired";
    log.push_back(s);
  }
  std::vector<std::string> log;
};

TEST_F(StateMachineTest, ChangesAreReportedWithRevisions) {
  Recorder rec;
  sm_.set_observer(&rec);
  Do(Op::kSet, {"a", "1"});                       // 1
  Do(Op::kSet, {"a", "2"}, kSetNx);               // 2: no change
  Do(Op::kIncrBy, {"a"}, 0, 5);                   // 3
  Do(Op::kExpireAt, {"a"}, 0, now_ + 50);         // 4
  Do(Op::kRename, {"a", "b"});                    // 5: del a, set b
  Do(Op::kMSet, {"x", "1", "y", "2"});            // 6
  now_ += 60;
  Do(Op::kExpireKeys, {"b"});                     // 7
  Do(Op::kFlushRoom, {});                         // 8
  Do(Op::kDel, {"nothing"});                      // 9: no change
  std::vector<std::string> want = {
      "set 1 default:a=1@0",
      "set 3 default:a=6@0",
      "set 4 default:a=6@1000050",
      "del 5 default:a",
      "set 5 default:b=6@1000050",
      "set 6 default:x=1@0",
      "set 6 default:y=2@0",
      "del 7 default:b expired",
      "flush 8 default:",
  };
  EXPECT_EQ(rec.log, want);
}

TEST_F(StateMachineTest, RoomsLoadedFromSnapshotStillReport) {
  Do(Op::kSet, {"a", "1"});
  std::string snap;
  ASSERT_TRUE(sm_.SaveSnapshot([&](std::string_view b) {
    snap.append(b);
    return Status::Ok();
  }).ok());
  StateMachine copy;
  Recorder rec;
  copy.set_observer(&rec);
  ASSERT_TRUE(copy.LoadSnapshot(index_, snap).ok());
  EXPECT_TRUE(rec.log.empty());  // loading is not a change
  std::string buf;
  std::string_view args[] = {"a"};
  EncodeEntry(&buf, Op::kDel, 0, now_, 0, "default", args);
  (void)copy.Apply(index_ + 1, buf);
  ASSERT_EQ(rec.log.size(), 1u);
  EXPECT_EQ(rec.log[0], "del 2 default:a");
}

// ---------------------------------------------------------------------------
// SETRANGE, GETEX, COPY, RENAMENX

TEST_F(StateMachineTest, SetRangePadsAndKeepsExpiry) {
  EXPECT_EQ(Do(Op::kSetRange, {"k", ""}, 0, 5).integer, 0);  // empty patch: no key made
  EXPECT_EQ(Get("k"), "<nil>");
  EXPECT_EQ(Do(Op::kSetRange, {"k", "ab"}, 0, 2).integer, 4);
  EXPECT_EQ(Get("k"), std::string("\0\0ab", 4));
  Do(Op::kSet, {"s", "Hello World"}, 0, now_ + 100);
  EXPECT_EQ(Do(Op::kSetRange, {"s", "Redis"}, 0, 6).integer, 11);
  EXPECT_EQ(Get("s"), "Hello Redis");
  EXPECT_EQ(sm_.FindRoom("default")->Get("s", now_)->expire_at_ms(), now_ + 100);
  EXPECT_EQ(Do(Op::kSetRange, {"s", ""}, 0, int64_t{1} << 40).integer, 11);
  ApplyResult r = Do(Op::kSetRange, {"s", "x"}, 0, static_cast<int64_t>(kMaxStringBytes));
  EXPECT_EQ(r.text, "ERR string exceeds maximum allowed size (proto-max-bulk-len)");
  EXPECT_EQ(Get("s"), "Hello Redis");
}

TEST_F(StateMachineTest, GetExChangesOnlyTheExpiry) {
  EXPECT_EQ(Do(Op::kGetEx, {"none"}, kGetExPersist).kind, ApplyResult::Kind::kNil);
  Do(Op::kSet, {"k", "v"});
  ApplyResult r = Do(Op::kGetEx, {"k"}, kGetExExpire, now_ + 500);
  EXPECT_EQ(r.text, "v");
  EXPECT_EQ(sm_.FindRoom("default")->Get("k", now_)->expire_at_ms(), now_ + 500);
  EXPECT_EQ(Do(Op::kGetEx, {"k"}).text, "v");  // no option: expiry untouched
  EXPECT_EQ(sm_.FindRoom("default")->Get("k", now_)->expire_at_ms(), now_ + 500);
  EXPECT_EQ(Do(Op::kGetEx, {"k"}, kGetExPersist).text, "v");
  EXPECT_EQ(sm_.FindRoom("default")->Get("k", now_)->expire_at_ms(), 0);
  // A bad expiry is an error only for a key that exists (as in Redis).
  EXPECT_EQ(Do(Op::kGetEx, {"k"}, kGetExBadTime).text,
            "ERR invalid expire time in 'getex' command");
  EXPECT_EQ(Do(Op::kGetEx, {"k"}, kGetExNotInteger).text,
            "ERR value is not an integer or out of range");
  EXPECT_EQ(Do(Op::kGetEx, {"none"}, kGetExBadTime).kind, ApplyResult::Kind::kNil);
  EXPECT_EQ(Do(Op::kGetEx, {"k"}, kGetExExpire, now_).text, "v");  // a past time deletes
  EXPECT_EQ(sm_.FindRoom("default")->key_count(), 0u);
}

TEST_F(StateMachineTest, CopyWithinAndAcrossRooms) {
  EXPECT_EQ(Do(Op::kCopy, {"a", "b"}).integer, 0);  // no source
  Do(Op::kSet, {"a", "1"}, 0, now_ + 100);
  EXPECT_EQ(Do(Op::kCopy, {"a", "a"}).text, "ERR source and destination objects are the same");
  EXPECT_EQ(Do(Op::kCopy, {"a", "b"}).integer, 1);
  EXPECT_EQ(Get("b"), "1");
  EXPECT_EQ(sm_.FindRoom("default")->Get("b", now_)->expire_at_ms(), now_ + 100);
  Do(Op::kSet, {"a", "2"});
  EXPECT_EQ(Do(Op::kCopy, {"a", "b"}).integer, 0);  // destination exists
  EXPECT_EQ(Get("b"), "1");
  EXPECT_EQ(Do(Op::kCopy, {"a", "b"}, kCopyReplace).integer, 1);
  EXPECT_EQ(Get("b"), "2");
  EXPECT_EQ(sm_.FindRoom("default")->Get("b", now_)->expire_at_ms(), 0);
  // Into builtin room "3" (COPY ... DB 3), created on the way; same key is fine there.
  EXPECT_EQ(Do(Op::kCopy, {"a", "a", "3"}).integer, 1);
  EXPECT_EQ(Get("a", "3"), "2");
  EXPECT_EQ(Do(Op::kCopy, {"a", "a", "default"}).kind, ApplyResult::Kind::kError);
  EXPECT_EQ(Do(Op::kCopy, {"a", "a", "nosuchroom"}).text, "NOTFOUND no such room");
}

TEST_F(StateMachineTest, RenameNx) {
  EXPECT_EQ(Do(Op::kRenameNx, {"a", "b"}).text, "ERR no such key");
  Do(Op::kSet, {"a", "1"}, 0, now_ + 100);
  Do(Op::kSet, {"b", "2"});
  EXPECT_EQ(Do(Op::kRenameNx, {"a", "b"}).integer, 0);
  EXPECT_EQ(Do(Op::kRenameNx, {"a", "a"}).integer, 0);
  EXPECT_EQ(Do(Op::kRenameNx, {"a", "c"}).integer, 1);
  EXPECT_EQ(Get("a"), "<nil>");
  EXPECT_EQ(Get("c"), "1");
  EXPECT_EQ(sm_.FindRoom("default")->Get("c", now_)->expire_at_ms(), now_ + 100);
}

// Mirrors follow the change feed: the new writes must report what they change.
TEST_F(StateMachineTest, NewWritesReportChanges) {
  Recorder rec;
  sm_.set_observer(&rec);
  Do(Op::kSet, {"a", "xy"});                              // 1
  Do(Op::kSetRange, {"a", "Z"}, 0, 1);                    // 2
  Do(Op::kCopy, {"a", "b"});                              // 3
  Do(Op::kCopy, {"a", "a", "2"});                         // 4
  Do(Op::kGetEx, {"a"}, kGetExExpire, now_ + 5);          // 5
  Do(Op::kRenameNx, {"b", "c"});                          // 6
  Do(Op::kGetEx, {"c"});                                  // 7: no change
  std::vector<std::string> want = {
      "set 1 default:a=xy@0",     "set 2 default:a=xZ@0", "set 3 default:b=xZ@0",
      "set 4 2:a=xZ@0",           "set 5 default:a=xZ@1000005",
      "del 6 default:b",          "set 6 default:c=xZ@0",
  };
  EXPECT_EQ(rec.log, want);
}

}  // namespace
}  // namespace distri::state
