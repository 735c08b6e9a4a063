// Keyspace: the key -> value table of one room.
//
// Memory is the point of this file. Each key lives in one heap block, an Item,
// holding a 16-byte header, the key bytes and the value bytes. The table is an
// open-addressing array of tagged Item pointers (linear probing, backward-shift
// deletion, so there are no tombstones). The top 16 bits of each slot hold
// bits of the key's hash, so a probe rarely touches an Item that doesn't match.
// With 100-byte values this costs about 150 bytes per key, less than Redis.
//
// Invariants:
//  1. Every Item is reachable from its home slot (hash & mask) by probing
//     forward without crossing an empty slot.
//  2. size_ <= capacity * 3/4 after every insert.
//  3. Items are owned by the table: replacing or erasing one frees it.
//
// SCAN visits home buckets in reverse-binary order (as Redis does for its
// chained tables), returning for each home bucket every Item whose home it is.
// That order survives growth and shrinking between calls, so a full SCAN
// returns every key present for the whole scan at least once.
//
// Thread-safety: none; owned by the state machine on the loop thread.
// Hashing is seeded per process (against collision attacks), so table order
// differs between runs and nodes: nothing observable may depend on it except
// SCAN cursors, which are only valid against the node that issued them.

#ifndef DISTRI_STATE_KEYSPACE_H_
#define DISTRI_STATE_KEYSPACE_H_

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string_view>

namespace distri::state {

enum class ValueType : uint8_t { kString = 0 };

class Item {
 public:
  friend class Keyspace;
  // Allocates an Item holding copies of key and value.
  static Item* Make(std::string_view key, std::string_view value, int64_t expire_at_ms);
  static void Free(Item* item);

  std::string_view key() const { return {data_, key_len_}; }
  std::string_view value() const { return {data_ + key_len_, val_len_}; }
  int64_t expire_at_ms() const { return static_cast<int64_t>(meta_ & kExpireMask); }
  bool has_expiry() const { return expire_at_ms() != 0; }
  bool expired(int64_t now_ms) const { return has_expiry() && expire_at_ms() <= now_ms; }
  ValueType type() const { return static_cast<ValueType>(meta_ >> 56); }
  void set_expire_at_ms(int64_t ms) { meta_ = (meta_ & ~kExpireMask) | (static_cast<uint64_t>(ms) & kExpireMask); }
  // Bytes charged to the memory limit for this item.
  size_t footprint() const { return sizeof(Item) + key_len_ + val_len_; }

 private:
  static constexpr uint64_t kExpireMask = (uint64_t{1} << 56) - 1;
  Item() = default;
  uint32_t key_len_;
  uint32_t val_len_;
  uint64_t meta_;  // type << 56 | expire_at_ms (0 = no expiry)
  char data_[];    // key bytes, then value bytes
};

class Keyspace {
 public:
  Keyspace();
  ~Keyspace();
  Keyspace(const Keyspace&) = delete;
  Keyspace& operator=(const Keyspace&) = delete;

  // Returns the item for key, or nullptr. Expiry is the caller's business.
  Item* Find(std::string_view key) const;
  // Inserts or replaces; returns the replaced item's footprint change in bytes.
  // Takes ownership of item.
  void Put(Item* item);
  // Overwrites `item`'s value and expiry in place when the new value fits in
  // the item's allocation (no malloc/free: the common case of counters and of
  // rewriting a key with a value of similar size). False if it does not fit.
  // REQUIRES: item belongs to this table.
  bool TryOverwrite(Item* item, std::string_view value, int64_t expire_at_ms);
  // Removes key; returns true if it was present.
  bool Erase(std::string_view key);
  void Clear();

  size_t size() const { return size_; }
  // Item bytes plus table slots: what this room costs, for stats and maxmemory.
  size_t memory_bytes() const { return item_bytes_ + capacity_ * sizeof(uint64_t); }
  // The same, counted item by item: O(n), for tests of the running total.
  size_t RecountMemoryBytes() const;

  // Calls fn for every item, in table order. fn must not modify the table.
  void ForEach(const std::function<void(const Item&)>& fn) const;
  // One SCAN step starting at cursor; returns the next cursor (0 = done).
  // Visits at least `count` home buckets (fewer at the end). A cursor of
  // kMaxCursorBits bits or more visits nothing and returns 0.
  uint64_t Scan(uint64_t cursor, size_t count, const std::function<void(const Item&)>& fn) const;
  static constexpr int kMaxCursorBits = 48;

  // The first item in table order at or after `slot` (taken modulo the
  // capacity, wrapping around); nullptr if empty. RANDOMKEY passes a random
  // slot: not uniform (an item after a run of empty slots is likelier), which
  // Redis's bucket sampling is not either.
  const Item* ItemAtOrAfter(uint64_t slot) const;

 private:
  uint64_t Hash(std::string_view key) const;
  size_t FindSlot(std::string_view key, uint64_t hash) const;  // capacity_ if absent
  void Resize(size_t new_capacity);
  void InsertNew(uint64_t* slots, size_t mask, Item* item, uint64_t hash);

  uint64_t* slots_ = nullptr;  // tag << 48 | pointer; 0 = empty
  size_t capacity_ = 0;        // power of two, or 0
  size_t size_ = 0;
  size_t item_bytes_ = 0;
};

}  // namespace distri::state

#endif  // DISTRI_STATE_KEYSPACE_H_
