// Tests for RaftNode and the raft_capi library under it: the C API's error paths, then whole
// groups of 3 and 5 nodes in one process over SimCluster's network (drops, delays,
// partitions; raft_sim_test_util.h), driven by ticks. They check the properties Distri builds
// on: one leader, the same log everywhere, nothing committed lost when a leader dies, no
// commit without a quorum, ReadIndex only after quorum confirmation, learners that catch up
// by snapshot and log and are promoted, and leadership transfer.

#include "replication/raft_node.h"

#include <gtest/gtest.h>

#include <set>
#include <string>
#include <vector>

#include "replication/raft_capi.h"
#include "replication/raft_sim_test_util.h"

namespace distri::replication {
namespace {

using testing::AllApplied;
using testing::AllBut;
using testing::AppliedEntry;
using testing::ExpectSameLog;
using testing::Ids;
using testing::Settle;
using testing::SimCluster;

// ---- the C API and wrapper on their own ---------------------------------------------------

TEST(RaftNodeTest, RejectsBadConfig) {
  RaftConfig config = SimCluster::BaseConfig(0);  // id 0 is reserved by raft
  config.voters = {1};
  auto node = RaftNode::Create(config);
  ASSERT_FALSE(node.ok());
  EXPECT_EQ(node.status().code(), Code::kInvalidArgument);

  config = SimCluster::BaseConfig(1);
  config.voters = {1};
  config.heartbeat_tick = config.election_tick;  // heartbeat must be shorter than election
  EXPECT_EQ(RaftNode::Create(config).status().code(), Code::kInvalidArgument);

  config = SimCluster::BaseConfig(1);
  config.learners = {2};  // learners without voters is neither bootstrap nor join
  EXPECT_EQ(RaftNode::Create(config).status().code(), Code::kInvalidArgument);
}

TEST(RaftNodeTest, ErrorsAreStatusesNotCrashes) {
  RaftConfig config = SimCluster::BaseConfig(1);
  config.voters = {1, 2, 3};
  auto node = RaftNode::Create(config);
  ASSERT_TRUE(node.ok()) << node.status().ToString();
  RaftNode& n = **node;

  Status s = n.Step("\xff\xff\xff garbage");
  EXPECT_EQ(s.code(), Code::kInvalidArgument) << s.ToString();
  EXPECT_NE(s.message().find("raft"), std::string::npos);

  // No leader known yet: the proposal is dropped, and says so.
  s = n.Propose("ctx", "data");
  EXPECT_EQ(s.code(), Code::kBusy) << s.ToString();

  std::vector<ConfChange> none;
  EXPECT_EQ(n.ProposeConfChange("", none).code(), Code::kInvalidArgument);
  RaftEntry not_conf{5, 1, EntryType::kNormal, "x", ""};
  EXPECT_EQ(n.ApplyConfChange(not_conf).code(), Code::kInvalidArgument);
  EXPECT_EQ(n.AdvanceApplyTo(100).code(), Code::kInvalidArgument);

  // The node still works after every error.
  auto status = n.GetStatus();
  ASSERT_TRUE(status.ok());
  EXPECT_EQ(status->id, 1u);
  EXPECT_EQ(status->role, Role::kFollower);
  EXPECT_EQ(status->commit, kBootstrapIndex);
  auto voters = n.Voters();
  ASSERT_TRUE(voters.ok());
  EXPECT_EQ(*voters, (std::vector<uint64_t>{1, 2, 3}));
}

TEST(RaftNodeTest, SingleVoterCommitsThroughTheSyncReadyLoop) {
  // A node without --join is a group of one on the same code path: it elects itself and
  // commits alone. This test drives the synchronous pattern (Advance + LightReady).
  RaftConfig config = SimCluster::BaseConfig(7);
  config.voters = {7};
  auto created = RaftNode::Create(config);
  ASSERT_TRUE(created.ok());
  RaftNode& n = **created;
  ASSERT_TRUE(n.Campaign().ok());

  std::vector<std::string> applied;
  uint64_t last_index = kBootstrapIndex;
  auto drain = [&] {
    for (int i = 0; i < 100; ++i) {
      auto has = n.HasReady();
      ASSERT_TRUE(has.ok());
      if (!*has) return;
      auto rd = n.TakeReady();
      ASSERT_TRUE(rd.ok());
      EXPECT_TRUE(rd->messages().empty());  // nobody to talk to
      for (const RaftEntry& e : rd->entries()) EXPECT_GT(e.index, kBootstrapIndex);
      for (const RaftEntry& e : rd->committed_entries()) {
        if (!e.data.empty()) applied.emplace_back(e.data);
        last_index = e.index;
      }
      auto light = n.Advance(*rd);
      ASSERT_TRUE(light.ok()) << light.status().ToString();
      for (const RaftEntry& e : light->committed_entries()) {
        if (!e.data.empty()) applied.emplace_back(e.data);
        last_index = e.index;
      }
      ASSERT_TRUE(n.AdvanceApplyTo(last_index).ok());
    }
  };
  drain();
  auto status = n.GetStatus();
  ASSERT_TRUE(status.ok());
  ASSERT_EQ(status->role, Role::kLeader);
  ASSERT_TRUE(n.Propose("c1", "one").ok());
  ASSERT_TRUE(n.Propose("c2", "two").ok());
  drain();
  EXPECT_EQ(applied, (std::vector<std::string>{"one", "two"}));
  status = n.GetStatus();
  ASSERT_TRUE(status.ok());
  EXPECT_EQ(status->commit, last_index);
  EXPECT_EQ(status->applied, last_index);
}

// ---- groups over the simulated network ----------------------------------------------------

class RaftClusterTest : public ::testing::TestWithParam<int> {};

TEST_P(RaftClusterTest, ElectsExactlyOneLeader) {
  SimCluster c(Ids(GetParam()));
  uint64_t leader = c.ElectLeader();
  ASSERT_NE(leader, 0u);
  int leaders = 0;
  for (uint64_t id : c.ids()) {
    if (c.StatusOf(id).role == Role::kLeader) ++leaders;
    EXPECT_EQ(c.StatusOf(id).leader_id, leader);
  }
  EXPECT_EQ(leaders, 1);
}

TEST_P(RaftClusterTest, ProposalsCommitEverywhereInOrder) {
  SimCluster c(Ids(GetParam()));
  uint64_t leader = c.ElectLeader();
  ASSERT_NE(leader, 0u);
  std::vector<std::string> want;
  for (int i = 0; i < 40; ++i) {
    want.push_back("value-" + std::to_string(i));
    ASSERT_TRUE(c.node(leader).Propose("ctx-" + std::to_string(i), want.back()).ok());
    if (i % 7 == 0) c.Round();  // some proposals batch, some do not
  }
  std::set<uint64_t> all = AllBut(c, {});
  ASSERT_TRUE(c.RunUntil([&] { return AllApplied(c, all, want.size()); }));
  ExpectSameLog(c, all, want);
  // The context given to Propose comes back with the committed entry (how a proposer
  // recognises its own write).
  EXPECT_EQ(c.member(leader).applied[3].context, "ctx-3");
  EXPECT_GT(c.member(leader).applied[0].index, kBootstrapIndex);
}

TEST_P(RaftClusterTest, LeaderProgressShowsWhatEachMemberHas) {
  SimCluster c(Ids(GetParam()));
  uint64_t leader = c.ElectLeader();
  ASSERT_NE(leader, 0u);
  std::set<uint64_t> all = AllBut(c, {});
  for (int i = 0; i < 5; ++i) ASSERT_TRUE(c.node(leader).Propose("", "v").ok());
  ASSERT_TRUE(c.RunUntil([&] { return AllApplied(c, all, 5); }));
  auto status = c.node(leader).GetStatus();
  ASSERT_TRUE(status.ok());
  auto progress = c.node(leader).Progress();
  ASSERT_TRUE(progress.ok());
  ASSERT_EQ(progress.value().size(), GetParam());
  for (auto [id, matched] : progress.value()) {
    EXPECT_TRUE(all.contains(id));
    EXPECT_EQ(matched, status.value().last_index) << id;
  }
}

TEST_P(RaftClusterTest, LossyReorderingNetworkStillAgrees) {
  SimCluster c(Ids(GetParam()), /*seed=*/42);
  c.SetDropRate(0.1);
  c.SetMaxDelay(3);
  ASSERT_NE(c.ElectLeader(), 0u);
  // Retries are by the proposer, as Distri's will be: a proposal that a leader change
  // dropped is proposed again, and the state machine ignores a context it has already
  // applied, so each value is applied once.
  std::vector<std::string> want;
  for (int i = 0; i < 30; ++i) want.push_back("v" + std::to_string(i));
  std::set<uint64_t> all = AllBut(c, {});
  auto applied_once = [&](uint64_t id) {
    std::set<std::string> seen;
    for (const AppliedEntry& e : c.member(id).applied) seen.insert(e.context);
    return seen;
  };
  for (int attempt = 0; attempt < 20; ++attempt) {
    uint64_t leader = c.ElectLeader();
    ASSERT_NE(leader, 0u);
    std::set<std::string> done = applied_once(leader);
    for (const std::string& v : want) {
      if (!done.count(v)) (void)c.node(leader).Propose(v, v);
    }
    if (c.RunUntil(
            [&] {
              for (uint64_t id : all) {
                if (applied_once(id).size() < want.size()) return false;
              }
              return true;
            },
            300)) {
      break;
    }
  }
  // Every member applied the same entries at the same indexes (duplicates included).
  for (uint64_t id : all) {
    EXPECT_EQ(applied_once(id).size(), want.size()) << "member " << id;
    EXPECT_EQ(c.member(id).applied, c.member(*all.begin()).applied) << "member " << id;
  }
}

TEST_P(RaftClusterTest, LeaderLossElectsANewLeaderAndLosesNothingCommitted) {
  SimCluster c(Ids(GetParam()));
  uint64_t old_leader = c.ElectLeader();
  ASSERT_NE(old_leader, 0u);
  std::vector<std::string> want;
  for (int i = 0; i < 10; ++i) {
    want.push_back("before-" + std::to_string(i));
    ASSERT_TRUE(c.node(old_leader).Propose("", want.back()).ok());
  }
  std::set<uint64_t> all = AllBut(c, {});
  ASSERT_TRUE(c.RunUntil([&] { return AllApplied(c, all, want.size()); }));
  uint64_t old_term = c.StatusOf(old_leader).term;

  // "Kill" the leader: all of its traffic is dropped from now on.
  c.Isolate(old_leader);
  std::set<uint64_t> rest = AllBut(c, {old_leader});
  uint64_t new_leader = c.ElectLeader(rest);
  ASSERT_NE(new_leader, 0u);
  EXPECT_NE(new_leader, old_leader);
  EXPECT_GT(c.StatusOf(new_leader).term, old_term);
  for (int i = 0; i < 10; ++i) {
    want.push_back("after-" + std::to_string(i));
    ASSERT_TRUE(c.node(new_leader).Propose("", want.back()).ok());
  }
  ASSERT_TRUE(c.RunUntil([&] { return AllApplied(c, rest, want.size()); }));
  ExpectSameLog(c, rest, want);

  // The old leader comes back, follows, and catches up to the same log.
  c.Heal();
  ASSERT_TRUE(c.RunUntil([&] { return AllApplied(c, all, want.size()); }));
  ExpectSameLog(c, all, want);
  EXPECT_EQ(c.StatusOf(old_leader).role, Role::kFollower);
}

INSTANTIATE_TEST_SUITE_P(Sizes, RaftClusterTest, ::testing::Values(3, 5),
                         [](const auto& info) { return "Nodes" + std::to_string(info.param); });

TEST(RaftPartitionTest, MinorityLeaderCannotCommit) {
  SimCluster c(Ids(5));
  uint64_t leader = c.ElectLeader();
  ASSERT_NE(leader, 0u);
  ASSERT_TRUE(c.node(leader).Propose("", "committed").ok());
  std::set<uint64_t> all = AllBut(c, {});
  ASSERT_TRUE(c.RunUntil([&] { return AllApplied(c, all, 1); }));

  // The leader and one follower on one side, three nodes on the other.
  uint64_t buddy = leader == 1 ? 2 : 1;
  std::set<uint64_t> minority = {leader, buddy};
  std::set<uint64_t> majority = AllBut(c, minority);
  c.Partition({minority, majority});
  uint64_t commit_before = c.StatusOf(leader).commit;
  // Proposed before the leader notices (check_quorum) that it lost its quorum.
  ASSERT_TRUE(c.node(leader).Propose("", "lost").ok());
  for (int i = 0; i < 100; ++i) c.Round();
  EXPECT_EQ(c.StatusOf(leader).commit, commit_before);
  EXPECT_EQ(c.StatusOf(buddy).commit, commit_before);
  // check_quorum: the stranded leader has stepped down.
  EXPECT_NE(c.StatusOf(leader).role, Role::kLeader);

  uint64_t new_leader = c.ElectLeader(majority);
  ASSERT_NE(new_leader, 0u);
  ASSERT_TRUE(c.node(new_leader).Propose("", "won").ok());
  ASSERT_TRUE(c.RunUntil([&] { return AllApplied(c, majority, 2); }));

  // After healing the minority's unacknowledged entry is gone everywhere.
  c.Heal();
  ASSERT_TRUE(c.RunUntil([&] { return AllApplied(c, all, 2); }));
  for (int i = 0; i < 20; ++i) c.Round();
  ExpectSameLog(c, all, {"committed", "won"});
}

TEST(RaftReadIndexTest, ReadStateOnlyAfterQuorumConfirms) {
  SimCluster c(Ids(3));
  uint64_t leader = c.ElectLeader();
  ASSERT_NE(leader, 0u);
  ASSERT_TRUE(c.node(leader).Propose("", "x").ok());
  std::set<uint64_t> all = AllBut(c, {});
  Settle(c, leader);
  uint64_t commit = c.StatusOf(leader).commit;

  // Safe mode: the leader answers only after a quorum acknowledged a heartbeat sent after
  // the request, never from a lease. Steps deliver messages without ticking.
  ASSERT_TRUE(c.node(leader).ReadIndex("read-1").ok());
  c.Step();  // the leader sends heartbeats carrying the request
  EXPECT_TRUE(c.member(leader).reads.empty());
  c.Step();  // followers receive them and respond
  EXPECT_TRUE(c.member(leader).reads.empty());
  c.Step();  // responses arrive: a quorum has confirmed the leader
  ASSERT_EQ(c.member(leader).reads.size(), 1u);
  EXPECT_EQ(c.member(leader).reads[0].first, commit);
  EXPECT_EQ(c.member(leader).reads[0].second, "read-1");

  // A leader cut off from every follower never answers.
  c.Isolate(leader);
  ASSERT_TRUE(c.node(leader).ReadIndex("read-2").ok());
  for (int i = 0; i < 100; ++i) c.Round();
  EXPECT_EQ(c.member(leader).reads.size(), 1u);

  // A follower's ReadIndex is forwarded to the (new) leader and answered once it confirms.
  std::set<uint64_t> rest = AllBut(c, {leader});
  uint64_t new_leader = c.ElectLeader(rest);
  ASSERT_NE(new_leader, 0u);
  uint64_t follower = *AllBut(c, {leader, new_leader}).begin();
  // A new leader answers only after committing an entry of its own term, which it has done
  // once a follower applied up to its commit.
  ASSERT_TRUE(c.RunUntil([&] {
    return c.member(follower).applied_index == c.StatusOf(new_leader).commit;
  }));
  ASSERT_TRUE(c.node(follower).ReadIndex("read-3").ok());
  ASSERT_TRUE(c.RunUntil([&] { return !c.member(follower).reads.empty(); }, 50));
  EXPECT_EQ(c.member(follower).reads[0].second, "read-3");
  EXPECT_GE(c.member(follower).reads[0].first, commit);
}

TEST(RaftPersistTest, AcknowledgementsWaitForDurability) {
  // Followers send append responses only after their Ready is durable: with both followers'
  // persistence stalled, the leader cannot commit.
  SimCluster c(Ids(3));
  uint64_t leader = c.ElectLeader();
  ASSERT_NE(leader, 0u);
  Settle(c, leader);
  std::set<uint64_t> followers = AllBut(c, {leader});
  for (uint64_t id : followers) c.member(id).hold_persist = true;
  uint64_t commit_before = c.StatusOf(leader).commit;
  ASSERT_TRUE(c.node(leader).Propose("", "durable").ok());
  for (int i = 0; i < 5; ++i) c.Step();
  EXPECT_EQ(c.StatusOf(leader).commit, commit_before);
  for (uint64_t id : followers) EXPECT_FALSE(c.member(id).unpersisted.empty());

  // One follower's fsync finishes: leader + it are a quorum.
  uint64_t one = *followers.begin();
  c.member(one).hold_persist = false;
  c.FinishPersist(c.member(one));
  std::set<uint64_t> quorum = {leader, one};
  ASSERT_TRUE(c.RunUntil([&] { return AllApplied(c, quorum, 1); }, 20));
  EXPECT_GT(c.StatusOf(leader).commit, commit_before);
}

TEST(RaftMembershipTest, LearnerCatchesUpBySnapshotAndLogThenIsPromoted) {
  SimCluster c(Ids(3));
  uint64_t leader = c.ElectLeader();
  ASSERT_NE(leader, 0u);
  std::vector<std::string> want;
  auto propose = [&](int n) {
    for (int i = 0; i < n; ++i) {
      want.push_back("w" + std::to_string(want.size()));
      ASSERT_TRUE(c.node(leader).Propose("", want.back()).ok());
    }
  };
  propose(20);
  std::set<uint64_t> voters = {1, 2, 3};
  ASSERT_TRUE(c.RunUntil([&] { return AllApplied(c, voters, want.size()); }));

  // Every voter snapshots its state machine and compacts its log, so the newcomer can only
  // be caught up by a snapshot.
  for (uint64_t id : voters) {
    testing::SimMember& m = c.member(id);
    ASSERT_TRUE(m.node->Compact(m.applied_index, testing::EncodeState(m.applied)).ok());
  }

  // Add node 4 as a learner through Raft, then start it as a joining node.
  ConfChange add_learner{ConfChangeType::kAddLearner, 4};
  ASSERT_TRUE(c.node(leader).ProposeConfChange("join-4", {&add_learner, 1}).ok());
  c.AddMember(SimCluster::BaseConfig(4));  // no voters: joins
  ASSERT_TRUE(c.RunUntil([&] {
    auto learners = c.node(leader).Learners();
    return learners.ok() && *learners == std::vector<uint64_t>{4};
  }));
  propose(10);
  std::set<uint64_t> all = {1, 2, 3, 4};
  ASSERT_TRUE(c.RunUntil([&] { return AllApplied(c, all, want.size()); }));
  ExpectSameLog(c, all, want);
  // The voters' snapshots predate node 4, so the leader asked for a fresh one (which names
  // it) and node 4 started from it.
  EXPECT_EQ(c.member(4).snapshots_loaded, 1u);
  EXPECT_EQ(c.member(leader).snapshots_made, 1u);
  EXPECT_EQ(c.StatusOf(4).role, Role::kFollower);
  auto learners_on_4 = c.node(4).Learners();
  ASSERT_TRUE(learners_on_4.ok());
  EXPECT_EQ(*learners_on_4, std::vector<uint64_t>{4});

  // Promote it; it now counts towards the quorum: with two old voters cut off, the leader
  // and node 4 (two of four voters) still cannot commit, but with one cut off they can.
  ConfChange promote{ConfChangeType::kAddVoter, 4};
  ASSERT_TRUE(c.node(leader).ProposeConfChange("promote-4", {&promote, 1}).ok());
  ASSERT_TRUE(c.RunUntil([&] {
    for (uint64_t id : all) {
      auto v = c.node(id).Voters();
      if (!v.ok() || *v != std::vector<uint64_t>{1, 2, 3, 4}) return false;
    }
    return true;
  }));
  uint64_t cut = leader == 1 ? 2 : 1;
  c.Isolate(cut);
  propose(5);
  std::set<uint64_t> live = AllBut(c, {cut});
  ASSERT_TRUE(c.RunUntil([&] { return AllApplied(c, live, want.size()); }));
  ExpectSameLog(c, live, want);
}

TEST(RaftMembershipTest, ReplacesAVoterInOneJointChange) {
  // Replacing a dead node: add the newcomer as a learner, then swap it in for the old voter
  // in one change (joint consensus, left automatically), while the group keeps committing.
  SimCluster c(Ids(3));
  uint64_t leader = c.ElectLeader();
  ASSERT_NE(leader, 0u);
  uint64_t old_node = leader == 3 ? 2 : 3;
  ConfChange add_learner{ConfChangeType::kAddLearner, 4};
  ASSERT_TRUE(c.node(leader).ProposeConfChange("", {&add_learner, 1}).ok());
  c.AddMember(SimCluster::BaseConfig(4));
  ASSERT_TRUE(c.node(leader).Propose("", "while-learning").ok());
  ASSERT_TRUE(c.RunUntil([&] { return AllApplied(c, {1, 2, 3, 4}, 1); }));

  c.Isolate(old_node);  // it died
  std::vector<ConfChange> swap = {{ConfChangeType::kAddVoter, 4},
                                  {ConfChangeType::kRemoveNode, old_node}};
  ASSERT_TRUE(c.node(leader).ProposeConfChange("replace", swap).ok());
  std::set<uint64_t> live = AllBut(c, {old_node});
  std::vector<uint64_t> want_voters(live.begin(), live.end());
  ASSERT_TRUE(c.RunUntil([&] {
    for (uint64_t id : live) {
      auto v = c.node(id).Voters();
      if (!v.ok() || *v != want_voters) return false;
    }
    return true;
  }));
  ASSERT_TRUE(c.node(leader).Propose("", "after-replace").ok());
  ASSERT_TRUE(c.RunUntil([&] { return AllApplied(c, live, 2); }));
  ExpectSameLog(c, live, {"while-learning", "after-replace"});
}

TEST(RaftMembershipTest, RemovedNodeLeavesTheQuorum) {
  SimCluster c(Ids(3));
  uint64_t leader = c.ElectLeader();
  ASSERT_NE(leader, 0u);
  uint64_t gone = leader == 3 ? 2 : 3;
  ConfChange remove{ConfChangeType::kRemoveNode, gone};
  ASSERT_TRUE(c.node(leader).ProposeConfChange("", {&remove, 1}).ok());
  std::set<uint64_t> rest = AllBut(c, {gone});
  ASSERT_TRUE(c.RunUntil([&] {
    for (uint64_t id : rest) {
      auto v = c.node(id).Voters();
      if (!v.ok() || v->size() != 2) return false;
    }
    return true;
  }));
  // Two voters left: both are needed, the removed node is not.
  c.Isolate(gone);
  ASSERT_TRUE(c.node(leader).Propose("", "after-remove").ok());
  ASSERT_TRUE(c.RunUntil([&] { return AllApplied(c, rest, 1); }));
}

TEST(RaftMembershipTest, RefusesASecondChangeUntilTheFirstIsApplied) {
  // raft would turn the second change into an empty entry and still answer Ok, so that a
  // CLUSTER.REMOVE could answer OK and never happen; the C API says "busy" instead.
  SimCluster c(Ids(3));
  uint64_t leader = c.ElectLeader();
  ASSERT_NE(leader, 0u);
  ASSERT_TRUE(c.RunUntil([&] { return c.node(leader).GetStatus()->applied ==
                                      c.node(leader).GetStatus()->last_index; }));
  ConfChange add_learner{ConfChangeType::kAddLearner, 4};
  ASSERT_TRUE(c.node(leader).ProposeConfChange("", {&add_learner, 1}).ok());
  ConfChange remove{ConfChangeType::kRemoveNode, leader == 3 ? 2u : 3u};
  EXPECT_EQ(c.node(leader).ProposeConfChange("", {&remove, 1}).code(), Code::kBusy);
  c.AddMember(SimCluster::BaseConfig(4));
  ASSERT_TRUE(c.RunUntil([&] { return c.node(leader).GetStatus()->applied ==
                                      c.node(leader).GetStatus()->last_index; }));
  // Once the first is applied, the second goes through.
  ASSERT_TRUE(c.node(leader).ProposeConfChange("", {&remove, 1}).ok());
  ASSERT_TRUE(c.RunUntil([&] {
    auto v = c.node(leader).Voters();
    return v.ok() && v->size() == 2;
  }));
}

TEST(RaftTransferTest, LeadershipMovesToTheChosenNode) {
  SimCluster c(Ids(3));
  uint64_t leader = c.ElectLeader();
  ASSERT_NE(leader, 0u);
  ASSERT_TRUE(c.node(leader).Propose("", "before").ok());
  std::set<uint64_t> all = AllBut(c, {});
  ASSERT_TRUE(c.RunUntil([&] { return AllApplied(c, all, 1); }));
  uint64_t target = leader == 3 ? 1 : leader + 1;
  ASSERT_TRUE(c.node(leader).TransferLeader(target).ok());
  // Transfer is immediate on this network: no ticks should be needed beyond a few steps.
  ASSERT_TRUE(c.RunUntil([&] { return c.Leader() == target; }, 20));
  EXPECT_EQ(c.ElectLeader(), target);
  ASSERT_TRUE(c.node(target).Propose("", "after").ok());
  ASSERT_TRUE(c.RunUntil([&] { return AllApplied(c, all, 2); }));
  ExpectSameLog(c, all, {"before", "after"});
}

}  // namespace
}  // namespace distri::replication
