// Tests for RaftLog: whole clusters of 3 and 5 RaftLogs in one process, on one uv loop, each
// with its own write-ahead log in a temp directory, over a simulated network.
//
// The network (SimNet) is what RaftLogHooks.send feeds: a message waits in a queue until its
// delivery time (a random delay, so messages are reordered), may be dropped (a seeded rate)
// and is dropped when its link is cut, sent or in flight. A 1 ms pump timer delivers due
// messages through RaftLog::Step. Nodes are polled (PollProposals) when their WAL's wakeup
// fires, as the server does (Server::OnLogWakeup); with poll_on_pump the pump polls every
// node every millisecond too, as any caller of log::Log::Poll may. Snapshots go as
// server/cluster.cc sends them: the checkpoint file the MsgSnapshot refers to is copied to
// the receiver's ReceivedSnapshotPath, then the message is stepped, then the sender hears
// the outcome (ReportSnapshot) from the loop, never from inside the hook. Stopped nodes and
// cut links drop messages (a snapshot then reports failure).
//
// Each node's state machine is a map index -> entry of the non-empty entries it applied;
// tests compare the maps across nodes. The loop runs with UV_RUN_ONCE until a condition
// holds or a deadline passes (the pump timer bounds each wait to 1 ms).

#include "replication/raft_log.h"

#include <gtest/gtest.h>
#include <uv.h>

#include <algorithm>
#include <cstring>
#include <deque>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "base/endian.h"
#include "log/local_log_test_util.h"

namespace distri::replication {
namespace {

using log::testing::TempDir;

constexpr uint64_t kWaitMs = 5000;  // bound of any single wait (a failure, not a delay)

// One member: its RaftLog (null while down) and what the test observed of it.
struct SimNode {
  uint64_t id = 0;
  std::string dir;
  std::unique_ptr<RaftLog> log;
  // The state machine: index -> entry, and its applied index.
  std::map<uint64_t, std::string> state;
  uint64_t state_index = 0;
  std::map<std::string, int> apply_count;  // entry -> times applied since the last load
  std::vector<std::pair<uint64_t, uint64_t>> committed;  // (index, proposal) of its own
  std::map<uint64_t, Status> failed;                      // proposal -> why
  std::vector<std::pair<uint64_t, uint64_t>> reads;       // (ctx, index)
  int loads_nonempty = 0;
  int loads_empty = 0;
};

class SimNet {
 public:
  struct Message {
    uint64_t from;
    uint64_t to;
    uint64_t due_ms;
    bool snapshot;
    std::string bytes;
    std::string file;  // a snapshot's checkpoint file, as read when it was sent
  };

  SimNet() {
    uv_loop_init(&loop_);
    uv_timer_init(&loop_, &pump_);
    pump_.data = this;
    uv_timer_start(&pump_, [](uv_timer_t* t) { static_cast<SimNet*>(t->data)->Pump(); }, 1, 1);
    uv_async_init(&loop_, &wake_, [](uv_async_t* a) { static_cast<SimNet*>(a->data)->PollAll(); });
    wake_.data = this;
  }

  ~SimNet() {
    for (auto& [id, n] : nodes_) n->log.reset();
    uv_close(reinterpret_cast<uv_handle_t*>(&pump_), nullptr);
    uv_close(reinterpret_cast<uv_handle_t*>(&wake_), nullptr);
    uv_run(&loop_, UV_RUN_DEFAULT);
    EXPECT_EQ(uv_loop_close(&loop_), 0);
  }

  // Opens (or reopens, on the same directory) node `id`. Its state machine starts empty:
  // the RaftLog rebuilds it from its checkpoint (load_state) and the committed entries.
  void Open(uint64_t id, bool bootstrap, uint64_t compact_bytes = 64ull << 20) {
    SCOPED_TRACE("opening node " + std::to_string(id));
    auto& slot = nodes_[id];
    if (!slot) {
      slot = std::make_unique<SimNode>();
      slot->id = id;
      slot->dir = root_.path() + "/n" + std::to_string(id);
      std::filesystem::create_directories(slot->dir);
    }
    SimNode* n = slot.get();
    ASSERT_EQ(n->log, nullptr);
    n->state.clear();
    n->state_index = 0;
    n->apply_count.clear();
    // Proposal ids are per incarnation.
    n->committed.clear();
    n->failed.clear();
    n->reads.clear();
    RaftLogOptions o;
    o.dir = n->dir;
    o.fsync = false;
    o.node_id = id;
    o.address = "node-" + std::to_string(id) + ":7000";
    o.bootstrap = bootstrap;
    o.tick_ms = 10;
    o.compact_bytes = compact_bytes;
    RaftLogHooks h;
    h.send = [this, id](uint64_t to, int32_t, std::string_view m) { return Send(id, to, m); };
    h.send_snapshot = [this, id](uint64_t to, std::string_view m) {
      return SendSnapshot(id, to, m);
    };
    h.load_state = [n](uint64_t index, std::string_view bytes) {
      return LoadState(n, index, bytes);
    };
    h.save_state = [n](const log::SnapshotWriteFn& write) { return write(EncodeState(*n)); };
    h.state_index = [n] { return n->state_index; };
    h.on_read_index = [n](uint64_t ctx, uint64_t index) { n->reads.push_back({ctx, index}); };
    auto opened = RaftLog::Open(&loop_, o, std::move(h));
    ASSERT_TRUE(opened.ok()) << opened.status().ToString();
    n->log = std::move(opened).value();
    n->log->SetWakeup([this] { uv_async_send(&wake_); });
  }

  // Stops node `id` (its log closed and destroyed; messages to it are dropped).
  void Close(uint64_t id) {
    SimNode* n = node(id);
    n->log->Close();
    n->log.reset();
  }

  SimNode* node(uint64_t id) { return nodes_.at(id).get(); }
  RaftLog* log(uint64_t id) { return nodes_.at(id)->log.get(); }
  std::vector<uint64_t> ids() const {
    std::vector<uint64_t> out;
    for (const auto& [id, n] : nodes_) out.push_back(id);
    return out;
  }
  uv_loop_t* loop() { return &loop_; }
  // Polls every node every millisecond, not only on its WAL's wakeup.
  void set_poll_on_pump(bool on) { poll_on_pump_ = on; }
  uint64_t now() { return uv_now(&loop_); }

  // Network knobs.
  void SetLoss(double drop, uint64_t max_delay_ms) {
    drop_ = drop;
    max_delay_ms_ = max_delay_ms;
  }
  void Cut(uint64_t a, uint64_t b) {
    cut_.insert({a, b});
    cut_.insert({b, a});
  }
  // Cuts `id` off from every other node.
  void Isolate(uint64_t id) {
    for (uint64_t other : ids()) {
      if (other != id) Cut(id, other);
    }
  }
  void Heal() { cut_.clear(); }

  // Runs the loop until `done` holds or `timeout_ms` passed; returns `done()`.
  bool RunUntil(const std::function<bool()>& done, uint64_t timeout_ms = kWaitMs) {
    const uint64_t deadline = now() + timeout_ms;
    while (!done()) {
      if (now() > deadline) return done();
      uv_run(&loop_, UV_RUN_ONCE);
    }
    return true;
  }
  void RunFor(uint64_t ms) {
    const uint64_t end = now() + ms;
    RunUntil([&] { return now() >= end; }, ms + 10);
  }

  // The node that is leader for the up nodes in `among` (all up nodes when empty), once one
  // is and every other up node there knows it; 0 after the timeout.
  uint64_t WaitLeader(std::set<uint64_t> among = {}) {
    uint64_t leader = 0;
    RunUntil([&] {
      leader = 0;
      for (const auto& [id, n] : nodes_) {
        if (n->log && (among.empty() || among.contains(id)) && n->log->is_leader()) leader = id;
      }
      if (leader == 0) return false;
      for (const auto& [id, n] : nodes_) {
        if (n->log && (among.empty() || among.contains(id)) && n->log->leader_id() != leader) {
          return false;
        }
      }
      return true;
    });
    return leader;
  }

  // Proposes `entry` on `leader`; the proposal id.
  uint64_t Propose(uint64_t leader, const std::string& entry) {
    auto p = log(leader)->Propose(entry);
    EXPECT_TRUE(p.ok()) << p.status().ToString();
    return p.ok() ? p.value() : 0;
  }

  // Waits until every up node has applied `index`.
  bool WaitApplied(uint64_t index, std::set<uint64_t> among = {}) {
    return RunUntil([&] {
      for (const auto& [id, n] : nodes_) {
        if (n->log && (among.empty() || among.contains(id)) && n->log->applied_index() < index) {
          return false;
        }
      }
      return true;
    });
  }

  // Waits until every up node has applied everything the leader has committed.
  bool WaitConverged(uint64_t leader) {
    return RunUntil([&] {
      auto st = log(leader)->GetStatus();
      if (!st.ok()) return false;
      for (const auto& [id, n] : nodes_) {
        if (n->log && n->log->applied_index() < st.value().commit) return false;
      }
      return log(leader)->applied_index() >= st.value().commit;
    });
  }

  // Forms a cluster of nodes 1..n as server/cluster.cc does: node 1 founds it, the others
  // start empty and are added as learners, then promoted once they have caught up.
  void Form(int n, uint64_t compact_bytes = 64ull << 20) {
    for (uint64_t id = 1; id <= static_cast<uint64_t>(n); ++id) {
      Open(id, id == 1, compact_bytes);
      if (::testing::Test::HasFatalFailure()) return;
    }
    ASSERT_TRUE(RunUntil([&] { return log(1)->is_leader(); }));
    for (uint64_t id = 2; id <= static_cast<uint64_t>(n); ++id) {
      ASSERT_TRUE(log(1)->AddLearner(id, "node-" + std::to_string(id) + ":7000").ok());
      ASSERT_TRUE(RunUntil([&] { return log(1)->IsLearner(id); })) << "learner " << id;
    }
    for (uint64_t id = 2; id <= static_cast<uint64_t>(n); ++id) {
      // Caught up: the learner has applied what the leader committed.
      ASSERT_TRUE(RunUntil([&] {
        auto st = log(1)->GetStatus();
        return st.ok() && log(id)->applied_index() >= st.value().commit &&
               log(id)->leader_id() == 1;
      })) << "learner " << id << " catching up";
      ASSERT_TRUE(log(1)->Promote(id).ok());
      ASSERT_TRUE(RunUntil([&] { return log(1)->IsVoter(id); })) << "promote " << id;
    }
    ASSERT_TRUE(WaitConverged(1));
    for (uint64_t id = 1; id <= static_cast<uint64_t>(n); ++id) {
      EXPECT_EQ(log(id)->Members().size(), static_cast<size_t>(n)) << "node " << id;
      for (uint64_t other = 1; other <= static_cast<uint64_t>(n); ++other) {
        EXPECT_TRUE(log(id)->IsVoter(other)) << other << " as node " << id << " sees it";
      }
    }
  }

  // Every up node's state machine equals `leader`'s.
  void ExpectSameState(uint64_t leader) {
    for (const auto& [id, n] : nodes_) {
      if (!n->log) continue;
      EXPECT_EQ(n->state, node(leader)->state) << "node " << id << " vs leader " << leader;
      EXPECT_EQ(n->state_index, node(leader)->state_index) << "node " << id;
    }
  }

  uint64_t snapshots_delivered() const { return snapshots_delivered_; }
  uint64_t snapshots_missing() const { return snapshots_missing_; }

 private:
  static std::string EncodeState(const SimNode& n) {
    std::string out;
    for (const auto& [index, entry] : n.state) {
      base::AppendLe64(&out, index);
      base::AppendLe64(&out, entry.size());
      out += entry;
    }
    return out;
  }

  static Status LoadState(SimNode* n, uint64_t index, std::string_view bytes) {
    n->state.clear();
    n->apply_count.clear();
    n->state_index = index;
    if (bytes.empty()) {
      n->loads_empty++;
      return Status::Ok();
    }
    n->loads_nonempty++;
    while (!bytes.empty()) {
      if (bytes.size() < 16) return Status::Corruption("state: short header");
      const uint64_t i = base::GetLe64(bytes.data());
      const uint64_t len = base::GetLe64(bytes.data() + 8);
      if (bytes.size() - 16 < len) return Status::Corruption("state: short entry");
      n->state[i] = std::string(bytes.substr(16, len));
      n->apply_count[n->state[i]]++;
      bytes.remove_prefix(16 + len);
    }
    return Status::Ok();
  }

  bool Cutting(uint64_t from, uint64_t to) const { return cut_.contains({from, to}); }

  bool Send(uint64_t from, uint64_t to, std::string_view m) {
    if (Cutting(from, to)) return true;  // lost on the way: the sender cannot tell
    if (drop_ > 0 && std::uniform_real_distribution<double>(0, 1)(rng_) < drop_) return true;
    Enqueue(Message{from, to, 0, false, std::string(m), {}});
    return true;
  }

  bool SendSnapshot(uint64_t from, uint64_t to, std::string_view m) {
    auto snap = RaftNode::SnapshotOf(m);
    EXPECT_TRUE(snap.ok()) << snap.status().ToString();
    if (!snap.ok()) return false;
    Message msg{from, to, 0, true, std::string(m), {}};
    if (!snap.value().second.empty()) {
      uint64_t ref = 0, size = 0;
      EXPECT_TRUE(DecodeSnapshotRef(snap.value().second, &ref, &size));
      std::ifstream in(log(from)->CheckpointPath(ref), std::ios::binary);
      msg.file.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
      if (msg.file.size() != size) {
        // As cluster.cc: cannot start (raft hears it failed and asks again). A newer
        // checkpoint may have replaced the file just before raft's reference moves to it;
        // one that stays missing keeps the follower behind, which the tests catch.
        snapshots_missing_++;
        return false;
      }
    }
    Enqueue(std::move(msg));
    return true;
  }

  void Enqueue(Message m) {
    m.due_ms = now() + (max_delay_ms_ == 0
                            ? 0
                            : std::uniform_int_distribution<uint64_t>(0, max_delay_ms_)(rng_));
    queue_.push_back(std::move(m));
  }

  // Delivers the due messages (in due order; a cut link or a down receiver drops them), then
  // polls every node.
  void Pump() {
    const uint64_t t = now();
    std::vector<Message> due;
    for (auto it = queue_.begin(); it != queue_.end();) {
      if (it->due_ms <= t) {
        due.push_back(std::move(*it));
        it = queue_.erase(it);
      } else {
        ++it;
      }
    }
    std::stable_sort(due.begin(), due.end(),
                     [](const Message& a, const Message& b) { return a.due_ms < b.due_ms; });
    for (Message& m : due) {
      RaftLog* to = nodes_.contains(m.to) ? log(m.to) : nullptr;
      const bool deliverable = to != nullptr && !Cutting(m.from, m.to);
      if (!m.snapshot) {
        if (deliverable) (void)to->Step(m.bytes);
        continue;
      }
      bool delivered = false;
      if (deliverable) {
        auto snap = RaftNode::SnapshotOf(m.bytes);
        uint64_t ref = 0, size = 0;
        if (snap.ok() && !snap.value().second.empty() &&
            DecodeSnapshotRef(snap.value().second, &ref, &size)) {
          std::ofstream out(to->ReceivedSnapshotPath(ref), std::ios::binary | std::ios::trunc);
          out.write(m.file.data(), static_cast<std::streamsize>(m.file.size()));
        }
        delivered = to->Step(m.bytes).ok();
        if (delivered) snapshots_delivered_++;
      }
      if (RaftLog* from = log(m.from)) from->ReportSnapshot(m.to, delivered);
    }
    if (poll_on_pump_) PollAll();
  }

 public:
  void PollAll() {
    for (auto& [id, slot] : nodes_) {
      SimNode* n = slot.get();
      if (!n->log) continue;
      n->log->PollProposals(
          [n](uint64_t index, std::string_view entry, uint64_t proposal) {
            EXPECT_GT(index, n->state_index) << "node " << n->id << " applied twice";
            EXPECT_FALSE(n->state.contains(index)) << "node " << n->id << " index " << index;
            n->state[index] = std::string(entry);
            n->state_index = index;
            EXPECT_EQ(++n->apply_count[std::string(entry)], 1)
                << "node " << n->id << " applied " << entry << " again at " << index;
            if (proposal != 0) n->committed.push_back({index, proposal});
          },
          [n](uint64_t proposal, const Status& why) {
            EXPECT_FALSE(n->failed.contains(proposal)) << "reported twice: " << proposal;
            n->failed.emplace(proposal, why);
          });
    }
  }

 private:
  TempDir root_;
  uv_loop_t loop_;
  uv_timer_t pump_;
  uv_async_t wake_;
  std::map<uint64_t, std::unique_ptr<SimNode>> nodes_;
  std::deque<Message> queue_;
  std::set<std::pair<uint64_t, uint64_t>> cut_;
  double drop_ = 0;
  uint64_t max_delay_ms_ = 0;
  std::mt19937_64 rng_{20261125};
  uint64_t snapshots_delivered_ = 0;
  uint64_t snapshots_missing_ = 0;  // MsgSnapshots whose checkpoint file was not there
  bool poll_on_pump_ = false;
};

// Every test runs twice: with nodes polled on their WAL's wakeup only (as the server does)
// and with every node polled every millisecond as well (log::Log::Poll may be called at any
// time).
class RaftLogTest : public ::testing::TestWithParam<bool> {
 protected:
  RaftLogTest() { net.set_poll_on_pump(GetParam()); }
  SimNet net;
};

INSTANTIATE_TEST_SUITE_P(Polling, RaftLogTest, ::testing::Bool(),
                         [](const ::testing::TestParamInfo<bool>& info) {
                           return info.param ? "EveryMs" : "OnWakeup";
                         });

// Every cluster test forms its cluster by adding learners, each of which joins through a
// snapshot: they found two bugs, both fixed (a learner reporting an applied index past raft's
// persisted one while its snapshot install was not durable; raft keeping a reference to a
// checkpoint file that a newer checkpoint at the same index had replaced).

bool HasProposal(const SimNode& n, uint64_t proposal) {
  return std::ranges::any_of(n.committed, [&](auto& c) { return c.second == proposal; });
}

// ---------------------------------------------------------------------------

// A cluster of one (no join, so none of the bugs below): proposals commit in order with their
// ids; a restart replays the write-ahead log, then a checkpoint, into the same state; reads
// get a read point at least at the last write.
TEST_P(RaftLogTest, SingleNodeCommitsRestartsAndReads) {
  ASSERT_NO_FATAL_FAILURE(net.Open(1, /*bootstrap=*/true, /*compact_bytes=*/1 << 20));
  ASSERT_TRUE(net.RunUntil([&] { return net.log(1)->is_leader(); }));
  std::vector<uint64_t> proposals;
  for (int i = 0; i < 30; ++i) proposals.push_back(net.Propose(1, "one" + std::to_string(i)));
  ASSERT_TRUE(net.RunUntil([&] { return net.node(1)->committed.size() == 30; }));
  for (size_t i = 0; i < proposals.size(); ++i) {
    EXPECT_EQ(net.node(1)->committed[i].second, proposals[i]);
    EXPECT_EQ(net.node(1)->state.at(net.node(1)->committed[i].first), "one" + std::to_string(i));
  }
  ASSERT_TRUE(net.log(1)->ReadIndex(5).ok());
  ASSERT_TRUE(net.RunUntil([&] { return !net.node(1)->reads.empty(); }));
  EXPECT_EQ(net.node(1)->reads[0].first, 5u);
  EXPECT_GE(net.node(1)->reads[0].second, net.node(1)->committed.back().first);

  // Restart from the write-ahead log alone: the entries apply again, no state is loaded.
  const auto written = net.node(1)->state;
  net.Close(1);
  ASSERT_NO_FATAL_FAILURE(net.Open(1, true, 1 << 20));
  ASSERT_TRUE(net.RunUntil([&] { return net.node(1)->state == written; }));
  EXPECT_EQ(net.node(1)->loads_nonempty, 0);

  // New proposals get ids no replayed entry answers: each comes back once, with its entry.
  ASSERT_TRUE(net.RunUntil([&] { return net.log(1)->is_leader(); }));
  std::map<uint64_t, std::string> fresh;
  for (int i = 0; i < 5; ++i) {
    const std::string entry = "two" + std::to_string(i);
    fresh[net.Propose(1, entry)] = entry;
  }
  ASSERT_TRUE(net.RunUntil([&] { return net.node(1)->state.size() == 35; }));
  for (const auto& [proposal, entry] : fresh) {
    int seen = 0;
    for (auto [index, p] : net.node(1)->committed) {
      if (p != proposal) continue;
      seen++;
      EXPECT_EQ(net.node(1)->state.at(index), entry);
    }
    EXPECT_EQ(seen, 1) << entry;
  }

  // A checkpoint (forked child), more writes, a restart: the state comes from the checkpoint
  // (load_state with its bytes) plus the entries after it.
  Status st = Status(Code::kBusy, "");
  ASSERT_TRUE(net.RunUntil([&] {
    st = net.log(1)->SaveSnapshot(0, [n = net.node(1)](const log::SnapshotWriteFn& write) {
      std::string bytes;
      for (const auto& [index, entry] : n->state) {
        base::AppendLe64(&bytes, index);
        base::AppendLe64(&bytes, entry.size());
        bytes += entry;
      }
      return write(bytes);
    });
    return st.code() != Code::kBusy;
  })) << st.ToString();
  ASSERT_TRUE(st.ok()) << st.ToString();
  ASSERT_TRUE(net.RunUntil([&] { return !net.log(1)->snapshot_running(); }));
  EXPECT_EQ(net.log(1)->snapshot_failures(), 0u);
  for (int i = 0; i < 5; ++i) net.Propose(1, "three" + std::to_string(i));
  ASSERT_TRUE(net.RunUntil([&] { return net.node(1)->state.size() == 40; }));
  const auto all = net.node(1)->state;
  net.Close(1);
  ASSERT_NO_FATAL_FAILURE(net.Open(1, true, 1 << 20));
  EXPECT_EQ(net.node(1)->loads_nonempty, 1) << "restarted without its checkpoint";
  ASSERT_TRUE(net.RunUntil([&] { return net.node(1)->state == all; }));
  EXPECT_EQ(net.log(1)->Members().size(), 1u);
}

// Three nodes form a cluster as the server does; proposals on the leader commit on every node
// in the same order at the same indexes, and only the proposer gets its proposal ids back.
// DISABLED until raft_log.cc is fixed: the join crash (see the note before HasProposal).
TEST_P(RaftLogTest, ThreeNodesReplicateInOrder) {
  ASSERT_NO_FATAL_FAILURE(net.Form(3));
  const uint64_t leader = net.WaitLeader();
  ASSERT_EQ(leader, 1u);
  std::vector<uint64_t> proposals;
  for (int i = 0; i < 20; ++i) proposals.push_back(net.Propose(leader, "e" + std::to_string(i)));
  ASSERT_TRUE(net.RunUntil([&] { return net.node(leader)->committed.size() == 20; }));
  ASSERT_TRUE(net.WaitConverged(leader));
  net.ExpectSameState(leader);
  // In proposal order, at increasing indexes, with the ids Propose returned.
  const auto& committed = net.node(leader)->committed;
  for (size_t i = 0; i < committed.size(); ++i) {
    EXPECT_EQ(committed[i].second, proposals[i]);
    EXPECT_EQ(net.node(leader)->state.at(committed[i].first), "e" + std::to_string(i));
    if (i > 0) EXPECT_GT(committed[i].first, committed[i - 1].first);
  }
  for (uint64_t id : {2, 3}) {
    EXPECT_TRUE(net.node(id)->committed.empty()) << "node " << id << " got a proposal id";
    EXPECT_TRUE(net.node(id)->failed.empty());
    EXPECT_EQ(net.log(id)->Propose("x").status().code(), Code::kBusy);
  }
  EXPECT_TRUE(net.node(leader)->failed.empty());
}

// Five nodes over a network that drops 10% of messages and delays (reorders) them up to
// 15 ms: the logs still agree and no entry applies twice; every proposal is resolved once.
// DISABLED until raft_log.cc is fixed: the join crash (see the note before HasProposal).
TEST_P(RaftLogTest, FiveNodesLossyNetworkAgree) {
  ASSERT_NO_FATAL_FAILURE(net.Form(5));
  net.SetLoss(0.10, 15);
  std::map<uint64_t, uint64_t> proposer;  // proposal -> node
  int n = 0;
  const uint64_t start = net.now();
  while (n < 60 && net.now() - start < kWaitMs) {
    for (uint64_t id : net.ids()) {
      if (net.log(id)->is_leader() && n < 60) {
        auto p = net.log(id)->Propose("lossy" + std::to_string(n));
        if (p.ok()) {
          proposer[p.value()] = id;
          n++;
        }
      }
    }
    net.RunFor(3);
  }
  ASSERT_EQ(n, 60);
  net.SetLoss(0, 0);
  const uint64_t leader = net.WaitLeader();
  ASSERT_NE(leader, 0u);
  // A proposal is resolved once its index has committed: one that a deposed leader took
  // stays pending until the new leader's log reaches its index. Write until every proposal
  // is resolved (a few writes: a leader accepts at most what it proposed).
  auto resolved = [&] {
    return std::ranges::all_of(proposer, [&](auto& p) {
      return HasProposal(*net.node(p.second), p.first) ||
             net.node(p.second)->failed.contains(p.first);
    });
  };
  for (int i = 0; i < 80 && !resolved(); ++i) {
    const uint64_t tail = net.Propose(leader, "tail" + std::to_string(i));
    ASSERT_TRUE(net.RunUntil([&] { return HasProposal(*net.node(leader), tail); }));
  }
  ASSERT_TRUE(net.WaitConverged(leader));
  net.ExpectSameState(leader);
  int committed = 0;
  for (auto [proposal, id] : proposer) {
    const SimNode& p = *net.node(id);
    const bool ok = HasProposal(p, proposal);
    const bool failed = p.failed.contains(proposal);
    EXPECT_NE(ok, failed) << "proposal " << proposal << " on node " << id
                          << " must be exactly one of committed / unknown";
    if (failed) EXPECT_EQ(p.failed.at(proposal).code(), Code::kUnknown);
    committed += ok;
  }
  EXPECT_GT(committed, 30);
}

// The leader is cut off: the others elect a new leader in a higher term; what the old leader
// accepted meanwhile is reported unknown (never committed); after healing all logs agree.
// DISABLED until raft_log.cc is fixed: the join crash (see the note before HasProposal).
TEST_P(RaftLogTest, PartitionedLeaderLosesItsProposals) {
  ASSERT_NO_FATAL_FAILURE(net.Form(3));
  const uint64_t old = net.WaitLeader();
  const uint64_t old_term = net.log(old)->GetStatus().value().term;
  net.Propose(old, "before");
  ASSERT_TRUE(net.WaitConverged(old));
  net.Isolate(old);
  std::vector<uint64_t> stranded;
  for (int i = 0; i < 3; ++i) stranded.push_back(net.Propose(old, "stranded" + std::to_string(i)));
  std::set<uint64_t> rest;
  for (uint64_t id : net.ids()) {
    if (id != old) rest.insert(id);
  }
  const uint64_t leader = net.WaitLeader(rest);
  ASSERT_NE(leader, 0u);
  ASSERT_NE(leader, old);
  EXPECT_GT(net.log(leader)->GetStatus().value().term, old_term);
  for (int i = 0; i < 6; ++i) net.Propose(leader, "new" + std::to_string(i));
  ASSERT_TRUE(net.RunUntil([&] { return net.node(leader)->committed.size() == 6; }));
  net.Heal();
  ASSERT_EQ(net.WaitLeader(), leader);
  ASSERT_TRUE(net.WaitConverged(leader));
  net.ExpectSameState(leader);
  const SimNode& o = *net.node(old);
  for (uint64_t p : stranded) {
    EXPECT_FALSE(HasProposal(o, p)) << "stranded proposal " << p << " reported committed";
    ASSERT_TRUE(o.failed.contains(p)) << "stranded proposal " << p << " never reported";
    EXPECT_EQ(o.failed.at(p).code(), Code::kUnknown) << o.failed.at(p).ToString();
  }
  for (const auto& [index, entry] : o.state) {
    EXPECT_EQ(entry.rfind("stranded", 0), std::string::npos) << "index " << index;
  }
}

// A follower stops, the others write on, it restarts on its directory: it recovers its
// entries and catches up. Then every node restarts: everything committed is still there.
// DISABLED until raft_log.cc is fixed: the join crash (see the note before HasProposal).
TEST_P(RaftLogTest, RestartRecoversAndCatchesUp) {
  ASSERT_NO_FATAL_FAILURE(net.Form(3));
  const uint64_t leader = net.WaitLeader();
  const uint64_t follower = leader == 3 ? 2 : 3;
  for (int i = 0; i < 10; ++i) net.Propose(leader, "a" + std::to_string(i));
  ASSERT_TRUE(net.RunUntil([&] { return net.node(leader)->committed.size() == 10; }));
  ASSERT_TRUE(net.WaitConverged(leader));
  const auto before = net.node(follower)->state;
  net.Close(follower);
  for (int i = 0; i < 10; ++i) net.Propose(leader, "b" + std::to_string(i));
  ASSERT_TRUE(net.RunUntil([&] { return net.node(leader)->committed.size() == 20; }));
  ASSERT_NO_FATAL_FAILURE(net.Open(follower, false));
  // It replays its own entries before it hears from the leader (they were committed).
  ASSERT_TRUE(net.WaitConverged(leader));
  net.ExpectSameState(leader);
  for (const auto& [index, entry] : before) EXPECT_EQ(net.node(follower)->state.at(index), entry);
  const auto all = net.node(leader)->state;
  ASSERT_EQ(all.size(), 20u);

  for (uint64_t id : net.ids()) net.Close(id);
  for (uint64_t id : net.ids()) ASSERT_NO_FATAL_FAILURE(net.Open(id, id == 1));
  const uint64_t again = net.WaitLeader();
  ASSERT_NE(again, 0u);
  ASSERT_TRUE(net.WaitConverged(again));
  for (uint64_t id : net.ids()) EXPECT_EQ(net.node(id)->state, all) << "node " << id;
  EXPECT_EQ(net.log(again)->Members().size(), 3u);
  // And it still takes writes; an entry replayed from before the restart never answers a
  // proposal of this incarnation.
  const uint64_t after = net.Propose(again, "after");
  ASSERT_TRUE(net.RunUntil([&] { return HasProposal(*net.node(again), after); }));
  for (auto [index, proposal] : net.node(again)->committed) {
    if (proposal == after) EXPECT_EQ(net.node(again)->state.at(index), "after");
  }
  ASSERT_TRUE(net.WaitConverged(again));
  net.ExpectSameState(again);
}

// With a small compaction threshold the leader checkpoints (a forked child writes the state)
// and compacts its log; a follower cut off during many writes catches up from the checkpoint
// file, streamed beside raft, and ends with the same state.
// DISABLED for two bugs:
// 1. The follower's PollProposals (on a WAL wakeup from the appends it had) takes the
//    snapshot's Ready and reports applied = snapshot index - 1 to raft before the snapshot
//    is durable; raft refuses it and the node stops (the join crash, above).
// 2. Sometimes (about 1 run in 4) the leader's MsgSnapshot names a checkpoint file that is
//    gone, for good: a checkpoint taken at the same applied index as the one raft keeps
//    (the WAL moved on with hard-state records only) makes LocalLog delete the older file,
//    while distri_raft_compact ignores an index <= the kept snapshot's, so raft keeps the
//    reference to the deleted file until a checkpoint at a higher index (new writes): the
//    follower cannot catch up (WaitConverged fails; snapshots_missing() counts the sends).
TEST_P(RaftLogTest, LaggingFollowerCatchesUpBySnapshot) {
  ASSERT_NO_FATAL_FAILURE(net.Form(3, /*compact_bytes=*/4096));
  const uint64_t leader = net.WaitLeader();
  const uint64_t lagging = leader == 3 ? 2 : 3;
  net.Isolate(lagging);
  const uint64_t delivered_before = net.snapshots_delivered();
  const std::string pad(100, 'x');
  for (int round = 0; round < 4; ++round) {
    for (int i = 0; i < 50; ++i) net.Propose(leader, "s" + std::to_string(round * 50 + i) + pad);
    ASSERT_TRUE(net.RunUntil(
        [&] { return net.node(leader)->committed.size() == static_cast<size_t>(round + 1) * 50; }));
    // An explicit checkpoint too (the server's MaybeSnapshot); kBusy while one runs.
    Status st = net.log(leader)->SaveSnapshot(0, [&](const log::SnapshotWriteFn& write) {
      std::string bytes;
      for (const auto& [index, entry] : net.node(leader)->state) {
        base::AppendLe64(&bytes, index);
        base::AppendLe64(&bytes, entry.size());
        bytes += entry;
      }
      return write(bytes);
    });
    EXPECT_TRUE(st.ok() || st.code() == Code::kBusy) << st.ToString();
    ASSERT_TRUE(net.RunUntil([&] { return !net.log(leader)->snapshot_running(); }));
  }
  EXPECT_EQ(net.node(lagging)->loads_nonempty, 0);
  net.Heal();
  ASSERT_TRUE(net.WaitConverged(leader)) << net.snapshots_missing()
                                         << " snapshots named a missing checkpoint file";
  net.ExpectSameState(leader);
  EXPECT_GT(net.node(lagging)->loads_nonempty, 0) << "caught up without a snapshot";
  EXPECT_GT(net.log(leader)->snapshots_sent(), 0u);
  EXPECT_GT(net.snapshots_delivered(), delivered_before);
  EXPECT_EQ(net.node(lagging)->state.size(), 200u);
  // It restarts from what it received and keeps up with new writes.
  net.Close(lagging);
  ASSERT_NO_FATAL_FAILURE(net.Open(lagging, false, 4096));
  net.Propose(leader, "after");
  ASSERT_TRUE(net.WaitConverged(leader));
  net.ExpectSameState(leader);
}

// Forwarding: the leader proposes on a follower's behalf (ProposeFor), the follower expects it
// at the index the leader answered (ExpectAt) and gets its commit with its own proposal id. An
// expected index that commits with another entry reports the proposal unknown.
// DISABLED until raft_log.cc is fixed: the join crash (see the note before HasProposal).
TEST_P(RaftLogTest, ForwardedProposals) {
  ASSERT_NO_FATAL_FAILURE(net.Form(3));
  const uint64_t leader = net.WaitLeader();
  const uint64_t origin = leader == 2 ? 3 : 2;
  RaftLog* o = net.log(origin);
  const uint64_t seq = o->NextProposalId();
  auto index = net.log(leader)->ProposeFor(origin, seq, "forwarded");
  ASSERT_TRUE(index.ok()) << index.status().ToString();
  o->ExpectAt(index.value(), seq);
  ASSERT_TRUE(net.RunUntil([&] { return HasProposal(*net.node(origin), seq); }));
  EXPECT_EQ(net.node(origin)->committed.back(), std::make_pair(index.value(), seq));
  EXPECT_EQ(net.node(origin)->state.at(index.value()), "forwarded");
  ASSERT_TRUE(net.WaitConverged(leader));
  EXPECT_TRUE(net.node(leader)->committed.empty()) << "the leader took the origin's id";
  EXPECT_TRUE(net.node(origin)->failed.empty());

  // An index already applied with another entry: lost at once.
  const uint64_t late = o->NextProposalId();
  o->ExpectAt(index.value(), late);
  ASSERT_TRUE(net.RunUntil([&] { return net.node(origin)->failed.contains(late); }));
  EXPECT_EQ(net.node(origin)->failed.at(late).code(), Code::kUnknown);

  // An index not yet applied that the leader fills with its own entry: lost when it applies.
  const uint64_t next = net.log(leader)->last_index() + 1;
  const uint64_t ghost = o->NextProposalId();
  o->ExpectAt(next, ghost);
  const uint64_t mine = net.Propose(leader, "leader's own");
  ASSERT_TRUE(net.RunUntil([&] { return net.node(origin)->failed.contains(ghost); }));
  EXPECT_EQ(net.node(origin)->failed.at(ghost).code(), Code::kUnknown);
  EXPECT_FALSE(HasProposal(*net.node(origin), ghost));
  ASSERT_TRUE(net.RunUntil([&] { return HasProposal(*net.node(leader), mine); }));
  EXPECT_EQ(net.node(leader)->committed.back().first, next);

  // A follower refuses ProposeFor.
  EXPECT_EQ(o->ProposeFor(origin, o->NextProposalId(), "no").status().code(), Code::kBusy);
}

// ReadIndex: on the leader and on a follower the read point is at least the last committed
// write; a leader cut off from the others never gets one.
// DISABLED until raft_log.cc is fixed: the join crash (see the note before HasProposal).
TEST_P(RaftLogTest, ReadIndex) {
  ASSERT_NO_FATAL_FAILURE(net.Form(3));
  const uint64_t leader = net.WaitLeader();
  const uint64_t follower = leader == 2 ? 3 : 2;
  for (int i = 0; i < 5; ++i) net.Propose(leader, "w" + std::to_string(i));
  ASSERT_TRUE(net.RunUntil([&] { return net.node(leader)->committed.size() == 5; }));
  const uint64_t last_write = net.node(leader)->committed.back().first;
  ASSERT_TRUE(net.log(leader)->ReadIndex(7).ok());
  ASSERT_TRUE(net.log(follower)->ReadIndex(8).ok());
  auto answered = [&](uint64_t id, uint64_t ctx) {
    return std::ranges::any_of(net.node(id)->reads, [&](auto& r) { return r.first == ctx; });
  };
  ASSERT_TRUE(net.RunUntil([&] { return answered(leader, 7) && answered(follower, 8); }));
  for (uint64_t id : {leader, follower}) {
    for (auto [ctx, index] : net.node(id)->reads) {
      EXPECT_GE(index, last_write) << "node " << id << " ctx " << ctx;
    }
  }
  EXPECT_FALSE(answered(leader, 8)) << "a read answered on the wrong node";

  // Isolated: no answer while the others elect a leader and commit without it.
  net.Isolate(leader);
  ASSERT_TRUE(net.log(leader)->ReadIndex(9).ok());
  std::set<uint64_t> rest;
  for (uint64_t id : net.ids()) {
    if (id != leader) rest.insert(id);
  }
  const uint64_t other = net.WaitLeader(rest);
  ASSERT_NE(other, 0u);
  const uint64_t p = net.Propose(other, "elsewhere");
  ASSERT_TRUE(net.RunUntil([&] { return HasProposal(*net.node(other), p); }));
  EXPECT_FALSE(answered(leader, 9)) << "an isolated leader served a read point";
  net.Heal();
  ASSERT_TRUE(net.WaitConverged(other));
  // Should the old leader still answer it once it has rejoined, the read point must cover
  // what the new leader committed meanwhile.
  const uint64_t elsewhere = net.node(other)->committed.back().first;
  for (auto [ctx, index] : net.node(leader)->reads) {
    if (ctx == 9) EXPECT_GE(index, elsewhere);
  }
}

}  // namespace
}  // namespace distri::replication
