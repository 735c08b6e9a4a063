// StateMachine: every room and key, changed only by applying log entries.
//
// Apply() is deterministic: its result depends only on the current state and
// the entry (which carries the proposer's clock), never on the local clock or
// randomness, so every replica that applies the same entries in the same
// order holds the same state and computes the same replies.
//
// Reads do not go through the log: command handlers read rooms directly with
// the local clock for lazy expiry (a key past its expiry reads as absent; the
// server's active-expiry cycle proposes its deletion as an entry).
//
// Bookkeeping is incremental, so nothing the server does per request or per
// loop iteration costs O(rooms) (an idle room must cost nothing but memory):
//  1. memory_bytes() == sum over rooms of RoomBytes(code, room), plus an
//     index node for each room in expiry_index(); key_count() == sum of the
//     rooms' key counts. Apply adjusts both by the change of the one room it
//     touched (FLUSHALL touches every room); LoadSnapshot recounts.
//  2. expiry_index() holds (earliest expiry, code) for exactly the rooms that
//     have a key with an expiry, so the active-expiry cycle visits only the
//     rooms with something due.
//  3. user_room_count() counts rooms that are not builtin (ROOM.NEW's), the
//     number --max-rooms bounds.
//
// Callers: the server (apply on commit, reads from command handlers, snapshot
// save/load at start and on compaction). Thread-safety: loop thread only.

#ifndef DISTRI_STATE_STATE_MACHINE_H_
#define DISTRI_STATE_STATE_MACHINE_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <set>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>

#include "base/strings.h"
#include "distri/status.h"
#include "state/change.h"
#include "state/entry.h"
#include "state/room.h"

namespace distri::state {

// The reply-shaped outcome of applying one entry, returned to the proposer.
struct ApplyResult {
  enum class Kind : uint8_t { kOk, kNil, kInt, kBulk, kError };
  Kind kind = Kind::kOk;
  int64_t integer = 0;
  std::string text;  // bulk value, or the full error line ("ERR ...")

  static ApplyResult Ok() { return {}; }
  static ApplyResult Nil() { return {Kind::kNil, 0, {}}; }
  static ApplyResult Int(int64_t v) { return {Kind::kInt, v, {}}; }
  static ApplyResult Bulk(std::string_view s) { return {Kind::kBulk, 0, std::string(s)}; }
  static ApplyResult Error(std::string_view s) { return {Kind::kError, 0, std::string(s)}; }
};

// Flags for kExpireAt (Redis 7's EXPIRE options).
enum ExpireFlag : uint32_t { kExpireNx = 1, kExpireXx = 2, kExpireGt = 4, kExpireLt = 8 };

// The room every connection starts in, and the rooms SELECT 1..15 map to:
// they exist implicitly and are created on their first write.
inline constexpr std::string_view kDefaultRoom = "default";
bool IsBuiltinRoom(std::string_view code);

// The error for a room creation past --max-rooms: apply refuses a kRoomCreate
// whose num (the proposer's limit) the user rooms already reach, and the
// proposers refuse early with the same text.
inline constexpr char kMaxRoomsError[] = "LIMIT max number of rooms reached (--max-rooms)";

// Longest string value, as Redis's proto-max-bulk-len default.
inline constexpr size_t kMaxStringBytes = 512ull * 1024 * 1024;

class StateMachine {
 public:
  StateMachine();
  StateMachine(const StateMachine&) = delete;
  StateMachine& operator=(const StateMachine&) = delete;

  // Every key change from now on is reported to `observer` (may be null).
  void set_observer(ChangeObserver* observer) { sink_.observer = observer; }

  // Applies the entry at `index`. REQUIRES: index > applied_index().
  ApplyResult Apply(uint64_t index, std::string_view entry);
  ApplyResult Apply(uint64_t index, const EntryView& entry);

  // nullptr if the room does not exist (yet).
  const Room* FindRoom(std::string_view code) const;
  // Whether ROOM.JOIN may enter it: it exists or is builtin.
  bool RoomJoinable(std::string_view code) const;
  // Every room, in no particular order (a hash table: finding a room costs
  // the same with a million of them).
  using RoomMap = std::unordered_map<std::string, std::unique_ptr<Room>, base::StringHash,
                                     std::equal_to<>>;
  const RoomMap& rooms() const { return rooms_; }

  uint64_t applied_index() const { return applied_index_; }
  // O(1): running totals (invariant 1).
  size_t key_count() const { return key_count_; }
  size_t memory_bytes() const { return memory_bytes_; }
  // O(1): rooms made by ROOM.NEW (invariant 3).
  size_t user_room_count() const { return user_rooms_; }
  // (earliest expiry ms, code) of every room with an expiring key, earliest
  // first (invariant 2). The views point at the rooms' own codes.
  const std::set<std::pair<int64_t, std::string_view>>& expiry_index() const {
    return expiry_index_;
  }

  // Full recounts of the running totals, item by item, for tests: O(state).
  size_t RecountMemoryBytes() const;
  size_t RecountKeys() const;

  // Serialises the whole state (format in docs/snapshot_format.md).
  Status SaveSnapshot(const std::function<Status(std::string_view)>& write) const;
  // Replaces the state with a snapshot. Corruption on malformed input.
  Status LoadSnapshot(uint64_t index, std::string_view data);

 private:
  // A room's counts before a change, to account for the difference after it.
  struct Tally {
    size_t memory_bytes;
    size_t keys;
    int64_t earliest_expiry_ms;
  };
  static Tally TallyOf(const Room& room) {
    return {room.memory_bytes(), room.key_count(), room.earliest_expiry_ms()};
  }
  // What a room costs the state machine: itself plus its node in rooms_.
  static size_t RoomBytes(const std::string& code, const Room& room);

  Room* RoomForWrite(std::string_view code, int64_t now_ms, ApplyResult* error);
  ApplyResult ApplyKeyOp(Room* room, const EntryView& e);
  ApplyResult ApplySetRange(Room* room, const EntryView& e);
  ApplyResult ApplyCopy(Room* room, const EntryView& e);
  void CountIn(const std::string& code, const Room& room);
  void CountOut(const std::string& code, const Room& room);
  Room* AddRoom(std::string_view code, std::unique_ptr<Room> room);
  void EraseRoom(RoomMap::iterator it);
  // Brings the totals and the expiry index up to date after `room` changed
  // from `before` (invariants 1 and 2).
  void Account(const Room& room, const Tally& before);
  void Recount();

  RoomMap rooms_;
  size_t memory_bytes_ = 0;
  size_t key_count_ = 0;
  size_t user_rooms_ = 0;
  std::set<std::pair<int64_t, std::string_view>> expiry_index_;
  uint64_t applied_index_ = 0;
  ChangeSink sink_;    // shared with every room; updated per entry
  EntryView scratch_;  // reused by Apply(index, bytes) to avoid allocation
};

}  // namespace distri::state

#endif  // DISTRI_STATE_STATE_MACHINE_H_
