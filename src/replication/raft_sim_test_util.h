// SimCluster: Raft groups of RaftNodes in one process over a simulated network, for tests.
//
// No sockets, no clock: time is a step counter. Round() ticks every node once, delivers the
// messages that are due and runs every node's Ready loop. The network can drop messages (a
// seeded rate), delay them (each message waits a random 0..max_delay extra steps, so messages
// are reordered) and partition nodes into groups; a message crossing a partition, sent or
// still in flight, is dropped. Each member's state machine is the list of non-empty normal
// entries it applied, so tests compare those lists across members; a member asked for a
// snapshot (TakeSnapshotRequest) compacts with its state as applied.
//
// The Ready loop is the asynchronous one Distri will use: a member sends a Ready's messages
// at once, applies its committed entries, hands it back with AdvanceAppendAsync and only
// "persists" it (OnPersistReady, then the persisted messages) when no more Readies are
// pending, or later still while a test holds its persistence (hold_persist).
//
// Crashes: persisting a Ready also copies its hard state, entries (overwriting a conflicting
// tail) and snapshot into the member's DurableState, and CompactMember records the snapshot it
// makes there too. Kill drops a member with everything not yet persisted; Restart rebuilds it
// with RaftNode::Restore from its DurableState alone, its state machine from the snapshot.
//
// Used by raft_node_test.cc and raft_restart_test.cc; header-only so RaftLog's tests can
// reuse it.

#ifndef DISTRI_REPLICATION_RAFT_SIM_TEST_UTIL_H_
#define DISTRI_REPLICATION_RAFT_SIM_TEST_UTIL_H_

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "replication/raft_node.h"

namespace distri::replication::testing {

struct AppliedEntry {
  uint64_t index;
  std::string context;
  std::string data;
  bool operator==(const AppliedEntry&) const = default;
};

struct SimMember {
  uint64_t id = 0;
  std::unique_ptr<RaftNode> node;
  std::vector<AppliedEntry> applied;                    // the state machine
  uint64_t applied_index = 0;                           // last entry applied (any type)
  std::vector<std::pair<uint64_t, std::string>> reads;  // read states: (index, context)
  std::vector<Ready> unpersisted;                       // advanced async, not yet durable
  bool hold_persist = false;                            // test knob: the "fsync" stalls
  bool snapshot_unpersisted = false;                    // a loaded snapshot awaits its persist
  uint64_t snapshots_loaded = 0;
  uint64_t snapshots_made = 0;  // on raft's request (TakeSnapshotRequest)
};

// The member's state machine as snapshot bytes: (index u64, context len u32, context,
// data len u32, data) per entry, native byte order (the bytes never leave the process).
inline std::string EncodeState(const std::vector<AppliedEntry>& applied) {
  std::string out;
  auto put = [&out](const void* p, size_t n) { out.append(static_cast<const char*>(p), n); };
  for (const AppliedEntry& e : applied) {
    uint32_t clen = e.context.size(), dlen = e.data.size();
    put(&e.index, 8);
    put(&clen, 4);
    out += e.context;
    put(&dlen, 4);
    out += e.data;
  }
  return out;
}

inline std::vector<AppliedEntry> DecodeState(std::string_view in) {
  std::vector<AppliedEntry> out;
  size_t pos = 0;
  auto get = [&](void* p, size_t n) {
    std::memcpy(p, in.data() + pos, n);
    pos += n;
  };
  while (pos < in.size()) {
    AppliedEntry e;
    uint32_t len;
    get(&e.index, 8);
    get(&len, 4);
    e.context = std::string(in.substr(pos, len));
    pos += len;
    get(&len, 4);
    e.data = std::string(in.substr(pos, len));
    pos += len;
    out.push_back(std::move(e));
  }
  return out;
}

// What a member has made durable, as a real write-ahead log would hold it. Survives Kill.
struct DurableState {
  HardState hard_state{};
  uint64_t snapshot_index = 0;
  uint64_t snapshot_term = 0;
  std::vector<uint64_t> voters;
  std::vector<uint64_t> learners;
  std::string snapshot_data;        // the state machine's (EncodeState); kept by the app
  std::vector<OwnedEntry> entries;  // from snapshot_index + 1, contiguous

  RestoreState ToRestoreState() const {
    return RestoreState{hard_state, snapshot_index, snapshot_term, voters, learners, entries};
  }
};

class SimCluster {
 public:
  // Bootstraps a group whose voters are `voters`, one member each.
  explicit SimCluster(const std::vector<uint64_t>& voters, uint32_t seed = 1) : rng_(seed) {
    for (uint64_t id : voters) {
      RaftConfig config = BaseConfig(id);
      config.voters = voters;
      AddMember(config);
    }
  }

  static RaftConfig BaseConfig(uint64_t id) {
    RaftConfig config;
    config.id = id;
    config.election_tick = 10;
    config.heartbeat_tick = 2;
    return config;
  }

  // Adds a member (bootstrapped, or joining when config.voters is empty).
  void AddMember(const RaftConfig& config) {
    auto node = RaftNode::Create(config);
    ASSERT_TRUE(node.ok()) << node.status().ToString();
    auto m = std::make_unique<SimMember>();
    m->id = config.id;
    // A bootstrapped member starts with the membership snapshot applied.
    m->applied_index = config.voters.empty() ? 0 : kBootstrapIndex;
    m->node = std::move(node.value());
    members_[config.id] = std::move(m);
    DurableState& d = durable_[config.id];
    d = DurableState{};
    if (!config.voters.empty()) {
      // What the bootstrap put in the log: the membership snapshot, committed.
      d.hard_state = HardState{1, 0, kBootstrapIndex};
      d.snapshot_index = kBootstrapIndex;
      d.snapshot_term = 1;
      d.voters = config.voters;
      d.learners = config.learners;
    }
  }

  // ---- crashes ----
  // The member stops at once: its unpersisted Readies are lost, its DurableState stays.
  void Kill(uint64_t id) {
    members_.at(id)->unpersisted.clear();  // Readies go before their node
    members_.erase(id);
  }
  bool Alive(uint64_t id) const { return members_.count(id) != 0; }
  const DurableState& durable(uint64_t id) const { return durable_.at(id); }

  // Starts a killed member again from its DurableState: the state machine is the snapshot's,
  // so raft hands out every committed entry after it again.
  void Restart(uint64_t id) {
    ASSERT_FALSE(Alive(id)) << "member " << id << " is running";
    const DurableState& d = durable_.at(id);
    RaftConfig config = BaseConfig(id);
    config.applied = d.snapshot_index;
    auto node = RaftNode::Restore(config, d.ToRestoreState());
    ASSERT_TRUE(node.ok()) << "member " << id << ": " << node.status().ToString();
    auto m = std::make_unique<SimMember>();
    m->id = id;
    m->applied = DecodeState(d.snapshot_data);
    m->applied_index = d.snapshot_index;
    m->node = std::move(node.value());
    members_[id] = std::move(m);
  }

  // Snapshots the member's state machine as applied and compacts its log to it, in raft and
  // in its DurableState (what the app does when raft asks, or to bound its log).
  void CompactMember(SimMember& m) {
    std::string state = EncodeState(m.applied);
    Status s = m.node->Compact(m.applied_index, state);
    ASSERT_TRUE(s.ok()) << "member " << m.id << ": " << s.ToString();
    DurableState& d = durable_.at(m.id);
    if (m.applied_index <= d.snapshot_index) return;
    auto it = std::find_if(d.entries.begin(), d.entries.end(),
                           [&](const OwnedEntry& e) { return e.index == m.applied_index; });
    // Raft hands out only persisted entries to apply, so the entry is durable.
    ASSERT_TRUE(it != d.entries.end()) << "member " << m.id << " applied a non-durable entry";
    auto voters = m.node->Voters();
    auto learners = m.node->Learners();
    ASSERT_TRUE(voters.ok() && learners.ok());
    d.snapshot_index = m.applied_index;
    d.snapshot_term = it->term;
    d.voters = *voters;
    d.learners = *learners;
    d.snapshot_data = std::move(state);
    d.entries.erase(d.entries.begin(), it + 1);
  }

  // REQUIRES: Alive(id) for member() and node().
  SimMember& member(uint64_t id) { return *members_.at(id); }
  RaftNode& node(uint64_t id) { return *members_.at(id)->node; }
  std::vector<uint64_t> ids() const {
    std::vector<uint64_t> out;
    for (const auto& [id, m] : members_) out.push_back(id);
    return out;
  }

  // ---- network faults ----
  void SetDropRate(double rate) { drop_rate_ = rate; }
  void SetMaxDelay(int steps) { max_delay_ = steps; }
  // Cuts `id` off from everyone (its own traffic and traffic to it is dropped).
  void Isolate(uint64_t id) { group_[id] = next_group_++; }
  // Nodes talk only within their group; nodes not listed form one more group.
  void Partition(const std::vector<std::set<uint64_t>>& groups) {
    group_.clear();
    for (const auto& g : groups) {
      int n = next_group_++;
      for (uint64_t id : g) group_[id] = n;
    }
  }
  void Heal() { group_.clear(); }
  bool Connected(uint64_t a, uint64_t b) const { return GroupOf(a) == GroupOf(b); }

  // ---- driving ----
  // Ticks every member, then delivers due messages and runs every Ready loop.
  void Round() {
    for (auto& [id, m] : members_) ASSERT_TRUE(m->node->Tick().ok());
    Step();
  }

  // Delivers the messages due now and runs every Ready loop, without ticking.
  void Step() {
    ++step_;
    std::deque<InFlight> due;
    for (auto it = in_flight_.begin(); it != in_flight_.end();) {
      if (it->due <= step_) {
        due.push_back(std::move(*it));
        it = in_flight_.erase(it);
      } else {
        ++it;
      }
    }
    for (InFlight& msg : due) {
      auto it = members_.find(msg.to);
      if (it == members_.end() || !Connected(msg.from, msg.to)) {
        Lost(msg.from, msg.to, msg.type);
        continue;
      }
      auto sender = members_.find(msg.from);
      if (msg.type == kMsgSnapshot && sender != members_.end()) {  // unless the sender died
        ASSERT_TRUE(sender->second->node->ReportSnapshot(msg.to, true).ok());
      }
      // A peer may reject a message (e.g. from a removed member); raft decides, not us.
      if (!it->second->node->Step(msg.bytes).ok()) ++rejected_messages_;
      ++delivered_messages_;
    }
    for (auto& [id, m] : members_) {
      ProcessReadies(*m);
      // A leader that needs a newer snapshot gets one of the state as applied.
      auto wanted = m->node->TakeSnapshotRequest();
      ASSERT_TRUE(wanted.ok()) << wanted.status().ToString();
      if (*wanted) {
        ++m->snapshots_made;
        CompactMember(*m);
      }
    }
  }

  // Runs rounds until pred() holds; false if it still does not after max_rounds.
  bool RunUntil(const std::function<bool()>& pred, int max_rounds = 500) {
    for (int i = 0; i < max_rounds; ++i) {
      if (pred()) return true;
      Round();
      if (::testing::Test::HasFatalFailure()) return false;
    }
    return pred();
  }

  RaftStatus StatusOf(uint64_t id) {
    auto s = node(id).GetStatus();
    EXPECT_TRUE(s.ok()) << s.status().ToString();
    return s.ok() ? *s : RaftStatus{};
  }

  // The member among `among` (default: all) that is leader with the highest term, or 0.
  uint64_t Leader(const std::set<uint64_t>& among = {}) {
    uint64_t leader = 0, term = 0;
    for (auto& [id, m] : members_) {
      if (!among.empty() && !among.count(id)) continue;
      RaftStatus s = StatusOf(id);
      if (s.role == Role::kLeader && s.term >= term) {
        leader = id;
        term = s.term;
      }
    }
    return leader;
  }

  // Runs until `among` agree on one leader that is connected to all of them.
  uint64_t ElectLeader(const std::set<uint64_t>& among = {}, int max_rounds = 500) {
    uint64_t leader = 0;
    RunUntil(
        [&] {
          leader = Leader(among);
          if (leader == 0) return false;
          for (auto& [id, m] : members_) {
            if (!among.empty() && !among.count(id)) continue;
            if (StatusOf(id).leader_id != leader) return false;
          }
          return true;
        },
        max_rounds);
    return leader;
  }

  // Persists (lets the "fsync" finish) everything `id` has handed back so far.
  void FinishPersist(SimMember& m) {
    if (m.unpersisted.empty()) return;
    for (const Ready& rd : m.unpersisted) Persist(durable_.at(m.id), rd);
    ASSERT_TRUE(m.node->OnPersistReady(m.unpersisted.back().number()).ok());
    for (Ready& rd : m.unpersisted) Send(m.id, rd.persisted_messages());
    m.unpersisted.clear();
    m.snapshot_unpersisted = false;
    ReportApplied(m);
  }

  void ReportApplied(SimMember& m) {
    Status s = m.node->AdvanceApplyTo(m.applied_index);
    ASSERT_TRUE(s.ok()) << "member " << m.id << ": " << s.ToString();
  }

  uint64_t delivered_messages() const { return delivered_messages_; }

 private:
  struct InFlight {
    uint64_t due;
    uint64_t from;
    uint64_t to;
    int32_t type;
    std::string bytes;
  };

  // Writes one Ready to `d` as a write-ahead log would: snapshot, then entries, then hard state.
  static void Persist(DurableState& d, const Ready& rd) {
    if (auto snap = rd.snapshot()) {
      // A snapshot replaces the whole log up to and including its index.
      d.snapshot_index = snap->index;
      d.snapshot_term = snap->term;
      d.voters = snap->voters;
      d.learners = snap->learners;
      d.snapshot_data = std::string(snap->data);
      d.entries.clear();
    }
    std::vector<RaftEntry> entries = rd.entries();
    if (!entries.empty()) {
      // New entries overwrite a conflicting tail.
      uint64_t first = entries.front().index;
      ASSERT_GT(first, d.snapshot_index);
      ASSERT_LE(first, d.snapshot_index + d.entries.size() + 1) << "gap in the durable log";
      d.entries.resize(first - d.snapshot_index - 1);
      for (const RaftEntry& e : entries) {
        d.entries.push_back(
            OwnedEntry{e.index, e.term, e.type, std::string(e.data), std::string(e.context)});
      }
    }
    if (auto hs = rd.hard_state()) {
      // Across restarts too: a member's term and commit index never go back.
      ASSERT_GE(hs->term, d.hard_state.term) << "term went back";
      ASSERT_GE(hs->commit, d.hard_state.commit) << "commit index went back";
      d.hard_state = *hs;
    }
  }

  int GroupOf(uint64_t id) const {
    auto it = group_.find(id);
    return it == group_.end() ? 0 : it->second;
  }

  void Send(uint64_t from, const std::vector<RaftMessage>& msgs) {
    for (const RaftMessage& m : msgs) {
      if (!Connected(from, m.to) ||
          (drop_rate_ > 0 && std::uniform_real_distribution<double>(0, 1)(rng_) < drop_rate_)) {
        Lost(from, m.to, m.type);
        continue;
      }
      uint64_t delay = max_delay_ > 0 ? std::uniform_int_distribution<int>(0, max_delay_)(rng_)
                                      : 0;
      in_flight_.push_back(InFlight{step_ + 1 + delay, from, m.to, m.type, std::string(m.bytes)});
    }
  }

  // The transport's duty: a lost snapshot is reported, or the leader waits for it forever.
  void Lost(uint64_t from, uint64_t to, int32_t type) {
    auto it = members_.find(from);
    if (type == kMsgSnapshot && it != members_.end()) {
      ASSERT_TRUE(it->second->node->ReportSnapshot(to, false).ok());
    }
  }

  void Apply(SimMember& m, const std::vector<RaftEntry>& entries) {
    for (const RaftEntry& e : entries) {
      ASSERT_EQ(e.index, m.applied_index + 1) << "member " << m.id << " skipped an entry";
      if (e.type == EntryType::kNormal) {
        // Empty entries are the ones a new leader appends; they carry no command.
        if (!e.data.empty()) {
          m.applied.push_back(AppliedEntry{e.index, std::string(e.context), std::string(e.data)});
        }
      } else {
        Status s = m.node->ApplyConfChange(e);
        ASSERT_TRUE(s.ok()) << s.ToString();
      }
      m.applied_index = e.index;
    }
  }

  void ProcessReadies(SimMember& m) {
    for (int guard = 0; guard < 10000; ++guard) {
      auto has = m.node->HasReady();
      ASSERT_TRUE(has.ok()) << has.status().ToString();
      if (!*has) {
        if (m.unpersisted.empty() || m.hold_persist) return;
        FinishPersist(m);
        continue;
      }
      auto taken = m.node->TakeReady();
      ASSERT_TRUE(taken.ok()) << taken.status().ToString();
      Ready rd = std::move(taken.value());
      Send(m.id, rd.messages());
      if (auto snap = rd.snapshot()) {
        // A snapshot replaces the state machine and every entry up to its index.
        m.applied = DecodeState(snap->data);
        m.applied_index = snap->index;
        m.snapshot_unpersisted = true;
        ++m.snapshots_loaded;
      }
      Apply(m, rd.committed_entries());
      if (::testing::Test::HasFatalFailure()) return;
      for (const ReadState& r : rd.read_states()) m.reads.emplace_back(r.index, r.context);
      Status s = m.node->AdvanceAppendAsync(rd);
      ASSERT_TRUE(s.ok()) << s.ToString();
      m.unpersisted.push_back(std::move(rd));
      // Applied may be reported only once durable: a loaded snapshot waits for its persist.
      if (!m.snapshot_unpersisted) ReportApplied(m);
    }
    FAIL() << "member " << m.id << " never ran out of Readies";
  }

  std::map<uint64_t, std::unique_ptr<SimMember>> members_;
  std::map<uint64_t, DurableState> durable_;  // every member ever added, killed ones too
  std::map<uint64_t, int> group_;
  int next_group_ = 1;
  std::deque<InFlight> in_flight_;
  uint64_t step_ = 0;
  double drop_rate_ = 0;
  int max_delay_ = 0;
  std::mt19937 rng_;
  uint64_t delivered_messages_ = 0;
  uint64_t rejected_messages_ = 0;
};

// ---- assertions shared by the tests ------------------------------------------------------

inline std::vector<uint64_t> Ids(int n) {
  std::vector<uint64_t> ids;
  for (int i = 1; i <= n; ++i) ids.push_back(i);
  return ids;
}

// Every member in `ids` has applied exactly `want` (data, in this order, at the same indexes
// on every member).
inline void ExpectSameLog(SimCluster& c, const std::set<uint64_t>& ids,
                          const std::vector<std::string>& want) {
  const std::vector<AppliedEntry>* first = nullptr;
  for (uint64_t id : ids) {
    const std::vector<AppliedEntry>& log = c.member(id).applied;
    std::vector<std::string> data;
    for (const AppliedEntry& e : log) data.push_back(e.data);
    EXPECT_EQ(data, want) << "member " << id;
    if (first == nullptr) {
      first = &log;
    } else {
      EXPECT_EQ(log, *first) << "member " << id << " differs from member " << *ids.begin();
    }
  }
}

inline bool AllApplied(SimCluster& c, const std::set<uint64_t>& ids, size_t n) {
  for (uint64_t id : ids) {
    if (c.member(id).applied.size() < n) return false;
  }
  return true;
}

// Runs until every member has applied everything the leader has (e.g. the empty entry of
// the leader's term), so no replication traffic is left over.
inline void Settle(SimCluster& c, uint64_t leader) {
  ASSERT_TRUE(c.RunUntil([&] {
    RaftStatus s = c.StatusOf(leader);
    if (s.commit != s.last_index) return false;
    for (uint64_t id : c.ids()) {
      if (c.member(id).applied_index != s.last_index) return false;
    }
    return true;
  }));
}

inline std::set<uint64_t> AllBut(SimCluster& c, std::set<uint64_t> excluded) {
  std::set<uint64_t> out;
  for (uint64_t id : c.ids()) {
    if (!excluded.count(id)) out.insert(id);
  }
  return out;
}

}  // namespace distri::replication::testing

#endif  // DISTRI_REPLICATION_RAFT_SIM_TEST_UTIL_H_
