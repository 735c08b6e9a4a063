// The state machine's running totals and expiry index (state_machine.h,
// invariants 1-3) against full recounts, after random operations on many
// rooms, snapshot loads included; and --max-rooms as apply enforces it.

#include <gtest/gtest.h>

#include <random>
#include <set>
#include <string>
#include <vector>

#include "state/state_machine.h"

namespace distri::state {
namespace {

class AccountingTest : public ::testing::Test {
 protected:
  ApplyResult Do(Op op, std::vector<std::string_view> args, std::string_view room,
                 uint32_t flags = 0, int64_t num = 0) {
    std::string buf;
    EncodeEntry(&buf, op, flags, now_, num, room, args);
    return sm_->Apply(++index_, buf);
  }

  // What the expiry index must hold, worked out from the keys themselves.
  std::set<std::pair<int64_t, std::string>> ExpectedExpiryIndex() const {
    std::set<std::pair<int64_t, std::string>> out;
    for (const auto& [code, room] : sm_->rooms()) {
      int64_t earliest = 0;
      room->keys().ForEach([&](const Item& item) {
        if (item.has_expiry() && (earliest == 0 || item.expire_at_ms() < earliest)) {
          earliest = item.expire_at_ms();
        }
      });
      if (earliest != 0) out.emplace(earliest, code);
    }
    return out;
  }

  void CheckTotals(const std::string& after) {
    SCOPED_TRACE(after);
    ASSERT_EQ(sm_->memory_bytes(), sm_->RecountMemoryBytes());
    size_t keys = 0, user_rooms = 0;
    for (const auto& [code, room] : sm_->rooms()) {
      room->keys().ForEach([&](const Item&) { keys++; });
      user_rooms += IsBuiltinRoom(code) ? 0 : 1;
    }
    ASSERT_EQ(sm_->key_count(), keys);
    ASSERT_EQ(sm_->user_room_count(), user_rooms);
    std::set<std::pair<int64_t, std::string>> index;
    for (const auto& [at, code] : sm_->expiry_index()) index.emplace(at, std::string(code));
    ASSERT_EQ(index.size(), sm_->expiry_index().size());
    ASSERT_EQ(index, ExpectedExpiryIndex());
  }

  // Saves a snapshot and continues on a machine loaded from it.
  void ReloadFromSnapshot() {
    std::string snap;
    ASSERT_TRUE(sm_->SaveSnapshot([&](std::string_view b) {
      snap.append(b);
      return Status::Ok();
    }).ok());
    auto loaded = std::make_unique<StateMachine>();
    ASSERT_TRUE(loaded->LoadSnapshot(index_, snap).ok());
    EXPECT_EQ(loaded->key_count(), sm_->key_count());
    EXPECT_EQ(loaded->user_room_count(), sm_->user_room_count());
    sm_ = std::move(loaded);
  }

  std::unique_ptr<StateMachine> sm_ = std::make_unique<StateMachine>();
  uint64_t index_ = 0;
  int64_t now_ = 1'000'000;
};

TEST_F(AccountingTest, RunningTotalsEqualRecountAfterRandomOperations) {
  std::mt19937 rng(20261125);
  auto pick = [&](size_t n) { return static_cast<size_t>(rng() % n); };
  std::vector<std::string> rooms = {"default", "3", "15"};
  auto key = [&] {
    // Short keys fit in a std::string's own buffer; long ones allocate.
    return pick(4) == 0 ? "a-long-key-that-does-not-fit-inline-" + std::to_string(pick(40))
                        : "k" + std::to_string(pick(40));
  };
  auto value = [&] { return std::string(pick(4) == 0 ? 200 + pick(300) : pick(20), 'v'); };
  auto ttl = [&]() -> int64_t { return pick(2) ? 0 : now_ + 1 + static_cast<int64_t>(pick(500)); };
  for (int step = 0; step < 6000; step++) {
    const std::string room = rooms[pick(rooms.size())];
    std::string k = key(), k2 = key(), v = value();
    std::string op_name;
    switch (pick(22)) {
      case 0: {
        std::string code = "room-" + std::to_string(step) + std::string(pick(2) ? 30 : 0, 'x');
        Do(Op::kRoomCreate, {"name-" + std::to_string(step)}, code);
        rooms.push_back(code);
        op_name = "create";
        break;
      }
      case 1:
        Do(Op::kRoomDrop, {}, room);
        if (!IsBuiltinRoom(room)) std::erase(rooms, room);
        op_name = "drop";
        break;
      case 2: case 3: case 4:
        Do(Op::kSet, {k, v}, room, pick(3) == 0 ? kSetKeepTtl : 0, ttl());
        op_name = "set";
        break;
      case 5: Do(Op::kDel, {k, k2}, room); op_name = "del"; break;
      case 6: Do(Op::kIncrBy, {"n" + std::to_string(pick(5))}, room, 0, 1); op_name = "incr"; break;
      case 7: Do(Op::kAppend, {k, v}, room); op_name = "append"; break;
      case 8: Do(Op::kExpireAt, {k}, room, 0, ttl()); op_name = "expireat"; break;
      case 9: Do(Op::kPersist, {k}, room); op_name = "persist"; break;
      case 10: Do(Op::kRename, {k, k2}, room); op_name = "rename"; break;
      case 11: Do(Op::kMSet, {k, v, k2, v}, room); op_name = "mset"; break;
      case 12: Do(Op::kCas, {k, v}, room, kCasMustNotExist); op_name = "cas"; break;
      case 13: Do(Op::kGetDel, {k}, room); op_name = "getdel"; break;
      case 14:
        now_ += static_cast<int64_t>(pick(200));
        Do(Op::kExpireKeys, {k, k2}, room);
        op_name = "expirekeys";
        break;
      case 15:
        if (pick(20) == 0) {
          Do(Op::kFlushAll, {}, room);
          op_name = "flushall";
        } else {
          Do(Op::kFlushRoom, {}, room);
          op_name = "flushroom";
        }
        break;
      case 16:
        Do(Op::kIncrByFloat, {k, "1.5"}, room);
        op_name = "incrbyfloat";
        break;
      case 18:
        Do(Op::kSetRange, {k, v}, room, 0, static_cast<int64_t>(pick(300)));
        op_name = "setrange";
        break;
      case 19:
        Do(Op::kGetEx, {k}, room, pick(2) ? kGetExPersist : kGetExExpire, ttl());
        op_name = "getex";
        break;
      case 20: {
        // Into another room too (COPY ... DB n): both rooms' totals change.
        const std::string dst = rooms[pick(rooms.size())];
        Do(Op::kCopy, {k, k2, dst}, room, pick(2) ? kCopyReplace : 0);
        op_name = "copy to " + dst;
        break;
      }
      case 21: Do(Op::kRenameNx, {k, k2}, room); op_name = "renamenx"; break;
      case 17:
        if (pick(10) == 0) {
          ReloadFromSnapshot();
          op_name = "snapshot load";
        }
        break;
    }
    ASSERT_NO_FATAL_FAILURE(
        CheckTotals("step " + std::to_string(step) + ": " + op_name + " in " + room));
  }
  EXPECT_GT(sm_->user_room_count(), 10u);  // the run did exercise many rooms
  EXPECT_GT(sm_->key_count(), 10u);
}

TEST_F(AccountingTest, ExpiryIndexHoldsExactlyTheRoomsWithExpiringKeys) {
  for (int i = 0; i < 1000; i++) Do(Op::kRoomCreate, {}, "r" + std::to_string(i));
  EXPECT_TRUE(sm_->expiry_index().empty()) << "rooms without TTLs are not in the index";
  Do(Op::kSet, {"a", "1"}, "r10", 0, now_ + 300);
  Do(Op::kSet, {"b", "1"}, "r10", 0, now_ + 100);
  Do(Op::kSet, {"c", "1"}, "r500", 0, now_ + 200);
  Do(Op::kSet, {"plain", "1"}, "r600");
  Do(Op::kSet, {"d", "1"}, "r999", 0, now_ + 50);
  std::vector<std::pair<int64_t, std::string_view>> want = {
      {now_ + 50, "r999"}, {now_ + 100, "r10"}, {now_ + 200, "r500"}};
  EXPECT_EQ(std::vector(sm_->expiry_index().begin(), sm_->expiry_index().end()), want);
  Do(Op::kPersist, {"b"}, "r10");  // r10's earliest is now "a"
  Do(Op::kDel, {"d"}, "r999");
  Do(Op::kRoomDrop, {}, "r500");
  want = {{now_ + 300, "r10"}};
  EXPECT_EQ(std::vector(sm_->expiry_index().begin(), sm_->expiry_index().end()), want);
  now_ += 300;
  Do(Op::kExpireKeys, {"a"}, "r10");
  EXPECT_TRUE(sm_->expiry_index().empty());
  Do(Op::kSet, {"e", "1"}, "r1", 0, now_ + 10);
  Do(Op::kFlushAll, {}, "default");
  EXPECT_TRUE(sm_->expiry_index().empty());
  CheckTotals("end");
}

TEST_F(AccountingTest, AnEmptyRoomCostsItsObjectCodeAndNode) {
  const size_t before = sm_->memory_bytes();
  Do(Op::kRoomCreate, {"a room with a name longer than the inline buffer"},
     "ABCDEFGHIJKLMNOPQRSTUV");
  const size_t cost = sm_->memory_bytes() - before;
  EXPECT_GT(cost, sizeof(Room) + 2 * 22 + 40) << "Room, map node, code (twice) and name";
  EXPECT_EQ(sm_->memory_bytes(), sm_->RecountMemoryBytes());
  Do(Op::kRoomDrop, {}, "ABCDEFGHIJKLMNOPQRSTUV");
  EXPECT_EQ(sm_->memory_bytes(), before);
}

TEST_F(AccountingTest, ApplyRefusesRoomsPastTheLimitInTheEntry) {
  // num carries the proposer's --max-rooms; builtin rooms do not count.
  Do(Op::kSet, {"k", "v"}, "default");
  Do(Op::kSet, {"k", "v"}, "5");
  EXPECT_EQ(Do(Op::kRoomCreate, {}, "one", 0, 2).kind, ApplyResult::Kind::kBulk);
  EXPECT_EQ(Do(Op::kRoomCreate, {}, "two", 0, 2).kind, ApplyResult::Kind::kBulk);
  ApplyResult refused = Do(Op::kRoomCreate, {}, "three", 0, 2);
  EXPECT_EQ(refused.kind, ApplyResult::Kind::kError);
  EXPECT_EQ(refused.text, kMaxRoomsError);
  EXPECT_EQ(sm_->FindRoom("three"), nullptr);
  EXPECT_EQ(sm_->user_room_count(), 2u);
  // An entry without a limit (num 0, as every entry written before the
  // flag existed) is not limited.
  EXPECT_EQ(Do(Op::kRoomCreate, {}, "four", 0, 0).kind, ApplyResult::Kind::kBulk);
  Do(Op::kRoomDrop, {}, "one");
  Do(Op::kRoomDrop, {}, "two");
  EXPECT_EQ(Do(Op::kRoomCreate, {}, "five", 0, 2).kind, ApplyResult::Kind::kBulk);
  CheckTotals("end");
}

}  // namespace
}  // namespace distri::state
