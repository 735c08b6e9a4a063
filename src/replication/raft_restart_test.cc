// Tests for the restart path: RaftNode::Restore (distri_raft_node_restore) rebuilding a member
// from what it persisted. SimCluster keeps each member's durable copy (hard state, entries
// with a conflicting tail overwritten, snapshot metadata and the state machine's snapshot),
// updated only when a Ready's "fsync" finishes; Kill drops a member with everything else, and
// Restart brings it back from that copy alone. The tests restart followers, the leader, a
// compacted log and the whole group, and check that nothing committed is lost, that every
// member ends with the same log and commit index, and (in SimCluster, on every persisted hard
// state) that terms and commit indexes never go back. Bad durable state is refused.

#include <gtest/gtest.h>

#include <algorithm>
#include <functional>
#include <set>
#include <string>
#include <vector>

#include "replication/raft_node.h"
#include "replication/raft_sim_test_util.h"

namespace distri::replication {
namespace {

using testing::AllApplied;
using testing::AllBut;
using testing::DurableState;
using testing::ExpectSameLog;
using testing::Ids;
using testing::Settle;
using testing::SimCluster;

// Proposes `n` entries named prefix-0, prefix-1, ... on `leader` and records them in `want`.
void ProposeMany(SimCluster& c, uint64_t leader, const std::string& prefix, int n,
                 std::vector<std::string>& want) {
  for (int i = 0; i < n; ++i) {
    want.push_back(prefix + "-" + std::to_string(i));
    Status s = c.node(leader).Propose("", want.back());
    ASSERT_TRUE(s.ok()) << s.ToString();
  }
}

// Every live member has the same commit index, last index and term.
void ExpectSameIndexes(SimCluster& c) {
  std::vector<uint64_t> ids = c.ids();
  ASSERT_FALSE(ids.empty());
  RaftStatus first = c.StatusOf(ids.front());
  for (uint64_t id : ids) {
    RaftStatus s = c.StatusOf(id);
    EXPECT_EQ(s.commit, first.commit) << "member " << id;
    EXPECT_EQ(s.last_index, first.last_index) << "member " << id;
    EXPECT_EQ(s.term, first.term) << "member " << id;
  }
}

// A restored member starts exactly where its durable copy left off.
void ExpectRestoredAsPersisted(SimCluster& c, uint64_t id, const DurableState& d) {
  RaftStatus s = c.StatusOf(id);
  EXPECT_EQ(s.term, d.hard_state.term);
  EXPECT_EQ(s.vote, d.hard_state.vote);
  EXPECT_EQ(s.commit, d.hard_state.commit);
  EXPECT_EQ(s.applied, d.snapshot_index);
  EXPECT_EQ(s.last_index, d.snapshot_index + d.entries.size());
  EXPECT_EQ(s.role, Role::kFollower);
  auto voters = c.node(id).Voters();
  ASSERT_TRUE(voters.ok());
  EXPECT_EQ(*voters, d.voters);
}

uint64_t AFollower(SimCluster& c, uint64_t leader) {
  for (uint64_t id : c.ids()) {
    if (id != leader) return id;
  }
  return 0;
}

// ---- restarting members of a running group -------------------------------------------------

TEST(RaftRestartTest, FollowerRestartsFromItsDurableLogAndCatchesUp) {
  SimCluster c(Ids(3));
  uint64_t leader = c.ElectLeader();
  ASSERT_NE(leader, 0u);
  std::vector<std::string> want;
  ProposeMany(c, leader, "a", 20, want);
  std::set<uint64_t> all = {1, 2, 3};
  ASSERT_TRUE(c.RunUntil([&] { return AllApplied(c, all, want.size()); }));
  Settle(c, leader);

  uint64_t f = AFollower(c, leader);
  c.Kill(f);
  DurableState before = c.durable(f);
  ASSERT_EQ(before.snapshot_index, kBootstrapIndex);
  ASSERT_GE(before.entries.size(), 21u);  // the leader's empty entry and the 20 proposals
  ASSERT_GE(before.hard_state.commit, before.snapshot_index + 21);

  // The others keep committing without it.
  ProposeMany(c, leader, "b", 20, want);
  std::set<uint64_t> rest = AllBut(c, {});
  ASSERT_TRUE(c.RunUntil([&] { return AllApplied(c, rest, want.size()); }));

  c.Restart(f);
  ExpectRestoredAsPersisted(c, f, before);
  ASSERT_TRUE(c.RunUntil([&] { return AllApplied(c, all, want.size()); }));
  Settle(c, leader);
  ExpectSameLog(c, all, want);
  ExpectSameIndexes(c);
  // Its log was intact, so entries alone caught it up.
  EXPECT_EQ(c.member(f).snapshots_loaded, 0u);
  EXPECT_EQ(c.Leader(), leader);
}

TEST(RaftRestartTest, LeaderRestartsWhileTheOthersElectANewOne) {
  SimCluster c(Ids(3));
  uint64_t old_leader = c.ElectLeader();
  ASSERT_NE(old_leader, 0u);
  std::vector<std::string> want;
  ProposeMany(c, old_leader, "a", 10, want);
  std::set<uint64_t> all = {1, 2, 3};
  ASSERT_TRUE(c.RunUntil([&] { return AllApplied(c, all, want.size()); }));
  uint64_t old_term = c.StatusOf(old_leader).term;

  c.Kill(old_leader);
  DurableState before = c.durable(old_leader);
  EXPECT_EQ(before.hard_state.term, old_term);
  EXPECT_EQ(before.hard_state.vote, old_leader);
  uint64_t new_leader = c.ElectLeader();
  ASSERT_NE(new_leader, 0u);
  EXPECT_NE(new_leader, old_leader);
  EXPECT_GT(c.StatusOf(new_leader).term, old_term);
  ProposeMany(c, new_leader, "b", 10, want);
  std::set<uint64_t> rest = AllBut(c, {});
  ASSERT_TRUE(c.RunUntil([&] { return AllApplied(c, rest, want.size()); }));

  c.Restart(old_leader);
  ExpectRestoredAsPersisted(c, old_leader, before);
  ASSERT_TRUE(c.RunUntil([&] { return AllApplied(c, all, want.size()); }));
  Settle(c, new_leader);
  ExpectSameLog(c, all, want);
  ExpectSameIndexes(c);
  EXPECT_EQ(c.StatusOf(old_leader).role, Role::kFollower);
  EXPECT_EQ(c.StatusOf(old_leader).leader_id, new_leader);
}

TEST(RaftRestartTest, LeaderWithAnUncommittedTailRestartsAndTheTailIsOverwritten) {
  SimCluster c(Ids(3));
  uint64_t old_leader = c.ElectLeader();
  ASSERT_NE(old_leader, 0u);
  std::vector<std::string> want;
  ProposeMany(c, old_leader, "a", 5, want);
  std::set<uint64_t> all = {1, 2, 3};
  ASSERT_TRUE(c.RunUntil([&] { return AllApplied(c, all, want.size()); }));
  Settle(c, old_leader);

  // Cut off, the leader appends and persists entries nobody else sees, then crashes.
  c.Isolate(old_leader);
  std::vector<std::string> lost;
  ProposeMany(c, old_leader, "lost", 5, lost);
  for (int i = 0; i < 3; ++i) c.Step();
  c.Kill(old_leader);
  const DurableState& d = c.durable(old_leader);
  uint64_t committed = d.hard_state.commit;
  ASSERT_GE(d.snapshot_index + d.entries.size(), committed + 5) << "the tail was not persisted";

  // The others elect a leader and commit different entries at those indexes.
  c.Heal();
  uint64_t new_leader = c.ElectLeader();
  ASSERT_NE(new_leader, 0u);
  ProposeMany(c, new_leader, "b", 10, want);
  std::set<uint64_t> rest = AllBut(c, {});
  ASSERT_TRUE(c.RunUntil([&] { return AllApplied(c, rest, want.size()); }));

  c.Restart(old_leader);
  ASSERT_TRUE(c.RunUntil([&] { return AllApplied(c, all, want.size()); }));
  Settle(c, new_leader);
  ExpectSameLog(c, all, want);  // none of "lost-*" was applied anywhere
  ExpectSameIndexes(c);
  // Its durable log now holds the new leader's entries where its own tail was.
  const DurableState& after = c.durable(old_leader);
  for (const OwnedEntry& e : after.entries) {
    EXPECT_EQ(e.data.rfind("lost-", 0), std::string::npos) << "index " << e.index;
  }
}

TEST(RaftRestartTest, FollowerWithACompactedLogRestartsFromItsSnapshot) {
  SimCluster c(Ids(3));
  uint64_t leader = c.ElectLeader();
  ASSERT_NE(leader, 0u);
  std::vector<std::string> want;
  ProposeMany(c, leader, "a", 20, want);
  std::set<uint64_t> all = {1, 2, 3};
  ASSERT_TRUE(c.RunUntil([&] { return AllApplied(c, all, want.size()); }));
  Settle(c, leader);
  for (uint64_t id : all) c.CompactMember(c.member(id));
  ProposeMany(c, leader, "b", 10, want);
  ASSERT_TRUE(c.RunUntil([&] { return AllApplied(c, all, want.size()); }));
  Settle(c, leader);

  uint64_t f = AFollower(c, leader);
  c.Kill(f);
  DurableState before = c.durable(f);
  ASSERT_GT(before.snapshot_index, kBootstrapIndex);
  ASSERT_GE(before.entries.size(), 10u);  // the "b" entries after the snapshot
  EXPECT_EQ(before.entries.front().index, before.snapshot_index + 1);
  ProposeMany(c, leader, "c", 5, want);
  std::set<uint64_t> rest = AllBut(c, {});
  ASSERT_TRUE(c.RunUntil([&] { return AllApplied(c, rest, want.size()); }));

  c.Restart(f);
  ExpectRestoredAsPersisted(c, f, before);
  // Its state machine starts as the snapshot: the "a" entries.
  EXPECT_EQ(c.member(f).applied.size(), 20u);
  ASSERT_TRUE(c.RunUntil([&] { return AllApplied(c, all, want.size()); }));
  Settle(c, leader);
  ExpectSameLog(c, all, want);
  ExpectSameIndexes(c);
}

// ---- the whole group at once ---------------------------------------------------------------

TEST(RaftRestartTest, WholeGroupRestartsAndKeepsEveryCommittedEntry) {
  for (uint32_t seed : {1u, 2u, 3u}) {
    SCOPED_TRACE("seed " + std::to_string(seed));
    SimCluster c(Ids(3), seed);
    c.SetMaxDelay(2);  // reordered traffic
    uint64_t leader = c.ElectLeader();
    ASSERT_NE(leader, 0u);
    std::vector<std::string> want;
    ProposeMany(c, leader, "a", 20, want);
    std::set<uint64_t> all = {1, 2, 3};
    ASSERT_TRUE(c.RunUntil([&] { return AllApplied(c, all, want.size()); }));

    // More proposals, and every node dies mid-replication: some of these may be committed,
    // some not; whatever the leader applied was committed and must survive.
    std::vector<std::string> in_flight;
    ProposeMany(c, leader, "b", 10, in_flight);
    c.Round();
    c.Round();
    std::vector<testing::AppliedEntry> committed = c.member(leader).applied;
    uint64_t max_term = 0;
    for (uint64_t id : all) {
      c.Kill(id);
      max_term = std::max(max_term, c.durable(id).hard_state.term);
    }
    for (uint64_t id : all) c.Restart(id);
    for (uint64_t id : all) ExpectRestoredAsPersisted(c, id, c.durable(id));

    uint64_t new_leader = c.ElectLeader();
    ASSERT_NE(new_leader, 0u);
    EXPECT_GT(c.StatusOf(new_leader).term, max_term);
    std::vector<std::string> after;
    ProposeMany(c, new_leader, "c", 5, after);
    Settle(c, new_leader);
    ExpectSameIndexes(c);
    const std::vector<testing::AppliedEntry>& log = c.member(new_leader).applied;
    ASSERT_GE(log.size(), committed.size() + after.size());
    EXPECT_TRUE(std::equal(committed.begin(), committed.end(), log.begin()))
        << "a committed entry was lost or changed";
    std::vector<std::string> tail;
    for (size_t i = log.size() - after.size(); i < log.size(); ++i) tail.push_back(log[i].data);
    EXPECT_EQ(tail, after);
    for (uint64_t id : all) EXPECT_EQ(c.member(id).applied, log) << "member " << id;
  }
}

TEST(RaftRestartTest, RestartedCompactedLeaderAsksForASnapshotAndServesIt) {
  // After a restart the Store holds only the snapshot's metadata, not its data: the first
  // follower that needs a snapshot makes raft ask for one (TakeSnapshotRequest), the app
  // answers with Compact, and raft sends that. Sending the restored metadata with no data
  // would wipe the follower's state machine: ExpectSameLog catches that.
  SimCluster c(Ids(3));
  uint64_t leader = c.ElectLeader();
  ASSERT_NE(leader, 0u);
  std::vector<std::string> want;
  ProposeMany(c, leader, "a", 10, want);
  std::set<uint64_t> voters = {1, 2, 3};
  ASSERT_TRUE(c.RunUntil([&] { return AllApplied(c, voters, want.size()); }));

  // One follower stops; the others go on, compact their logs past it and restart.
  uint64_t lagging = AFollower(c, leader);
  c.Kill(lagging);
  ProposeMany(c, leader, "b", 20, want);
  std::set<uint64_t> rest = AllBut(c, {});
  ASSERT_TRUE(c.RunUntil([&] { return AllApplied(c, rest, want.size()); }));
  Settle(c, leader);
  for (uint64_t id : rest) {
    c.CompactMember(c.member(id));
    c.Kill(id);
    ASSERT_GT(c.durable(id).snapshot_index,
              c.durable(lagging).snapshot_index + c.durable(lagging).entries.size())
        << "the lagging member must need a snapshot";
  }
  for (uint64_t id : rest) c.Restart(id);
  leader = c.ElectLeader();
  ASSERT_NE(leader, 0u);
  Settle(c, leader);
  ExpectSameLog(c, rest, want);

  c.Restart(lagging);
  ASSERT_TRUE(c.RunUntil([&] { return AllApplied(c, voters, want.size()); }));
  Settle(c, leader);
  ExpectSameLog(c, voters, want);
  ExpectSameIndexes(c);
  EXPECT_EQ(c.member(leader).snapshots_made, 1u);
  EXPECT_EQ(c.member(lagging).snapshots_loaded, 1u);

  // A new learner joins the same way, then restarts from the snapshot it received.
  ConfChange add_learner{ConfChangeType::kAddLearner, 4};
  ASSERT_TRUE(c.node(leader).ProposeConfChange("join-4", {&add_learner, 1}).ok());
  c.AddMember(SimCluster::BaseConfig(4));
  ProposeMany(c, leader, "c", 5, want);
  std::set<uint64_t> all = {1, 2, 3, 4};
  ASSERT_TRUE(c.RunUntil([&] { return AllApplied(c, all, want.size()); }));
  Settle(c, leader);
  ExpectSameLog(c, all, want);
  EXPECT_EQ(c.member(4).snapshots_loaded, 1u);
  c.Kill(4);
  DurableState d4 = c.durable(4);
  EXPECT_GT(d4.snapshot_index, kBootstrapIndex);
  EXPECT_EQ(d4.learners, std::vector<uint64_t>{4});
  c.Restart(4);
  ExpectRestoredAsPersisted(c, 4, d4);
  ProposeMany(c, leader, "d", 5, want);
  ASSERT_TRUE(c.RunUntil([&] { return AllApplied(c, all, want.size()); }));
  Settle(c, leader);
  ExpectSameLog(c, all, want);
  ExpectSameIndexes(c);
}

TEST(RaftRestartTest, ConfChangesUpToAppliedAreReplayedIntoTheMembership) {
  // A member whose state machine survives the restart (applied = commit) gets no conf change
  // entry again, yet its membership must include those after the snapshot.
  SimCluster c(Ids(3));
  uint64_t leader = c.ElectLeader();
  ASSERT_NE(leader, 0u);
  ConfChange add_learner{ConfChangeType::kAddLearner, 4};
  ASSERT_TRUE(c.node(leader).ProposeConfChange("", {&add_learner, 1}).ok());
  std::vector<std::string> want;
  ProposeMany(c, leader, "a", 3, want);
  std::set<uint64_t> all = {1, 2, 3};
  ASSERT_TRUE(c.RunUntil([&] { return AllApplied(c, all, want.size()); }));
  Settle(c, leader);
  uint64_t f = AFollower(c, leader);
  c.Kill(f);
  RestoreState state = c.durable(f).ToRestoreState();
  ASSERT_EQ(state.voters, (std::vector<uint64_t>{1, 2, 3}));
  ASSERT_TRUE(state.learners.empty());  // the bootstrap snapshot predates the change

  RaftConfig config = SimCluster::BaseConfig(f);
  config.applied = state.hard_state.commit;
  auto node = RaftNode::Restore(config, state);
  ASSERT_TRUE(node.ok()) << node.status().ToString();
  auto learners = (*node)->Learners();
  ASSERT_TRUE(learners.ok());
  EXPECT_EQ(*learners, std::vector<uint64_t>{4});
  auto voters = (*node)->Voters();
  ASSERT_TRUE(voters.ok());
  EXPECT_EQ(*voters, (std::vector<uint64_t>{1, 2, 3}));
  auto status = (*node)->GetStatus();
  ASSERT_TRUE(status.ok());
  EXPECT_EQ(status->applied, state.hard_state.commit);
}

// ---- refused input -------------------------------------------------------------------------

// A consistent durable state: bootstrap snapshot, entries 2..6 (terms 2, 2, 3, 3, 3), commit 5.
RestoreState GoodState() {
  RestoreState s;
  s.hard_state = HardState{3, 1, 5};
  s.snapshot_index = kBootstrapIndex;
  s.snapshot_term = 1;
  s.voters = {1, 2, 3};
  uint64_t terms[] = {2, 2, 3, 3, 3};
  for (uint64_t i = 0; i < 5; ++i) {
    s.entries.push_back(OwnedEntry{2 + i, terms[i], EntryType::kNormal, "d" + std::to_string(i),
                                   "ctx"});
  }
  return s;
}

RaftConfig RestoreConfig(uint64_t applied) {
  RaftConfig config = SimCluster::BaseConfig(1);
  config.applied = applied;
  return config;
}

TEST(RaftRestoreInputTest, AConsistentStateIsAccepted) {
  auto node = RaftNode::Restore(RestoreConfig(3), GoodState());
  ASSERT_TRUE(node.ok()) << node.status().ToString();
  auto s = (*node)->GetStatus();
  ASSERT_TRUE(s.ok());
  EXPECT_EQ(s->term, 3u);
  EXPECT_EQ(s->vote, 1u);
  EXPECT_EQ(s->commit, 5u);
  EXPECT_EQ(s->applied, 3u);
  EXPECT_EQ(s->last_index, 6u);
  // The committed entries after `applied` come out again, bytes intact.
  auto rd = (*node)->TakeReady();
  ASSERT_TRUE(rd.ok()) << rd.status().ToString();
  std::vector<RaftEntry> committed = rd->committed_entries();
  ASSERT_EQ(committed.size(), 2u);
  EXPECT_EQ(committed[0].index, 4u);
  EXPECT_EQ(committed[0].data, "d2");
  EXPECT_EQ(committed[0].context, "ctx");
  EXPECT_EQ(committed[1].index, 5u);

  // A joining node that crashed before its first snapshot: no snapshot, no entries.
  RestoreState joining;
  joining.hard_state = HardState{4, 0, 0};
  auto j = RaftNode::Restore(RestoreConfig(0), joining);
  ASSERT_TRUE(j.ok()) << j.status().ToString();
  EXPECT_EQ((*j)->GetStatus()->term, 4u);
}

TEST(RaftRestoreInputTest, InconsistentStatesAreRefused) {
  struct Case {
    const char* name;
    std::function<void(RaftConfig&, RestoreState&)> damage;
  };
  std::vector<Case> cases = {
      {"gap in the entries",
       [](RaftConfig&, RestoreState& s) { s.entries.erase(s.entries.begin() + 2); }},
      {"entries not right after the snapshot",
       [](RaftConfig&, RestoreState& s) { s.entries.erase(s.entries.begin()); }},
      {"entry term goes down", [](RaftConfig&, RestoreState& s) { s.entries[4].term = 1; }},
      {"hard state term below the log's",
       [](RaftConfig&, RestoreState& s) { s.hard_state.term = 2; }},
      {"commit beyond the last index",
       [](RaftConfig&, RestoreState& s) { s.hard_state.commit = 7; }},
      {"commit below the snapshot",
       [](RaftConfig& c, RestoreState& s) {
         s.hard_state.commit = 0;
         c.applied = 0;
       }},
      {"applied beyond commit", [](RaftConfig& c, RestoreState&) { c.applied = 6; }},
      {"applied below the snapshot",
       [](RaftConfig& c, RestoreState& s) {
         s.snapshot_index = 2;
         s.snapshot_term = 2;
         s.entries.erase(s.entries.begin());
         c.applied = 1;
       }},
      {"voters in the config", [](RaftConfig& c, RestoreState&) { c.voters = {1, 2, 3}; }},
      {"learners in the config", [](RaftConfig& c, RestoreState&) { c.learners = {4}; }},
      {"snapshot without voters", [](RaftConfig&, RestoreState& s) { s.voters.clear(); }},
      {"duplicate member", [](RaftConfig&, RestoreState& s) { s.learners = {3}; }},
      {"member id 0", [](RaftConfig&, RestoreState& s) { s.voters.push_back(0); }},
      {"snapshot term 0", [](RaftConfig&, RestoreState& s) { s.snapshot_term = 0; }},
      {"entries without a snapshot",
       [](RaftConfig& c, RestoreState& s) {
         s.snapshot_index = 0;
         s.snapshot_term = 0;
         s.voters.clear();
         c.applied = 0;
       }},
      {"unknown entry type",
       [](RaftConfig&, RestoreState& s) { s.entries[1].type = static_cast<EntryType>(9); }},
      {"node id 0", [](RaftConfig& c, RestoreState&) { c.id = 0; }},
  };
  for (const Case& k : cases) {
    SCOPED_TRACE(k.name);
    RaftConfig config = RestoreConfig(3);
    RestoreState state = GoodState();
    k.damage(config, state);
    auto node = RaftNode::Restore(config, state);
    ASSERT_FALSE(node.ok());
    EXPECT_EQ(node.status().code(), Code::kInvalidArgument) << node.status().ToString();
    EXPECT_NE(node.status().ToString().find("raft: "), std::string::npos);
  }
}

}  // namespace
}  // namespace distri::replication
