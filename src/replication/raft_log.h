// RaftLog: the log::Log of a cluster node. Entries are proposed to Raft (RaftNode, TiKV's raft
// crate), replicated to a majority of voters, each of which fsyncs them, and handed back to
// the server through Poll() once committed, in index order, on every node alike. The Raft
// index is the revision.
//
//   Propose(entry) -> raft (leader) -> Ready: send appends to followers while the WAL fsyncs
//   our own copy -> a majority persisted -> committed -> Poll(on_commit) -> apply -> reply
//
// Durable state: a LocalLog under <data>/raft used as a write-ahead log of Ready records
// (hard state, entries, snapshots; replication/raft_wal.h), checkpointed by SaveSnapshot
// (a forked child writes the state machine and Raft metadata; covered records are deleted).
// A node restarts from it with no flags beyond its usual ones.
//
// Proposals: only the leader proposes. Propose() on a follower fails with kBusy and the server
// forwards the entry to the leader instead (server/cluster.h), where ProposeFor() proposes it
// on the follower's behalf. Every proposal carries a context (origin node, sequence) that comes
// back with the committed entry, so its origin recognises it on whichever node it applies,
// whatever index it got. A proposal whose index was taken by another entry (leadership moved
// before it committed) is reported through Poll's FailFn with kUnknown status: its outcome is
// not known to the client. It is never reported as "not applied".
//
// Reads: ReadIndex(ctx) asks Raft for a linearizable read point (ReadOnlyOption::Safe: a
// heartbeat round confirms leadership; never a clock lease); the answer comes to
// hooks.on_read_index once raft has it.
//
// Threading: everything on the loop thread. The WAL's writer and snapshot threads wake the
// loop through the wakeup function (log.h).

#ifndef DISTRI_REPLICATION_RAFT_LOG_H_
#define DISTRI_REPLICATION_RAFT_LOG_H_

#include <uv.h>

#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "base/histogram.h"
#include "log/local_log.h"
#include "log/log.h"
#include "replication/raft_node.h"
#include "replication/raft_wal.h"

namespace distri::replication {

struct RaftLogOptions {
  std::string dir;  // the WAL's directory (<data>/raft)
  bool fsync = true;
  uint64_t segment_bytes = 64ull << 20;
  uint64_t node_id = 0;      // this node's Raft id (non-zero)
  std::string address;       // this node's cluster address, as peers dial it
  // With no durable state: true founds a new cluster of one (this node the only voter);
  // false waits to be added to an existing cluster (it learns everything from a snapshot).
  bool bootstrap = false;
  uint64_t tick_ms = 100;
  uint32_t election_tick = 10;   // election timeout: randomised in [10, 20) ticks
  uint32_t heartbeat_tick = 2;
  uint64_t max_size_per_msg = 1ull << 20;
  uint64_t max_inflight_msgs = 256;
  // Raft's in-memory log is compacted (and a snapshot kept for lagging followers) once this
  // many bytes of entries were appended since the last compaction.
  uint64_t compact_bytes = 64ull << 20;
};

// What the server provides.
struct RaftLogHooks {
  // Sends a serialised raft message to a peer (best effort; raft retries). False when it
  // could not even be queued: raft is told the peer is unreachable.
  std::function<bool(uint64_t to, int32_t type, std::string_view message)> send;
  // Replaces the state machine with `state` (a snapshot, at startup or from the leader); an
  // empty view means the empty state.
  std::function<Status(uint64_t index, std::string_view state)> load_state;
  // Serialises the state machine (the snapshot Raft keeps for lagging followers).
  std::function<Status(const log::SnapshotWriteFn& write)> save_state;
  // The state machine's applied index (state/state_machine.h).
  std::function<uint64_t()> state_index;
  // The membership or a member's address changed.
  std::function<void()> on_members;
  // Leader or role changed.
  std::function<void()> on_role;
  // Sends a MsgSnapshot: streams the checkpoint file its data refers to, then the message,
  // and reports the outcome with RaftLog::ReportSnapshot later (never from inside this call).
  // False: could not start (the snapshot is reported failed at once).
  std::function<bool(uint64_t to, std::string_view message)> send_snapshot;
  // A read point for ReadIndex(ctx): reads may run once the applied index reaches `index`.
  std::function<void(uint64_t ctx, uint64_t index)> on_read_index;
};

// A node as CLUSTER.NODES shows it.
struct MemberInfo {
  uint64_t id;
  std::string address;
  bool voter;
};

class RaftLog final : public log::Log {
 public:
  // Opens <dir>, replays the durable state into the state machine (hooks.load_state) and
  // starts the node's tick timer on `loop`.
  static Result<std::unique_ptr<RaftLog>> Open(uv_loop_t* loop, const RaftLogOptions& options,
                                               RaftLogHooks hooks);
  ~RaftLog() override;
  RaftLog(const RaftLog&) = delete;
  RaftLog& operator=(const RaftLog&) = delete;

  // log::Log. Propose returns a proposal id (not an index: a proposal's index is known only
  // to the leader); the id comes back with the committed entry (CommitFn's `proposal`).
  // kBusy on a node that is not the leader.
  Result<uint64_t> Propose(std::string_view entry) override;
  void Flush() override;
  void Poll(const CommitFn& on_commit, const FailFn& on_fail) override;
  void SetWakeup(std::function<void()> wake) override;
  Status SaveSnapshot(uint64_t applied_index, const log::SnapshotProducer& produce) override;
  bool SnapshotBusy() override { return wal_->SnapshotBusy(); }
  uint64_t last_index() const override { return last_index_; }
  uint64_t bytes_since_snapshot() const override { return wal_->bytes_since_snapshot(); }

  // Poll, with each committed entry's proposal id when this node proposed it (0 for another
  // node's entry). An entry proposed by an earlier incarnation of this node comes back with
  // its old id, which no waiting proposal has (ids start at a random point per incarnation).
  // FailFn gets a proposal id and kUnknown for a proposal whose index another entry took.
  using ProposalCommitFn =
      std::function<void(uint64_t index, std::string_view entry, uint64_t proposal)>;
  void PollProposals(const ProposalCommitFn& on_commit, const FailFn& on_fail);

  // Proposes an entry forwarded by `origin` (its proposal `seq`). Returns the index it got.
  Result<uint64_t> ProposeFor(uint64_t origin, uint64_t seq, std::string_view entry);
  // A forwarded proposal of ours got `index` at the leader: if that index commits with another
  // entry, the proposal is reported as unknown.
  void ExpectAt(uint64_t index, uint64_t seq);
  // A new proposal id for a proposal forwarded to the leader.
  uint64_t NextProposalId() { return next_seq_++; }

  // A message from a peer (already authenticated by the transport).
  Status Step(std::string_view message);
  // Asks for a linearizable read point; hooks.on_read_index(ctx, index) answers.
  Status ReadIndex(uint64_t ctx);

  // Membership (leader only, else kBusy). `address` goes with an added node.
  Status AddLearner(uint64_t id, const std::string& address);
  Status Promote(uint64_t id);
  Status Remove(uint64_t id);
  Status TransferLeader(uint64_t id);
  void ReportUnreachable(uint64_t id);
  void ReportSnapshot(uint64_t id, bool delivered);

  // Where checkpoint `id` is kept (what a snapshot reference names), and where a snapshot
  // received from the leader must be put before its MsgSnapshot is stepped.
  std::string CheckpointPath(uint64_t id) const;
  std::string ReceivedSnapshotPath(uint64_t id) const;

  uint64_t id() const { return options_.node_id; }
  uint64_t leader_id() const { return leader_id_; }
  bool is_leader() const { return role_ == Role::kLeader; }
  Role role() const { return role_; }
  bool removed() const { return removed_; }
  uint64_t applied_index() const { return applied_; }
  Result<RaftStatus> GetStatus() { return node_->GetStatus(); }
  std::vector<MemberInfo> Members() const;
  const MemberAddresses& addresses() const { return members_; }
  bool IsVoter(uint64_t id) const;
  bool IsLearner(uint64_t id) const;
  // Raft progress per member as the leader sees it (id -> match index); empty on a follower.
  std::vector<std::pair<uint64_t, uint64_t>> Progress() const;
  uint64_t elections() const { return elections_; }
  uint64_t proposals() const { return proposals_; }
  uint64_t snapshots_sent() const { return snapshots_sent_; }
  const base::LatencyHistogram& fsync_latency() const override { return wal_->fsync_latency(); }
  uint64_t last_fork_us() const override { return wal_->last_fork_us(); }
  bool snapshot_running() const override { return wal_->snapshot_running(); }
  uint64_t snapshot_failures() const override { return wal_->snapshot_failures(); }
  // SaveSnapshot starts a checkpoint, or answers kBusy when none is due or possible now (one
  // is running, nothing new, a snapshot install not yet durable).
  // Stops the tick timer and the WAL's threads (after the work handed to them).
  void Close() override;

 private:
  // One Ready from TakeReady, kept until it is durable (its persisted messages wait for that).
  struct Slot {
    Ready ready;
    uint64_t wal_seq = 0;  // the WAL record holding it; 0: nothing to persist
    bool has_snapshot = false;
    uint64_t snapshot_index = 0;
  };

  RaftLog(uv_loop_t* loop, const RaftLogOptions& options, RaftLogHooks hooks);
  Status Recover();
  static void OnTick(uv_timer_t* timer);
  // Takes and handles every Ready; committed entries go to to_apply_.
  void ProcessReadies();
  void HandleReady(Ready ready);
  Status InstallSnapshot(const SnapshotView& snap);
  // Durable WAL records: releases the Readies they hold.
  void OnDurable(uint64_t wal_seq);
  void ApplyConfChange(const RaftEntry& entry);
  void MaybeCompact();
  Status StartCheckpoint(const log::SnapshotProducer& produce);
  // A checkpoint finished: raft compacts to it and keeps a reference to it.
  void FinishCheckpoint();
  Result<std::string> SnapshotPayload(std::string_view data) const;
  void Fatal(const Status& why);
  void Send(const RaftMessage& m);
  // Tells raft what Send found, outside the TakeReady..Advance window.
  void FlushReports();
  std::string Context(uint64_t origin, uint64_t seq) const;

  uv_loop_t* loop_;
  const RaftLogOptions options_;
  RaftLogHooks hooks_;
  std::unique_ptr<log::LocalLog> wal_;
  std::unique_ptr<RaftNode> node_;
  uv_timer_t* tick_timer_ = nullptr;
  std::function<void()> wake_;

  std::deque<Slot> slots_;        // taken Readies not yet durable, in order
  uint64_t wal_proposed_ = 0;     // the WAL's last record id
  uint64_t wal_durable_ = 0;      // the WAL's last durable record id
  // Committed entries waiting for Poll (owned copies; conf changes already applied).
  std::deque<StoredEntry> to_apply_;
  std::vector<std::pair<uint64_t, uint64_t>> lost_;  // (proposal, index) to report as unknown
  std::vector<std::pair<uint64_t, int>> reports_;  // (peer, 0 unreachable / 1 snapshot ok / 2 failed)
  std::deque<StoredEntry> tail_;  // persisted (or being persisted) entries after applied_
  MemberAddresses members_;
  std::map<uint64_t, uint64_t> expected_;  // index -> our proposal id expected there
  uint64_t next_seq_ = 1;
  uint64_t applied_ = 0;          // last index handed to on_commit (or covered by a snapshot)
  uint64_t applied_term_ = 0;
  uint64_t last_index_ = 0;
  uint64_t reported_applied_ = 0;
  uint64_t hold_applied_at_ = 0;  // a snapshot not yet durable: report applied only below it
  uint64_t bytes_since_compact_ = 0;
  struct Checkpoint {
    uint64_t seq;         // its WAL record id (the file's name)
    uint64_t index;       // the raft index it holds the state of
    uint64_t conf_epoch;  // conf_epoch_ when it started
    uint64_t failures;    // the WAL's snapshot failures when it started
  };
  std::optional<Checkpoint> checkpoint_;  // being written
  uint64_t last_checkpoint_seq_ = 0;
  uint64_t served_index_ = 0;    // the index of the snapshot raft keeps (0: bootstrap's)
  bool need_snapshot_ = false;    // raft asked for a newer snapshot
  uint64_t conf_epoch_ = 0;       // membership changes applied
  uint64_t received_in_use_ = 0;  // the received snapshot file the durable state needs
  uint64_t received_record_ = 0;  // the WAL record that installs it
  HardState hard_state_{0, 0, 0};
  uint64_t leader_id_ = 0;
  Role role_ = Role::kFollower;
  bool removed_ = false;
  bool closed_ = false;
  bool in_compact_ = false;
  uint64_t elections_ = 0;
  uint64_t proposals_ = 0;
  uint64_t snapshots_sent_ = 0;
};

}  // namespace distri::replication

#endif  // DISTRI_REPLICATION_RAFT_LOG_H_
