// Live-room family: MIRROR, UNMIRROR, ROOM.STATS, STATS.
// The work happens in the server (server/mirror.h); handlers parse arguments.

#include <optional>

#include "base/strings.h"
#include "commands/command.h"

namespace distri::commands {

namespace {

// MIRROR [PREFIX p] [FROM revision]
void Mirror(Call& call) {
  if (call.session.protocol != 3) {
    call.reply.Error("ERR MIRROR needs RESP3 push frames: send HELLO 3 first");
    return;
  }
  std::string_view prefix;
  std::optional<uint64_t> from;
  for (size_t i = 1; i < call.args.size(); i += 2) {
    if (i + 1 >= call.args.size()) {
      SyntaxError(call);
      return;
    }
    if (base::EqualsIgnoreCase(call.args[i], "prefix")) {
      prefix = call.args[i + 1];
    } else if (base::EqualsIgnoreCase(call.args[i], "from")) {
      uint64_t rev;
      if (!base::ParseUint64(call.args[i + 1], &rev)) {
        call.reply.Error("ERR FROM needs a revision (a non-negative integer)");
        return;
      }
      from = rev;
    } else {
      SyntaxError(call);
      return;
    }
  }
  call.ctx.Mirror(call.session, prefix, from, call.reply);
}

void Unmirror(Call& call) {
  if (call.args.size() > 2) {
    WrongArity(call);
    return;
  }
  std::optional<std::string_view> room;
  if (call.args.size() == 2) room = call.args[1];
  call.reply.Integer(static_cast<int64_t>(call.ctx.Unmirror(call.session, room)));
}

void RoomStats(Call& call) {
  std::string_view code;
  if (!TargetRoom(call, &code)) return;
  call.ctx.RoomStats(call.session, code, call.reply);
}

void Stats(Call& call) { call.ctx.SiteStats(call.session, call.reply); }

}  // namespace

void AddMirrorCommands(std::vector<CommandSpec>* out) {
  out->insert(out->end(), {
    {"mirror", -1, kReadOnly, 0, 0, 0, Mirror, "Follow the room (or a prefix) live: snapshot, then pushed changes"},
    {"unmirror", -1, kFast, 0, 0, 0, Unmirror, "Stop mirroring a room, or all rooms"},
    {"room.stats", -1, kReadOnly, 0, 0, 0, RoomStats, "Statistics of the current (or named) room"},
    {"stats", 1, 0, 0, 0, 0, Stats, "Site-wide statistics (the whole cluster, with a per-node breakdown)"},
  });
}

}  // namespace distri::commands
