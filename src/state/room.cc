// Room mutation helpers that keep the keyspace and the expiry index in step.

#include "state/room.h"

#include "base/logging.h"

namespace distri::state {

namespace {

// Rough per-entry cost of a std::set node holding a pair<int64, string>
// (node header, the pair, malloc's rounding), before the key's own heap block.
constexpr size_t kExpireEntryOverhead = 80;

}  // namespace

size_t StringHeapBytes(const std::string& s) {
  const char* object = reinterpret_cast<const char*>(&s);
  const char* data = s.data();
  return (data >= object && data < object + sizeof s) ? 0 : s.capacity() + 1;
}

// The set holds its own copy of the key: each entry is charged for its node
// and whatever that copy allocated (invariant 2).
void Room::AddExpiry(int64_t at_ms, std::string_view key) {
  auto [it, inserted] = expires_.emplace(at_ms, std::string(key));
  if (inserted) expire_bytes_ += kExpireEntryOverhead + StringHeapBytes(it->second);
}

void Room::DropExpiry(int64_t at_ms, std::string_view key) {
  auto it = expires_.find({at_ms, std::string(key)});
  if (it == expires_.end()) return;
  expire_bytes_ -= kExpireEntryOverhead + StringHeapBytes(it->second);
  expires_.erase(it);
}

void Room::Notify(Change::Kind kind, std::string_view key, const Item* item) const {
  if (sink_ == nullptr || sink_->observer == nullptr) return;
  Change c{kind, sink_->revision, code_, key, {}, 0, false};
  if (item != nullptr) {
    c.value = item->value();
    c.expire_at_ms = item->expire_at_ms();
  }
  c.expired = kind == Change::Kind::kDel && sink_->expiring;
  sink_->observer->OnChange(c);
}

void Room::Store(std::string_view key, std::string_view value, int64_t expire_at_ms) {
  Item* old = keys_.Find(key);
  if (old != nullptr && old->has_expiry()) DropExpiry(old->expire_at_ms(), key);
  // REQUIRES (as everywhere in Store): `value` does not point into the stored
  // item; callers that derive a value from the old one (APPEND, RENAME) copy it
  // first, so overwriting in place is safe.
  if (old != nullptr && keys_.TryOverwrite(old, value, expire_at_ms)) {
    if (expire_at_ms != 0) AddExpiry(expire_at_ms, key);
    Notify(Change::Kind::kSet, old->key(), old);
    return;
  }
  Item* item = Item::Make(key, value, expire_at_ms);
  keys_.Put(item);
  if (expire_at_ms != 0) AddExpiry(expire_at_ms, key);
  Notify(Change::Kind::kSet, item->key(), item);
}

bool Room::Remove(std::string_view key) {
  const Item* old = keys_.Find(key);
  if (old == nullptr) return false;
  if (old->has_expiry()) DropExpiry(old->expire_at_ms(), key);
  std::string removed(key);  // `key` may point into the item about to be freed
  keys_.Erase(removed);
  Notify(Change::Kind::kDel, removed, nullptr);
  return true;
}

void Room::SetExpiry(std::string_view key, int64_t expire_at_ms) {
  Item* item = keys_.Find(key);
  CHECK(item != nullptr);
  if (item->has_expiry()) DropExpiry(item->expire_at_ms(), key);
  item->set_expire_at_ms(expire_at_ms);
  if (expire_at_ms != 0) AddExpiry(expire_at_ms, key);
  Notify(Change::Kind::kSet, item->key(), item);
}

void Room::Clear() {
  keys_.Clear();
  expires_.clear();
  expire_bytes_ = 0;
  Notify(Change::Kind::kFlush, {}, nullptr);
}

void Room::CollectExpired(int64_t now_ms, size_t max, std::vector<std::string>* out) const {
  for (const auto& [at, key] : expires_) {
    if (at > now_ms || max == 0) break;
    out->push_back(key);
    max--;
  }
}

size_t Room::memory_bytes() const {
  return sizeof(Room) + StringHeapBytes(code_) + StringHeapBytes(name_) + keys_.memory_bytes() +
         expire_bytes_;
}

size_t Room::RecountMemoryBytes() const {
  size_t n = sizeof(Room) + StringHeapBytes(code_) + StringHeapBytes(name_) +
             keys_.RecountMemoryBytes();
  for (const auto& [at, key] : expires_) n += kExpireEntryOverhead + StringHeapBytes(key);
  return n;
}

}  // namespace distri::state
