// Key family: existence, deletion, expiry, iteration, renaming, flushing.

#include <chrono>
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

  // Walks until done (true) or the slice's time is up (false).
  bool Run(Context& ctx) {
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
      });
      if (cursor_ == 0) return true;
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
  uint64_t cursor_ = 0;
  std::deque<std::string> keys_;  // a deque: `seen_` views must not move
  std::unordered_set<std::string_view> seen_;
};

void Keys(Call& call) {
  if (!PatternOk(call, call.args[1])) return;
  auto walk = std::make_shared<KeysWalk>(call.session.room, call.args[1]);
  if (walk->Run(call.ctx)) {
    walk->Reply(call.reply);
    return;
  }
  call.ctx.RunInSteps(call.session, [walk](Context& ctx, protocol::ReplyWriter& reply) {
    if (!walk->Run(ctx)) return false;
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
    {"keys", 2, kReadOnly, 0, 0, 0, Keys, "Keys matching a glob pattern"},
    {"scan", -2, kReadOnly, 0, 0, 0, Scan, "Iterate the room's keys"},
    {"dbsize", 1, kReadOnly | kFast, 0, 0, 0, DbSize, "Number of keys in the room"},
    {"flushdb", -1, kWrite, 0, 0, 0, FlushDb, "Delete every key of the room"},
    {"flushall", -1, kWrite | kAdmin, 0, 0, 0, FlushAll, "Delete every key of every room"},
  });
}

}  // namespace distri::commands
