// StatsGatherer: statistics from every node of a cluster, gathered on demand.
//
// STATS, ROOM.STATS, CLUSTER.STATS and their HTTP routes on a cluster node ask every other
// member for its own figures over the cluster links (frames 40 and 41, stats_gather.h) and
// answer once all have replied or kTimeoutMs has passed; a member that did not answer is
// listed as unreachable, never left out. Nothing is cached: each request asks afresh, so the
// answer reflects the state at the time of the request (a client connected on node B before
// STATS is sent to node A is counted).
//
// A member answers a request at once from its own counters (NodeFigures); it keeps no state
// for it. The asking node keeps each request in a GatherTable (bounded: kMaxInFlight) until
// it completes; a reply to a request that has completed, or from a node not asked, is dropped.
//
// Owned by the Server (server.h), created once the cluster port is open; on a single node
// there is none and the same figures are answered at once (Server::GatherStats).
//
// Threading: loop thread only.

#ifndef DISTRI_SERVER_CLUSTER_STATS_H_
#define DISTRI_SERVER_CLUSTER_STATS_H_

#include <uv.h>

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "server/stats_gather.h"

namespace distri::server {

class ClusterNode;
class Server;

// This node's own figures: for kSite, "id", "client_address", "reachable", "role", "term",
// "commit_index", "applied_index", "leader_id", "clients", then the rest of STATS' fields; for
// kRoom, "id", "client_address", "reachable" and the room's per-node figures
// (kSummedRoomFields). On a single node "id" is 0 and "role" is "standalone".
Figures NodeFigures(Server& server, StatsKind kind, std::string_view room);

class StatsGatherer {
 public:
  static constexpr uint8_t kFrameRequest = 40;
  static constexpr uint8_t kFrameReply = 41;
  // How long a request waits for the slowest member.
  static constexpr int64_t kTimeoutMs = 1000;
  // Requests in flight at once; more are refused (TRYAGAIN) rather than queued.
  static constexpr size_t kMaxInFlight = 256;

  // Every member, ascending id, this node included.
  using Done = std::function<void(std::vector<NodeReport> nodes)>;

  // Registers the frame and link handlers with `node`.
  StatsGatherer(Server* server, ClusterNode* node, uv_loop_t* loop);
  StatsGatherer(const StatsGatherer&) = delete;
  StatsGatherer& operator=(const StatsGatherer&) = delete;

  // Asks every other member. False: kMaxInFlight requests are running (`done` never runs).
  // `done` never runs before Gather returns.
  bool Gather(StatsKind kind, std::string_view room, Done done);
  // Completes what is in flight (members that have not answered are unreachable) and closes
  // the timer. Frames that arrive later are ignored.
  void Close();

  const GatherTable& table() const { return table_; }
  uint64_t bad_frames() const { return bad_frames_; }

 private:
  void OnRequest(uint64_t peer, std::string_view payload);
  void OnReply(uint64_t peer, std::string_view payload);
  // What this node knows of a member that did not answer.
  NodeReport Unreachable(uint64_t id, StatsKind kind) const;
  void ArmTimer();

  Server* server_;
  ClusterNode* node_;
  uv_loop_t* loop_;
  uv_timer_t timer_;
  bool closed_ = false;
  GatherTable table_{kMaxInFlight};
  uint64_t bad_frames_ = 0;  // truncated or malformed frames from members, dropped
};

}  // namespace distri::server

#endif  // DISTRI_SERVER_CLUSTER_STATS_H_
