// Room mutation helpers that keep the keyspace and the expiry index in step.

#include "state/room.h"

#include "base/logging.h"

namespace distri::state {

namespace {
// Rough per-entry cost of a std::set node holding a pair<int64, string>.
constexpr size_t kExpireEntryOverhead = 80;
}  // namespace

void Room::Store(std::string_view key, std::string_view value, int64_t expire_at_ms) {
  const Item* old = keys_.Find(key);
  if (old != nullptr && old->has_expiry()) {
    expires_.erase({old->expire_at_ms(), std::string(key)});
  }
  keys_.Put(Item::Make(key, value, expire_at_ms));
  if (expire_at_ms != 0) expires_.emplace(expire_at_ms, std::string(key));
}

bool Room::Remove(std::string_view key) {
  const Item* old = keys_.Find(key);
  if (old == nullptr) return false;
  if (old->has_expiry()) expires_.erase({old->expire_at_ms(), std::string(key)});
  return keys_.Erase(key);
}

void Room::SetExpiry(std::string_view key, int64_t expire_at_ms) {
  Item* item = keys_.Find(key);
  CHECK(item != nullptr);
  if (item->has_expiry()) expires_.erase({item->expire_at_ms(), std::string(key)});
  item->set_expire_at_ms(expire_at_ms);
  if (expire_at_ms != 0) expires_.emplace(expire_at_ms, std::string(key));
}

void Room::Clear() {
  keys_.Clear();
  expires_.clear();
}

void Room::CollectExpired(int64_t now_ms, size_t max, std::vector<std::string>* out) const {
  for (const auto& [at, key] : expires_) {
    if (at > now_ms || max == 0) break;
    out->push_back(key);
    max--;
  }
}

size_t Room::memory_bytes() const {
  return keys_.memory_bytes() + expires_.size() * kExpireEntryOverhead;
}

}  // namespace distri::state
