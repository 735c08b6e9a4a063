// Which Raft group replicates a room: the one place that decides it.
//
// Today one Raft group replicates every room (group 0, the server's RaftLog). When one group
// no longer carries the write load, rooms are the shard (DESIGN.md, "Growing past one Raft
// group"): each room maps to one of many groups spread over the nodes, and this function
// becomes a lookup in a replicated routing table. Everything that proposes asks it, so adding
// groups changes what it returns, not its callers. (Entries that span rooms, FLUSHALL and COPY
// into another room, will then need a group of their own or a two-phase protocol.)
//
// Threading: pure.

#ifndef DISTRI_REPLICATION_GROUPS_H_
#define DISTRI_REPLICATION_GROUPS_H_

#include <cstdint>
#include <string_view>

namespace distri::replication {

inline constexpr uint64_t kDefaultGroup = 0;

inline uint64_t GroupOfRoom(std::string_view /*room*/) { return kDefaultGroup; }

}  // namespace distri::replication

#endif  // DISTRI_REPLICATION_GROUPS_H_
