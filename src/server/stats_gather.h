// Statistics from every node: the pieces that do no I/O, so they can be tested alone.
//
// A node answering STATS, ROOM.STATS, CLUSTER.STATS or /api/stats in a cluster asks every other
// member for its own figures (server/cluster_stats.h sends the frames) and combines the
// answers. This file holds:
//
//   - Figures: one node's own figures, owned name/value pairs (they cross the network, so the
//     names cannot point at literals as StatFields do).
//   - The two frames (docs/replication.md, "Statistics from every node"):
//       STATS_REQUEST (40)  request id u64 | kind u8 | room code (the rest; kind room only)
//       STATS_REPLY   (41)  request id u64 | count u16 | count x figure
//     a figure being  name length u8 | name | tag u8 | value, where the value is nothing
//     (tag 0, null), an i64 (tag 1), an f64's bits (tag 2), u32 length | bytes (tag 3) or
//     one byte 0/1 (tag 4); integers little-endian. A decoder refuses anything truncated,
//     oversized or with bytes left over.
//   - GatherTable: the requests in flight. Each has an id, the members it waits for and a
//     deadline; it completes once, when the last of them has answered, or at its deadline
//     with the silent ones marked unreachable.
//   - Combine(): the site-wide (or room-wide) figures from every node's figures: per-node
//     quantities summed over the nodes that answered, replicated state as this node has it.
//
// Threading: loop thread only (nothing here is shared).

#ifndef DISTRI_SERVER_STATS_GATHER_H_
#define DISTRI_SERVER_STATS_GATHER_H_

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "protocol/resp_writer.h"
#include "server/server.h"

namespace distri::server {

// std::monostate is null: a figure the node could not give (an unreachable member's term).
using FigureValue = std::variant<std::monostate, int64_t, double, std::string, bool>;
struct Figure {
  std::string name;
  FigureValue value;
};
using Figures = std::vector<Figure>;

// Bounds on what a peer may send (a reply outside them is dropped whole).
inline constexpr size_t kMaxFigures = 128;
inline constexpr size_t kMaxFigureName = 64;
inline constexpr size_t kMaxFigureText = 4096;
inline constexpr size_t kMaxStatsRoomCode = 1024;

enum class StatsKind : uint8_t {
  kSite = 0,  // STATS, /api/stats, CLUSTER.STATS: the node's own site figures
  kRoom = 1,  // ROOM.STATS, /api/rooms/<code>: the node's share of one room
};

struct StatsRequest {
  uint64_t id = 0;
  StatsKind kind = StatsKind::kSite;
  std::string room;  // kRoom only
};

std::string EncodeStatsRequest(const StatsRequest& request);
// False for a truncated or malformed request (an unknown kind, a room code that is too long).
bool DecodeStatsRequest(std::string_view payload, StatsRequest* out);
std::string EncodeStatsReply(uint64_t id, const Figures& figures);
bool DecodeStatsReply(std::string_view payload, uint64_t* id, Figures* out);

// The value of the figure called `name`, or nullptr.
const FigureValue* FindFigure(const Figures& figures, std::string_view name);
// StatFields as Figures (names copied).
Figures ToFigures(const StatFields& fields);

// One member's answer to a gather.
struct NodeReport {
  uint64_t id = 0;
  bool reachable = false;
  Figures figures;  // reachable: what it sent (its "id" and "reachable" set from the link)
};

// The requests this node has in flight.
//
// Invariants:
//  1. Every gather in gathers_ has exactly one entry in deadlines_, and nothing else is there.
//  2. A gather's `done` runs exactly once, after the gather has left both maps (so `done` may
//     start a new gather), and never from inside Start().
//  3. A peer is in `waiting` at most once; a reply is taken only from a peer in `waiting`
//     (late, duplicate, unknown-id and stranger replies are counted and dropped).
class GatherTable {
 public:
  // By member id, ascending: its figures, or nullopt when it did not answer in time.
  using Done = std::function<void(std::map<uint64_t, std::optional<Figures>> answers)>;

  explicit GatherTable(size_t max_in_flight) : max_in_flight_(max_in_flight) {}

  // A new gather waiting for `peers` until `deadline_ms`. Returns its id (ids start at 1 and
  // never repeat), or 0 when max_in_flight gathers are already running (nothing started).
  // A gather with no peers completes at the next Expire().
  uint64_t Start(std::span<const uint64_t> peers, int64_t deadline_ms, Done done);
  // `peer` will not answer `id` (its link is down, or the request could not be sent).
  void GiveUp(uint64_t id, uint64_t peer);
  // A member's link went down: every gather stops waiting for it.
  void PeerDown(uint64_t peer);
  // A reply. False when it was not expected (dropped).
  bool OnReply(uint64_t id, uint64_t peer, Figures figures);
  // Completes the gathers past their deadline at `now_ms` and those waiting for nobody.
  void Expire(int64_t now_ms);
  // The earliest moment Expire() has work (a gather waiting for nobody: now), if any.
  std::optional<int64_t> NextDeadline() const;
  // Completes every gather at once, as timed out (shutdown).
  void ExpireAll();

  size_t in_flight() const { return gathers_.size(); }
  uint64_t dropped_replies() const { return dropped_replies_; }
  uint64_t refused() const { return refused_; }

 private:
  struct Gather {
    int64_t deadline_ms = 0;
    std::set<uint64_t> waiting;
    std::map<uint64_t, std::optional<Figures>> answers;  // every peer asked
    Done done;
  };
  // Removes the gather (both maps) and runs its done.
  void Complete(uint64_t id);

  const size_t max_in_flight_;
  uint64_t next_id_ = 1;
  std::map<uint64_t, Gather> gathers_;
  std::set<std::pair<int64_t, uint64_t>> deadlines_;  // (deadline, id)
  std::set<uint64_t> ready_;  // gathers waiting for nobody: complete at the next Expire
  uint64_t dropped_replies_ = 0;
  uint64_t refused_ = 0;
};

// Combines every node's figures into the cluster's. `local` is this node's own list (its
// values of replicated state are kept); each field named in `summed` becomes the sum of that
// figure over the reachable nodes (integers saturate; a figure of another type is skipped).
// REQUIRES: `nodes` includes this node.
StatFields Combine(const StatFields& local, std::span<const NodeReport> nodes,
                   std::span<const std::string_view> summed);

// Per-node figures of STATS that are summed over the cluster (the rest describe replicated
// state, or the answering node itself, and are this node's): see docs/protocol.md.
inline constexpr std::string_view kSummedSiteFields[] = {
    "clients",        "mirrors",        "memory_bytes",   "ops_per_sec_1s",
    "ops_per_sec_1m", "commands_total", "reads_total",    "writes_total",
    "connections_total", "slow_consumer_disconnects", "service_records",
    "push_budget_disconnects", "output_bytes",
    "pubsub_node_messages_sent", "pubsub_node_messages_received",
    "pubsub_node_messages_dropped", "pubsub_node_frames_lost",
};
inline constexpr std::string_view kSummedRoomFields[] = {
    "clients",          "mirrors",           "subscriptions",     "services",
    "reads",            "writes",            "reads_per_sec_1s",  "writes_per_sec_1s",
    "reads_per_sec_1m", "writes_per_sec_1m",
};

// As a RESP map; `extra_pairs` more pairs follow (written by the caller).
void WriteStatFields(const StatFields& fields, protocol::ReplyWriter& reply,
                     size_t extra_pairs = 0);
// One node's figures as a RESP map (null: RESP3 '_', RESP2 nil).
void WriteFigures(const Figures& figures, protocol::ReplyWriter& reply);
// The combined map plus "nodes": an array with one map per member.
void WriteGathered(const StatFields& combined, std::span<const NodeReport> nodes,
                   protocol::ReplyWriter& reply);

}  // namespace distri::server

#endif  // DISTRI_SERVER_STATS_GATHER_H_
