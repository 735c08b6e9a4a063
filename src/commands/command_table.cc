// The table of every command, dispatch, and reply shaping for applied entries.

#include "commands/command.h"

#include <algorithm>

#include "base/strings.h"

namespace distri::commands {

CommandTable::CommandTable() {
  AddConnectionCommands(&specs_);
  AddStringCommands(&specs_);
  AddKeyCommands(&specs_);
  AddRoomCommands(&specs_);
  AddMirrorCommands(&specs_);
  AddClusterCommands(&specs_);
  AddMessagingCommands(&specs_);
  for (const CommandSpec& spec : specs_) index_.emplace(spec.name, &spec);
}

const CommandTable& CommandTable::Get() {
  static const CommandTable table;
  return table;
}

const CommandSpec* CommandTable::Find(std::string_view name) const {
  char lower[32];
  if (name.size() > sizeof lower) return nullptr;
  for (size_t i = 0; i < name.size(); i++) {
    char c = name[i];
    lower[i] = (c >= 'A' && c <= 'Z') ? static_cast<char>(c + 32) : c;
  }
  auto it = index_.find(std::string_view(lower, name.size()));
  return it == index_.end() ? nullptr : it->second;
}

void Call::Propose(state::Op op, uint32_t flags, int64_t num,
                   std::span<const std::string_view> op_args, ReplyShape shape) {
  ProposeIn(session.room, op, flags, num, op_args, shape);
}

void Call::ProposeIn(std::string_view room, state::Op op, uint32_t flags, int64_t num,
                     std::span<const std::string_view> op_args, ReplyShape shape) {
  scratch.clear();
  state::EncodeEntry(&scratch, op, flags, ctx.NowMs(), num, room, op_args);
  Status st = ctx.Propose(session, scratch, shape);
  // Cluster refusals carry their own prefix (TRYAGAIN: not applied, retry).
  if (!st.ok()) reply.Error(st.code() == Code::kBusy ? st.message() : "ERR " + st.message());
}

bool ArgInt64(Call& call, std::string_view arg, int64_t* out) {
  if (base::ParseInt64(arg, out)) return true;
  call.reply.Error("ERR value is not an integer or out of range");
  return false;
}

void WrongArity(Call& call) {
  std::string lower;
  call.reply.Error("ERR wrong number of arguments for '" +
                   std::string(base::AsciiLower(call.args[0], &lower)) + "' command");
}

void SyntaxError(Call& call) { call.reply.Error("ERR syntax error"); }

bool PatternOk(Call& call, std::string_view pattern) {
  const uint64_t max = call.ctx.settings().max_pattern_bytes;
  if (max == 0 || pattern.size() <= max) return true;
  call.reply.Error("ERR pattern is too long: " + std::to_string(pattern.size()) +
                   " bytes, at most " + std::to_string(max) + " (--max-pattern-bytes)");
  return false;
}

bool TargetRoom(Call& call, std::string_view* code) {
  if (call.args.size() > 2) {
    WrongArity(call);
    return false;
  }
  *code = call.args.size() == 2 ? call.args[1] : std::string_view(call.session.room);
  if (!call.ctx.state().RoomJoinable(*code)) {
    call.reply.Error("NOTFOUND no such room");
    return false;
  }
  return true;
}

namespace {

void UnknownCommand(Call& call) {
  std::string msg = "ERR unknown command '";
  msg.append(call.args[0].substr(0, 128));
  msg.append("', with args beginning with: ");
  for (size_t i = 1; i < call.args.size() && msg.size() < 512; i++) {
    msg.append("'").append(call.args[i].substr(0, 128)).append("' ");
  }
  call.reply.Error(msg);
}

}  // namespace

bool OverMemoryLimit(const ServerSettings& settings, uint64_t used, uint64_t adding) {
  const uint64_t max = settings.max_memory;
  return max != 0 && (used > max || adding > max - used);
}

bool MemoryAllows(Call& call, uint64_t adding) {
  if (!OverMemoryLimit(call.ctx.settings(), call.ctx.used_memory(), adding)) return true;
  call.reply.Error(std::string("OOM ") + kOomMessage);
  return false;
}

bool Dispatch(const CommandSpec* spec, Call& call) {
  if (spec == nullptr) {
    UnknownCommand(call);
    return false;
  }
  int argc = static_cast<int>(call.args.size());
  if ((spec->arity > 0 && argc != spec->arity) || (spec->arity < 0 && argc < -spec->arity)) {
    WrongArity(call);
    return false;
  }
  const ServerSettings& settings = call.ctx.settings();
  if (!settings.requirepass.empty() && !call.session.authenticated && !(spec->flags & kNoAuth)) {
    call.reply.Error("NOAUTH Authentication required.");
    return false;
  }
  if (call.session.subscriptions > 0 && call.session.protocol == 2 && !(spec->flags & kPubSubOk)) {
    std::string lower;
    call.reply.Error("ERR Can't execute '" + std::string(base::AsciiLower(call.args[0], &lower)) +
                     "': only (P)SUBSCRIBE / (P)UNSUBSCRIBE / PING / QUIT / RESET are allowed in "
                     "this context");
    return false;
  }
  if ((spec->flags & kDenyOom) && settings.max_memory != 0) {
    // The write's own size counts: its arguments go into the log entry and
    // (mostly) into the keyspace, so one huge SET cannot jump the limit.
    uint64_t adding = 0;
    for (std::string_view arg : call.args.subspan(1)) adding += arg.size();
    if (!MemoryAllows(call, adding)) return false;
  }
  spec->handler(call);
  return true;
}

void WriteApplyResult(const state::ApplyResult& r, ReplyShape shape, protocol::ReplyWriter& w) {
  using Kind = state::ApplyResult::Kind;
  if (shape == ReplyShape::kOkToInt && (r.kind == Kind::kOk || r.kind == Kind::kNil)) {
    w.Integer(r.kind == Kind::kOk ? 1 : 0);
    return;
  }
  switch (r.kind) {
    case Kind::kOk: w.Ok(); break;
    case Kind::kNil: w.Null(); break;
    case Kind::kInt: w.Integer(r.integer); break;
    case Kind::kBulk: w.Bulk(r.text); break;
    case Kind::kError: w.Error(r.text); break;
  }
}

}  // namespace distri::commands
