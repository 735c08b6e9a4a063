// ClusterReady: /readyz's rule for a cluster node. The numbers behind it (ReadClusterStatus on a
// live node) are checked against real processes in tests/test_cluster_http.py.

#include "server/cluster_status.h"

#include <gtest/gtest.h>

#include <string>

namespace distri::server {
namespace {

ClusterStatus Member(std::string_view role, uint64_t leader) {
  ClusterStatus s;
  s.enabled = true;
  s.cluster_id = 7;
  s.node_id = 1;
  s.role = role;
  s.leader_id = leader;
  return s;
}

TEST(ClusterReady, ASingleNodeIsAlwaysReady) {
  std::string why;
  EXPECT_TRUE(ClusterReady(ClusterStatus{}, &why));
  EXPECT_EQ(why, "");
}

TEST(ClusterReady, ReadyWhileALeaderIsKnown) {
  std::string why;
  EXPECT_TRUE(ClusterReady(Member("leader", 1), &why));
  EXPECT_TRUE(ClusterReady(Member("follower", 2), &why));
  EXPECT_TRUE(ClusterReady(Member("learner", 2), &why));  // catching up: forwards and reads
  EXPECT_EQ(why, "");
}

TEST(ClusterReady, NotReadyWithoutALeader) {
  std::string why;
  EXPECT_FALSE(ClusterReady(Member("candidate", 0), &why));
  EXPECT_NE(why.find("no leader known"), std::string::npos) << why;
  why.clear();
  EXPECT_FALSE(ClusterReady(Member("follower", 0), &why));
  EXPECT_NE(why.find("no leader known"), std::string::npos) << why;
}

TEST(ClusterReady, NotReadyWhileJoiningOrOnceRemoved) {
  std::string why;
  ClusterStatus joining = Member("follower", 0);
  joining.cluster_id = 0;
  EXPECT_FALSE(ClusterReady(joining, &why));
  EXPECT_NE(why.find("joining"), std::string::npos) << why;
  why.clear();
  EXPECT_FALSE(ClusterReady(Member("removed", 2), &why));  // even with a leader known
  EXPECT_NE(why.find("removed"), std::string::npos) << why;
}

}  // namespace
}  // namespace distri::server
