// LocalLog: recovery, group commit, write failures and snapshot compaction.
// See local_log.h for the threads and invariants, docs/log_format.md for the
// bytes on disk and the recovery rules.

#include "log/local_log.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <limits>
#include <utility>

#include "base/log_limiter.h"
#include "base/logging.h"
#include "log/segment.h"
#include "log/snapshot_file.h"

namespace distri::log {

namespace {

constexpr std::string_view kSegmentSuffix = ".seg";
constexpr std::string_view kSnapshotSuffix = ".snap";
constexpr std::string_view kTempSuffix = ".tmp";
constexpr std::string_view kManifestName = "MANIFEST";
// The snapshot child writes kProgressByte to its report pipe per
// kProgressBytes of snapshot (a heartbeat; see FinishSnapshot).
constexpr char kProgressByte = '.';
// ...and kSyncingByte once everything is written and it starts the final
// fsync, which can take long on a slow disk and reports no progress: the
// stall clock stops there.
constexpr char kSyncingByte = ',';
constexpr uint64_t kProgressBytes = 1 << 20;

bool EndsWith(std::string_view s, std::string_view suffix) {
  return s.size() >= suffix.size() && s.substr(s.size() - suffix.size()) == suffix;
}

}  // namespace

LocalLog::LocalLog(const LocalLogOptions& options)
    : options_(options),
      fs_(options.file_system != nullptr ? options.file_system : DefaultFileSystem()),
      log_dir_(options.dir + "/log"),
      snap_dir_(options.dir + "/snap") {}

LocalLog::~LocalLog() { Close(); }

std::string LocalLog::SegmentPath(uint64_t first_index) const {
  return log_dir_ + "/" + IndexedFileName(first_index, kSegmentSuffix);
}

std::string LocalLog::SnapshotPath(uint64_t index) const {
  return snap_dir_ + "/" + IndexedFileName(index, kSnapshotSuffix);
}

std::string LocalLog::ManifestPath() const { return log_dir_ + "/" + std::string(kManifestName); }

// Replaces log/MANIFEST by one naming `newest` (write a temp file, fsync,
// rename, fsync log/), in both fsync modes: recovery refuses to start when the
// segment it names is missing or headerless, so it must never name a segment
// whose header is not durable, and never be lost once it names one. An error
// means the old manifest is still in place. A failed directory fsync after the
// rename is fatal, for the reason a failed fdatasync is (SyncOrDie below): the
// manifest may or may not have changed on disk, and only recovery can tell.
Status LocalLog::WriteManifest(uint64_t newest) {
  const std::string path = ManifestPath();
  const std::string temp = path + std::string(kTempSuffix);
  {
    auto file = fs_->OpenWritable(temp, /*truncate=*/true);
    if (!file.ok()) return file.status();
    Status st = (*file)->WriteAt(0, EncodeManifest(newest));
    if (st.ok()) st = (*file)->Sync();
    if (!st.ok()) {
      file->reset();
      (void)fs_->Unlink(temp);
      return st;
    }
  }
  Status st = fs_->Rename(temp, path);
  if (!st.ok()) {
    (void)fs_->Unlink(temp);
    return st;
  }
  st = fs_->SyncDir(log_dir_);
  if (!st.ok()) {
    LOG(FATAL) << "log: " << st.ToString() << " after replacing " << path
               << "; whether the new manifest is durable is unknown, so the only safe course "
                  "is to crash and recover from the disk";
  }
  return Status::Ok();
}

// Reads log/MANIFEST: the first index of the newest segment, or nullopt when
// there is none (a new directory, or one written before manifests existed).
Result<std::optional<uint64_t>> LocalLog::ReadManifest() {
  const std::string path = ManifestPath();
  auto names = fs_->ListDir(log_dir_);
  if (!names.ok()) return names.status();
  if (std::find(names->begin(), names->end(), kManifestName) == names->end()) {
    return std::optional<uint64_t>();
  }
  auto file = fs_->OpenReadOnly(path);
  if (!file.ok()) return file.status();
  auto newest = ParseManifest((*file)->data(), path);
  if (!newest.ok()) {
    return Status::Corruption(newest.status().message() +
                              ". It names the newest log segment. If the segments are intact, "
                              "delete it and start again (it is rewritten at start-up)");
  }
  return std::optional<uint64_t>(*newest);
}

// ===========================================================================
// Open and recovery (loop thread, before the threads start)
// ===========================================================================

Result<std::unique_ptr<LocalLog>> LocalLog::Open(const LocalLogOptions& options,
                                                 const LoadSnapshotFn& load_snapshot,
                                                 const ReplayFn& replay) {
  if (options.dir.empty()) return Status::InvalidArgument("log directory not set");
  if (options.segment_bytes == 0) return Status::InvalidArgument("segment_bytes must be > 0");
  std::unique_ptr<LocalLog> log(new LocalLog(options));
  DISTRI_RETURN_IF_ERROR(log->Recover(load_snapshot, replay));
  log->writer_ = std::thread(&LocalLog::WriterMain, log.get());
  log->snapshotter_ = std::thread(&LocalLog::SnapshotterMain, log.get());
  return log;
}

Status LocalLog::Recover(const LoadSnapshotFn& load_snapshot, const ReplayFn& replay) {
  DISTRI_RETURN_IF_ERROR(fs_->CreateDir(options_.dir));
  DISTRI_RETURN_IF_ERROR(fs_->CreateDir(log_dir_));
  DISTRI_RETURN_IF_ERROR(fs_->CreateDir(snap_dir_));
  if (options_.fsync) DISTRI_RETURN_IF_ERROR(fs_->SyncDir(options_.dir));

  Result<uint64_t> snapshot_index = LoadNewestSnapshot(load_snapshot);
  if (!snapshot_index.ok()) return snapshot_index.status();
  snapshot_requested_ = compact_requested_ = compacted_ = *snapshot_index;
  return RecoverSegments(*snapshot_index, replay);
}

// Loads snap/<newest>.snap if there is one and returns its index (0 if none).
// Leftovers of an earlier run — unfinished temp files, older snapshots whose
// deletion a crash interrupted — are removed.
Result<uint64_t> LocalLog::LoadNewestSnapshot(const LoadSnapshotFn& load_snapshot) {
  auto names = fs_->ListDir(snap_dir_);
  if (!names.ok()) return names.status();
  std::vector<uint64_t> indexes;
  for (const std::string& name : *names) {
    uint64_t index;
    if (ParseIndexedFileName(name, kSnapshotSuffix, &index)) {
      indexes.push_back(index);
    } else if (EndsWith(name, kTempSuffix)) {
      LOG(INFO) << "log: removing unfinished snapshot " << snap_dir_ << "/" << name;
      (void)fs_->Unlink(snap_dir_ + "/" + name);
    } else {
      LOG(WARNING) << "log: ignoring unexpected file " << snap_dir_ << "/" << name;
    }
  }
  if (indexes.empty()) return uint64_t{0};
  std::sort(indexes.begin(), indexes.end());
  const uint64_t newest = indexes.back();
  const std::string path = SnapshotPath(newest);
  {
    auto file = fs_->OpenReadOnly(path);
    if (!file.ok()) return file.status();
    auto contents = ParseSnapshotFile((*file)->data(), path, newest);
    if (!contents.ok()) return contents.status();
    DISTRI_RETURN_IF_ERROR(load_snapshot(newest, contents->payload));
  }
  // If the last run crashed right after the rename that published this
  // snapshot, the rename may still be only in the page cache. Make it durable
  // before deleting anything on the strength of it.
  DISTRI_RETURN_IF_ERROR(fs_->SyncDir(snap_dir_));
  for (uint64_t older : indexes) {
    if (older != newest) (void)fs_->Unlink(SnapshotPath(older));
  }
  LOG(INFO) << "log: loaded snapshot " << path;
  return newest;
}

// Replays the segments after the snapshot, checks continuity, truncates a
// torn tail, and leaves the writer state ready to append.
Status LocalLog::RecoverSegments(uint64_t snapshot_index, const ReplayFn& replay) {
  auto names = fs_->ListDir(log_dir_);
  if (!names.ok()) return names.status();
  std::vector<uint64_t> firsts;
  for (const std::string& name : *names) {
    uint64_t first;
    if (ParseIndexedFileName(name, kSegmentSuffix, &first)) {
      firsts.push_back(first);
    } else if (name == kManifestName) {
      // Read below.
    } else if (name == std::string(kManifestName) + std::string(kTempSuffix)) {
      (void)fs_->Unlink(log_dir_ + "/" + name);  // a manifest update cut short
    } else {
      LOG(WARNING) << "log: ignoring unexpected file " << log_dir_ << "/" << name;
    }
  }
  std::sort(firsts.begin(), firsts.end());

  // The manifest names the newest segment whose header was made durable; only
  // segments after it may be a roll cut short. Checked before anything is
  // deleted, so that a refusal leaves the directory as it was.
  auto manifest = ReadManifest();
  if (!manifest.ok()) return manifest.status();
  const std::optional<uint64_t> durable_newest = *manifest;
  if (durable_newest &&
      std::find(firsts.begin(), firsts.end(), *durable_newest) == firsts.end()) {
    return Status::Corruption(
        SegmentPath(*durable_newest) + ": missing, but " + ManifestPath() +
        " names it as the newest log segment: it held durable (possibly acknowledged) entries "
        "and was deleted or lost outside Distri. Restore it from a backup; or, to start "
        "without its entries, take a copy of " + options_.dir + " and then delete " +
        ManifestPath());
  }
  if (!durable_newest && !firsts.empty()) {
    LOG(INFO) << "log: no " << ManifestPath() << " (a directory from an older version); "
              << "the newest segment is not checked for loss this time";
  }

  // A segment followed by one starting at or before snapshot_index + 1 holds
  // only entries the snapshot covers: a crash interrupted its deletion. The
  // segment the manifest names stays until a newer manifest is durable (a
  // crash in between would otherwise find it missing); reading it is cheap.
  const uint64_t after_snapshot = snapshot_index + 1;
  while (firsts.size() >= 2 && firsts[1] <= after_snapshot && firsts[0] != durable_newest) {
    LOG(INFO) << "log: removing segment covered by the snapshot: " << SegmentPath(firsts[0]);
    (void)fs_->Unlink(SegmentPath(firsts[0]));
    firsts.erase(firsts.begin());
  }
  if (!firsts.empty() && firsts[0] > after_snapshot) {
    return Status::Corruption(SegmentPath(firsts[0]) + ": offset 0: log starts at entry " +
                              std::to_string(firsts[0]) + " but the newest snapshot covers only " +
                              std::to_string(snapshot_index) + " (entries missing)");
  }

  uint64_t expected = firsts.empty() ? after_snapshot : firsts[0];
  SegmentScan last_scan;
  uint64_t last_file_size = 0;
  for (size_t i = 0; i < firsts.size(); ++i) {
    const std::string path = SegmentPath(firsts[i]);
    if (firsts[i] != expected) {
      return Status::Corruption(path + ": offset 0: index gap: previous segment ends at entry " +
                                std::to_string(expected - 1));
    }
    auto file = fs_->OpenReadOnly(path);
    if (!file.ok()) return file.status();
    auto scan = ScanSegment((*file)->data(), path, firsts[i], i + 1 == firsts.size(),
                            [&](uint64_t index, std::string_view entry) -> Status {
                              if (index <= snapshot_index) return Status::Ok();
                              bytes_since_snapshot_ += kRecordHeaderSize + entry.size();
                              return replay(index, entry);
                            });
    if (!scan.ok()) return scan.status();
    if (durable_newest && firsts[i] > *durable_newest) {
      // Started by a roll that did not get as far as the manifest, so it may
      // hold nothing: the writer puts records in only after the manifest.
      if (i + 1 != firsts.size() || scan->next_index != firsts[i]) {
        return Status::Corruption(path + ": offset 0: segment is newer than the one " +
                                  ManifestPath() + " names (" +
                                  IndexedFileName(*durable_newest, kSegmentSuffix) +
                                  ") yet is not an empty segment left by an interrupted roll");
      }
    } else if (durable_newest && scan->torn_header) {
      return Status::Corruption(
          path + ": offset 0: segment header destroyed (" + scan->torn_reason + ", " +
          std::to_string((*file)->data().size()) + " bytes), but " + ManifestPath() +
          " says it was durable: its entries were lost outside Distri. Restore it from a "
          "backup; or, to start without its entries, take a copy of " + options_.dir +
          " and then delete this file and " + ManifestPath());
    }
    expected = scan->next_index;
    last_scan = std::move(scan).value();
    last_file_size = (*file)->data().size();
  }  // the mapping of the last segment is released here, before any truncate

  const uint64_t last_entry = expected - 1;
  std::vector<uint64_t> stale;
  if (!firsts.empty() && last_entry < snapshot_index) {
    // Only possible if entries the snapshot covers never reached the disk
    // (fsync=false and an OS crash). The snapshot has them; start after it.
    LOG(WARNING) << "log: segments end at entry " << last_entry << " but the snapshot covers "
                 << snapshot_index << "; starting a new segment after the snapshot";
    stale.swap(firsts);  // deleted once the manifest names the new segment
  }

  if (firsts.empty()) {
    const uint64_t first = std::max(last_entry, snapshot_index) + 1;
    auto file = fs_->OpenWritable(SegmentPath(first), /*truncate=*/true);
    if (!file.ok()) return file.status();
    segment_ = std::move(file).value();
    DISTRI_RETURN_IF_ERROR(segment_->WriteAt(0, SegmentHeader()));
    DISTRI_RETURN_IF_ERROR(segment_->Sync());
    DISTRI_RETURN_IF_ERROR(WriteManifest(first));  // also makes the new name durable
    // All before `first`: a crash before they go leaves them covered by the
    // snapshot, to be deleted by step 3 of the next Open.
    for (uint64_t old : stale) (void)fs_->Unlink(SegmentPath(old));
    segments_.push_back(first);
    segment_size_ = kSegmentHeaderSize;
  } else {
    const std::string path = SegmentPath(firsts.back());
    auto file = fs_->OpenWritable(path, /*truncate=*/false);
    if (!file.ok()) return file.status();
    segment_ = std::move(file).value();
    segment_size_ = last_scan.valid_bytes;
    bool changed = false;
    if (last_scan.torn) {
      LOG(WARNING) << "log: torn tail in " << path << " at offset " << segment_size_ << " ("
                   << last_scan.torn_reason << "): truncating "
                   << last_file_size - segment_size_ << " bytes";
      DISTRI_RETURN_IF_ERROR(segment_->Truncate(segment_size_));
      changed = true;
    }
    if (segment_size_ < kSegmentHeaderSize) {
      DISTRI_RETURN_IF_ERROR(segment_->WriteAt(0, SegmentHeader()));
      segment_size_ = kSegmentHeaderSize;
      changed = true;
    }
    // The manifest may name only a segment whose header is durable.
    if (changed && (options_.fsync || durable_newest != firsts.back())) {
      DISTRI_RETURN_IF_ERROR(segment_->Sync());
    }
    if (durable_newest != firsts.back()) {
      // An older directory, or a roll cut short after its header was written:
      // from now on this segment is the one that must not go missing.
      DISTRI_RETURN_IF_ERROR(WriteManifest(firsts.back()));
    }
    segments_.assign(firsts.begin(), firsts.end());
  }
  next_index_ = write_index_ = std::max(last_entry, snapshot_index) + 1;
  delivered_index_ = next_index_ - 1;
  LOG(INFO) << "log: recovered " << options_.dir << ": entries up to " << delivered_index_
            << ", snapshot at " << snapshot_index;
  return Status::Ok();
}

// ===========================================================================
// Loop thread API
// ===========================================================================

Result<uint64_t> LocalLog::Propose(std::string_view entry) {
  if (closed_) return Status::Internal("log is closed");
  if (entry.size() > kMaxEntryBytes) {
    return Status::InvalidArgument("entry of " + std::to_string(entry.size()) +
                                   " bytes exceeds the log limit of " +
                                   std::to_string(kMaxEntryBytes));
  }
  if (!building_) {
    building_ = std::make_unique<Batch>();
    building_->first_index = next_index_;
  }
  AppendRecord(&building_->records, next_index_, entry);
  ++building_->count;
  bytes_since_snapshot_ += kRecordHeaderSize + entry.size();
  return next_index_++;
}

void LocalLog::Flush() {
  if (!building_ || closed_) return;
  {
    std::lock_guard lock(mu_);
    // After a failure the writer takes nothing until Poll() has reported it;
    // building_ is then dropped (invariant 2).
    if (failure_) return;
    queued_.push_back(std::move(building_));
  }
  writer_cv_.notify_one();
}

void LocalLog::Poll(const CommitFn& on_commit, const FailFn& on_fail) {
  CHECK(!polling_) << "LocalLog::Poll is not reentrant";
  std::deque<std::unique_ptr<Batch>> done;
  std::optional<Failure> failure;
  {
    std::lock_guard lock(mu_);
    if (done_.empty() && !failure_) return;
    done.swap(done_);
    failure = failure_;  // stays set until reported, so Flush() queues nothing
  }
  polling_ = true;
  for (const auto& batch : done) {
    std::string_view rest = batch->records;
    while (!rest.empty()) {
      DecodedRecord record = DecodeTrustedRecord(rest);
      on_commit(record.index, record.payload);
      delivered_index_ = record.index;
      rest.remove_prefix(record.size);
    }
  }
  polling_ = false;
  if (failure) {
    {
      std::lock_guard lock(mu_);
      queued_.clear();
      failure_.reset();
    }
    building_.reset();
    next_index_ = failure->first_index;
    on_fail(failure->first_index, failure->status);
  }
}

void LocalLog::SetWakeup(std::function<void()> wake) {
  std::lock_guard lock(mu_);
  wake_ = std::move(wake);
}

bool LocalLog::SnapshotBusy() {
  std::lock_guard lock(mu_);
  if (snapshot_running_) return true;
  if (snapshot_failed_) {
    // The failure was logged where it happened. Allow the same index again
    // and count the log written meanwhile, so the caller retries, but not
    // before the delay: a full disk should not cost a fork per write.
    snapshot_failed_ = false;
    snapshot_requested_ = compact_requested_;
    bytes_since_snapshot_ += bytes_at_snapshot_;
    retry_at_ = std::chrono::steady_clock::now() + options_.snapshot_retry_delay;
  }
  return std::chrono::steady_clock::now() < retry_at_;
}

Status LocalLog::SaveSnapshot(uint64_t applied_index, const SnapshotProducer& produce) {
  if (closed_) return Status::Internal("log is closed");
  if (applied_index > delivered_index_) {
    return Status::InvalidArgument("snapshot at entry " + std::to_string(applied_index) +
                                   " is past the last delivered entry " +
                                   std::to_string(delivered_index_));
  }
  const bool busy = SnapshotBusy();  // first: it may roll back a failed one
  if (applied_index < snapshot_requested_) {
    return Status::InvalidArgument("snapshot at entry " + std::to_string(applied_index) +
                                   " is older than the newest one, at " +
                                   std::to_string(snapshot_requested_));
  }
  if (applied_index == snapshot_requested_) return Status::Ok();
  if (busy) return Status::InvalidArgument("a snapshot is being taken, or one failed moments ago");

  const std::string final_path = SnapshotPath(applied_index);
  const std::string temp_path = final_path + std::string(kTempSuffix);
  int report[2];
  if (::pipe2(report, O_CLOEXEC) != 0) {
    retry_at_ = std::chrono::steady_clock::now() + options_.snapshot_retry_delay;
    return PosixError("pipe for snapshot", temp_path, errno);
  }
  const pid_t parent = ::getpid();
  pid_t pid;
  int fork_errno;
  {
    // Fork holding mu_, with the writer between groups: the writer and the
    // snapshotter then sit in a condition wait or wait for mu_, never inside
    // malloc or free, whose locks the child would inherit held. glibc's malloc
    // is fork-safe anyway; the sanitizers' allocators before LLVM 18 are not.
    // Costs the loop at most the rest of one group write.
    std::unique_lock lock(mu_);
    idle_cv_.wait(lock, [&] { return !writer_busy_; });
    const auto fork_start = std::chrono::steady_clock::now();
    pid = ::fork();
    if (pid == 0) {
      ::close(report[0]);
      RunSnapshotChild(parent, report[1], temp_path, applied_index, produce);  // never returns
    }
    fork_errno = errno;
    last_fork_us_ = static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::microseconds>(
                                              std::chrono::steady_clock::now() - fork_start)
                                              .count());
  }
  ::close(report[1]);
  if (pid < 0) {
    ::close(report[0]);
    retry_at_ = std::chrono::steady_clock::now() + options_.snapshot_retry_delay;
    return PosixError("fork for snapshot", temp_path, fork_errno);
  }
  {
    std::lock_guard lock(mu_);
    snapshot_tasks_.push_back(SnapshotTask{applied_index, temp_path, final_path, pid, report[0]});
    snapshot_running_ = true;
  }
  snapshot_cv_.notify_one();
  snapshot_requested_ = applied_index;
  bytes_at_snapshot_ = bytes_since_snapshot_;
  bytes_since_snapshot_ = 0;
  return Status::Ok();
}

namespace {

// write(2) all of `bytes`, ignoring errors: the child's last word to its parent.
void WriteAll(int fd, std::string_view bytes) {
  while (!bytes.empty()) {
    ssize_t n = ::write(fd, bytes.data(), bytes.size());
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;
    bytes.remove_prefix(static_cast<size_t>(n));
  }
}

}  // namespace

// The forked child: a copy-on-write image of the process as it was when the
// loop thread called SaveSnapshot, with only that one thread. Locks held at
// the fork stay held forever here (mu_ for one, which the parent held), so
// the child touches nothing but the state (through `produce`), the file
// system and malloc (safe: see SaveSnapshot), never this class's members
// under mu_ or the logger, and leaves with _exit: no destructors, no atexit
// handlers, no leak check.
void LocalLog::RunSnapshotChild(pid_t parent, int report_fd, const std::string& temp_path,
                                uint64_t index, const SnapshotProducer& produce) {
  // Die with the parent (strictly: with the thread that forked, the loop
  // thread, which lives as long as the process), so that a killed server
  // leaves no writer behind to race its successor's Open.
  ::prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (::getppid() != parent) ::_exit(3);
  // Ctrl-C in a terminal signals the whole process group: let the parent
  // stop cleanly (it waits for this snapshot) instead of failing it.
  // The same for SIGTERM (a service manager signals the whole group); the
  // parent's own handlers must not run here either.
  ::signal(SIGINT, SIG_IGN);
  ::signal(SIGTERM, SIG_IGN);
  // Close every descriptor but stdio and the report pipe: client sockets and
  // the listening socket must close when the parent closes them, not when the
  // snapshot ends.
  if (report_fd != 3) {
    ::dup2(report_fd, 3);
    report_fd = 3;
  }
  if (::close_range(4, ~0u, 0) != 0) {
    for (int fd = 4; fd < 65536; ++fd) ::close(fd);
  }
  Status st;
  {
    auto writer = SnapshotFileWriter::Create(fs_, temp_path, index);
    if (!writer.ok()) {
      st = writer.status();
    } else {
      uint64_t unreported = 0;
      st = produce([&](std::string_view bytes) {
        unreported += bytes.size();
        if (unreported >= kProgressBytes) {
          unreported = 0;
          WriteAll(report_fd, std::string_view(&kProgressByte, 1));
        }
        return (*writer)->Append(bytes);
      });
      if (st.ok()) WriteAll(report_fd, std::string_view(&kSyncingByte, 1));
      if (st.ok()) st = (*writer)->Finish();
      // The child fsyncs: its parent's snapshot thread then only renames.
      if (st.ok()) st = (*writer)->ReleaseFile()->Sync();
    }
  }
  if (st.ok()) ::_exit(0);
  (void)fs_->Unlink(temp_path);
  WriteAll(report_fd, st.ToString());
  ::_exit(1);
}

void LocalLog::Close() {
  if (closed_) return;
  closed_ = true;
  // The snapshotter first: a snapshot it finishes hands compaction to the
  // writer, which must still be running to do it.
  {
    std::lock_guard lock(mu_);
    snapshotter_stop_ = true;
  }
  snapshot_cv_.notify_all();
  if (snapshotter_.joinable()) snapshotter_.join();
  {
    std::lock_guard lock(mu_);
    writer_stop_ = true;
  }
  writer_cv_.notify_all();
  if (writer_.joinable()) writer_.join();
  segment_.reset();
  building_.reset();
}

void LocalLog::WaitForBackgroundWork() {
  std::unique_lock lock(mu_);
  idle_cv_.wait(lock, [&] {
    return !writer_busy_ && !snapshotter_busy_ && snapshot_tasks_.empty() && !WriterHasWork();
  });
}

// ===========================================================================
// Writer thread
// ===========================================================================

bool LocalLog::WriterHasWork() const {
  return (!queued_.empty() && !failure_) || compact_requested_ > compacted_;
}

void LocalLog::WriterMain() {
  std::unique_lock lock(mu_);
  for (;;) {
    writer_cv_.wait(lock, [&] { return writer_stop_ || WriterHasWork(); });
    if (!queued_.empty() && !failure_) {
      // Everything flushed while the previous group was being written goes
      // out as one group: one write, one fdatasync.
      std::vector<std::unique_ptr<Batch>> group;
      group.swap(queued_);
      writer_busy_ = true;
      lock.unlock();
      Status st = WriteGroup(group);
      lock.lock();
      writer_busy_ = false;
      if (st.ok()) {
        for (auto& batch : group) done_.push_back(std::move(batch));
      } else {
        failure_ = Failure{group.front()->first_index, st};
      }
      std::function<void()> wake = wake_;
      lock.unlock();
      if (wake) wake();
      lock.lock();
      idle_cv_.notify_all();
    } else if (compact_requested_ > compacted_) {
      const uint64_t upto = compact_requested_;
      writer_busy_ = true;
      lock.unlock();
      CompactSegments(upto);
      lock.lock();
      writer_busy_ = false;
      compacted_ = upto;
      idle_cv_.notify_all();
    } else if (writer_stop_) {
      return;
    }
  }
}

namespace {

// Why a failed fdatasync is fatal: on Linux, when writeback fails the kernel
// reports the error once, may mark the dirty pages clean (dropping the data)
// and a retried fsync then "succeeds" (the 2018 PostgreSQL "fsyncgate"). The
// page cache no longer tells us what is on disk, so neither retrying nor
// carrying on is safe. Crashing makes the next start recover from the disk
// itself, and nothing whose durability is in doubt has been acknowledged.
void SyncOrDie(WritableFile* file, base::LatencyHistogram* latency) {
  auto start = std::chrono::steady_clock::now();
  Status st = file->Sync();
  latency->Observe(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
  if (!st.ok()) {
    LOG(FATAL) << "log: " << st.ToString()
               << "; the page cache state is unknown after a failed fsync, so the only safe "
                  "course is to crash and recover from the disk";
  }
}

}  // namespace

// Writes one group at segment_size_. On failure the segment is truncated back
// so that the failed entries leave no trace, and the status is returned.
Status LocalLog::WriteGroup(std::vector<std::unique_ptr<Batch>>& group) {
  DISTRI_RETURN_IF_ERROR(FixTail());
  CHECK(group.front()->first_index == write_index_)
      << "group starts at " << group.front()->first_index << ", expected " << write_index_;
  if (segment_size_ >= options_.segment_bytes && segment_size_ > kSegmentHeaderSize) {
    DISTRI_RETURN_IF_ERROR(RollSegment(write_index_));
  }
  MarkWriteStart(group.front()->records.data());
  std::vector<std::string_view> pieces;
  pieces.reserve(group.size());
  uint64_t bytes = 0;
  uint64_t count = 0;
  for (const auto& batch : group) {
    pieces.push_back(batch->records);
    bytes += batch->records.size();
    count += batch->count;
  }
  Status st = segment_->WriteAt(segment_size_, pieces);
  if (!st.ok()) {
    Status truncated = segment_->Truncate(segment_size_);
    if (!truncated.ok()) {
      dirty_tail_ = true;  // FixTail retries before the next write
      LOG(ERROR) << "log: " << truncated.ToString();
    } else if (options_.fsync) {
      // Make the truncation durable before the failure is reported: else a
      // crash could bring back entries whose proposers were told they failed
      // and whose indexes are about to be reused.
      SyncOrDie(segment_.get(), &fsync_latency_);
    }
    return st;
  }
  if (options_.fsync) SyncOrDie(segment_.get(), &fsync_latency_);
  segment_size_ += bytes;
  write_index_ += count;
  return Status::Ok();
}

// Removes bytes a failed write left past segment_size_ when the truncate
// right after it failed too. Writing after them would leave stale records in
// the middle of the segment.
Status LocalLog::FixTail() {
  if (!dirty_tail_) return Status::Ok();
  DISTRI_RETURN_IF_ERROR(segment_->Truncate(segment_size_));
  if (options_.fsync) SyncOrDie(segment_.get(), &fsync_latency_);
  dirty_tail_ = false;
  return Status::Ok();
}

// Seals the current segment and starts log/<first_index>.seg. The new file's
// header, its directory entry and the manifest naming it are durable before
// any record goes into it (in both fsync modes: rolls are rare), so only a
// segment newer than the manifest's can have a torn header, and a missing or
// headerless segment that the manifest names is damage, not a crash. On
// failure the current segment stays current.
Status LocalLog::RollSegment(uint64_t first_index) {
  // With --fsync off the sealed segment's last records may not be on disk
  // yet; they must be before a newer segment is, or a machine crash would
  // leave a gap (or a torn record) in a sealed segment, which recovery
  // rightly refuses. One fdatasync per segment.
  if (!options_.fsync && segment_ != nullptr) {
    Status sealed = segment_->Sync();
    if (!sealed.ok()) return sealed;
  }
  const std::string path = SegmentPath(first_index);
  auto file = fs_->OpenWritable(path, /*truncate=*/true);
  if (!file.ok()) return file.status();
  Status st = (*file)->WriteAt(0, SegmentHeader());
  if (st.ok()) st = (*file)->Sync();
  if (st.ok()) st = WriteManifest(first_index);  // its directory fsync covers the new name
  if (!st.ok()) {
    file->reset();
    (void)fs_->Unlink(path);
    return st;
  }
  segment_ = std::move(file).value();
  segment_size_ = kSegmentHeaderSize;
  segments_.push_back(first_index);
  return Status::Ok();
}

// Deletes every segment whose entries are all <= upto, the index of a durable
// snapshot (invariant 3). If that includes the current segment, a new one is
// started first so the old one can go.
void LocalLog::CompactSegments(uint64_t upto) {
  if (write_index_ - 1 <= upto && segment_size_ > kSegmentHeaderSize) {
    Status st = FixTail();
    if (st.ok()) st = RollSegment(write_index_);
    if (!st.ok()) LOG(WARNING) << "log: cannot start a new segment to compact: " << st.ToString();
  }
  while (segments_.size() >= 2 && segments_[1] - 1 <= upto) {
    const std::string path = SegmentPath(segments_.front());
    Status st = fs_->Unlink(path);
    // A segment that could not be deleted is retried by the next Open.
    if (!st.ok()) LOG(WARNING) << "log: " << st.ToString();
    segments_.pop_front();
  }
}

// ===========================================================================
// Snapshotter thread
// ===========================================================================

void LocalLog::SnapshotterMain() {
  std::unique_lock lock(mu_);
  for (;;) {
    snapshot_cv_.wait(lock, [&] { return snapshotter_stop_ || !snapshot_tasks_.empty(); });
    if (snapshot_tasks_.empty()) return;  // stopping, and every task is done
    SnapshotTask task = std::move(snapshot_tasks_.front());
    snapshot_tasks_.pop_front();
    snapshotter_busy_ = true;
    lock.unlock();
    const bool ok = FinishSnapshot(task);
    lock.lock();
    snapshotter_busy_ = false;
    snapshot_running_ = false;
    if (!ok) ++snapshot_failures_;
    snapshot_failed_ = !ok;
    idle_cv_.notify_all();
  }
}

// Waits for the child that writes the snapshot, then renames its file into
// place and fsyncs the directory: after these the snapshot survives power
// loss, and only then may segments go (the writer does that). Returns false
// if the snapshot failed (logged here; the loop retries later).
bool LocalLog::FinishSnapshot(SnapshotTask& task) {
  // The child holds the pipe's write end until it exits: EOF means it ended.
  // Meanwhile it writes a progress byte per kProgressBytes of snapshot; one
  // that stays silent for snapshot_stall_timeout is stuck (say on a lock some
  // thread held at the fork) and is killed, so that snapshots, and Close(),
  // do not wait for it forever.
  std::string report;
  bool stuck = false;
  bool syncing = false;  // past kSyncingByte: no stall timeout
  char buf[512];
  const int timeout_ms = static_cast<int>(std::min<int64_t>(
      options_.snapshot_stall_timeout.count(), std::numeric_limits<int>::max()));
  for (;;) {
    pollfd p{task.report_fd, POLLIN, 0};
    int ready = ::poll(&p, 1, syncing ? -1 : timeout_ms);
    if (ready < 0 && errno == EINTR) continue;
    if (ready == 0 && !stuck) {
      stuck = true;
      ::kill(task.pid, SIGKILL);
      continue;
    }
    ssize_t n = ::read(task.report_fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    for (ssize_t i = 0; i < n; ++i) {
      if (buf[i] == kSyncingByte) {
        syncing = true;
      } else if (buf[i] != kProgressByte && report.size() < 4096) {
        report.push_back(buf[i]);
      }
    }
  }
  ::close(task.report_fd);
  int wstatus = 0;
  pid_t reaped;
  do {
    reaped = ::waitpid(task.pid, &wstatus, 0);
  } while (reaped < 0 && errno == EINTR);
  Status st;
  if (reaped < 0) {
    st = PosixError("waitpid for snapshot process", task.temp_path, errno);
  } else if (WIFSIGNALED(wstatus)) {
    st = Status::Internal(
        "snapshot process " + std::to_string(task.pid) + " killed by signal " +
        std::to_string(WTERMSIG(wstatus)) +
        (stuck ? " after making no progress for " +
                     std::to_string(options_.snapshot_stall_timeout.count()) + " ms"
               : ""));
  } else if (!WIFEXITED(wstatus) || WEXITSTATUS(wstatus) != 0) {
    st = Status::Internal("snapshot process " + std::to_string(task.pid) + " failed: " +
                          (report.empty() ? "exit code " + std::to_string(WEXITSTATUS(wstatus))
                                          : report));
  }
  if (st.ok()) st = fs_->Rename(task.temp_path, task.final_path);
  if (!st.ok()) {
    // A full disk fails every retry: one line per interval, with a count.
    uint64_t suppressed = 0;
    const int64_t now_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
        std::chrono::steady_clock::now().time_since_epoch()).count();
    if (snapshot_failure_log_.Allow(now_ms, &suppressed)) {
      LOG(ERROR) << "log: snapshot at entry " << task.index << " abandoned: " << st.ToString()
                 << base::SuppressedNote(suppressed);
    }
    (void)fs_->Unlink(task.temp_path);
    return false;
  }
  snapshot_failure_log_.Reset();
  st = fs_->SyncDir(snap_dir_);
  if (!st.ok()) {
    // The file is complete; the next Open will use it. Just do not compact.
    LOG(ERROR) << "log: snapshot at entry " << task.index << " may not be durable, not compacting: "
               << st.ToString();
    return false;
  }
  auto names = fs_->ListDir(snap_dir_);
  if (names.ok()) {
    for (const std::string& name : *names) {
      uint64_t index;
      if (ParseIndexedFileName(name, kSnapshotSuffix, &index) && index < task.index) {
        (void)fs_->Unlink(snap_dir_ + "/" + name);
      }
    }
  }
  LOG(INFO) << "log: snapshot at entry " << task.index << " is durable";
  {
    std::lock_guard lock(mu_);
    compact_requested_ = std::max(compact_requested_, task.index);
  }
  writer_cv_.notify_one();
  return true;
}

}  // namespace distri::log
