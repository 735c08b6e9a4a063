// LocalLog: the single-node durable log. Entries go to segment files on local
// disk with group commit; snapshots compact it. On-disk format and recovery
// rules: docs/log_format.md.
//
// Callers: the server's loop thread calls every public method (see log.h).
// LocalLog runs two threads of its own, and a process per snapshot:
//   - the writer: takes the batches Flush() queued, writes them with one
//     pwritev and one fdatasync per group, rolls segments, deletes segments a
//     durable snapshot covers, then calls the wakeup function;
//   - a snapshot child, forked by SaveSnapshot(): serialises the state from
//     its copy-on-write image of the process into a temp file, fsyncs it and
//     exits, so the loop never waits for a snapshot to be written;
//   - the snapshotter: waits for that child, renames its file into place,
//     fsyncs the directory, and asks the writer to compact.
// Keeping snapshots off the writer thread means a large snapshot does not
// stall commits; keeping them off the loop thread means it stalls no client.
//
// Group commit: Propose() appends to the batch being built; Flush() queues it.
// An idle writer starts at once; a busy writer takes everything queued
// meanwhile as one group when it finishes, so under load groups grow and
// share one fdatasync.
//
// Invariants (mu_ guards the "shared" state):
//  1. Indexes are 1-based and gap-free through the pipeline: entries in
//     done_ < the writer's group < queued_ < building_ (each in order), and
//     next_index_ is one past the last entry of all of them.
//  2. While failure_ is set the writer writes nothing. Poll() then drops
//     queued_ and building_ and rewinds next_index_ to failure_->first_index;
//     the writer's own next index already equals it (it truncated the file).
//  3. A segment is deleted only after a snapshot covering all its entries is
//     durable (fsynced, renamed, directory fsynced), and never while the
//     writer appends to it.
//  4. The bytes passed to on_commit live in their Batch until Poll returns.
//  5. Once Open returns, log/MANIFEST names segments_.back(), whose header is
//     durable; a roll makes the new header durable and the manifest name it
//     before any record goes into it. Recovery relies on this to tell a lost
//     newest segment (refuse) from a roll cut short (complete it).
//  6. At most one snapshot child exists; it touches no lock of this class.

#ifndef DISTRI_LOG_LOCAL_LOG_H_
#define DISTRI_LOG_LOCAL_LOG_H_

#include <sys/types.h>

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "base/histogram.h"
#include "base/log_limiter.h"
#include "distri/status.h"
#include "log/file_system.h"
#include "log/log.h"

namespace distri::log {

struct LocalLogOptions {
  // Data directory; created if missing. Holds log/ (segments) and snap/.
  std::string dir;
  // true: every group is fdatasync'ed before its entries are delivered
  // (acknowledged writes survive power loss). false: entries are delivered
  // once written to the OS; they survive a process crash, not an OS crash.
  bool fsync = true;
  // A segment is sealed and a new one started once it grows past this size.
  uint64_t segment_bytes = 64ull << 20;
  // File operations; nullptr means DefaultFileSystem(). Not owned; must
  // outlive the log.
  FileSystem* file_system = nullptr;
  // After a snapshot fails (the child, the fork, or the rename), no new one
  // starts for this long, so a persistent cause (a full disk) costs one
  // attempt per delay, not one fork per write.
  std::chrono::milliseconds snapshot_retry_delay{5000};
  // A snapshot child that writes nothing for this long is killed (and the
  // snapshot retried after the delay above). It reports progress every MiB,
  // so only a stuck child comes near this.
  std::chrono::milliseconds snapshot_stall_timeout{60000};
};

class LocalLog final : public Log {
 public:
  // Receives the newest snapshot: its index and payload. The view is valid
  // only during the call.
  using LoadSnapshotFn = std::function<Status(uint64_t index, std::string_view data)>;
  // Receives each entry after the snapshot, in index order. The view is valid
  // only during the call.
  using ReplayFn = std::function<Status(uint64_t index, std::string_view entry)>;

  // Opens (or creates) the log in options.dir and recovers it: loads the
  // newest snapshot via load_snapshot, then replays every later entry via
  // replay, truncating a torn tail (logged as a WARN line). Fails with
  // Corruption (naming file and offset) on damage that is not a torn tail,
  // with IOError on I/O errors, or with the first error a callback returns.
  // REQUIRES: both callbacks are set.
  static Result<std::unique_ptr<LocalLog>> Open(const LocalLogOptions& options,
                                                const LoadSnapshotFn& load_snapshot,
                                                const ReplayFn& replay);

  // Close()s.
  ~LocalLog() override;
  LocalLog(const LocalLog&) = delete;
  LocalLog& operator=(const LocalLog&) = delete;

  // Log interface; see log.h. Propose fails with InvalidArgument for an
  // entry over kMaxEntryBytes (segment.h) and with Internal after Close().
  Result<uint64_t> Propose(std::string_view entry) override;
  void Flush() override;
  void Poll(const CommitFn& on_commit, const FailFn& on_fail) override;
  void SetWakeup(std::function<void()> wake) override;
  // Forks; the child runs `produce` on its copy-on-write image of the
  // process, so the snapshot holds exactly the state of this moment, while
  // this thread returns at once. Fails (IOError) only if the fork fails.
  // REQUIRES (else InvalidArgument): !SnapshotBusy(); applied_index <= the
  // last index Poll delivered, and >= the newest snapshot's index (equal:
  // nothing to do). `produce` may only read memory and call its write
  // function: no locks, no logging, no libuv (see RunSnapshotChild).
  // A failure in the background (the child's error, a crash of the child,
  // the rename) is logged as an ERROR and leaves the log as it was;
  // SnapshotBusy() then holds off a retry for options.snapshot_retry_delay.
  Status SaveSnapshot(uint64_t applied_index, const SnapshotProducer& produce) override;
  // True while a snapshot is being taken (one at a time), and for
  // snapshot_retry_delay after one failed; after that delay a failed
  // snapshot's log bytes count again towards bytes_since_snapshot().
  bool SnapshotBusy() override;
  // How long the last SaveSnapshot's fork() took: the one pause a snapshot
  // costs the loop (Redis's latest_fork_usec).
  uint64_t last_fork_us() const override { return last_fork_us_; }
  // A snapshot child is running (or its file is being renamed).
  bool snapshot_running() const override {
    std::lock_guard lock(mu_);
    return snapshot_running_;
  }
  // Snapshots that failed in the background since Open.
  uint64_t snapshot_failures() const override {
    std::lock_guard lock(mu_);
    return snapshot_failures_;
  }
  uint64_t last_index() const override { return next_index_ - 1; }
  // Record bytes proposed since the last SaveSnapshot (after Open: replayed
  // since the snapshot). Approximate by design: entries proposed but not yet
  // applied when a snapshot is taken, or dropped by a failure, are miscounted.
  uint64_t bytes_since_snapshot() const override { return bytes_since_snapshot_; }
  // Durations of the log's fdatasync calls (recorded by the writer thread).
  const base::LatencyHistogram& fsync_latency() const override { return fsync_latency_; }

  // Stops both threads after they finish the work already handed to them
  // (queued groups, pending snapshots). Entries proposed but not flushed are
  // dropped; entries written but not yet polled stay on disk and replay at
  // the next Open. Idempotent.
  void Close() override;

  // Where the snapshot of `index` is (or would be) kept.
  std::string SnapshotFilePath(uint64_t index) const { return SnapshotPath(index); }

  // Blocks until the writer and snapshotter have nothing left to do. For
  // tests; the server never needs to wait.
  void WaitForBackgroundWork();

 private:
  // Encoded records of consecutive entries, plus where they start.
  struct Batch {
    uint64_t first_index = 0;
    uint64_t count = 0;
    std::string records;
  };
  struct Failure {
    uint64_t first_index;
    Status status;
  };
  // A snapshot being written by a child process, waiting for it and rename.
  struct SnapshotTask {
    uint64_t index;
    std::string temp_path;
    std::string final_path;
    pid_t pid;      // the child writing temp_path
    int report_fd;  // read end of a pipe the child holds open until it exits
  };

  explicit LocalLog(const LocalLogOptions& options);

  // Open() steps (loop thread, before the threads start).
  Status Recover(const LoadSnapshotFn& load_snapshot, const ReplayFn& replay);
  Result<uint64_t> LoadNewestSnapshot(const LoadSnapshotFn& load_snapshot);
  Status RecoverSegments(uint64_t snapshot_index, const ReplayFn& replay);

  // Writer thread.
  void WriterMain();
  Status WriteGroup(std::vector<std::unique_ptr<Batch>>& group);
  Status FixTail();
  Status RollSegment(uint64_t first_index);
  void CompactSegments(uint64_t upto);
  bool WriterHasWork() const;  // REQUIRES: mu_ held

  // The forked child of SaveSnapshot: writes and fsyncs the snapshot file,
  // writes any error to report_fd, and _exits.
  [[noreturn]] void RunSnapshotChild(pid_t parent, int report_fd, const std::string& temp_path,
                                     uint64_t index, const SnapshotProducer& produce);

  // Snapshotter thread.
  void SnapshotterMain();
  bool FinishSnapshot(SnapshotTask& task);

  // log/MANIFEST (both threads: Open, then the writer's rolls).
  Status WriteManifest(uint64_t newest);
  Result<std::optional<uint64_t>> ReadManifest();

  std::string SegmentPath(uint64_t first_index) const;
  std::string ManifestPath() const;
  std::string SnapshotPath(uint64_t index) const;

  const LocalLogOptions options_;
  FileSystem* const fs_;
  const std::string log_dir_;
  const std::string snap_dir_;

  // --- Loop thread only.
  std::unique_ptr<Batch> building_;  // proposed, not yet flushed
  uint64_t next_index_ = 1;          // index the next Propose returns
  uint64_t delivered_index_ = 0;     // last index handed to on_commit (or recovered)
  uint64_t bytes_since_snapshot_ = 0;
  base::LatencyHistogram fsync_latency_;  // written by the writer thread
  uint64_t snapshot_requested_ = 0;  // newest snapshot index saved or being saved
  uint64_t bytes_at_snapshot_ = 0;   // bytes_since_snapshot_ when the last one started
  uint64_t last_fork_us_ = 0;
  std::chrono::steady_clock::time_point retry_at_;  // no snapshot starts before this
  bool polling_ = false;
  bool closed_ = false;

  // --- Writer thread only (set up by Open before the thread starts).
  std::unique_ptr<WritableFile> segment_;  // the segment being appended to
  uint64_t segment_size_ = 0;              // its length: offset of the next write
  std::deque<uint64_t> segments_;          // first index of each live segment; back() is current
  uint64_t write_index_ = 1;               // index of the next entry to write
  bool dirty_tail_ = false;                // the segment may hold bytes past segment_size_

  // --- Shared, guarded by mu_.
  mutable std::mutex mu_;
  std::condition_variable writer_cv_;
  std::condition_variable snapshot_cv_;
  std::condition_variable idle_cv_;
  std::vector<std::unique_ptr<Batch>> queued_;  // flushed, waiting for the writer
  std::deque<std::unique_ptr<Batch>> done_;     // durable, waiting for Poll
  std::optional<Failure> failure_;              // a failed group, waiting for Poll
  std::function<void()> wake_;
  bool writer_busy_ = false;
  bool writer_stop_ = false;
  std::deque<SnapshotTask> snapshot_tasks_;
  bool snapshotter_busy_ = false;
  bool snapshotter_stop_ = false;
  bool snapshot_running_ = false;  // from SaveSnapshot until the snapshotter finishes it
  bool snapshot_failed_ = false;   // the last one failed; SnapshotBusy() has not seen it yet
  uint64_t snapshot_failures_ = 0;
  uint64_t compact_requested_ = 0;  // newest durable snapshot index
  uint64_t compacted_ = 0;          // segments up to here have been deleted

  std::thread writer_;
  std::thread snapshotter_;
  base::LogLimiter snapshot_failure_log_{10000};  // snapshot thread only
};

}  // namespace distri::log

#endif  // DISTRI_LOG_LOCAL_LOG_H_
