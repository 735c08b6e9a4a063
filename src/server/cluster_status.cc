// ClusterStatus; see cluster_status.h.

#include "server/cluster_status.h"

#include "server/cluster.h"
#include "server/server.h"

namespace distri::server {

ClusterStatus ReadClusterStatus(Server& server) {
  ClusterStatus s;
  replication::RaftLog* raft = server.raft();
  ClusterNode* node = server.cluster_node();
  if (raft == nullptr || node == nullptr) return s;
  s.enabled = true;
  s.cluster_id = node->identity().cluster_id;
  s.node_id = node->identity().node_id;
  s.role = node->RoleName();
  s.leader_id = raft->leader_id();
  auto status = raft->GetStatus();
  if (status.ok()) {
    s.term = status.value().term;
    s.commit_index = status.value().commit;
  }
  s.applied_index = raft->applied_index();
  for (const replication::MemberInfo& m : raft->Members()) {
    (m.voter ? s.voters : s.learners).push_back(m.id);
    if (m.id != s.node_id && node->PeerConnected(m.id)) s.peers_connected++;
  }
  s.proposals = raft->proposals();
  s.elections = raft->elections();
  s.snapshots_sent = raft->snapshots_sent();
  s.transport = &node->transport_stats();
  return s;
}

bool ClusterReady(const ClusterStatus& status, std::string* why) {
  if (!status.enabled) return true;
  if (status.role == "removed") {
    *why = "this node was removed from the cluster";
    return false;
  }
  if (status.cluster_id == 0) {
    *why = "joining: not yet a member of a cluster (no leader known)";
    return false;
  }
  if (status.leader_id == 0) {
    *why = "no leader known: writes and linearizable reads get TRYAGAIN until one is elected";
    return false;
  }
  return true;
}

}  // namespace distri::server
