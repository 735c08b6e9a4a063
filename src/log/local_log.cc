// LocalLog: recovery, group commit, write failures and snapshot compaction.
// See local_log.h for the threads and invariants, docs/log_format.md for the
// bytes on disk and the recovery rules.

#include "log/local_log.h"

#include <chrono>

#include <algorithm>
#include <utility>

#include "base/logging.h"
#include "log/segment.h"
#include "log/snapshot_file.h"

namespace distri::log {

namespace {

constexpr std::string_view kSegmentSuffix = ".seg";
constexpr std::string_view kSnapshotSuffix = ".snap";
constexpr std::string_view kTempSuffix = ".tmp";

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
    } else {
      LOG(WARNING) << "log: ignoring unexpected file " << log_dir_ << "/" << name;
    }
  }
  std::sort(firsts.begin(), firsts.end());

  // A segment followed by one starting at or before snapshot_index + 1 holds
  // only entries the snapshot covers: a crash interrupted its deletion.
  const uint64_t after_snapshot = snapshot_index + 1;
  while (firsts.size() >= 2 && firsts[1] <= after_snapshot) {
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
    expected = scan->next_index;
    last_scan = std::move(scan).value();
    last_file_size = (*file)->data().size();
  }  // the mapping of the last segment is released here, before any truncate

  const uint64_t last_entry = expected - 1;
  if (!firsts.empty() && last_entry < snapshot_index) {
    // Only possible if entries the snapshot covers never reached the disk
    // (fsync=false and an OS crash). The snapshot has them; start after it.
    LOG(WARNING) << "log: segments end at entry " << last_entry << " but the snapshot covers "
                 << snapshot_index << "; starting a new segment after the snapshot";
    for (uint64_t first : firsts) (void)fs_->Unlink(SegmentPath(first));
    firsts.clear();
  }

  if (firsts.empty()) {
    const uint64_t first = std::max(last_entry, snapshot_index) + 1;
    auto file = fs_->OpenWritable(SegmentPath(first), /*truncate=*/true);
    if (!file.ok()) return file.status();
    segment_ = std::move(file).value();
    DISTRI_RETURN_IF_ERROR(segment_->WriteAt(0, SegmentHeader()));
    if (options_.fsync) {
      DISTRI_RETURN_IF_ERROR(segment_->Sync());
      DISTRI_RETURN_IF_ERROR(fs_->SyncDir(log_dir_));
    }
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
    if (changed && options_.fsync) DISTRI_RETURN_IF_ERROR(segment_->Sync());
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

Status LocalLog::SaveSnapshot(uint64_t applied_index, const SnapshotProducer& produce) {
  if (closed_) return Status::Internal("log is closed");
  if (applied_index > delivered_index_) {
    return Status::InvalidArgument("snapshot at entry " + std::to_string(applied_index) +
                                   " is past the last delivered entry " +
                                   std::to_string(delivered_index_));
  }
  if (applied_index < snapshot_requested_) {
    return Status::InvalidArgument("snapshot at entry " + std::to_string(applied_index) +
                                   " is older than the newest one, at " +
                                   std::to_string(snapshot_requested_));
  }
  if (applied_index == snapshot_requested_) return Status::Ok();

  const std::string final_path = SnapshotPath(applied_index);
  const std::string temp_path = final_path + std::string(kTempSuffix);
  auto writer = SnapshotFileWriter::Create(fs_, temp_path, applied_index);
  if (!writer.ok()) return writer.status();
  Status st = produce([&](std::string_view bytes) { return (*writer)->Append(bytes); });
  if (st.ok()) st = (*writer)->Finish();
  if (!st.ok()) {
    writer->reset();
    (void)fs_->Unlink(temp_path);
    return st;
  }
  {
    std::lock_guard lock(mu_);
    snapshot_tasks_.push_back(
        SnapshotTask{applied_index, temp_path, final_path, (*writer)->ReleaseFile()});
  }
  snapshot_cv_.notify_one();
  snapshot_requested_ = applied_index;
  bytes_since_snapshot_ = 0;
  return Status::Ok();
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
// header and directory entry are durable before any record goes into it, so
// only the newest segment can ever have a torn header. On failure the current
// segment stays current.
Status LocalLog::RollSegment(uint64_t first_index) {
  const std::string path = SegmentPath(first_index);
  auto file = fs_->OpenWritable(path, /*truncate=*/true);
  if (!file.ok()) return file.status();
  Status st = (*file)->WriteAt(0, SegmentHeader());
  if (st.ok() && options_.fsync) st = (*file)->Sync();
  if (st.ok() && options_.fsync) st = fs_->SyncDir(log_dir_);
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
    FinishSnapshot(task);
    lock.lock();
    snapshotter_busy_ = false;
    idle_cv_.notify_all();
  }
}

// fsync, rename, directory fsync: after these the snapshot survives power
// loss, and only then may segments go (the writer does that).
void LocalLog::FinishSnapshot(SnapshotTask& task) {
  Status st = task.file->Sync();
  task.file.reset();
  if (st.ok()) st = fs_->Rename(task.temp_path, task.final_path);
  if (!st.ok()) {
    LOG(ERROR) << "log: snapshot at entry " << task.index << " abandoned: " << st.ToString();
    (void)fs_->Unlink(task.temp_path);
    return;
  }
  st = fs_->SyncDir(snap_dir_);
  if (!st.ok()) {
    // The file is complete; the next Open will use it. Just do not compact.
    LOG(ERROR) << "log: snapshot at entry " << task.index << " may not be durable, not compacting: "
               << st.ToString();
    return;
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
}

}  // namespace distri::log
