// RaftNode: one Raft group member, a thin RAII wrapper over the C API of raft_capi.h (TiKV's
// raft crate behind a Rust static library).
//
// The caller owns all I/O. It feeds the node time (Tick), peer messages (Step) and proposals,
// then runs the Ready loop (docs/replication.md, "The Ready loop"):
//
//   while (node.HasReady()) {
//     Ready rd = node.TakeReady();
//     send rd.messages(); start persisting rd.entries(), rd.hard_state(), rd.snapshot();
//     apply rd.committed_entries() (conf changes through ApplyConfChange);
//     node.AdvanceAppendAsync(rd);
//     ... once durable: node.OnPersistReady(rd.number()); send rd.persisted_messages();
//     node.AdvanceApplyTo(last applied index);
//   }
//
// Nothing here is wired into the server yet; RaftLog (a log::Log over this class) comes next.
//
// Threading: not thread-safe. A node and its Ready handles are used from one thread.
//
// Errors: Status codes map from the C API: kInvalidArgument (bad config or bytes), kBusy
// (proposal dropped: no leader known or leadership in transfer; nothing was proposed),
// kInternal (any other raft error; after a panic inside raft the node is poisoned and every
// later call fails: stop the node).

#ifndef DISTRI_REPLICATION_RAFT_NODE_H_
#define DISTRI_REPLICATION_RAFT_NODE_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "distri/status.h"

struct distri_raft_node;
struct distri_raft_ready;

namespace distri::replication {

// A bootstrapped group's log starts with its membership as a snapshot at this index (empty
// state machine); the first entry has the next index.
inline constexpr uint64_t kBootstrapIndex = 1;

struct RaftConfig {
  uint64_t id = 0;
  // Non-empty: bootstrap a new group with these members (the same on every founding node).
  // Empty: a node joining an existing group; it learns the membership from a snapshot.
  // Always empty for Restore.
  std::vector<uint64_t> voters;
  std::vector<uint64_t> learners;
  uint32_t election_tick = 10;
  uint32_t heartbeat_tick = 2;
  uint64_t applied = 0;
  uint64_t max_size_per_msg = 0;   // 0: raft's default
  uint64_t max_inflight_msgs = 0;  // 0: raft's default
  bool check_quorum = true;
  bool pre_vote = true;
};

enum class Role { kFollower = 0, kCandidate = 1, kLeader = 2, kPreCandidate = 3 };
enum class EntryType { kNormal = 0, kConfChange = 1, kConfChangeV2 = 2 };
enum class ConfChangeType { kAddVoter = 0, kRemoveNode = 1, kAddLearner = 2 };

struct ConfChange {
  ConfChangeType type;
  uint64_t node_id;
};

// RaftMessage::type of a snapshot: the transport reports its fate with ReportSnapshot.
inline constexpr int32_t kMsgSnapshot = 7;

// The views below borrow bytes from the Ready they came from: valid until it is destroyed.
struct RaftMessage {
  uint64_t to;
  int32_t type;  // eraftpb MessageType, for logs and metrics
  std::string_view bytes;
};

struct RaftEntry {
  uint64_t index;
  uint64_t term;
  EntryType type;
  std::string_view data;
  std::string_view context;
};

struct HardState {
  uint64_t term;
  uint64_t vote;
  uint64_t commit;
};

struct SoftState {
  uint64_t leader_id;  // 0: none known
  Role role;
};

struct ReadState {
  uint64_t index;
  std::string_view context;
};

struct SnapshotView {
  uint64_t index;
  uint64_t term;
  std::string_view data;
  std::vector<uint64_t> voters;
  std::vector<uint64_t> learners;
};

// An entry as read back from durable storage, owning its bytes (RestoreState).
struct OwnedEntry {
  uint64_t index = 0;
  uint64_t term = 0;
  EntryType type = EntryType::kNormal;
  std::string data;
  std::string context;
};

// What a member persisted before it stopped, for RaftNode::Restore.
struct RestoreState {
  HardState hard_state{};  // the newest persisted one
  // The newest snapshot (bootstrap, received, or compacted to): its metadata only, the data
  // stays with the state machine. Index 0 (term 0, no members, no entries): a joining node
  // that never received one.
  uint64_t snapshot_index = 0;
  uint64_t snapshot_term = 0;
  std::vector<uint64_t> voters;  // membership as of snapshot_index
  std::vector<uint64_t> learners;
  // Every persisted entry after the snapshot: indexes snapshot_index + 1, + 2, ... in order.
  std::vector<OwnedEntry> entries;
};

struct RaftStatus {
  uint64_t id;
  uint64_t term;
  uint64_t vote;
  uint64_t commit;
  uint64_t applied;
  uint64_t last_index;
  uint64_t leader_id;
  Role role;
};

// One Ready (from TakeReady) or LightReady (from Advance/AdvanceAppend). Move-only; frees the
// handle on destruction. Its parts stay readable after it has been passed to Advance*.
// REQUIRES: destroyed before the RaftNode it came from.
class Ready {
 public:
  Ready() = default;
  Ready(Ready&& other) noexcept : handle_(other.handle_) { other.handle_ = nullptr; }
  Ready& operator=(Ready&& other) noexcept;
  Ready(const Ready&) = delete;
  Ready& operator=(const Ready&) = delete;
  ~Ready();

  // For OnPersistReady; 0 for a LightReady.
  uint64_t number() const;
  // Entries, hard state or snapshot must be fsynced before OnPersistReady.
  bool must_sync() const;
  // New commit index from Advance*; 0 when unchanged (and for a Ready).
  uint64_t commit_index() const;
  std::optional<SoftState> soft_state() const;
  std::optional<HardState> hard_state() const;
  std::optional<SnapshotView> snapshot() const;
  // Send at once.
  std::vector<RaftMessage> messages() const;
  // Send only after this Ready is durable.
  std::vector<RaftMessage> persisted_messages() const;
  std::vector<RaftEntry> entries() const;
  std::vector<RaftEntry> committed_entries() const;
  std::vector<ReadState> read_states() const;

 private:
  friend class RaftNode;
  explicit Ready(distri_raft_ready* handle) : handle_(handle) {}
  std::vector<RaftMessage> Messages(bool persisted) const;

  distri_raft_ready* handle_ = nullptr;
};

class RaftNode {
 public:
  static Result<std::unique_ptr<RaftNode>> Create(const RaftConfig& config);
  // The index and data of a serialised MsgSnapshot (the transport looks before stepping it);
  // kInvalidArgument for other bytes or data over max_data bytes.
  static Result<std::pair<uint64_t, std::string>> SnapshotOf(std::string_view message,
                                                             size_t max_data = 4096);
  // Rebuilds a member from durable state after a restart (distri_raft_node_restore).
  // config.applied is what the state machine has applied: the snapshot's data plus the entries
  // up to it; committed entries after it come out of the next Readies. The node holds no
  // snapshot data: answer TakeSnapshotRequest with Compact as usual.
  // REQUIRES: config.voters and config.learners empty (the membership is state.voters /
  // state.learners); kInvalidArgument if not, or if `state` is inconsistent (a gap in the
  // entries, commit beyond the last index or below the snapshot, applied outside
  // [snapshot_index, commit], ...).
  static Result<std::unique_ptr<RaftNode>> Restore(const RaftConfig& config,
                                                   const RestoreState& state);
  ~RaftNode();
  RaftNode(const RaftNode&) = delete;
  RaftNode& operator=(const RaftNode&) = delete;

  uint64_t id() const { return id_; }

  // ---- inputs (see raft_capi.h for each) ----
  Status Tick();
  Status Step(std::string_view message);
  // `context` comes back with the committed entry: how the proposer recognises it.
  Status Propose(std::string_view context, std::string_view data);
  Status ProposeConfChange(std::string_view context, std::span<const ConfChange> changes);
  // REQUIRES: entry is a committed kConfChange/kConfChangeV2 entry, applied in index order.
  Status ApplyConfChange(const RaftEntry& entry);
  Status ReadIndex(std::string_view context);
  Status TransferLeader(uint64_t to);
  Status Campaign();
  Status ReportUnreachable(uint64_t id);
  Status ReportSnapshot(uint64_t id, bool delivered);
  // REQUIRES: index <= applied; membership as of index already applied.
  Status Compact(uint64_t index, std::string_view snapshot_data);
  // True once after raft needed a newer snapshot than the one kept: answer with Compact.
  Result<bool> TakeSnapshotRequest();

  // ---- the Ready loop ----
  Result<bool> HasReady();
  // REQUIRES: HasReady(); no other input until the Ready is passed to an Advance* call.
  Result<Ready> TakeReady();
  // Synchronous: `ready` is fully persisted, sent and applied. Returns the LightReady.
  Result<Ready> Advance(Ready& ready);
  // As Advance, without applying; report applying with AdvanceApplyTo.
  Result<Ready> AdvanceAppend(Ready& ready);
  // Asynchronous: persisting has started; report it with OnPersistReady.
  Status AdvanceAppendAsync(Ready& ready);
  Status OnPersistReady(uint64_t number);
  Status AdvanceApplyTo(uint64_t applied);

  // ---- introspection ----
  Result<RaftStatus> GetStatus();
  // The leader's view: member id -> highest index known replicated to it (ascending ids).
  // Meaningful on the leader only.
  Result<std::vector<std::pair<uint64_t, uint64_t>>> Progress();
  // Current membership, ascending ids.
  Result<std::vector<uint64_t>> Voters();
  Result<std::vector<uint64_t>> Learners();

 private:
  RaftNode(distri_raft_node* node, uint64_t id) : node_(node), id_(id) {}
  Status Check(int rc) const;
  Result<std::vector<uint64_t>> Members(bool learners);

  distri_raft_node* node_;
  uint64_t id_;
};

}  // namespace distri::replication

#endif  // DISTRI_REPLICATION_RAFT_NODE_H_
