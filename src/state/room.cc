// Room mutation helpers that keep the keyspace and the expiry index in step.

#include "state/room.h"

#include "base/logging.h"

namespace distri::state {

namespace {
// Rough per-entry cost of a std::set node holding a pair<int64, string>.
constexpr size_t kExpireEntryOverhead = 80;
}  // namespace

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
  if (old != nullptr && old->has_expiry()) {
    expires_.erase({old->expire_at_ms(), std::string(key)});
  }
  // REQUIRES (as everywhere in Store): `value` does not point into the stored
  // item; callers that derive a value from the old one (APPEND, RENAME) copy it
  // first, so overwriting in place is safe.
  if (old != nullptr && keys_.TryOverwrite(old, value, expire_at_ms)) {
    if (expire_at_ms != 0) expires_.emplace(expire_at_ms, std::string(key));
    Notify(Change::Kind::kSet, old->key(), old);
    return;
  }
  Item* item = Item::Make(key, value, expire_at_ms);
  keys_.Put(item);
  if (expire_at_ms != 0) expires_.emplace(expire_at_ms, std::string(key));
  Notify(Change::Kind::kSet, item->key(), item);
}

bool Room::Remove(std::string_view key) {
  const Item* old = keys_.Find(key);
  if (old == nullptr) return false;
  if (old->has_expiry()) expires_.erase({old->expire_at_ms(), std::string(key)});
  std::string removed(key);  // `key` may point into the item about to be freed
  keys_.Erase(removed);
  Notify(Change::Kind::kDel, removed, nullptr);
  return true;
}

void Room::SetExpiry(std::string_view key, int64_t expire_at_ms) {
  Item* item = keys_.Find(key);
  CHECK(item != nullptr);
  if (item->has_expiry()) expires_.erase({item->expire_at_ms(), std::string(key)});
  item->set_expire_at_ms(expire_at_ms);
  if (expire_at_ms != 0) expires_.emplace(expire_at_ms, std::string(key));
  Notify(Change::Kind::kSet, item->key(), item);
}

void Room::Clear() {
  keys_.Clear();
  expires_.clear();
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
  return keys_.memory_bytes() + expires_.size() * kExpireEntryOverhead;
}

}  // namespace distri::state
