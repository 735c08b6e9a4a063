// StateMachine::Apply and snapshot (de)serialisation. See state_machine.h.
//
// Error replies produced here are part of the deterministic result: the same
// entry applied to the same state yields the same error on every replica.

#include "state/state_machine.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <optional>
#include <cstring>

#include "base/byte_reader.h"
#include "base/endian.h"
#include "base/logging.h"
#include "base/strings.h"

namespace distri::state {

namespace {

constexpr char kErrNotInteger[] = "ERR value is not an integer or out of range";
constexpr char kErrNotFloat[] = "ERR value is not a valid float";
constexpr char kErrOverflow[] = "ERR increment or decrement would overflow";
constexpr char kErrNoRoom[] = "NOTFOUND no such room";
constexpr char kErrGetExTime[] = "ERR invalid expire time in 'getex' command";
constexpr char kErrStringTooLong[] = "ERR string exceeds maximum allowed size (proto-max-bulk-len)";

// Snapshot layout version (docs/snapshot_format.md).
constexpr uint8_t kSnapshotVersion = 1;

}  // namespace

bool IsBuiltinRoom(std::string_view code) {
  if (code == kDefaultRoom) return true;
  // "1".."15": the rooms SELECT maps to.
  if (code.size() == 1) return code[0] >= '1' && code[0] <= '9';
  if (code.size() == 2) return code[0] == '1' && code[1] >= '0' && code[1] <= '5';
  return false;
}

StateMachine::StateMachine() = default;

const Room* StateMachine::FindRoom(std::string_view code) const {
  auto it = rooms_.find(code);
  return it == rooms_.end() ? nullptr : it->second.get();
}

bool StateMachine::RoomJoinable(std::string_view code) const {
  return IsBuiltinRoom(code) || FindRoom(code) != nullptr;
}

// ---------------------------------------------------------------------------
// Bookkeeping: running totals and the expiry index (state_machine.h,
// invariants 1-3).

namespace {

// A std::set node: the red-black header (colour, parent, left, right) before
// the stored value, as libstdc++ and libc++ lay it out.
constexpr size_t kTreeNodeHeader = 32;
// A node of rooms_ (next pointer, the pair, the cached hash) and about one
// bucket pointer per room (the table keeps its load factor near 1).
constexpr size_t kRoomNodeBytes = sizeof(void*) +
                                  sizeof(std::pair<const std::string, std::unique_ptr<Room>>) +
                                  sizeof(size_t) + sizeof(void*);
constexpr size_t kExpiryIndexNodeBytes =
    kTreeNodeHeader + sizeof(std::pair<int64_t, std::string_view>);

}  // namespace

size_t StateMachine::RoomBytes(const std::string& code, const Room& room) {
  return kRoomNodeBytes + StringHeapBytes(code) + room.memory_bytes();
}

// Adds one room's share of the totals and its expiry index entry
// (invariants 1 and 2), or takes them away again.
void StateMachine::CountIn(const std::string& code, const Room& room) {
  memory_bytes_ += RoomBytes(code, room);
  key_count_ += room.key_count();
  if (!IsBuiltinRoom(code)) user_rooms_++;
  if (room.earliest_expiry_ms() != 0) {
    expiry_index_.emplace(room.earliest_expiry_ms(), room.code());
    memory_bytes_ += kExpiryIndexNodeBytes;
  }
}

void StateMachine::CountOut(const std::string& code, const Room& room) {
  memory_bytes_ -= RoomBytes(code, room);
  key_count_ -= room.key_count();
  if (!IsBuiltinRoom(code)) user_rooms_--;
  if (room.earliest_expiry_ms() != 0) {
    expiry_index_.erase({room.earliest_expiry_ms(), room.code()});
    memory_bytes_ -= kExpiryIndexNodeBytes;
  }
}

Room* StateMachine::AddRoom(std::string_view code, std::unique_ptr<Room> room) {
  auto [it, inserted] = rooms_.emplace(std::string(code), std::move(room));
  CHECK(inserted) << "room added twice";
  CountIn(it->first, *it->second);
  return it->second.get();
}

void StateMachine::EraseRoom(RoomMap::iterator it) {
  CountOut(it->first, *it->second);
  rooms_.erase(it);
}

void StateMachine::Account(const Room& room, const Tally& before) {
  memory_bytes_ = memory_bytes_ - before.memory_bytes + room.memory_bytes();
  key_count_ = key_count_ - before.keys + room.key_count();
  const int64_t earliest = room.earliest_expiry_ms();
  if (earliest == before.earliest_expiry_ms) return;
  if (before.earliest_expiry_ms != 0) {
    expiry_index_.erase({before.earliest_expiry_ms, room.code()});
    memory_bytes_ -= kExpiryIndexNodeBytes;
  }
  if (earliest != 0) {
    expiry_index_.emplace(earliest, room.code());
    memory_bytes_ += kExpiryIndexNodeBytes;
  }
}

void StateMachine::Recount() {
  memory_bytes_ = 0;
  key_count_ = 0;
  user_rooms_ = 0;
  expiry_index_.clear();
  for (const auto& [code, room] : rooms_) CountIn(code, *room);
}

size_t StateMachine::RecountMemoryBytes() const {
  size_t n = 0;
  for (const auto& [code, room] : rooms_) {
    n += kRoomNodeBytes + StringHeapBytes(code) + room->RecountMemoryBytes();
    if (room->expiring_count() != 0) n += kExpiryIndexNodeBytes;
  }
  return n;
}

size_t StateMachine::RecountKeys() const {
  size_t n = 0;
  for (const auto& [code, room] : rooms_) n += room->key_count();
  return n;
}

Room* StateMachine::RoomForWrite(std::string_view code, int64_t now_ms, ApplyResult* error) {
  auto it = rooms_.find(code);
  if (it != rooms_.end()) return it->second.get();
  if (!IsBuiltinRoom(code)) {
    *error = ApplyResult::Error(kErrNoRoom);
    return nullptr;
  }
  return AddRoom(code,
                 std::make_unique<Room>(std::string(code), std::string(code), now_ms, &sink_));
}

ApplyResult StateMachine::Apply(uint64_t index, std::string_view entry) {
  Status st = DecodeEntry(entry, &scratch_);
  if (!st.ok()) {
    // A committed entry that does not decode is a bug in the proposer or a
    // corrupted log that passed its checksum: refuse to guess.
    LOG(FATAL) << "entry " << index << ": " << st.ToString();
  }
  return Apply(index, scratch_);
}

ApplyResult StateMachine::Apply(uint64_t index, const EntryView& e) {
  CHECK(index > applied_index_) << "apply out of order: " << index << " after " << applied_index_;
  applied_index_ = index;
  sink_.revision = index;
  sink_.expiring = e.op == Op::kExpireKeys;
  switch (e.op) {
    case Op::kFlushAll:
      // O(rooms), once per FLUSHALL: every room is told, so its mirrors flush.
      for (auto& [code, room] : rooms_) {
        Tally before = TallyOf(*room);
        room->Clear();
        room->MarkWrite(index, e.now_ms);
        Account(*room, before);
      }
      return ApplyResult::Ok();
    case Op::kRoomCreate: {
      if (rooms_.count(e.room) != 0 || IsBuiltinRoom(e.room)) {
        return ApplyResult::Error("ERR room already exists");
      }
      // num is the proposer's --max-rooms (0 = none): in the entry, so every
      // replica refuses the same creations.
      if (e.num > 0 && user_rooms_ >= static_cast<uint64_t>(e.num)) {
        return ApplyResult::Error(kMaxRoomsError);
      }
      std::string_view name = e.args.empty() ? std::string_view(e.room) : e.args[0];
      AddRoom(e.room, std::make_unique<Room>(std::string(e.room), std::string(name), e.now_ms,
                                             &sink_));
      return ApplyResult::Bulk(e.room);
    }
    case Op::kRoomDrop: {
      if (e.room == kDefaultRoom) return ApplyResult::Error("ERR the default room cannot be dropped");
      auto it = rooms_.find(e.room);
      if (it == rooms_.end()) {
        return IsBuiltinRoom(e.room) ? ApplyResult::Ok() : ApplyResult::Error(kErrNoRoom);
      }
      Tally before = TallyOf(*it->second);
      it->second->Clear();  // tells observers the keys are gone
      Account(*it->second, before);
      EraseRoom(it);
      return ApplyResult::Ok();
    }
    default:
      break;
  }
  ApplyResult error;
  Room* room = RoomForWrite(e.room, e.now_ms, &error);
  if (room == nullptr) return error;
  room->MarkWrite(index, e.now_ms);
  Tally before = TallyOf(*room);
  ApplyResult result = ApplyKeyOp(room, e);
  Account(*room, before);
  return result;
}

namespace {

// RENAME and RENAMENX once their checks passed: `src` (the item at `from`)
// moves to `to` with its expiry. The value is copied first: removing `from`
// frees the item it lives in.
void MoveKey(Room* room, const Item& src, std::string_view from, std::string_view to) {
  std::string value(src.value());
  const int64_t expire = src.expire_at_ms();
  room->Remove(from);
  room->Store(to, value, expire);
}

}  // namespace

ApplyResult StateMachine::ApplyKeyOp(Room* room, const EntryView& e) {
  const int64_t now = e.now_ms;
  auto need_args = [&](size_t n) { CHECK(e.args.size() >= n) << "entry with too few args"; };
  switch (e.op) {
    case Op::kSet: {
      need_args(2);
      std::string_view key = e.args[0];
      const Item* old = room->Get(key, now);
      std::optional<std::string> old_value;
      if ((e.flags & kSetGet) && old != nullptr) old_value.emplace(old->value());
      bool skip = ((e.flags & kSetNx) && old != nullptr) || ((e.flags & kSetXx) && old == nullptr);
      if (!skip) {
        int64_t expire = e.num;
        if ((e.flags & kSetKeepTtl) && old != nullptr) expire = old->expire_at_ms();
        if (expire != 0 && expire <= now) {
          room->Remove(key);  // EXAT/PXAT in the past: set and expire at once
        } else {
          room->Store(key, e.args[1], expire);
        }
      }
      if (e.flags & kSetGet) return old_value ? ApplyResult::Bulk(*old_value) : ApplyResult::Nil();
      return skip ? ApplyResult::Nil() : ApplyResult::Ok();
    }
    case Op::kDel: {
      int64_t n = 0;
      for (std::string_view key : e.args) {
        bool live = room->Get(key, now) != nullptr;
        if (room->Remove(key) && live) n++;
      }
      return ApplyResult::Int(n);
    }
    case Op::kGetDel: {
      need_args(1);
      const Item* old = room->Get(e.args[0], now);
      if (old == nullptr) {
        room->Remove(e.args[0]);
        return ApplyResult::Nil();
      }
      ApplyResult r = ApplyResult::Bulk(old->value());
      room->Remove(e.args[0]);
      return r;
    }
    case Op::kIncrBy: {
      need_args(1);
      const Item* old = room->Get(e.args[0], now);
      int64_t v = 0;
      if (old != nullptr && !base::ParseInt64(old->value(), &v)) return ApplyResult::Error(kErrNotInteger);
      int64_t result;
      if (__builtin_add_overflow(v, e.num, &result)) return ApplyResult::Error(kErrOverflow);
      char buf[24];
      auto [end, ec] = std::to_chars(buf, buf + sizeof buf, result);
      room->Store(e.args[0], std::string_view(buf, end - buf), old ? old->expire_at_ms() : 0);
      return ApplyResult::Int(result);
    }
    case Op::kIncrByFloat: {
      need_args(2);
      const Item* old = room->Get(e.args[0], now);
      long double v = 0, delta = 0;
      if (old != nullptr && !base::ParseLongDouble(old->value(), &v)) return ApplyResult::Error(kErrNotFloat);
      if (!base::ParseLongDouble(e.args[1], &delta)) return ApplyResult::Error(kErrNotFloat);
      long double result = v + delta;
      if (std::isnan(result) || std::isinf(result)) {
        return ApplyResult::Error("ERR increment would produce NaN or Infinity");
      }
      std::string text = base::FormatLongDouble(result);
      room->Store(e.args[0], text, old ? old->expire_at_ms() : 0);
      return ApplyResult::Bulk(text);
    }
    case Op::kAppend: {
      need_args(2);
      const Item* old = room->Get(e.args[0], now);
      size_t old_len = old ? old->value().size() : 0;
      if (old_len + e.args[1].size() > kMaxStringBytes) return ApplyResult::Error(kErrStringTooLong);
      std::string value;
      value.reserve(old_len + e.args[1].size());
      if (old != nullptr) value.append(old->value());
      value.append(e.args[1]);
      room->Store(e.args[0], value, old ? old->expire_at_ms() : 0);
      return ApplyResult::Int(static_cast<int64_t>(value.size()));
    }
    case Op::kExpireAt: {
      need_args(1);
      const Item* item = room->Get(e.args[0], now);
      if (item == nullptr) return ApplyResult::Int(0);
      int64_t cur = item->expire_at_ms();  // 0 = persistent, which GT/LT treat as infinite
      if ((e.flags & kExpireNx) && cur != 0) return ApplyResult::Int(0);
      if ((e.flags & kExpireXx) && cur == 0) return ApplyResult::Int(0);
      if ((e.flags & kExpireGt) && (cur == 0 || e.num <= cur)) return ApplyResult::Int(0);
      if ((e.flags & kExpireLt) && cur != 0 && e.num >= cur) return ApplyResult::Int(0);
      if (e.num <= now) {
        room->Remove(e.args[0]);
      } else {
        room->SetExpiry(e.args[0], e.num);
      }
      return ApplyResult::Int(1);
    }
    case Op::kPersist: {
      need_args(1);
      const Item* item = room->Get(e.args[0], now);
      if (item == nullptr || !item->has_expiry()) return ApplyResult::Int(0);
      room->SetExpiry(e.args[0], 0);
      return ApplyResult::Int(1);
    }
    case Op::kRename: {
      need_args(2);
      const Item* src = room->Get(e.args[0], now);
      if (src == nullptr) return ApplyResult::Error("ERR no such key");
      if (e.args[0] == e.args[1]) return ApplyResult::Ok();
      MoveKey(room, *src, e.args[0], e.args[1]);
      return ApplyResult::Ok();
    }
    case Op::kRenameNx: {
      need_args(2);
      const Item* src = room->Get(e.args[0], now);
      if (src == nullptr) return ApplyResult::Error("ERR no such key");
      if (e.args[0] == e.args[1] || room->Get(e.args[1], now) != nullptr) {
        return ApplyResult::Int(0);
      }
      MoveKey(room, *src, e.args[0], e.args[1]);
      return ApplyResult::Int(1);
    }
    case Op::kSetRange:
      return ApplySetRange(room, e);
    case Op::kGetEx: {
      need_args(1);
      const Item* item = room->Get(e.args[0], now);
      if (item == nullptr) return ApplyResult::Nil();
      if (e.flags & kGetExNotInteger) return ApplyResult::Error(kErrNotInteger);
      if (e.flags & kGetExBadTime) return ApplyResult::Error(kErrGetExTime);
      ApplyResult r = ApplyResult::Bulk(item->value());
      if ((e.flags & kGetExPersist) && item->has_expiry()) {
        room->SetExpiry(e.args[0], 0);
      } else if (e.flags & kGetExExpire) {
        if (e.num <= now) {
          room->Remove(e.args[0]);  // EXAT/PXAT in the past: reply, then delete
        } else {
          room->SetExpiry(e.args[0], e.num);
        }
      }
      return r;
    }
    case Op::kCopy:
      return ApplyCopy(room, e);
    case Op::kFlushRoom:
      room->Clear();
      return ApplyResult::Ok();
    case Op::kMSet: {
      CHECK(e.args.size() % 2 == 0);
      if (e.flags & kSetNx) {
        for (size_t i = 0; i < e.args.size(); i += 2) {
          if (room->Get(e.args[i], now) != nullptr) return ApplyResult::Int(0);
        }
      }
      for (size_t i = 0; i < e.args.size(); i += 2) room->Store(e.args[i], e.args[i + 1], 0);
      return (e.flags & kSetNx) ? ApplyResult::Int(1) : ApplyResult::Ok();
    }
    case Op::kCas: {
      const Item* item = room->Get(e.args.empty() ? std::string_view() : e.args[0], now);
      if (e.flags & kCasMustNotExist) {
        need_args(2);
        if (item != nullptr) return ApplyResult::Int(0);
        room->Store(e.args[0], e.args[1], 0);
        return ApplyResult::Int(1);
      }
      need_args(3);
      if (item == nullptr || item->value() != e.args[1]) return ApplyResult::Int(0);
      room->Store(e.args[0], e.args[2], 0);
      return ApplyResult::Int(1);
    }
    case Op::kExpireKeys: {
      int64_t n = 0;
      for (std::string_view key : e.args) {
        const Item* item = room->keys().Find(key);
        if (item != nullptr && item->expired(now)) n += room->Remove(key) ? 1 : 0;
      }
      return ApplyResult::Int(n);
    }
    case Op::kFlushAll:
    case Op::kRoomCreate:
    case Op::kRoomDrop:
      break;  // handled in Apply
  }
  LOG(FATAL) << "unhandled op " << static_cast<int>(e.op);
  return ApplyResult::Error("ERR internal");
}

// SETRANGE: overwrite from `num` on, padding with zero bytes; the expiry stays.
// As in Redis, an empty patch changes nothing (and creates no key) whatever
// the offset, and only a non-empty one is held to the string size limit.
ApplyResult StateMachine::ApplySetRange(Room* room, const EntryView& e) {
  CHECK(e.args.size() == 2 && e.num >= 0) << "bad SETRANGE entry";
  std::string_view key = e.args[0], patch = e.args[1];
  const Item* old = room->Get(key, e.now_ms);
  const size_t old_len = old ? old->value().size() : 0;
  if (patch.empty()) return ApplyResult::Int(static_cast<int64_t>(old_len));
  const uint64_t offset = static_cast<uint64_t>(e.num);
  if (offset > kMaxStringBytes || offset + patch.size() > kMaxStringBytes) {
    return ApplyResult::Error(kErrStringTooLong);
  }
  // A copy: Store must not be given bytes of the item it replaces.
  std::string value(old ? old->value() : std::string_view());
  if (value.size() < offset + patch.size()) value.resize(offset + patch.size(), '\0');
  value.replace(offset, patch.size(), patch);
  room->Store(key, value, old ? old->expire_at_ms() : 0);
  return ApplyResult::Int(static_cast<int64_t>(value.size()));
}

// COPY src dst [dst room]: 1 if copied (value and expiry), 0 if the source is
// missing or the destination exists without REPLACE. The destination room is
// the source room unless named (COPY ... DB n names a builtin room).
ApplyResult StateMachine::ApplyCopy(Room* room, const EntryView& e) {
  CHECK(e.args.size() == 2 || e.args.size() == 3) << "bad COPY entry";
  std::string_view src_key = e.args[0], dst_key = e.args[1];
  Room* dst_room = room;
  if (e.args.size() == 3 && e.args[2] != room->code()) {
    ApplyResult error;
    dst_room = RoomForWrite(e.args[2], e.now_ms, &error);
    if (dst_room == nullptr) return error;
  }
  if (dst_room == room && src_key == dst_key) {
    return ApplyResult::Error("ERR source and destination objects are the same");
  }
  const Item* src = room->Get(src_key, e.now_ms);
  if (src == nullptr) return ApplyResult::Int(0);
  if (!(e.flags & kCopyReplace) && dst_room->Get(dst_key, e.now_ms) != nullptr) {
    return ApplyResult::Int(0);
  }
  // `src` is a different item from the one Store replaces (different key or
  // room), and items do not move when a table grows, so its bytes may be
  // passed as they are.
  if (dst_room == room) {  // Apply accounts for the entry's own room
    dst_room->Store(dst_key, src->value(), src->expire_at_ms());
    return ApplyResult::Int(1);
  }
  // Another room changes too: its totals and expiry index are kept here.
  Tally before = TallyOf(*dst_room);
  dst_room->Store(dst_key, src->value(), src->expire_at_ms());
  dst_room->MarkWrite(sink_.revision, e.now_ms);
  Account(*dst_room, before);
  return ApplyResult::Int(1);
}

// ---------------------------------------------------------------------------
// Snapshot: version byte, applied index, then per room its header and items.
// Numbers are fixed-width little-endian; strings are u32 length + bytes.

namespace {

class SnapshotBuffer {
 public:
  explicit SnapshotBuffer(const std::function<Status(std::string_view)>& write) : write_(write) {}
  void U8(uint8_t v) { buf_.push_back(static_cast<char>(v)); }
  void U64(uint64_t v) { base::AppendLe64(&buf_, v); }
  void Str(std::string_view s) {
    U64(s.size());
    buf_.append(s);
  }
  Status MaybeFlush() {
    if (buf_.size() < (1 << 20)) return Status::Ok();
    return Flush();
  }
  Status Flush() {
    Status st = buf_.empty() ? Status::Ok() : write_(buf_);
    buf_.clear();
    return st;
  }

 private:
  const std::function<Status(std::string_view)>& write_;
  std::string buf_;
};

// A u64 length before each string (docs/snapshot_format.md).
class SnapshotReader : public base::ByteReader {
 public:
  using ByteReader::ByteReader;
  bool Str(std::string_view* s) { return Str64(s); }
};

}  // namespace

Status StateMachine::SaveSnapshot(const std::function<Status(std::string_view)>& write) const {
  SnapshotBuffer out(write);
  out.U8(kSnapshotVersion);
  out.U64(applied_index_);
  out.U64(rooms_.size());
  for (const auto& [code, room] : rooms_) {
    out.Str(code);
    out.Str(room->name());
    out.U64(static_cast<uint64_t>(room->created_at_ms()));
    out.U64(room->last_write_revision());
    out.U64(static_cast<uint64_t>(room->last_write_ms()));
    out.U64(room->key_count());
    Status st;
    room->keys().ForEach([&](const Item& item) {
      if (!st.ok()) return;
      out.U8(static_cast<uint8_t>(item.type()));
      out.Str(item.key());
      out.Str(item.value());
      out.U64(static_cast<uint64_t>(item.expire_at_ms()));
      st = out.MaybeFlush();
    });
    DISTRI_RETURN_IF_ERROR(st);
  }
  return out.Flush();
}

Status StateMachine::LoadSnapshot(uint64_t index, std::string_view data) {
  auto bad = [](const char* what) { return Status::Corruption(std::string("snapshot: bad ") + what); };
  SnapshotReader in(data);
  uint8_t version;
  uint64_t applied, nrooms;
  if (!in.U8(&version) || version != kSnapshotVersion) return bad("version");
  if (!in.U64(&applied) || applied != index) return bad("index");
  if (!in.U64(&nrooms)) return bad("room count");
  RoomMap rooms;
  for (uint64_t r = 0; r < nrooms; r++) {
    std::string_view code, name;
    uint64_t created, last_rev, last_ms, nkeys;
    if (!in.Str(&code) || !in.Str(&name) || !in.U64(&created) || !in.U64(&last_rev) ||
        !in.U64(&last_ms) || !in.U64(&nkeys)) {
      return bad("room header");
    }
    // Items are loaded without a sink (nobody follows a snapshot being
    // loaded), then the room reports its changes like any other.
    auto room = std::make_unique<Room>(std::string(code), std::string(name),
                                       static_cast<int64_t>(created));
    room->MarkWrite(last_rev, static_cast<int64_t>(last_ms));
    for (uint64_t k = 0; k < nkeys; k++) {
      uint8_t type;
      std::string_view key, value;
      uint64_t expire;
      if (!in.U8(&type) || type != static_cast<uint8_t>(ValueType::kString) || !in.Str(&key) ||
          !in.Str(&value) || !in.U64(&expire)) {
        return bad("item");
      }
      if (expire >= (uint64_t{1} << 56)) return bad("expiry");
      room->Store(key, value, static_cast<int64_t>(expire));
    }
    if (room->key_count() != nkeys) return bad("duplicate key");
    if (!rooms.emplace(std::string(code), std::move(room)).second) return bad("duplicate room");
  }
  if (!in.done()) return bad("trailing bytes");
  for (auto& [code, room] : rooms) room->set_sink(&sink_);
  expiry_index_.clear();  // its views point into the rooms being replaced
  rooms_ = std::move(rooms);
  Recount();
  applied_index_ = index;
  return Status::Ok();
}

}  // namespace distri::state
