// Messaging family: pub/sub (SUBSCRIBE, PUBLISH, ...) and services
// (SVC.SERVE, CALL, CALL.ALL, ...). Handlers parse; commands::Messaging
// (implemented by the server) routes. Nothing here enters the log.

#include <limits>

#include "base/strings.h"
#include "commands/command.h"

namespace distri::commands {

namespace {

void SubscribeCmd(Call& call, bool pattern) {
  if (pattern) {
    // All or nothing: a refused pattern subscribes to none of the others.
    for (std::string_view p : call.args.subspan(1)) {
      if (!PatternOk(call, p)) return;
    }
  }
  call.ctx.messaging().Subscribe(call.session, call.args.subspan(1), pattern, call.reply);
}
void Subscribe(Call& call) { SubscribeCmd(call, false); }
void PSubscribe(Call& call) { SubscribeCmd(call, true); }
void Unsubscribe(Call& call) {
  call.ctx.messaging().Unsubscribe(call.session, call.args.subspan(1), false, call.reply);
}
void PUnsubscribe(Call& call) {
  call.ctx.messaging().Unsubscribe(call.session, call.args.subspan(1), true, call.reply);
}

void Publish(Call& call) {
  call.reply.Integer(call.ctx.messaging().Publish(call.session.room, call.args[1], call.args[2]));
}

// PUBSUB CHANNELS [pattern] | NUMSUB [channel ...] | NUMPAT
void PubSub(Call& call) {
  std::string lower;
  std::string_view sub = base::AsciiLower(call.args[1], &lower);
  Messaging& m = call.ctx.messaging();
  if (sub == "channels" && call.args.size() <= 3) {
    std::optional<std::string_view> pattern;
    if (call.args.size() == 3) {
      if (!PatternOk(call, call.args[2])) return;
      pattern = call.args[2];
    }
    std::vector<std::string> names = m.Channels(call.session.room, pattern);
    call.reply.Array(names.size());
    for (const std::string& n : names) call.reply.Bulk(n);
  } else if (sub == "numsub") {
    call.reply.Map(call.args.size() - 2);
    for (size_t i = 2; i < call.args.size(); i++) {
      call.reply.Bulk(call.args[i]);
      call.reply.Integer(m.NumSub(call.session.room, call.args[i]));
    }
  } else if (sub == "numpat" && call.args.size() == 2) {
    call.reply.Integer(m.NumPat(call.session.room));
  } else {
    call.reply.Error("ERR unknown subcommand or wrong number of arguments for '" +
                     std::string(call.args[1].substr(0, 64)) + "'. Try PUBSUB HELP.");
  }
}

// RESET: back to a fresh connection's state (RESP2, room default, no
// subscriptions, no name), as Redis does. That includes the default user:
// with a password set the connection must AUTH again (the server's AuthGate
// then counts it as unauthenticated, with a new --auth-timeout).
void Reset(Call& call) {
  std::string discard;
  protocol::ReplyWriter quiet(&discard, call.session.protocol);
  call.ctx.messaging().Unsubscribe(call.session, {}, false, quiet);
  call.ctx.messaging().Unsubscribe(call.session, {}, true, quiet);
  call.ctx.messaging().Unserve(call.session, {});
  call.ctx.Unmirror(call.session, std::nullopt);
  call.session.protocol = 2;
  call.reply.set_protocol(2);
  call.session.room = std::string(state::kDefaultRoom);
  call.session.db = 0;
  call.session.name.clear();
  if (!call.ctx.settings().requirepass.empty()) call.session.authenticated = false;
  call.reply.Simple("RESET");
}

// SVC.SERVE name [name ...] [CONCURRENCY n]
void SvcServe(Call& call) {
  if (call.session.protocol != 3) {
    call.reply.Error("ERR SVC.SERVE needs RESP3 push frames: send HELLO 3 first");
    return;
  }
  std::vector<std::string_view> names;
  int64_t concurrency = 1;
  for (size_t i = 1; i < call.args.size(); i++) {
    if (base::EqualsIgnoreCase(call.args[i], "concurrency") && i + 1 < call.args.size()) {
      if (!ArgInt64(call, call.args[++i], &concurrency)) return;
      if (concurrency < 1 || concurrency > 1000000) {
        call.reply.Error("ERR CONCURRENCY must be between 1 and 1000000");
        return;
      }
    } else {
      names.push_back(call.args[i]);
    }
  }
  if (names.empty()) {
    WrongArity(call);
    return;
  }
  if (call.ctx.messaging().ServedWith(call.session, names) > kMaxServicesPerWorker) {
    call.reply.Error("ERR a connection serves at most " +
                     std::to_string(kMaxServicesPerWorker) + " services");
    return;
  }
  call.reply.Ok();  // before any request that was waiting for a worker
  call.ctx.messaging().Serve(call.session, names, static_cast<uint32_t>(concurrency));
}

void SvcUnserve(Call& call) {
  call.reply.Integer(static_cast<int64_t>(call.ctx.messaging().Unserve(call.session, call.args.subspan(1))));
}

void Answer(Call& call, bool ok) {
  uint64_t id;
  if (!base::ParseUint64(call.args[1], &id)) {
    call.reply.Error("ERR request id must be a non-negative integer");
    return;
  }
  call.reply.Integer(call.ctx.messaging().Answer(call.session, id, ok, call.args[2]) ? 1 : 0);
}
void SvcReply(Call& call) { Answer(call, true); }
void SvcError(Call& call) { Answer(call, false); }

// CALL name payload [TIMEOUT ms]  /  CALL.ALL name payload [TIMEOUT ms]
void CallGeneric(Call& call, bool all) {
  int64_t timeout = kDefaultCallTimeoutMs;
  if (call.args.size() == 5 && base::EqualsIgnoreCase(call.args[3], "timeout")) {
    if (!ArgInt64(call, call.args[4], &timeout)) return;
    if (timeout <= 0) {
      call.reply.Error("ERR TIMEOUT must be a positive number of milliseconds");
      return;
    }
    if (timeout > kMaxCallTimeoutMs) {
      call.reply.Error("ERR timeout is out of range: at most " + std::to_string(kMaxCallTimeoutMs) +
                       " milliseconds (365 days)");
      return;
    }
  } else if (call.args.size() != 3) {
    SyntaxError(call);
    return;
  }
  call.ctx.messaging().Call(call.session, call.args[1], call.args[2], timeout, all);
}
void CallOne(Call& call) { CallGeneric(call, false); }
void CallAll(Call& call) { CallGeneric(call, true); }

void SvcList(Call& call) { call.ctx.messaging().ListServices(call.session.room, call.reply); }

void SvcStats(Call& call) {
  if (!call.ctx.messaging().ServiceStats(call.session.room, call.args[1], call.reply)) {
    call.reply.Error("NOTFOUND no such service");
  }
}

}  // namespace

void AddMessagingCommands(std::vector<CommandSpec>* out) {
  const uint32_t ps = kPubSubOk;
  out->insert(out->end(), {
    {"subscribe", -2, ps, 0, 0, 0, Subscribe, "Receive messages published to channels"},
    {"psubscribe", -2, ps, 0, 0, 0, PSubscribe, "Receive messages published to channels matching patterns"},
    {"unsubscribe", -1, ps, 0, 0, 0, Unsubscribe, "Stop receiving from channels (all when none named)"},
    {"punsubscribe", -1, ps, 0, 0, 0, PUnsubscribe, "Stop receiving from patterns (all when none named)"},
    {"publish", 3, kFast, 0, 0, 0, Publish, "Send a message to a channel's subscribers"},
    {"pubsub", -2, kSubcommands, 0, 0, 0, PubSub, "Introspect channels and subscriptions"},
    {"reset", 1, ps | kFast, 0, 0, 0, Reset, "Reset the connection's state"},
    {"svc.serve", -2, 0, 0, 0, 0, SvcServe, "Become a worker for services; requests arrive as pushes"},
    {"svc.unserve", -1, 0, 0, 0, 0, SvcUnserve, "Stop serving services (all when none named)"},
    {"svc.reply", 3, kFast, 0, 0, 0, SvcReply, "Answer a request"},
    {"svc.error", 3, kFast, 0, 0, 0, SvcError, "Answer a request with an error"},
    {"call", -3, 0, 0, 0, 0, CallOne, "Call a service: one worker (least loaded) answers"},
    {"call.all", -3, 0, 0, 0, 0, CallAll, "Call every worker of a service; one reply per worker"},
    {"svc.list", 1, 0, 0, 0, 0, SvcList, "Services of the room with their workers"},
    {"svc.stats", 2, 0, 0, 0, 0, SvcStats, "Statistics of one service"},
  });
}

}  // namespace distri::commands
