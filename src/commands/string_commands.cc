// String family: GET, SET and friends, ranges, counters, CAS.
//
// Reads answer from the state with lazy expiry; writes validate their
// arguments here (so a bad request never reaches the log) and propose one
// entry whose apply computes the reply.

#include <algorithm>
#include <cmath>
#include <string>

#include "base/strings.h"
#include "commands/command.h"

namespace distri::commands {

namespace {

using state::Op;

const state::Item* Lookup(Call& call, std::string_view key) {
  const state::Room* room = call.ctx.state().FindRoom(call.session.room);
  return room ? room->Get(key, call.ctx.NowMs()) : nullptr;
}

void Get(Call& call) {
  const state::Item* item = Lookup(call, call.args[1]);
  if (item == nullptr) {
    call.reply.Null();
  } else {
    call.reply.Bulk(item->value());
  }
}

void Strlen(Call& call) {
  const state::Item* item = Lookup(call, call.args[1]);
  call.reply.Integer(item ? static_cast<int64_t>(item->value().size()) : 0);
}

void MGet(Call& call) {
  call.reply.Array(call.args.size() - 1);
  for (size_t i = 1; i < call.args.size(); i++) {
    const state::Item* item = Lookup(call, call.args[i]);
    if (item == nullptr) {
      call.reply.Null();
    } else {
      call.reply.Bulk(item->value());
    }
  }
}

bool IsExpireOption(std::string_view opt) {
  return base::EqualsIgnoreCase(opt, "ex") || base::EqualsIgnoreCase(opt, "px") ||
         base::EqualsIgnoreCase(opt, "exat") || base::EqualsIgnoreCase(opt, "pxat");
}

enum class ExpireParse { kOk, kNotInteger, kBadTime };

// The absolute expiry (Unix ms) an EX/PX/EXAT/PXAT option asks for, as Redis
// reads it: not an integer, or <= 0, or overflowing is refused.
ExpireParse ParseExpireOption(Call& call, std::string_view opt, std::string_view arg,
                              int64_t* at_ms) {
  int64_t v;
  if (!base::ParseInt64(arg, &v)) return ExpireParse::kNotInteger;
  bool seconds = base::EqualsIgnoreCase(opt, "ex") || base::EqualsIgnoreCase(opt, "exat");
  bool absolute = opt.size() == 4;
  int64_t ms = v;
  if (v <= 0 || (seconds && __builtin_mul_overflow(v, 1000, &ms)) ||
      (!absolute && __builtin_add_overflow(ms, call.ctx.NowMs(), &ms))) {
    return ExpireParse::kBadTime;
  }
  *at_ms = ms;
  return ExpireParse::kOk;
}

std::string InvalidExpireError(Call& call) {
  std::string lower;
  return "ERR invalid expire time in '" + std::string(base::AsciiLower(call.args[0], &lower)) +
         "' command";
}

// ParseExpireOption, writing the error reply on failure.
bool ExpireOptionAt(Call& call, std::string_view opt, std::string_view arg, int64_t* at_ms) {
  switch (ParseExpireOption(call, opt, arg, at_ms)) {
    case ExpireParse::kOk:
      return true;
    case ExpireParse::kNotInteger:
      call.reply.Error("ERR value is not an integer or out of range");
      return false;
    case ExpireParse::kBadTime:
      call.reply.Error(InvalidExpireError(call));
      return false;
  }
  return false;
}

// SET key value [NX|XX] [GET] [EX s|PX ms|EXAT s|PXAT ms|KEEPTTL]
// As in Redis, every option is checked for syntax before the expiry value.
void Set(Call& call) {
  uint32_t flags = 0;
  std::string_view expire_opt, expire_arg;
  for (size_t i = 3; i < call.args.size(); i++) {
    std::string_view opt = call.args[i];
    bool has_next = i + 1 < call.args.size();
    if (base::EqualsIgnoreCase(opt, "nx") && !(flags & state::kSetXx)) {
      flags |= state::kSetNx;
    } else if (base::EqualsIgnoreCase(opt, "xx") && !(flags & state::kSetNx)) {
      flags |= state::kSetXx;
    } else if (base::EqualsIgnoreCase(opt, "get")) {
      flags |= state::kSetGet;
    } else if (base::EqualsIgnoreCase(opt, "keepttl") && expire_opt.empty()) {
      flags |= state::kSetKeepTtl;
    } else if (IsExpireOption(opt) && has_next && expire_opt.empty() &&
               !(flags & state::kSetKeepTtl)) {
      expire_opt = opt;
      expire_arg = call.args[++i];
    } else {
      SyntaxError(call);
      return;
    }
  }
  int64_t expire_at = 0;
  if (!expire_opt.empty() && !ExpireOptionAt(call, expire_opt, expire_arg, &expire_at)) return;
  std::string_view op_args[] = {call.args[1], call.args[2]};
  call.Propose(Op::kSet, flags, expire_at, op_args);
}

// SETEX key seconds value / PSETEX key ms value: SET with EX / PX.
void SetExGeneric(Call& call, std::string_view unit) {
  int64_t expire_at;
  if (!ExpireOptionAt(call, unit, call.args[2], &expire_at)) return;
  std::string_view op_args[] = {call.args[1], call.args[3]};
  call.Propose(Op::kSet, 0, expire_at, op_args);
}
void SetEx(Call& call) { SetExGeneric(call, "ex"); }
void PSetEx(Call& call) { SetExGeneric(call, "px"); }

// GETEX key [EX s|PX ms|EXAT s|PXAT ms|PERSIST]. Even without an option it is
// proposed, not read here: it is a write command, and a read answered now
// could miss this client's own earlier writes still waiting for the log. As
// in Redis, a bad expiry value is an error only if the key exists (a missing
// key reads as nil first), so that check travels in the entry.
void GetEx(Call& call) {
  uint32_t flags = 0;
  std::string_view expire_opt, expire_arg;
  for (size_t i = 2; i < call.args.size(); i++) {
    std::string_view opt = call.args[i];
    if (flags != 0) {
      SyntaxError(call);  // at most one option
      return;
    }
    if (base::EqualsIgnoreCase(opt, "persist")) {
      flags = state::kGetExPersist;
    } else if (IsExpireOption(opt) && i + 1 < call.args.size()) {
      flags = state::kGetExExpire;
      expire_opt = opt;
      expire_arg = call.args[++i];
    } else {
      SyntaxError(call);
      return;
    }
  }
  int64_t expire_at = 0;
  if (flags == state::kGetExExpire) {
    switch (ParseExpireOption(call, expire_opt, expire_arg, &expire_at)) {
      case ExpireParse::kOk:
        break;
      case ExpireParse::kNotInteger:
        flags = state::kGetExNotInteger;
        break;
      case ExpireParse::kBadTime:
        flags = state::kGetExBadTime;
        break;
    }
  }
  call.Propose(Op::kGetEx, flags, expire_at, call.args.subspan(1, 1));
}

// GETRANGE key start end (and SUBSTR, its old name): inclusive, negative
// offsets count from the end, out-of-range ends are clamped; a missing key
// reads as "".
void GetRange(Call& call) {
  int64_t start, end;
  if (!ArgInt64(call, call.args[2], &start) || !ArgInt64(call, call.args[3], &end)) return;
  const state::Item* item = Lookup(call, call.args[1]);
  std::string_view value = item ? item->value() : std::string_view();
  const int64_t len = static_cast<int64_t>(value.size());
  if (start < 0 && end < 0 && start > end) {
    call.reply.Bulk("");
    return;
  }
  if (start < 0) start += len;  // cannot overflow: len >= 0 and start < 0
  if (end < 0) end += len;
  start = std::max<int64_t>(start, 0);
  end = std::min<int64_t>(std::max<int64_t>(end, 0), len - 1);
  if (len == 0 || start > end) {
    call.reply.Bulk("");
    return;
  }
  call.reply.Bulk(value.substr(static_cast<size_t>(start), static_cast<size_t>(end - start + 1)));
}

// SETRANGE key offset value. Bad offsets and results over the string limit are
// refused here; apply checks the limit again, deterministically.
void SetRange(Call& call) {
  int64_t offset;
  if (!ArgInt64(call, call.args[2], &offset)) return;
  if (offset < 0) {
    call.reply.Error("ERR offset is out of range");
    return;
  }
  std::string_view patch = call.args[3];
  if (!patch.empty() && (static_cast<uint64_t>(offset) > state::kMaxStringBytes ||
                         static_cast<uint64_t>(offset) + patch.size() > state::kMaxStringBytes)) {
    call.reply.Error("ERR string exceeds maximum allowed size (proto-max-bulk-len)");
    return;
  }
  // A small command can make a large value (SETRANGE k 500000000 x): what
  // counts against --max-memory is how much the value grows.
  if (!patch.empty()) {
    const state::Item* item = Lookup(call, call.args[1]);
    const uint64_t end = static_cast<uint64_t>(offset) + patch.size();
    const uint64_t have = item ? item->value().size() : 0;
    if (end > have && !MemoryAllows(call, end - have)) return;
  }
  std::string_view op_args[] = {call.args[1], patch};
  call.Propose(Op::kSetRange, 0, offset, op_args);
}

void SetNx(Call& call) {
  std::string_view op_args[] = {call.args[1], call.args[2]};
  call.Propose(Op::kSet, state::kSetNx, 0, op_args, ReplyShape::kOkToInt);
}

void GetSet(Call& call) {
  std::string_view op_args[] = {call.args[1], call.args[2]};
  call.Propose(Op::kSet, state::kSetGet, 0, op_args);
}

void GetDel(Call& call) { call.Propose(Op::kGetDel, 0, 0, call.args.subspan(1, 1)); }

void MSetImpl(Call& call, uint32_t flags) {
  if (call.args.size() % 2 == 0) {
    WrongArity(call);
    return;
  }
  call.Propose(Op::kMSet, flags, 0, call.args.subspan(1));
}
void MSet(Call& call) { MSetImpl(call, 0); }
void MSetNx(Call& call) { MSetImpl(call, state::kSetNx); }

void IncrBy(Call& call, int64_t delta) { call.Propose(Op::kIncrBy, 0, delta, call.args.subspan(1, 1)); }
void Incr(Call& call) { IncrBy(call, 1); }
void Decr(Call& call) { IncrBy(call, -1); }
void IncrByCmd(Call& call) {
  int64_t delta;
  if (ArgInt64(call, call.args[2], &delta)) IncrBy(call, delta);
}
void DecrByCmd(Call& call) {
  int64_t delta;
  if (!ArgInt64(call, call.args[2], &delta)) return;
  if (delta == INT64_MIN) {
    call.reply.Error("ERR decrement would overflow");
    return;
  }
  IncrBy(call, -delta);
}

void IncrByFloat(Call& call) {
  long double delta;
  if (!base::ParseLongDouble(call.args[2], &delta)) {
    call.reply.Error("ERR value is not a valid float");
    return;
  }
  call.Propose(Op::kIncrByFloat, 0, 0, call.args.subspan(1, 2));
}

void Append(Call& call) { call.Propose(Op::kAppend, 0, 0, call.args.subspan(1, 2)); }

// CAS key expected new  |  CAS key new (only if key does not exist)
void Cas(Call& call) {
  if (call.args.size() == 3) {
    call.Propose(Op::kCas, state::kCasMustNotExist, 0, call.args.subspan(1, 2));
  } else if (call.args.size() == 4) {
    call.Propose(Op::kCas, 0, 0, call.args.subspan(1, 3));
  } else {
    WrongArity(call);
  }
}

}  // namespace

void AddStringCommands(std::vector<CommandSpec>* out) {
  const uint32_t w = kWrite | kDenyOom;
  out->insert(out->end(), {
    {"get", 2, kReadOnly | kFast, 1, 1, 1, Get, "Get the value of a key"},
    {"strlen", 2, kReadOnly | kFast, 1, 1, 1, Strlen, "Length of a key's value"},
    {"mget", -2, kReadOnly | kFast, 1, -1, 1, MGet, "Get the values of several keys"},
    {"set", -3, w, 1, 1, 1, Set, "Set a key, with NX/XX/GET and expiry options"},
    {"setex", 4, w, 1, 1, 1, SetEx, "Set a key with a time to live in seconds"},
    {"psetex", 4, w, 1, 1, 1, PSetEx, "Set a key with a time to live in milliseconds"},
    {"getex", -2, kWrite | kFast, 1, 1, 1, GetEx, "Get a key's value and set or remove its expiry"},
    {"getrange", 4, kReadOnly, 1, 1, 1, GetRange, "Get a substring of a key's value"},
    {"substr", 4, kReadOnly, 1, 1, 1, GetRange, "Get a substring of a key's value (GETRANGE)"},
    {"setrange", 4, w, 1, 1, 1, SetRange, "Overwrite part of a key's value at an offset"},
    {"setnx", 3, w | kFast, 1, 1, 1, SetNx, "Set a key only if it does not exist"},
    {"getset", 3, w | kFast, 1, 1, 1, GetSet, "Set a key and return its old value"},
    {"getdel", 2, kWrite | kFast, 1, 1, 1, GetDel, "Get a key's value and delete it"},
    {"mset", -3, w, 1, -1, 2, MSet, "Set several keys"},
    {"msetnx", -3, w, 1, -1, 2, MSetNx, "Set several keys only if none exists"},
    {"incr", 2, w | kFast, 1, 1, 1, Incr, "Add 1 to an integer value"},
    {"decr", 2, w | kFast, 1, 1, 1, Decr, "Subtract 1 from an integer value"},
    {"incrby", 3, w | kFast, 1, 1, 1, IncrByCmd, "Add to an integer value"},
    {"decrby", 3, w | kFast, 1, 1, 1, DecrByCmd, "Subtract from an integer value"},
    {"incrbyfloat", 3, w | kFast, 1, 1, 1, IncrByFloat, "Add to a floating point value"},
    {"append", 3, w | kFast, 1, 1, 1, Append, "Append to a key's value"},
    {"cas", -3, w | kFast, 1, 1, 1, Cas, "Compare and set: CAS key expected new, or CAS key new"},
  });
}

}  // namespace distri::commands
