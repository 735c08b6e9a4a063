// Log: the seam between command handling and the replicated/durable log.
//
// Every state change is an entry: opaque bytes with a 1-based, gap-free index.
// The server proposes entries on the loop thread; once an entry is durable
// (and, in a cluster, committed by a quorum) the log hands it back, in index
// order, through Poll(). The server then applies it to the state machine and
// replies to whichever client proposed it:
//
//   Propose(entry) -> [durable/committed] -> Poll(on_commit) -> apply -> reply
//
// Implementations: LocalLog (local_log.h, segment files + group commit: one
// node) and RaftLog (replication/raft_log.h: a cluster node, whose Propose
// returns a proposal id rather than an index, see there).
//
// Threading: every method is called on the loop thread. An implementation may
// use threads of its own; it tells the loop that Poll() has work by calling
// the wakeup function given to SetWakeup() (from any thread).

#ifndef DISTRI_LOG_LOG_H_
#define DISTRI_LOG_LOG_H_

#include <cstdint>
#include <functional>
#include <string_view>

#include "base/histogram.h"
#include "distri/status.h"

namespace distri::log {

// Writes one piece of a snapshot. Called repeatedly by a SnapshotProducer.
using SnapshotWriteFn = std::function<Status(std::string_view bytes)>;
// Produces the whole state as bytes by calling write() any number of times.
using SnapshotProducer = std::function<Status(const SnapshotWriteFn& write)>;

class Log {
 public:
  // Called for each committed entry, in index order, without gaps.
  using CommitFn = std::function<void(uint64_t index, std::string_view entry)>;
  // Called when entries from `first_index` on could not be made durable
  // (e.g. disk full). Every proposal with index >= first_index is dropped;
  // later proposals reuse those indexes.
  using FailFn = std::function<void(uint64_t first_index, const Status& why)>;

  virtual ~Log() = default;

  // Appends an entry and returns the index it will have if it commits.
  // Non-blocking: the entry is buffered until Flush().
  virtual Result<uint64_t> Propose(std::string_view entry) = 0;

  // Called once per loop iteration after all proposals of that iteration:
  // starts making the buffered entries durable (group commit).
  virtual void Flush() = 0;

  // Delivers every entry that became durable since the last call, then any
  // failure. Cheap when there is nothing to deliver.
  virtual void Poll(const CommitFn& on_commit, const FailFn& on_fail) = 0;

  // `wake` may be called from any thread when Poll() has something to deliver.
  virtual void SetWakeup(std::function<void()> wake) = 0;

  // Writes a snapshot of the state as of `applied_index` (every entry up to and
  // including it has been applied) and, once it is durable, drops log entries it
  // covers. Returns at once: `produce` sees the state as of this call (LocalLog
  // runs it in a forked copy-on-write child), and everything slow (serialising,
  // fsync, rename, segment deletion) happens in the background.
  // REQUIRES: !SnapshotBusy().
  virtual Status SaveSnapshot(uint64_t applied_index, const SnapshotProducer& produce) = 0;
  // True while a snapshot is in progress (at most one at a time), or when one
  // failed so recently that the next should wait.
  virtual bool SnapshotBusy() = 0;

  // How long the last SaveSnapshot's fork() took (the pause a snapshot costs the loop).
  virtual uint64_t last_fork_us() const = 0;
  // A snapshot is being written.
  virtual bool snapshot_running() const = 0;
  // Snapshots that failed in the background since the log opened.
  virtual uint64_t snapshot_failures() const = 0;
  // Durations of the log's fdatasync calls.
  virtual const base::LatencyHistogram& fsync_latency() const = 0;
  // Stops the log's threads after the work already handed to them. Idempotent.
  virtual void Close() = 0;

  // Index of the last proposed entry (0 when empty).
  virtual uint64_t last_index() const = 0;
  // Bytes of log written since the last snapshot: the server snapshots when
  // this grows past a threshold.
  virtual uint64_t bytes_since_snapshot() const = 0;
};

}  // namespace distri::log

#endif  // DISTRI_LOG_LOG_H_
