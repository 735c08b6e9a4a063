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
// Callers: the server (apply on commit, reads from command handlers, snapshot
// save/load at start and on compaction). Thread-safety: loop thread only.

#ifndef DISTRI_STATE_STATE_MACHINE_H_
#define DISTRI_STATE_STATE_MACHINE_H_

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>

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
  const std::map<std::string, std::unique_ptr<Room>, std::less<>>& rooms() const { return rooms_; }

  uint64_t applied_index() const { return applied_index_; }
  size_t key_count() const;
  size_t memory_bytes() const;

  // Serialises the whole state (format in docs/snapshot_format.md).
  Status SaveSnapshot(const std::function<Status(std::string_view)>& write) const;
  // Replaces the state with a snapshot. Corruption on malformed input.
  Status LoadSnapshot(uint64_t index, std::string_view data);

 private:
  Room* RoomForWrite(std::string_view code, int64_t now_ms, ApplyResult* error);
  ApplyResult ApplyKeyOp(Room* room, const EntryView& e);
  ApplyResult ApplySetRange(Room* room, const EntryView& e);
  ApplyResult ApplyCopy(Room* room, const EntryView& e);

  std::map<std::string, std::unique_ptr<Room>, std::less<>> rooms_;
  uint64_t applied_index_ = 0;
  ChangeSink sink_;    // shared with every room; updated per entry
  EntryView scratch_;  // reused by Apply(index, bytes) to avoid allocation
};

}  // namespace distri::state

#endif  // DISTRI_STATE_STATE_MACHINE_H_
