// Tests for LocalLog in normal operation: append and replay, group commit,
// segment roll, snapshots (taken by a forked child) and compaction, write
// failures (ENOSPC through the fault-injecting file system), fsync=false.
// Recovery from damaged files is in local_log_recovery_test.cc.
//
// No event loop: each test proposes and flushes, then polls until the log's
// wakeup (a condition variable here) says entries are durable.

#include "log/local_log.h"

#include <gtest/gtest.h>

#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <random>
#include <string>

#include "log/local_log_test_util.h"
#include "log/segment.h"

namespace distri::log {
namespace {

using testing::EntryFor;
using testing::FaultInjectionFileSystem;
using testing::ListFiles;
using testing::LogHarness;
using testing::TempDir;

class LocalLogTest : public ::testing::Test {
 protected:
  // Appends entries first..last with EntryFor(), flushing every `per_flush`
  // entries and waiting until those are committed, so each flush is exactly
  // one group (one write, one fdatasync).
  void AppendRange(LogHarness& h, uint64_t first, uint64_t last, int per_flush = 1) {
    for (uint64_t i = first; i <= last; ++i) {
      auto index = h.log->Propose(EntryFor(i));
      ASSERT_TRUE(index.ok());
      ASSERT_EQ(*index, i);
      if ((i - first + 1) % per_flush == 0 || i == last) {
        h.log->Flush();
        ASSERT_TRUE(h.WaitFor(i));
      }
    }
    ASSERT_TRUE(h.failures.empty());
    ASSERT_EQ(h.last_committed(), last);
  }

  void ExpectReplayed(const LogHarness& h, uint64_t first, uint64_t last) {
    ASSERT_EQ(h.replayed.size(), last + 1 - first);
    for (uint64_t i = first; i <= last; ++i) {
      EXPECT_EQ(h.replayed[i - first].first, i);
      EXPECT_EQ(h.replayed[i - first].second, EntryFor(i)) << "entry " << i;
    }
  }

  TempDir dir_;
};

TEST_F(LocalLogTest, EmptyLogOpensAtIndexOne) {
  LogHarness h(dir_.path());
  ASSERT_TRUE(h.Open().ok());
  EXPECT_EQ(h.log->last_index(), 0u);
  EXPECT_EQ(h.log->bytes_since_snapshot(), 0u);
  EXPECT_TRUE(h.replayed.empty());
  EXPECT_EQ(h.snapshot_index, 0u);
  EXPECT_EQ(ListFiles(h.log_dir(), ".seg").size(), 1u);
  // Reopening an empty log is fine too.
  ASSERT_TRUE(h.Open().ok());
  EXPECT_EQ(h.log->last_index(), 0u);
}

TEST_F(LocalLogTest, AppendAndReopenReplaysEverything) {
  LogHarness h(dir_.path());
  ASSERT_TRUE(h.Open().ok());
  AppendRange(h, 1, 100, /*per_flush=*/7);
  ASSERT_EQ(h.committed.size(), 100u);
  for (uint64_t i = 1; i <= 100; ++i) EXPECT_EQ(h.committed[i - 1].second, EntryFor(i));
  const uint64_t bytes = h.log->bytes_since_snapshot();
  EXPECT_GT(bytes, 100 * kRecordHeaderSize);

  ASSERT_TRUE(h.Open().ok());
  ExpectReplayed(h, 1, 100);
  EXPECT_EQ(h.log->last_index(), 100u);
  EXPECT_EQ(h.log->bytes_since_snapshot(), bytes);
  EXPECT_EQ(h.Append("next"), 101u);
  ASSERT_TRUE(h.WaitFor(101));

  ASSERT_TRUE(h.Open().ok());
  ASSERT_EQ(h.replayed.size(), 101u);
  EXPECT_EQ(h.replayed.back().second, "next");
}

TEST_F(LocalLogTest, ManyBatchesWithoutWaiting) {
  LogHarness h(dir_.path());
  ASSERT_TRUE(h.Open().ok());
  // Flush after every proposal and never wait: the writer groups whatever
  // piled up while it was busy.
  for (uint64_t i = 1; i <= 3000; ++i) {
    ASSERT_EQ(h.log->Propose(EntryFor(i)).value(), i);
    h.log->Flush();
    if (i % 100 == 0) h.Poll();
  }
  ASSERT_TRUE(h.WaitFor(3000));
  ASSERT_EQ(h.committed.size(), 3000u);
  ASSERT_TRUE(h.Open().ok());
  ExpectReplayed(h, 1, 3000);
}

TEST_F(LocalLogTest, GroupCommitSharesFsyncs) {
  FaultInjectionFileSystem fs;
  fs.SetSyncDelay(std::chrono::milliseconds(20));
  LogHarness h(dir_.path());
  h.options.file_system = &fs;
  ASSERT_TRUE(h.Open().ok());
  const int before = fs.sync_count();
  for (uint64_t i = 1; i <= 50; ++i) {
    h.Append(EntryFor(i));
    h.Poll();
  }
  ASSERT_TRUE(h.WaitFor(50));
  // 50 flushes, but while one fdatasync runs the next flushes pile up.
  const int syncs = fs.sync_count() - before;
  EXPECT_GE(syncs, 1);
  EXPECT_LT(syncs, 10);
}

TEST_F(LocalLogTest, FlushWithNothingProposedIsHarmless) {
  LogHarness h(dir_.path());
  ASSERT_TRUE(h.Open().ok());
  h.log->Flush();
  h.Poll();
  EXPECT_TRUE(h.committed.empty());
  EXPECT_EQ(h.Append(""), 1u);  // an empty entry is a valid entry
  ASSERT_TRUE(h.WaitFor(1));
  ASSERT_TRUE(h.Open().ok());
  ASSERT_EQ(h.replayed.size(), 1u);
  EXPECT_EQ(h.replayed[0].second, "");
}

TEST_F(LocalLogTest, SegmentRoll) {
  LogHarness h(dir_.path());
  h.options.segment_bytes = 1024;
  ASSERT_TRUE(h.Open().ok());
  AppendRange(h, 1, 300, /*per_flush=*/5);
  auto segments = ListFiles(h.log_dir(), ".seg");
  EXPECT_GT(segments.size(), 5u);
  EXPECT_EQ(std::filesystem::path(segments[0]).filename(), "00000000000000000001.seg");
  // Each sealed segment passed segment_bytes by less than one group.
  for (size_t i = 0; i + 1 < segments.size(); ++i) {
    EXPECT_GE(std::filesystem::file_size(segments[i]), 1024u) << segments[i];
    EXPECT_LT(std::filesystem::file_size(segments[i]), 1024u + 5 * 100) << segments[i];
  }
  ASSERT_TRUE(h.Open().ok());
  ExpectReplayed(h, 1, 300);
  AppendRange(h, 301, 320);
  ASSERT_TRUE(h.Open().ok());
  ExpectReplayed(h, 1, 320);
}

TEST_F(LocalLogTest, ProposeRejectsOversizeEntry) {
  LogHarness h(dir_.path());
  ASSERT_TRUE(h.Open().ok());
  std::string huge(kMaxEntryBytes + 1, 'x');
  auto index = h.log->Propose(huge);
  ASSERT_FALSE(index.ok());
  EXPECT_EQ(index.status().code(), Code::kInvalidArgument);
  EXPECT_EQ(h.Append("fine"), 1u);
}

// --- Snapshots -------------------------------------------------------------

// A producer that writes "state@<index>" in several pieces.
SnapshotProducer StateProducer(uint64_t index) {
  return [index](const SnapshotWriteFn& write) {
    DISTRI_RETURN_IF_ERROR(write("state@"));
    DISTRI_RETURN_IF_ERROR(write(""));
    return write(std::to_string(index));
  };
}

TEST_F(LocalLogTest, SnapshotThenTailReplay) {
  LogHarness h(dir_.path());
  ASSERT_TRUE(h.Open().ok());
  AppendRange(h, 1, 50);
  ASSERT_TRUE(h.log->SaveSnapshot(30, StateProducer(30)).ok());
  EXPECT_EQ(h.log->bytes_since_snapshot(), 0u);
  AppendRange(h, 51, 70);
  EXPECT_GT(h.log->bytes_since_snapshot(), 0u);

  ASSERT_TRUE(h.Open().ok());
  EXPECT_EQ(h.snapshot_index, 30u);
  EXPECT_EQ(h.snapshot, "state@30");
  ExpectReplayed(h, 31, 70);
  EXPECT_EQ(h.log->last_index(), 70u);
}

TEST_F(LocalLogTest, LargeSnapshotRoundTrips) {
  LogHarness h(dir_.path());
  ASSERT_TRUE(h.Open().ok());
  AppendRange(h, 1, 3);
  std::string big(3 << 20, '\0');
  for (size_t i = 0; i < big.size(); ++i) big[i] = static_cast<char>(i * 131 + (i >> 12));
  ASSERT_TRUE(h.log
                  ->SaveSnapshot(3,
                                 [&](const SnapshotWriteFn& write) {
                                   for (size_t off = 0; off < big.size(); off += 700000) {
                                     DISTRI_RETURN_IF_ERROR(write(big.substr(off, 700000)));
                                   }
                                   return Status::Ok();
                                 })
                  .ok());
  ASSERT_TRUE(h.Open().ok());
  EXPECT_EQ(h.snapshot_index, 3u);
  EXPECT_TRUE(h.snapshot == big);
  EXPECT_TRUE(h.replayed.empty());
}

TEST_F(LocalLogTest, OldSegmentsDeletedAfterSnapshot) {
  LogHarness h(dir_.path());
  h.options.segment_bytes = 512;
  ASSERT_TRUE(h.Open().ok());
  AppendRange(h, 1, 200, /*per_flush=*/4);
  auto before = ListFiles(h.log_dir(), ".seg");
  ASSERT_GT(before.size(), 4u);

  // A snapshot in the middle deletes only the segments it fully covers.
  ASSERT_TRUE(h.log->SaveSnapshot(100, StateProducer(100)).ok());
  h.log->WaitForBackgroundWork();
  auto middle = ListFiles(h.log_dir(), ".seg");
  EXPECT_LT(middle.size(), before.size());
  EXPECT_GT(middle.size(), 1u);
  uint64_t first_kept = 0;
  ASSERT_TRUE(ParseIndexedFileName(std::filesystem::path(middle[0]).filename().string(), ".seg",
                                   &first_kept));
  EXPECT_LE(first_kept, 101u);  // the segment holding entry 101 stays
  EXPECT_EQ(ListFiles(h.snap_dir(), ".snap").size(), 1u);

  // A snapshot of everything rolls the current segment and deletes the rest;
  // the older snapshot goes too.
  ASSERT_TRUE(h.log->SaveSnapshot(200, StateProducer(200)).ok());
  h.log->WaitForBackgroundWork();
  auto after = ListFiles(h.log_dir(), ".seg");
  ASSERT_EQ(after.size(), 1u);
  EXPECT_EQ(std::filesystem::path(after[0]).filename(), "00000000000000000201.seg");
  auto snaps = ListFiles(h.snap_dir(), ".snap");
  ASSERT_EQ(snaps.size(), 1u);
  EXPECT_EQ(std::filesystem::path(snaps[0]).filename(), "00000000000000000200.snap");

  AppendRange(h, 201, 210);
  ASSERT_TRUE(h.Open().ok());
  EXPECT_EQ(h.snapshot_index, 200u);
  EXPECT_EQ(h.snapshot, "state@200");
  ExpectReplayed(h, 201, 210);
}

TEST_F(LocalLogTest, SnapshotOfEverythingThenReopen) {
  LogHarness h(dir_.path());
  ASSERT_TRUE(h.Open().ok());
  AppendRange(h, 1, 10);
  ASSERT_TRUE(h.log->SaveSnapshot(10, StateProducer(10)).ok());
  h.log.reset();  // Close() finishes the pending snapshot and compaction
  ASSERT_TRUE(h.Open().ok());
  EXPECT_EQ(h.snapshot_index, 10u);
  EXPECT_TRUE(h.replayed.empty());
  EXPECT_EQ(h.log->last_index(), 10u);
  EXPECT_EQ(h.Append("eleven"), 11u);
  ASSERT_TRUE(h.WaitFor(11));
}

TEST_F(LocalLogTest, SnapshotArgumentChecks) {
  LogHarness h(dir_.path());
  ASSERT_TRUE(h.Open().ok());
  AppendRange(h, 1, 5);
  h.log->Propose("not yet durable").value();
  // Past the last delivered entry.
  EXPECT_EQ(h.log->SaveSnapshot(6, StateProducer(6)).code(), Code::kInvalidArgument);
  ASSERT_TRUE(h.log->SaveSnapshot(4, StateProducer(4)).ok());
  EXPECT_TRUE(h.log->SaveSnapshot(4, StateProducer(4)).ok());  // same index: nothing to do
  EXPECT_EQ(h.log->SaveSnapshot(3, StateProducer(3)).code(), Code::kInvalidArgument);
  h.log->WaitForBackgroundWork();
  EXPECT_EQ(ListFiles(h.snap_dir(), ".snap").size(), 1u);
  EXPECT_EQ(h.log->snapshot_failures(), 0u);
}

// Blocks the snapshot child until the test lets it go (or 20 s pass). A file
// appearing, not a pipe: the child closes every inherited descriptor.
class ChildGate {
 public:
  explicit ChildGate(std::string path) : path_(std::move(path)) {}
  // In the child: true once released, false after the timeout.
  bool Wait() const {
    for (int i = 0; i < 20000; ++i) {
      if (::access(path_.c_str(), F_OK) == 0) return true;
      ::usleep(1000);
    }
    return false;
  }
  void Release() { testing::WriteFileBytes(path_, "go"); }

 private:
  std::string path_;
};

// SaveSnapshot returns while the child is still writing; the snapshot holds
// the state as it was at the call even though the caller changes it at once;
// a second snapshot is refused until the first is done.
TEST_F(LocalLogTest, SnapshotRunsInChildOnStateOfTheMoment) {
  LogHarness h(dir_.path());
  ASSERT_TRUE(h.Open().ok());
  AppendRange(h, 1, 5);
  ChildGate gate(dir_.path() + "/gate");
  std::string state = "as of entry 4";
  ASSERT_TRUE(h.log
                  ->SaveSnapshot(4,
                                 [&](const SnapshotWriteFn& write) {
                                   if (!gate.Wait()) return Status::Internal("never released");
                                   return write(state);
                                 })
                  .ok());
  state = "changed after the call";  // the child's copy is not affected
  EXPECT_TRUE(h.log->SnapshotBusy());
  EXPECT_EQ(h.log->SaveSnapshot(5, StateProducer(5)).code(), Code::kInvalidArgument);
  gate.Release();
  h.log->WaitForBackgroundWork();
  EXPECT_FALSE(h.log->SnapshotBusy());
  EXPECT_EQ(h.log->snapshot_failures(), 0u);
  ASSERT_TRUE(h.Open().ok());
  EXPECT_EQ(h.snapshot_index, 4u);
  EXPECT_EQ(h.snapshot, "as of entry 4");
  ExpectReplayed(h, 5, 5);
}

// The child closes what it inherited (client and listening sockets must close
// when the server closes them, not when a snapshot ends).
TEST_F(LocalLogTest, SnapshotChildClosesInheritedDescriptors) {
  LogHarness h(dir_.path());
  ASSERT_TRUE(h.Open().ok());
  AppendRange(h, 1, 2);
  int pipe_fds[2];
  ASSERT_EQ(::pipe(pipe_fds), 0);  // stands for a client socket
  // Away from fd 3, which the child reuses for its report pipe.
  const int fds[2] = {::fcntl(pipe_fds[0], F_DUPFD, 100), ::fcntl(pipe_fds[1], F_DUPFD, 100)};
  ::close(pipe_fds[0]);
  ::close(pipe_fds[1]);
  ASSERT_TRUE(h.log->SaveSnapshot(2, [&](const SnapshotWriteFn& write) {
    bool open = ::fcntl(fds[0], F_GETFD) != -1 || ::fcntl(fds[1], F_GETFD) != -1;
    return write(open ? "inherited" : "closed");
  }).ok());
  h.log->WaitForBackgroundWork();
  ::close(fds[0]);
  ::close(fds[1]);
  ASSERT_TRUE(h.Open().ok());
  EXPECT_EQ(h.snapshot, "closed");
}

// A producer's error, or a child that dies, is reported (ERROR line, counter),
// leaves no file behind, holds off the next snapshot for the retry delay, and
// gives back the log bytes so that the caller retries.
TEST_F(LocalLogTest, FailedSnapshotChildIsReportedAndRetried) {
  LogHarness h(dir_.path());
  h.options.snapshot_retry_delay = std::chrono::milliseconds(0);
  ASSERT_TRUE(h.Open().ok());
  AppendRange(h, 1, 5);
  const uint64_t bytes = h.log->bytes_since_snapshot();
  ASSERT_TRUE(h.log->SaveSnapshot(5, [](const SnapshotWriteFn& write) {
    DISTRI_RETURN_IF_ERROR(write("partial"));
    return Status::Internal("producer failed");
  }).ok());
  EXPECT_EQ(h.log->bytes_since_snapshot(), 0u);
  h.log->WaitForBackgroundWork();
  EXPECT_EQ(h.log->snapshot_failures(), 1u);
  EXPECT_TRUE(ListFiles(h.snap_dir(), ".tmp").empty());
  EXPECT_TRUE(ListFiles(h.snap_dir(), ".snap").empty());
  EXPECT_FALSE(h.log->SnapshotBusy());  // no delay in this test
  EXPECT_EQ(h.log->bytes_since_snapshot(), bytes);

  ASSERT_TRUE(h.log->SaveSnapshot(5, [](const SnapshotWriteFn&) -> Status {
    ::raise(SIGKILL);
    return Status::Ok();
  }).ok());
  h.log->WaitForBackgroundWork();
  EXPECT_EQ(h.log->snapshot_failures(), 2u);
  EXPECT_TRUE(ListFiles(h.snap_dir(), ".snap").empty());

  ASSERT_TRUE(h.log->SaveSnapshot(5, StateProducer(5)).ok());  // the same index again
  h.log->WaitForBackgroundWork();
  EXPECT_EQ(h.log->snapshot_failures(), 2u);
  ASSERT_TRUE(h.Open().ok());
  EXPECT_EQ(h.snapshot, "state@5");
}

// A child that stops making progress (stuck on a lock, say) is killed rather
// than waited for forever; the failure says why.
TEST_F(LocalLogTest, StuckSnapshotChildIsKilled) {
  LogHarness h(dir_.path());
  h.options.snapshot_retry_delay = std::chrono::milliseconds(0);
  h.options.snapshot_stall_timeout = std::chrono::milliseconds(300);
  ASSERT_TRUE(h.Open().ok());
  AppendRange(h, 1, 5);
  ChildGate never_released(dir_.path() + "/gate");
  const auto start = std::chrono::steady_clock::now();
  ASSERT_TRUE(h.log->SaveSnapshot(5, [&](const SnapshotWriteFn& write) {
    if (!never_released.Wait()) return Status::Internal("waited 20 s");
    return write("unreachable");
  }).ok());
  h.log->WaitForBackgroundWork();
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(15));
  EXPECT_EQ(h.log->snapshot_failures(), 1u);
  EXPECT_TRUE(ListFiles(h.snap_dir(), ".snap").empty());
  // A slow but steady child is not killed: progress every MiB resets the clock.
  ASSERT_TRUE(h.log->SaveSnapshot(5, [](const SnapshotWriteFn& write) {
    const std::string mib(1 << 20, 'x');
    for (int i = 0; i < 6; ++i) {
      ::usleep(100 * 1000);
      DISTRI_RETURN_IF_ERROR(write(mib));
    }
    return Status::Ok();
  }).ok());
  h.log->WaitForBackgroundWork();
  EXPECT_EQ(h.log->snapshot_failures(), 1u);
  ASSERT_TRUE(h.Open().ok());
  EXPECT_EQ(h.snapshot.size(), 6u << 20);
}

// The final fsync of a big snapshot reports no progress and may take long on
// a slow disk: the stall clock stops when the child starts it.
TEST_F(LocalLogTest, SlowFinalSyncOfSnapshotIsNotAStall) {
  FaultInjectionFileSystem fs;
  LogHarness h(dir_.path());
  h.options.file_system = &fs;
  h.options.snapshot_retry_delay = std::chrono::milliseconds(0);
  h.options.snapshot_stall_timeout = std::chrono::milliseconds(300);
  ASSERT_TRUE(h.Open().ok());
  AppendRange(h, 1, 5);
  fs.SetSyncDelay(std::chrono::milliseconds(900));  // the child inherits it
  ASSERT_TRUE(h.log->SaveSnapshot(5, StateProducer(5)).ok());
  h.log->WaitForBackgroundWork();
  fs.SetSyncDelay(std::chrono::milliseconds(0));
  EXPECT_EQ(h.log->snapshot_failures(), 0u);
  ASSERT_TRUE(h.Open().ok());
  EXPECT_EQ(h.snapshot_index, 5u);
}

TEST_F(LocalLogTest, FailedSnapshotHoldsOffTheNextForTheRetryDelay) {
  LogHarness h(dir_.path());
  h.options.snapshot_retry_delay = std::chrono::minutes(1);
  ASSERT_TRUE(h.Open().ok());
  AppendRange(h, 1, 5);
  ASSERT_TRUE(h.log->SaveSnapshot(5, [](const SnapshotWriteFn&) {
    return Status::Internal("producer failed");
  }).ok());
  h.log->WaitForBackgroundWork();
  EXPECT_TRUE(h.log->SnapshotBusy());
  EXPECT_EQ(h.log->SaveSnapshot(5, StateProducer(5)).code(), Code::kInvalidArgument);
}

// Writes, polls, snapshots and compaction interleaved with small segments and
// random flush sizes; the reopened log must hold exactly the last snapshot
// plus every later entry.
TEST_F(LocalLogTest, SnapshotsInterleavedWithWrites) {
  LogHarness h(dir_.path());
  h.options.segment_bytes = 300;
  ASSERT_TRUE(h.Open().ok());
  std::mt19937 rng(7);
  uint64_t snapshot_at = 0;
  int snapshots = 0;
  for (uint64_t i = 1; i <= 2000; ++i) {
    ASSERT_EQ(h.log->Propose(EntryFor(i)).value(), i);
    if (rng() % 4 == 0) h.log->Flush();
    if (rng() % 8 == 0) h.Poll();
    if (i % 50 == 0) {  // keep the proposer from running far ahead of the disk
      h.log->Flush();
      ASSERT_TRUE(h.WaitFor(i));
    }
    if (h.last_committed() >= snapshot_at + 150 && !h.log->SnapshotBusy()) {
      snapshot_at = h.last_committed();
      ++snapshots;
      ASSERT_TRUE(h.log->SaveSnapshot(snapshot_at, StateProducer(snapshot_at)).ok());
    }
  }
  h.log->Flush();
  ASSERT_TRUE(h.WaitFor(2000));
  ASSERT_TRUE(h.failures.empty());
  h.log->WaitForBackgroundWork();
  EXPECT_GE(snapshots, 10);
  // Compaction kept the log short: only segments after the last snapshot.
  EXPECT_LT(ListFiles(h.log_dir(), ".seg").size(), 2000u * 40 / 300);
  EXPECT_EQ(ListFiles(h.snap_dir(), ".snap").size(), 1u);

  ASSERT_TRUE(h.Open().ok());
  EXPECT_EQ(h.snapshot_index, snapshot_at);
  EXPECT_EQ(h.snapshot, "state@" + std::to_string(snapshot_at));
  ExpectReplayed(h, snapshot_at + 1, 2000);
}

// --- Failures ----------------------------------------------------------------

TEST_F(LocalLogTest, OutOfSpaceFailsBatchThenRecovers) {
  FaultInjectionFileSystem fs;
  LogHarness h(dir_.path());
  h.options.file_system = &fs;
  ASSERT_TRUE(h.Open().ok());
  AppendRange(h, 1, 5);
  const std::string segment = ListFiles(h.log_dir(), ".seg").back();
  const auto good_size = std::filesystem::file_size(segment);

  // Room for 26 bytes: not even entry 6 fits. The disk takes the part that
  // fits, as a real full disk does.
  fs.SetSpaceLeft(kRecordHeaderSize + 10);
  for (uint64_t i = 6; i <= 8; ++i) {
    ASSERT_EQ(h.log->Propose("big entry " + std::to_string(i)).value(), i);
  }
  h.log->Flush();
  ASSERT_TRUE(h.WaitFor(8));
  ASSERT_EQ(h.failures.size(), 1u);
  EXPECT_EQ(h.failures[0].first, 6u);
  EXPECT_EQ(h.failures[0].second.code(), Code::kIOError);
  EXPECT_NE(h.failures[0].second.message().find("No space left on device"), std::string::npos)
      << h.failures[0].second.message();
  EXPECT_EQ(h.last_committed(), 5u);
  EXPECT_EQ(h.log->last_index(), 5u);
  // The partial write was truncated away.
  EXPECT_EQ(std::filesystem::file_size(segment), good_size);

  // Still no space: the next proposal reuses index 6 and fails again.
  EXPECT_EQ(h.Append("retry"), 6u);
  h.failures.clear();
  ASSERT_TRUE(h.WaitFor(6));
  ASSERT_EQ(h.failures.size(), 1u);
  EXPECT_EQ(h.failures[0].first, 6u);

  // Space comes back: writing continues from index 6.
  fs.SetSpaceLeft(-1);
  h.failures.clear();
  for (uint64_t i = 6; i <= 9; ++i) EXPECT_EQ(h.Append(EntryFor(i)), i);
  ASSERT_TRUE(h.WaitFor(9));
  EXPECT_TRUE(h.failures.empty());

  ASSERT_TRUE(h.Open().ok());
  ExpectReplayed(h, 1, 9);
}

TEST_F(LocalLogTest, OutOfSpaceDropsEverythingBufferedAfterIt) {
  FaultInjectionFileSystem fs;
  LogHarness h(dir_.path());
  h.options.file_system = &fs;
  ASSERT_TRUE(h.Open().ok());
  AppendRange(h, 1, 3);

  fs.SetSpaceLeft(0);
  EXPECT_EQ(h.Append("a"), 4u);
  EXPECT_EQ(h.Append("b"), 5u);
  h.log->WaitForBackgroundWork();  // the writer has failed (or is failing) the group
  // Proposed and flushed after the failure, before Poll reported it.
  EXPECT_EQ(h.Append("c"), 6u);
  EXPECT_EQ(h.log->Propose("d").value(), 7u);  // not even flushed
  fs.SetSpaceLeft(-1);
  ASSERT_TRUE(h.WaitFor(7));
  ASSERT_EQ(h.failures.size(), 1u);
  EXPECT_EQ(h.failures[0].first, 4u);
  EXPECT_EQ(h.last_committed(), 3u);
  EXPECT_EQ(h.log->last_index(), 3u);

  // Nothing of 4..7 was written; index 4 is reused.
  h.failures.clear();
  EXPECT_EQ(h.Append(EntryFor(4)), 4u);
  ASSERT_TRUE(h.WaitFor(4));
  EXPECT_TRUE(h.failures.empty());
  h.log->WaitForBackgroundWork();
  h.Poll();
  EXPECT_EQ(h.last_committed(), 4u);
  ASSERT_TRUE(h.Open().ok());
  ExpectReplayed(h, 1, 4);
}

TEST_F(LocalLogTest, FailedRollIsAWriteFailure) {
  FaultInjectionFileSystem fs;
  LogHarness h(dir_.path());
  h.options.file_system = &fs;
  h.options.segment_bytes = 16;  // every group after the first in a segment rolls
  ASSERT_TRUE(h.Open().ok());
  for (uint64_t i = 1; i <= 20; ++i) {  // one group each, so one segment each
    EXPECT_EQ(h.Append(EntryFor(i)), i);
    ASSERT_TRUE(h.WaitFor(i));
  }
  EXPECT_EQ(ListFiles(h.log_dir(), ".seg").size(), 20u);
  fs.SetSpaceLeft(4);  // not even a segment header fits
  EXPECT_EQ(h.Append("x"), 21u);
  ASSERT_TRUE(h.WaitFor(21));
  ASSERT_EQ(h.failures.size(), 1u);
  EXPECT_EQ(h.failures[0].first, 21u);
  fs.SetSpaceLeft(-1);
  h.failures.clear();
  AppendRange(h, 21, 30);
  ASSERT_TRUE(h.Open().ok());
  ExpectReplayed(h, 1, 30);
}

// A roll whose manifest update fails is a write failure like any other: the
// new segment is removed, the manifest still names the old one, and both the
// running log and a reopened one carry on from there.
TEST_F(LocalLogTest, RollWhoseManifestCannotBeWrittenIsAWriteFailure) {
  FaultInjectionFileSystem fs;
  LogHarness h(dir_.path());
  h.options.file_system = &fs;
  h.options.segment_bytes = 16;  // every group after the first in a segment rolls
  ASSERT_TRUE(h.Open().ok());
  AppendRange(h, 1, 5);
  const auto segments = ListFiles(h.log_dir(), ".seg");
  fs.SetRenameFails(true);
  EXPECT_EQ(h.Append("x"), 6u);
  ASSERT_TRUE(h.WaitFor(6));
  ASSERT_EQ(h.failures.size(), 1u);
  EXPECT_EQ(h.failures[0].first, 6u);
  EXPECT_NE(h.failures[0].second.message().find("rename"), std::string::npos);
  EXPECT_EQ(ListFiles(h.log_dir(), ".seg"), segments);
  EXPECT_TRUE(ListFiles(h.log_dir(), ".tmp").empty());
  fs.SetRenameFails(false);
  h.failures.clear();
  AppendRange(h, 6, 8);
  ASSERT_TRUE(h.Open().ok());
  ExpectReplayed(h, 1, 8);
}

TEST_F(LocalLogTest, SnapshotOutOfSpaceFailsAndIsRetried) {
  FaultInjectionFileSystem fs;
  LogHarness h(dir_.path());
  h.options.file_system = &fs;
  h.options.snapshot_retry_delay = std::chrono::milliseconds(0);
  ASSERT_TRUE(h.Open().ok());
  AppendRange(h, 1, 3);
  fs.SetSpaceLeft(100);
  ASSERT_TRUE(h.log->SaveSnapshot(3, [](const SnapshotWriteFn& write) {
    return write(std::string(2 << 20, 's'));
  }).ok());
  h.log->WaitForBackgroundWork();
  EXPECT_EQ(h.log->snapshot_failures(), 1u);
  fs.SetSpaceLeft(-1);
  EXPECT_TRUE(ListFiles(h.snap_dir(), ".tmp").empty());
  EXPECT_TRUE(ListFiles(h.snap_dir(), ".snap").empty());
  ASSERT_TRUE(h.log->SaveSnapshot(3, StateProducer(3)).ok());  // retry works
  ASSERT_TRUE(h.Open().ok());
  EXPECT_EQ(h.snapshot, "state@3");
}

// --- Modes and lifecycle -------------------------------------------------------

TEST_F(LocalLogTest, FsyncFalseWritesWithoutSyncing) {
  FaultInjectionFileSystem fs;
  LogHarness h(dir_.path());
  h.options.file_system = &fs;
  h.options.fsync = false;
  h.options.segment_bytes = 1024;
  ASSERT_TRUE(h.Open().ok());
  const int syncs_at_open = fs.sync_count();
  AppendRange(h, 1, 100, /*per_flush=*/3);
  // No entry is synced. Rolls are (the sealed segment, the new header, then
  // the manifest naming it): recovery's check for a lost newest segment
  // depends on them, and a sealed segment must not lose its tail to a crash
  // once a newer one is durable.
  const int rolls = static_cast<int>(ListFiles(h.log_dir(), ".seg").size()) - 1;
  ASSERT_GT(rolls, 0);
  EXPECT_EQ(fs.sync_count() - syncs_at_open, 3 * rolls);
  // Snapshots are still fsynced (compaction depends on it), by the snapshot
  // child: its syncs are counted in its own copy of `fs`, not here.
  ASSERT_TRUE(h.log->SaveSnapshot(50, StateProducer(50)).ok());
  h.log->WaitForBackgroundWork();
  EXPECT_EQ(h.log->snapshot_failures(), 0u);
  ASSERT_TRUE(h.Open().ok());
  EXPECT_EQ(h.snapshot_index, 50u);
  ExpectReplayed(h, 51, 100);
}

TEST_F(LocalLogTest, CloseKeepsFlushedEntriesAndDropsUnflushedOnes) {
  LogHarness h(dir_.path());
  ASSERT_TRUE(h.Open().ok());
  AppendRange(h, 1, 3);
  EXPECT_EQ(h.Append(EntryFor(4)), 4u);  // flushed, maybe not yet polled
  EXPECT_EQ(h.log->Propose("never flushed").value(), 5u);
  h.log->Close();
  EXPECT_FALSE(h.log->Propose("after close").ok());
  ASSERT_TRUE(h.Open().ok());
  ExpectReplayed(h, 1, 4);
}

TEST_F(LocalLogTest, CallbackErrorFailsOpen) {
  LogHarness h(dir_.path());
  ASSERT_TRUE(h.Open().ok());
  AppendRange(h, 1, 5);
  ASSERT_TRUE(h.log->SaveSnapshot(2, StateProducer(2)).ok());
  h.log.reset();

  h.replay_status = Status::Internal("replay says no");
  Status st = h.Open();
  EXPECT_EQ(st.code(), Code::kInternal);
  EXPECT_EQ(st.message(), "replay says no");

  h.replay_status = Status::Ok();
  h.load_status = Status::Corruption("bad state");
  EXPECT_EQ(h.Open().code(), Code::kCorruption);

  h.load_status = Status::Ok();
  ASSERT_TRUE(h.Open().ok());
  ExpectReplayed(h, 3, 5);
}

TEST_F(LocalLogTest, OpenFailsWhenDirIsAFile) {
  const std::string file = dir_.path() + "/plain";
  testing::WriteFileBytes(file, "x");
  LogHarness h(file);
  EXPECT_EQ(h.Open().code(), Code::kIOError);
}

}  // namespace
}  // namespace distri::log
