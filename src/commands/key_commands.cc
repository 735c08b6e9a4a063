// Key family: existence, deletion, expiry, iteration, renaming, copying,
// introspection (OBJECT), flushing.

#include <openssl/rand.h>

#include <chrono>
#include <climits>
#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <unordered_set>

#include "base/glob.h"
#include "base/strings.h"
#include "commands/command.h"

namespace distri::commands {

namespace {

using state::Op;

const state::Room* CurrentRoom(Call& call) { return call.ctx.state().FindRoom(call.session.room); }

void Del(Call& call) { call.Propose(Op::kDel, 0, 0, call.args.subspan(1)); }

void Exists(Call& call) {
  const state::Room* room = CurrentRoom(call);
  int64_t n = 0;
  const int64_t now = call.ctx.NowMs();
  for (size_t i = 1; room != nullptr && i < call.args.size(); i++) {
    if (room->Get(call.args[i], now) != nullptr) n++;
  }
  call.reply.Integer(n);
}

void Type(Call& call) {
  const state::Room* room = CurrentRoom(call);
  bool present = room != nullptr && room->Get(call.args[1], call.ctx.NowMs()) != nullptr;
  call.reply.Simple(present ? "string" : "none");
}

// EXPIRE family: unit is 1000 for seconds; absolute for the *AT forms.
void ExpireGeneric(Call& call, int64_t unit, bool absolute) {
  int64_t v;
  if (!ArgInt64(call, call.args[2], &v)) return;
  uint32_t flags = 0;
  for (size_t i = 3; i < call.args.size(); i++) {
    std::string_view opt = call.args[i];
    if (base::EqualsIgnoreCase(opt, "nx")) flags |= state::kExpireNx;
    else if (base::EqualsIgnoreCase(opt, "xx")) flags |= state::kExpireXx;
    else if (base::EqualsIgnoreCase(opt, "gt")) flags |= state::kExpireGt;
    else if (base::EqualsIgnoreCase(opt, "lt")) flags |= state::kExpireLt;
    else {
      call.reply.Error("ERR Unsupported option " + std::string(opt.substr(0, 64)));
      return;
    }
  }
  if ((flags & state::kExpireNx) && (flags & ~state::kExpireNx)) {
    call.reply.Error("ERR NX and XX, GT or LT options at the same time are not compatible");
    return;
  }
  if ((flags & state::kExpireGt) && (flags & state::kExpireLt)) {
    call.reply.Error("ERR GT and LT options at the same time are not compatible");
    return;
  }
  int64_t at;
  if (__builtin_mul_overflow(v, unit, &at) ||
      (!absolute && __builtin_add_overflow(at, call.ctx.NowMs(), &at))) {
    std::string lower;
    call.reply.Error("ERR invalid expire time in '" +
                     std::string(base::AsciiLower(call.args[0], &lower)) + "' command");
    return;
  }
  // A time at or before "now" deletes the key; clamp so the entry stays valid.
  if (at <= 0) at = 1;
  call.Propose(Op::kExpireAt, flags, at, call.args.subspan(1, 1));
}
void Expire(Call& call) { ExpireGeneric(call, 1000, false); }
void PExpire(Call& call) { ExpireGeneric(call, 1, false); }
void ExpireAt(Call& call) { ExpireGeneric(call, 1000, true); }
void PExpireAt(Call& call) { ExpireGeneric(call, 1, true); }

void TtlGeneric(Call& call, bool ms, bool absolute) {
  const state::Room* room = CurrentRoom(call);
  const int64_t now = call.ctx.NowMs();
  const state::Item* item = room ? room->Get(call.args[1], now) : nullptr;
  if (item == nullptr) {
    call.reply.Integer(-2);
  } else if (!item->has_expiry()) {
    call.reply.Integer(-1);
  } else if (absolute) {
    call.reply.Integer(ms ? item->expire_at_ms() : item->expire_at_ms() / 1000);
  } else {
    int64_t left = item->expire_at_ms() - now;
    call.reply.Integer(ms ? left : (left + 500) / 1000);
  }
}
void Ttl(Call& call) { TtlGeneric(call, false, false); }
void PTtl(Call& call) { TtlGeneric(call, true, false); }
void ExpireTime(Call& call) { TtlGeneric(call, false, true); }
void PExpireTime(Call& call) { TtlGeneric(call, true, true); }

void Persist(Call& call) { call.Propose(Op::kPersist, 0, 0, call.args.subspan(1, 1)); }
void Rename(Call& call) { call.Propose(Op::kRename, 0, 0, call.args.subspan(1, 2)); }

void RenameNx(Call& call) { call.Propose(Op::kRenameNx, 0, 0, call.args.subspan(1, 2)); }

// COPY src dst [DB n] [REPLACE]. DB n names the room SELECT n addresses
// ("default" for 0, "1".."15"); without it the copy stays in the session's
// room. Rooms by code cannot be named: a copy out of a room is a read plus a
// write from a client that knows both codes.
void Copy(Call& call) {
  uint32_t flags = 0;
  std::string dst_room = call.session.room;
  for (size_t i = 3; i < call.args.size(); i++) {
    std::string_view opt = call.args[i];
    if (base::EqualsIgnoreCase(opt, "replace")) {
      flags |= state::kCopyReplace;
    } else if (base::EqualsIgnoreCase(opt, "db") && i + 1 < call.args.size()) {
      int64_t db;
      if (!ArgInt64(call, call.args[++i], &db)) return;
      if (db < 0 || db > 15) {
        call.reply.Error("ERR DB index is out of range");
        return;
      }
      dst_room = db == 0 ? std::string(state::kDefaultRoom) : std::to_string(db);
    } else {
      SyntaxError(call);
      return;
    }
  }
  if (dst_room == call.session.room && call.args[1] == call.args[2]) {
    call.reply.Error("ERR source and destination objects are the same");
    return;
  }
  // The copy's value is not in the command: count it against --max-memory.
  if (const state::Room* room = CurrentRoom(call)) {
    const state::Item* src = room->Get(call.args[1], call.ctx.NowMs());
    if (src != nullptr && !MemoryAllows(call, src->value().size() + call.args[2].size())) return;
  }
  std::string_view op_args[] = {call.args[1], call.args[2], dst_room};
  size_t n = dst_room == call.session.room ? 2 : 3;
  call.Propose(Op::kCopy, flags, 0, std::span<const std::string_view>(op_args, n));
}

// A key picked at random, or nil in an empty room. Random table positions
// are tried first; if they keep landing on expired keys (a room of mostly
// expired keys), the first live key in table order is taken instead.
void RandomKey(Call& call) {
  const state::Room* room = CurrentRoom(call);
  const int64_t now = call.ctx.NowMs();
  if (room == nullptr || room->key_count() == 0) {
    call.reply.Null();
    return;
  }
  constexpr int kTries = 16;
  uint64_t picks[kTries];
  if (RAND_bytes(reinterpret_cast<unsigned char*>(picks), sizeof picks) != 1) {
    call.reply.Error("ERR no randomness available");
    return;
  }
  for (uint64_t pick : picks) {
    const state::Item* item = room->keys().ItemAtOrAfter(pick);
    if (item != nullptr && !item->expired(now)) {
      call.reply.Bulk(item->key());
      return;
    }
  }
  std::string_view found;
  bool any = false;
  room->keys().ForEach([&](const state::Item& item) {
    if (!any && !item.expired(now)) {
      found = item.key();
      any = true;
    }
  });
  if (any) {
    call.reply.Bulk(found);
  } else {
    call.reply.Null();
  }
}

// What Redis's OBJECT ENCODING would say of this value had SET just written
// it: "int" for a canonical integer that fits 64 bits, "embstr" up to 44
// bytes, "raw" beyond. Distri stores every value the same way (one block
// with its key), so this is a compatibility answer, not a storage fact.
std::string_view EncodingOf(std::string_view value, int64_t* as_int) {
  if (value.size() <= 20 && base::ParseInt64(value, as_int)) return "int";
  return value.size() <= 44 ? "embstr" : "raw";
}

// OBJECT ENCODING|REFCOUNT|FREQ|IDLETIME key, OBJECT HELP. Distri tracks no
// access times or frequencies (there is no LRU/LFU eviction: --max-memory
// refuses writes, like Redis's noeviction), so FREQ and IDLETIME give the
// errors Redis gives when its policy does not track them.
void Object(Call& call) {
  std::string lower;
  std::string_view sub = base::AsciiLower(call.args[1], &lower);
  if (sub == "help" && call.args.size() == 2) {
    const char* lines[] = {
        "OBJECT <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
        "ENCODING <key>",
        "    What Redis would use to store the value: int, embstr or raw.",
        "FREQ <key>",
        "    Not tracked (no LFU eviction): an error.",
        "IDLETIME <key>",
        "    Not tracked (no LRU eviction): an error.",
        "REFCOUNT <key>",
        "    Return the number of references of the value (1; shared small integers as Redis).",
        "HELP",
        "    Prints this help."};
    call.reply.Array(std::size(lines));
    for (const char* l : lines) call.reply.Simple(l);
    return;
  }
  bool known = sub == "encoding" || sub == "refcount" || sub == "freq" || sub == "idletime";
  if (!known) {
    call.reply.Error("ERR unknown subcommand '" + std::string(call.args[1].substr(0, 64)) +
                     "'. Try OBJECT HELP.");
    return;
  }
  if (call.args.size() != 3) {
    call.reply.Error("ERR wrong number of arguments for 'object|" + std::string(sub) + "' command");
    return;
  }
  const state::Room* room = CurrentRoom(call);
  const state::Item* item = room ? room->Get(call.args[2], call.ctx.NowMs()) : nullptr;
  if (item == nullptr) {
    call.reply.Null();
    return;
  }
  int64_t as_int = -1;
  std::string_view encoding = EncodingOf(item->value(), &as_int);
  if (sub == "encoding") {
    call.reply.Bulk(encoding);
  } else if (sub == "refcount") {
    // Redis shares the objects of the integers 0..9999 and reports them so.
    bool shared = encoding == "int" && as_int >= 0 && as_int < 10000;
    call.reply.Integer(shared ? INT_MAX : 1);
  } else if (sub == "freq") {
    call.reply.Error("ERR An LFU maxmemory policy is not selected, access frequency not tracked. "
                     "Please note that when switching between policies at runtime LRU and LFU "
                     "data will take some time to adjust.");
  } else {
    call.reply.Error("ERR An LRU maxmemory policy is not selected, access time not tracked. "
                     "Please note that when switching between policies at runtime LRU and LFU "
                     "data will take some time to adjust.");
  }
}

// KEYS pattern. The room is walked with the SCAN cursor about a millisecond
// at a time: a small room answers at once; a big one continues a slice per
// loop iteration (Context::RunInSteps) while this client waits, so one KEYS
// never stalls the other clients. What it returns is what a full SCAN
// guarantees, without duplicates: every key present for the whole command;
// keys written or deleted meanwhile may or may not appear.
class KeysWalk {
 public:
  KeysWalk(std::string room, std::string_view pattern) : room_(std::move(room)) {
    if (pattern != "*") glob_.emplace(pattern);
  }

  // Walks until done (true) or the slice's time is up (false). Stops early
  // once the keys found would not fit in `reply_room` bytes of reply: the
  // reply then passes the client's output limit and the client is cut off,
  // as for any other reply too big for it, and what the walk holds meanwhile
  // stays bounded by that limit.
  bool Run(Context& ctx, size_t reply_room) {
    constexpr size_t kBucketsPerScan = 64;
    constexpr auto kSlice = std::chrono::milliseconds(1);
    const state::Room* room = ctx.state().FindRoom(room_);
    if (room == nullptr) return true;  // dropped meanwhile: what was found stands
    const int64_t now = ctx.NowMs();
    const auto start = std::chrono::steady_clock::now();
    do {
      cursor_ = room->keys().Scan(cursor_, kBucketsPerScan, [&](const state::Item& item) {
        if (item.expired(now) || (glob_ && !glob_->Match(item.key()))) return;
        // A table resized between slices may show a key twice.
        if (seen_.contains(item.key())) return;
        keys_.emplace_back(item.key());
        seen_.insert(keys_.back());
        reply_bytes_ += item.key().size() + kBulkFraming;
      });
      if (cursor_ == 0 || reply_bytes_ > reply_room) return true;
    } while (std::chrono::steady_clock::now() - start < kSlice);
    return false;
  }

  void Reply(protocol::ReplyWriter& reply) const {
    reply.Array(keys_.size());
    for (const std::string& k : keys_) reply.Bulk(k);
  }

 private:
  std::string room_;
  std::optional<base::Glob> glob_;  // none for "*"
  // "$<len>\r\n...\r\n" around each key, at least.
  static constexpr size_t kBulkFraming = 5;
  uint64_t cursor_ = 0;
  size_t reply_bytes_ = 0;  // the reply's size so far, at least
  std::deque<std::string> keys_;  // a deque: `seen_` views must not move
  std::unordered_set<std::string_view> seen_;
};

void Keys(Call& call) {
  if (!PatternOk(call, call.args[1])) return;
  auto walk = std::make_shared<KeysWalk>(call.session.room, call.args[1]);
  if (walk->Run(call.ctx, call.reply.room())) {
    walk->Reply(call.reply);
    return;
  }
  call.ctx.RunInSteps(call.session, [walk](Context& ctx, protocol::ReplyWriter& reply) {
    if (!walk->Run(ctx, reply.room())) return false;
    walk->Reply(reply);
    return true;
  });
}

// SCAN cursor [MATCH pattern] [COUNT n] [TYPE t]
void Scan(Call& call) {
  uint64_t cursor;
  if (!base::ParseUint64(call.args[1], &cursor)) {
    call.reply.Error("ERR invalid cursor");
    return;
  }
  std::string_view pattern;
  bool has_pattern = false;
  std::string_view type;
  int64_t count = 10;
  for (size_t i = 2; i < call.args.size(); i++) {
    std::string_view opt = call.args[i];
    if (i + 1 >= call.args.size()) {
      SyntaxError(call);
      return;
    }
    std::string_view val = call.args[++i];
    if (base::EqualsIgnoreCase(opt, "match")) {
      if (!PatternOk(call, val)) return;
      pattern = val;
      has_pattern = val != "*";
    } else if (base::EqualsIgnoreCase(opt, "count")) {
      if (!ArgInt64(call, val, &count)) return;
      if (count < 1) {
        SyntaxError(call);
        return;
      }
    } else if (base::EqualsIgnoreCase(opt, "type")) {
      type = val;
    } else {
      SyntaxError(call);
      return;
    }
  }
  std::vector<std::string_view> found;
  uint64_t next = 0;
  std::optional<base::Glob> glob;
  if (has_pattern) glob.emplace(pattern);
  const state::Room* room = CurrentRoom(call);
  const int64_t now = call.ctx.NowMs();
  if (room != nullptr) {
    next = room->keys().Scan(cursor, static_cast<size_t>(count), [&](const state::Item& item) {
      if (item.expired(now)) return;
      if (glob && !glob->Match(item.key())) return;
      if (!type.empty() && !base::EqualsIgnoreCase(type, "string")) return;
      found.push_back(item.key());
    });
  }
  call.reply.Array(2);
  call.reply.Bulk(std::to_string(next));
  call.reply.Array(found.size());
  for (std::string_view k : found) call.reply.Bulk(k);
}

void DbSize(Call& call) {
  const state::Room* room = CurrentRoom(call);
  call.reply.Integer(room ? static_cast<int64_t>(room->key_count()) : 0);
}

bool FlushOptionsOk(Call& call) {
  if (call.args.size() > 2 ||
      (call.args.size() == 2 && !base::EqualsIgnoreCase(call.args[1], "async") &&
       !base::EqualsIgnoreCase(call.args[1], "sync"))) {
    SyntaxError(call);
    return false;
  }
  return true;
}
void FlushDb(Call& call) {
  if (FlushOptionsOk(call)) call.Propose(Op::kFlushRoom, 0, 0, {});
}
void FlushAll(Call& call) {
  if (FlushOptionsOk(call)) call.Propose(Op::kFlushAll, 0, 0, {});
}

}  // namespace

void AddKeyCommands(std::vector<CommandSpec>* out) {
  out->insert(out->end(), {
    {"del", -2, kWrite, 1, -1, 1, Del, "Delete keys"},
    {"unlink", -2, kWrite | kFast, 1, -1, 1, Del, "Delete keys (same as DEL here)"},
    {"exists", -2, kReadOnly | kFast, 1, -1, 1, Exists, "Count how many of the keys exist"},
    {"type", 2, kReadOnly | kFast, 1, 1, 1, Type, "Type of a key's value"},
    {"expire", -3, kWrite | kFast, 1, 1, 1, Expire, "Set a key's time to live in seconds"},
    {"pexpire", -3, kWrite | kFast, 1, 1, 1, PExpire, "Set a key's time to live in milliseconds"},
    {"expireat", -3, kWrite | kFast, 1, 1, 1, ExpireAt, "Set a key's expiry as a Unix time"},
    {"pexpireat", -3, kWrite | kFast, 1, 1, 1, PExpireAt, "Set a key's expiry as a Unix time in ms"},
    {"ttl", 2, kReadOnly | kFast, 1, 1, 1, Ttl, "Seconds until a key expires"},
    {"pttl", 2, kReadOnly | kFast, 1, 1, 1, PTtl, "Milliseconds until a key expires"},
    {"expiretime", 2, kReadOnly | kFast, 1, 1, 1, ExpireTime, "A key's expiry as a Unix time"},
    {"pexpiretime", 2, kReadOnly | kFast, 1, 1, 1, PExpireTime, "A key's expiry as a Unix time in ms"},
    {"persist", 2, kWrite | kFast, 1, 1, 1, Persist, "Remove a key's expiry"},
    {"rename", 3, kWrite, 1, 2, 1, Rename, "Rename a key"},
    {"renamenx", 3, kWrite | kFast, 1, 2, 1, RenameNx, "Rename a key if the new name is free"},
    {"copy", -3, kWrite | kDenyOom, 1, 2, 1, Copy, "Copy a key, here or to SELECT's rooms (DB n)"},
    {"randomkey", 1, kReadOnly, 0, 0, 0, RandomKey, "A random key of the room"},
    {"object", -2, kReadOnly | kSubcommands, 2, 2, 1, Object,
     "Inspect a key: OBJECT ENCODING|REFCOUNT|FREQ|IDLETIME"},
    {"keys", 2, kReadOnly, 0, 0, 0, Keys, "Keys matching a glob pattern"},
    {"scan", -2, kReadOnly, 0, 0, 0, Scan, "Iterate the room's keys"},
    {"dbsize", 1, kReadOnly | kFast, 0, 0, 0, DbSize, "Number of keys in the room"},
    {"flushdb", -1, kWrite, 0, 0, 0, FlushDb, "Delete every key of the room"},
    {"flushall", -1, kWrite | kAdmin, 0, 0, 0, FlushAll, "Delete every key of every room"},
  });
}

}  // namespace distri::commands
