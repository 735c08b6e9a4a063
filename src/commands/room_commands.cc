// Room family: ROOM.NEW, ROOM.JOIN, ROOM.INFO, ROOM.LIST, ROOM.DROP.
//
// A room is a shared dictionary named by an unguessable code; knowing the
// code is what lets a client in. Codes come from the OS CSPRNG (via the
// server's context) and enter the log inside a kRoomCreate entry, so every
// replica agrees on them.

#include <string>

#include "commands/access.h"
#include "commands/command.h"

namespace distri::commands {

namespace {

using state::Op;

// ROOM.NEW [name]: creates a room, switches the connection into it, and
// replies with its code.
void RoomNew(Call& call) {
  if (call.args.size() > 2) {
    WrongArity(call);
    return;
  }
  // Checked here for a clear error at once, and again by apply (the entry
  // carries the limit), which settles creations already in flight the same
  // way on every replica.
  const uint64_t max_rooms = call.ctx.settings().max_rooms;
  if (max_rooms != 0 && call.ctx.state().user_room_count() >= max_rooms) {
    call.reply.Error(state::kMaxRoomsError);
    return;
  }
  std::string code = call.ctx.NewRoomCode();
  std::string_view name = call.args.size() == 2 ? call.args[1] : std::string_view(code);
  std::string_view op_args[] = {name};
  call.ProposeIn(code, Op::kRoomCreate, 0, static_cast<int64_t>(max_rooms), op_args,
                 ReplyShape::kJoinRoom);
}

void RoomJoin(Call& call) {
  if (!call.ctx.state().RoomJoinable(call.args[1])) {
    call.reply.Error("NOTFOUND no such room");
    return;
  }
  call.session.room = std::string(call.args[1]);
  call.reply.Ok();
}

// A room as a map. `show_code`: its code under "code"; else its id under "id"
// and a name that cannot reveal the code (commands/access.h).
void WriteRoomMap(Call& call, std::string_view code, const state::Room* room,
                  bool show_code = true) {
  const std::string_view name = room ? std::string_view(room->name()) : code;
  call.reply.Map(6);
  if (show_code) {
    call.reply.Bulk("code");
    call.reply.Bulk(code);
    call.reply.Bulk("name");
    call.reply.Bulk(name);
  } else {
    const std::string id = RoomId(code);
    call.reply.Bulk("id");
    call.reply.Bulk(id);
    call.reply.Bulk("name");
    call.reply.Bulk(PublicRoomName(code, name, id));
  }
  call.reply.Bulk("keys");
  call.reply.Integer(room ? static_cast<int64_t>(room->key_count()) : 0);
  call.reply.Bulk("memory_bytes");
  call.reply.Integer(room ? static_cast<int64_t>(room->memory_bytes()) : 0);
  call.reply.Bulk("created_at_ms");
  call.reply.Integer(room ? room->created_at_ms() : 0);
  call.reply.Bulk("revision");
  call.reply.Integer(room ? static_cast<int64_t>(room->last_write_revision()) : 0);
}

// ROOM.INFO [code]: the current room, or the named one.
void RoomInfo(Call& call) {
  std::string_view code;
  if (!TargetRoom(call, &code)) return;
  WriteRoomMap(call, code, call.ctx.state().FindRoom(code));
}

// ROOM.LIST: every room; admins see codes, others ids (commands/access.h).
void RoomList(Call& call) {
  const auto& rooms = call.ctx.state().rooms();
  const bool admin = IsAdmin(call.ctx.settings(), call.session);
  call.reply.Array(rooms.size());
  for (const auto& [code, room] : rooms) WriteRoomMap(call, code, room.get(), admin);
}

void RoomDrop(Call& call) {
  call.ProposeIn(call.args[1], Op::kRoomDrop, 0, 0, {}, ReplyShape::kAsIs);
}

}  // namespace

void AddRoomCommands(std::vector<CommandSpec>* out) {
  out->insert(out->end(), {
    {"room.new", -1, kWrite | kDenyOom, 0, 0, 0, RoomNew, "Create a room and join it; replies with its code"},
    {"room.join", 2, kFast, 0, 0, 0, RoomJoin, "Switch the connection into a room"},
    {"room.info", -1, kReadOnly, 0, 0, 0, RoomInfo, "Describe the current (or named) room"},
    {"room.list", 1, kReadOnly | kAdmin, 0, 0, 0, RoomList, "List every room"},
    {"room.drop", 2, kWrite | kAdmin, 0, 0, 0, RoomDrop, "Delete a room and its keys"},
  });
}

}  // namespace distri::commands
