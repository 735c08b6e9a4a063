// ClusterStatus: one read of a node's cluster state for INFO's "# Cluster" section, /metrics
// and /readyz, so the three agree with each other and with CLUSTER.INFO (server/cluster.h).
//
// Everything is this node's own view: a follower's commit index is what it has learnt from
// the leader, and its leader id is 0 while it knows no leader (a pre-candidate or candidate
// forgets the old one).
//
// Threading: loop thread only.

#ifndef DISTRI_SERVER_CLUSTER_STATUS_H_
#define DISTRI_SERVER_CLUSTER_STATUS_H_

#include <cstdint>
#include <string_view>
#include <vector>

namespace distri::cluster {
struct TransportStats;
}

namespace distri::server {

class Server;

struct ClusterStatus {
  bool enabled = false;  // false: a single node on its LocalLog; nothing below is set
  uint64_t cluster_id = 0;  // 0: joining, not a member of any cluster yet
  uint64_t node_id = 0;
  std::string_view role;  // "leader", "follower", "candidate", "learner" or "removed"
  uint64_t leader_id = 0;  // 0: no leader known
  uint64_t term = 0;
  uint64_t commit_index = 0;
  uint64_t applied_index = 0;
  std::vector<uint64_t> voters;
  std::vector<uint64_t> learners;
  uint64_t proposals = 0;       // entries this node proposed as leader (its own and forwarded)
  uint64_t elections = 0;       // times this node became leader
  uint64_t snapshots_sent = 0;  // snapshots this node sent to lagging followers
  uint64_t peers_connected = 0;  // other members with at least one authenticated link up
  const cluster::TransportStats* transport = nullptr;
};

// The roles ClusterStatus::role takes, for /metrics' state set.
inline constexpr std::string_view kClusterRoles[] = {"leader", "follower", "candidate",
                                                      "learner", "removed"};

ClusterStatus ReadClusterStatus(Server& server);

// /readyz's rule for a cluster node: false, with the reason, while it knows no leader (it
// cannot serve writes or linearizable reads) or after it was removed.
bool ClusterReady(const ClusterStatus& status, std::string* why);

}  // namespace distri::server

#endif  // DISTRI_SERVER_CLUSTER_STATUS_H_
