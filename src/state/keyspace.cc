// Keyspace implementation: see keyspace.h for the layout and invariants.

#include "state/keyspace.h"

#include <malloc.h>
#include <sys/random.h>
#include <xxhash.h>

#include <cstdlib>
#include <cstring>
#include <new>

#include "base/logging.h"

namespace distri::state {

namespace {

constexpr size_t kMinCapacity = 16;
constexpr uint64_t kPtrMask = (uint64_t{1} << 48) - 1;

// One seed per process, fixed at first use: table order is not observable
// state (see keyspace.h), so it need not be the same across nodes.
uint64_t HashSeed() {
  static const uint64_t seed = [] {
    uint64_t s = 0;
    if (getrandom(&s, sizeof s, 0) != sizeof s) s = 0x9e3779b97f4a7c15ull;
    return s;
  }();
  return seed;
}

Item* ItemOf(uint64_t slot) { return reinterpret_cast<Item*>(slot & kPtrMask); }
uint64_t Tag(uint64_t hash) { return hash & ~kPtrMask; }
uint64_t MakeSlot(Item* item, uint64_t hash) {
  uint64_t p = reinterpret_cast<uint64_t>(item);
  CHECK((p & ~kPtrMask) == 0) << "pointer above 48 bits";
  return Tag(hash) | p;
}

uint64_t ReverseBits(uint64_t v) {
  v = ((v >> 1) & 0x5555555555555555ull) | ((v & 0x5555555555555555ull) << 1);
  v = ((v >> 2) & 0x3333333333333333ull) | ((v & 0x3333333333333333ull) << 2);
  v = ((v >> 4) & 0x0F0F0F0F0F0F0F0Full) | ((v & 0x0F0F0F0F0F0F0F0Full) << 4);
  return __builtin_bswap64(v);
}

}  // namespace

Item* Item::Make(std::string_view key, std::string_view value, int64_t expire_at_ms) {
  CHECK(key.size() <= UINT32_MAX && value.size() <= UINT32_MAX);
  void* mem = std::malloc(sizeof(Item) + key.size() + value.size());
  if (mem == nullptr) throw std::bad_alloc();
  Item* item = new (mem) Item();
  item->key_len_ = static_cast<uint32_t>(key.size());
  item->val_len_ = static_cast<uint32_t>(value.size());
  item->meta_ = static_cast<uint64_t>(ValueType::kString) << 56;
  item->set_expire_at_ms(expire_at_ms);
  if (!key.empty()) std::memcpy(item->data_, key.data(), key.size());
  if (!value.empty()) std::memcpy(item->data_ + key.size(), value.data(), value.size());
  return item;
}

void Item::Free(Item* item) { std::free(item); }

Keyspace::Keyspace() = default;

Keyspace::~Keyspace() {
  Clear();
  std::free(slots_);
}

uint64_t Keyspace::Hash(std::string_view key) const {
  return XXH3_64bits_withSeed(key.data(), key.size(), HashSeed());
}

size_t Keyspace::FindSlot(std::string_view key, uint64_t hash) const {
  if (capacity_ == 0) return capacity_;
  size_t mask = capacity_ - 1;
  uint64_t tag = Tag(hash);
  for (size_t i = hash & mask;; i = (i + 1) & mask) {
    uint64_t s = slots_[i];
    if (s == 0) return capacity_;
    if ((s & ~kPtrMask) == tag && ItemOf(s)->key() == key) return i;
  }
}

Item* Keyspace::Find(std::string_view key) const {
  size_t i = FindSlot(key, Hash(key));
  return i == capacity_ ? nullptr : ItemOf(slots_[i]);
}

void Keyspace::InsertNew(uint64_t* slots, size_t mask, Item* item, uint64_t hash) {
  size_t i = hash & mask;
  while (slots[i] != 0) i = (i + 1) & mask;
  slots[i] = MakeSlot(item, hash);
}

void Keyspace::Resize(size_t new_capacity) {
  uint64_t* fresh = static_cast<uint64_t*>(std::calloc(new_capacity, sizeof(uint64_t)));
  if (fresh == nullptr) throw std::bad_alloc();
  for (size_t i = 0; i < capacity_; i++) {
    if (slots_[i] == 0) continue;
    Item* item = ItemOf(slots_[i]);
    InsertNew(fresh, new_capacity - 1, item, Hash(item->key()));
  }
  std::free(slots_);
  slots_ = fresh;
  capacity_ = new_capacity;
}

void Keyspace::Put(Item* item) {
  uint64_t hash = Hash(item->key());
  size_t i = FindSlot(item->key(), hash);
  item_bytes_ += item->footprint();
  if (i != capacity_) {
    Item* old = ItemOf(slots_[i]);
    item_bytes_ -= old->footprint();
    Item::Free(old);
    slots_[i] = MakeSlot(item, hash);
    return;
  }
  if ((size_ + 1) * 4 > capacity_ * 3) Resize(capacity_ == 0 ? kMinCapacity : capacity_ * 2);
  InsertNew(slots_, capacity_ - 1, item, hash);
  size_++;
}

bool Keyspace::TryOverwrite(Item* item, std::string_view value, int64_t expire_at_ms) {
  size_t capacity = malloc_usable_size(item) - sizeof(Item) - item->key_len_;
  // Reuse only when the block is not much larger than needed, so a key that
  // once held a big value does not pin that memory forever.
  if (value.size() > capacity || capacity > 2 * value.size() + 64) return false;
  item_bytes_ -= item->footprint();
  if (!value.empty()) std::memcpy(item->data_ + item->key_len_, value.data(), value.size());
  item->val_len_ = static_cast<uint32_t>(value.size());
  item->set_expire_at_ms(expire_at_ms);
  item_bytes_ += item->footprint();
  return true;
}

bool Keyspace::Erase(std::string_view key) {
  size_t i = FindSlot(key, Hash(key));
  if (i == capacity_) return false;
  Item* old = ItemOf(slots_[i]);
  item_bytes_ -= old->footprint();
  Item::Free(old);
  size_--;
  // Backward-shift deletion keeps invariant 1 without tombstones: pull later
  // members of the probe run back into the hole when their home allows it.
  size_t mask = capacity_ - 1;
  size_t hole = i;
  for (size_t j = (i + 1) & mask; slots_[j] != 0; j = (j + 1) & mask) {
    size_t home = Hash(ItemOf(slots_[j])->key()) & mask;
    // Move j into the hole unless its home lies cyclically in (hole, j].
    bool home_after_hole = (hole <= j) ? (home > hole && home <= j) : (home > hole || home <= j);
    if (!home_after_hole) {
      slots_[hole] = slots_[j];
      hole = j;
    }
  }
  slots_[hole] = 0;
  if (capacity_ > kMinCapacity && size_ * 8 < capacity_) Resize(capacity_ / 2);
  return true;
}

void Keyspace::Clear() {
  for (size_t i = 0; i < capacity_; i++) {
    if (slots_[i] != 0) Item::Free(ItemOf(slots_[i]));
  }
  std::free(slots_);
  slots_ = nullptr;
  capacity_ = 0;
  size_ = 0;
  item_bytes_ = 0;
}

size_t Keyspace::RecountMemoryBytes() const {
  size_t n = capacity_ * sizeof(uint64_t);
  ForEach([&](const Item& item) { n += item.footprint(); });
  return n;
}

void Keyspace::ForEach(const std::function<void(const Item&)>& fn) const {
  for (size_t i = 0; i < capacity_; i++) {
    if (slots_[i] != 0) fn(*ItemOf(slots_[i]));
  }
}

const Item* Keyspace::ItemAtOrAfter(uint64_t slot) const {
  if (size_ == 0) return nullptr;
  const uint64_t mask = capacity_ - 1;
  for (uint64_t i = slot & mask;; i = (i + 1) & mask) {
    if (slots_[i] != 0) return ItemOf(slots_[i]);  // size_ > 0: some slot is full
  }
}

uint64_t Keyspace::Scan(uint64_t cursor, size_t count,
                        const std::function<void(const Item&)>& fn) const {
  // A table never has 2^kMaxCursorBits slots (each is 8 bytes of a 48-bit
  // address space), so no scan of any size could have issued such a cursor:
  // it is past the end (Redis answers SCAN 18446744073709551615 the same way).
  if (size_ == 0 || (cursor >> kMaxCursorBits) != 0) return 0;
  const uint64_t mask = capacity_ - 1;
  uint64_t v = cursor;
  size_t visited = 0;
  do {
    size_t home = v & mask;
    for (size_t j = home; slots_[j] != 0; j = (j + 1) & mask) {
      const Item* item = ItemOf(slots_[j]);
      if ((Hash(item->key()) & mask) == home) fn(*item);
    }
    // Increment the reversed cursor: the bits above mask are set so the carry
    // runs into the bits that matter, as in Redis's dictScan.
    v |= ~mask;
    v = ReverseBits(v);
    v++;
    v = ReverseBits(v);
    visited++;
  } while (v != 0 && visited < count);
  return v;
}

}  // namespace distri::state
