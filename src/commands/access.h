// Access: who may see what, and the password check, for the RESP commands,
// CLIENT LIST and the HTTP API alike.
//
// A room's code is its only secret: whoever knows it may read and write the
// room. Listings (ROOM.LIST, CLIENT LIST's room=, GET /api/rooms) therefore
// show codes only to admins and a room id to everyone else. There are no
// users yet, so an admin is:
//  * with --requirepass: any authenticated client (an unauthenticated one
//    can run nothing that lists rooms);
//  * without a password, bound to loopback: every client (only local users
//    can connect), unless --trust-loopback no says a proxy on this host
//    forwards other people's connections;
//  * without a password, bound to another address: nobody.
// The room id is the first 64 bits of SHA-256("distri-room-id\0" + code) in
// hex, prefixed "r-": stable, short, and of no help in finding the code
// (codes carry 128 random bits). Builtin rooms ("default", "0".."15") are
// no secret; their id is their code.
//
// Thread-safety: pure functions.

#ifndef DISTRI_COMMANDS_ACCESS_H_
#define DISTRI_COMMANDS_ACCESS_H_

#include <string>
#include <string_view>

#include "commands/command.h"

namespace distri::commands {

// Whether this client may see room codes in listings.
bool IsAdmin(const ServerSettings& settings, const Session& session);
// The non-secret id of a room, shown instead of its code.
std::string RoomId(std::string_view code);
// The name to show beside a room's id: a room created without a name is
// named after its code, which must not leak through the name either.
std::string_view PublicRoomName(std::string_view code, std::string_view name,
                                const std::string& id);
// Compares a password without a timing signal: both sides are hashed first,
// so neither the contents nor the length of `want` shows in the time taken.
bool PasswordEquals(std::string_view given, std::string_view want);

}  // namespace distri::commands

#endif  // DISTRI_COMMANDS_ACCESS_H_
