// Room: one shared dictionary, named by its code.
//
// A room owns its keyspace and an index of keys with an expiry, ordered by
// expiry time, so the server's active-expiry cycle finds due keys without
// sampling. All mutation goes through Store/Remove/SetExpiry/Clear, which keep
// the two structures in step.
//
// Invariants:
//  1. A key is in `expires_` iff its Item has an expiry, with the same time.
//  2. expire_bytes_ is the charge of every entry of `expires_` (see room.cc),
//     so memory_bytes() is O(1): the state machine's running total is built
//     from it (state_machine.h).
//
// Thread-safety: none; owned by the StateMachine on the loop thread.

#ifndef DISTRI_STATE_ROOM_H_
#define DISTRI_STATE_ROOM_H_

#include <cstdint>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "state/change.h"
#include "state/keyspace.h"

namespace distri::state {

// Heap bytes a std::string holds beyond its object: none while the text fits
// in the object itself (the short-string buffer), else its allocation.
size_t StringHeapBytes(const std::string& s);

class Room {
 public:
  // `sink` (may be null) receives a Change for every mutation below.
  Room(std::string code, std::string name, int64_t created_at_ms, const ChangeSink* sink = nullptr)
      : code_(std::move(code)), name_(std::move(name)), created_at_ms_(created_at_ms), sink_(sink) {}
  Room(const Room&) = delete;
  Room& operator=(const Room&) = delete;

  void set_sink(const ChangeSink* sink) { sink_ = sink; }
  const std::string& code() const { return code_; }
  const std::string& name() const { return name_; }
  int64_t created_at_ms() const { return created_at_ms_; }
  uint64_t last_write_revision() const { return last_write_revision_; }
  int64_t last_write_ms() const { return last_write_ms_; }
  void MarkWrite(uint64_t revision, int64_t now_ms) {
    last_write_revision_ = revision;
    last_write_ms_ = now_ms;
  }

  // The live item for key at now_ms: nullptr if absent or already expired.
  const Item* Get(std::string_view key, int64_t now_ms) const {
    const Item* item = keys_.Find(key);
    return (item == nullptr || item->expired(now_ms)) ? nullptr : item;
  }
  // Inserts or replaces key. expire_at_ms 0 = no expiry.
  void Store(std::string_view key, std::string_view value, int64_t expire_at_ms);
  // Removes key (expired or not); true if it was there.
  bool Remove(std::string_view key);
  // REQUIRES: key is present.
  void SetExpiry(std::string_view key, int64_t expire_at_ms);
  // Removes every key (reported as one kFlush change).
  void Clear();

  // Appends up to max keys whose expiry is <= now_ms, earliest first.
  void CollectExpired(int64_t now_ms, size_t max, std::vector<std::string>* out) const;

  size_t key_count() const { return keys_.size(); }
  size_t expiring_count() const { return expires_.size(); }
  // The earliest expiry of any key (due or not), or 0 when no key has one.
  int64_t earliest_expiry_ms() const { return expires_.empty() ? 0 : expires_.begin()->first; }
  // What this room costs: the Room object with its code and name, the keys
  // and their table, and the expiry index. O(1).
  size_t memory_bytes() const;
  // The same, counted entry by entry: O(keys), for tests of the running totals.
  size_t RecountMemoryBytes() const;
  const Keyspace& keys() const { return keys_; }

 private:
  void Notify(Change::Kind kind, std::string_view key, const Item* item) const;
  void AddExpiry(int64_t at_ms, std::string_view key);
  void DropExpiry(int64_t at_ms, std::string_view key);

  std::string code_;
  std::string name_;
  int64_t created_at_ms_;
  uint64_t last_write_revision_ = 0;
  int64_t last_write_ms_ = 0;
  const ChangeSink* sink_;
  Keyspace keys_;
  std::set<std::pair<int64_t, std::string>> expires_;
  size_t expire_bytes_ = 0;
};

}  // namespace distri::state

#endif  // DISTRI_STATE_ROOM_H_
