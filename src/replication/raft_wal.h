// The byte formats of a node's durable Raft state, and the replay that rebuilds it.
//
// RaftLog keeps its Raft state in a LocalLog (log/local_log.h) used as a write-ahead log: each
// Ready that has something to persist becomes one *record* (the LocalLog entry), written with
// group commit and fsync like every Distri log. The LocalLog's own snapshot is the
// *checkpoint*: the state machine plus the Raft metadata at one applied index, written by a
// forked child, after which the records it covers are deleted. Formats in
// docs/replication.md ("Durable state"); integers little-endian.
//
//   record     = kind u8 (1) | flags u8 | [hard state] | [snapshot] | count u32 | entries
//   hard state = term u64 | vote u64 | commit u64
//   snapshot   = index u64 | term u64 | voters | learners | data_len u64 | data
//   entry      = index u64 | term u64 | type u8 | context_len u32 | context | data_len u32 | data
//   checkpoint = "DRCP" | version u8 (1) | hard state | index u64 | term u64 | voters |
//                learners | count u32 | entries (the unapplied tail) | state bytes (the rest)
//   ids        = count u32 | id u64 ...
//
// Replay rules (RaftDurableState): the newest hard state wins; a snapshot replaces everything
// before it; an entry at index i replaces the entry at i and drops every later one (a follower
// whose uncommitted tail was overwritten by a new leader).
//
// The snapshot *data* of a Raft snapshot (what a leader sends a lagging follower) and of a
// checkpoint's state bytes is the same "snapshot payload": the cluster membership (node ids
// and addresses) and the state machine (state/state_machine.h SaveSnapshot):
//
//   payload    = "DRSP" | version u8 (1) | members count u32 | (id u64 | addr_len u16 | addr)...
//                | state_index u64 | state bytes (the rest)
//
// Threading: pure functions and a plain struct.

#ifndef DISTRI_REPLICATION_RAFT_WAL_H_
#define DISTRI_REPLICATION_RAFT_WAL_H_

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "distri/status.h"
#include "replication/raft_node.h"

namespace distri::replication {

// An entry that owns its bytes (RaftEntry borrows from a Ready).
using StoredEntry = OwnedEntry;

struct SnapshotMeta {
  uint64_t index = 0;
  uint64_t term = 0;
  std::vector<uint64_t> voters;
  std::vector<uint64_t> learners;
};

// Appends one record: what one Ready persists. Any part may be absent; a record with none is
// never written.
void EncodeRecord(std::string* out, const std::optional<HardState>& hard_state,
                  const SnapshotMeta* snapshot, std::string_view snapshot_data,
                  const std::vector<RaftEntry>& entries);

// Everything a node has persisted, rebuilt by replaying its checkpoint and records.
struct RaftDurableState {
  bool has_hard_state = false;
  HardState hard_state{0, 0, 0};
  SnapshotMeta snapshot;       // index 0: none yet (a node that is still joining)
  std::string snapshot_data;   // a snapshot payload (see above); empty if it came from a checkpoint
  bool snapshot_from_record = false;  // snapshot_data holds the payload to load
  std::vector<StoredEntry> entries;   // after snapshot.index, contiguous

  // Applies one record's contents. Corruption for bytes that do not parse.
  Status ApplyRecord(std::string_view record);
  // Replaces everything with a checkpoint; *state gets its state bytes.
  Status ApplyCheckpoint(std::string_view checkpoint, std::string_view* payload);
};

// The checkpoint's bytes before the payload (the caller appends the snapshot payload).
std::string EncodeCheckpointHeader(const HardState& hard_state, const SnapshotMeta& meta,
                                   const std::vector<StoredEntry>& tail);

// Members of the cluster: node id -> the address peers dial ("host:port").
using MemberAddresses = std::map<uint64_t, std::string>;

// The snapshot payload's header (the caller appends the state machine's bytes).
std::string EncodePayloadHeader(const MemberAddresses& members, uint64_t state_index);
struct DecodedPayload {
  MemberAddresses members;
  uint64_t state_index = 0;
  std::string_view state;  // points into the decoded bytes
};
Result<DecodedPayload> DecodePayload(std::string_view bytes);

// The data of the snapshots Raft keeps and sends is a *reference* to a checkpoint file, not
// the state itself: the transport streams the file in chunks beside Raft (server/cluster.h),
// so no giant message or buffer exists.
//   reference = "DRSR" | version u8 (1) | checkpoint id u64 (its WAL record id) | size u64
std::string EncodeSnapshotRef(uint64_t checkpoint, uint64_t size);
bool DecodeSnapshotRef(std::string_view data, uint64_t* checkpoint, uint64_t* size);
// The snapshot payload inside a checkpoint file's bytes (log/snapshot_file.h framing, then a
// checkpoint); `id` is the checkpoint id its name carries. Corruption names `path`.
Result<std::string_view> CheckpointFilePayload(std::string_view file, const std::string& path,
                                               uint64_t id);

}  // namespace distri::replication

#endif  // DISTRI_REPLICATION_RAFT_WAL_H_
