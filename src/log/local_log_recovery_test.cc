// Tests for LocalLog recovery from damaged or unusual directories: torn and
// zero-filled tails (truncated with a WARN), corrupt records, index gaps and
// corrupt snapshots (Open fails with Corruption naming file and offset), a
// lost newest segment (deleted or zeroed: Corruption naming it, via
// log/MANIFEST), leftovers of interrupted snapshots, rolls and compactions.
//
// Each test writes a real log, closes it, edits the files with ordinary file
// I/O (or fails a step through the fault-injecting file system), and reopens.

#include <gtest/gtest.h>

#include <filesystem>
#include <string>

#include "log/local_log.h"
#include "log/local_log_test_util.h"
#include "log/segment.h"

namespace distri::log {
namespace {

using testing::EntryFor;
using testing::ListFiles;
using testing::LogHarness;
using testing::ReadFileBytes;
using testing::TempDir;
using testing::WriteFileBytes;

class RecoveryTest : public ::testing::Test {
 protected:
  // Writes entries first..last. one_write: all in one group (one write, one
  // fdatasync); otherwise each entry is durable before the next is written.
  void Write(uint64_t first, uint64_t last, bool one_write = false) {
    if (!h_.log) {
      ASSERT_TRUE(h_.Open().ok());
    }
    for (uint64_t i = first; i <= last; ++i) {
      ASSERT_EQ(h_.log->Propose(EntryFor(i)).value(), i);
      if (!one_write) {
        h_.log->Flush();
        ASSERT_TRUE(h_.WaitFor(i));
      }
    }
    h_.log->Flush();
    ASSERT_TRUE(h_.WaitFor(last));
    ASSERT_TRUE(h_.failures.empty());
  }

  // Offset of entry k's record in a segment that starts at entry 1.
  static uint64_t RecordOffset(uint64_t k) {
    uint64_t offset = kSegmentHeaderSize;
    for (uint64_t i = 1; i < k; ++i) offset += kRecordHeaderSize + EntryFor(i).size();
    return offset;
  }

  std::string FirstSegment() const { return ListFiles(h_.log_dir(), ".seg").front(); }

  void ExpectReplayed(uint64_t first, uint64_t last) {
    ASSERT_EQ(h_.replayed.size(), last + 1 - first);
    for (uint64_t i = first; i <= last; ++i) {
      EXPECT_EQ(h_.replayed[i - first].first, i);
      EXPECT_EQ(h_.replayed[i - first].second, EntryFor(i));
    }
  }

  // Opens, expecting Corruption whose message names `path` and `offset`.
  void ExpectCorruption(const std::string& path, uint64_t offset) {
    Status st = h_.Open();
    ASSERT_EQ(st.code(), Code::kCorruption) << st.ToString();
    EXPECT_NE(st.message().find(path), std::string::npos) << st.message();
    EXPECT_NE(st.message().find("offset " + std::to_string(offset)), std::string::npos)
        << st.message();
  }

  // Points log/MANIFEST at the segment starting at `first`, as a crash at
  // some earlier moment would have left it.
  void WriteManifestNaming(uint64_t first) {
    WriteFileBytes(h_.log_dir() + "/MANIFEST", EncodeManifest(first));
  }

  static void FlipByte(const std::string& path, uint64_t offset) {
    std::string bytes = ReadFileBytes(path);
    ASSERT_LT(offset, bytes.size());
    bytes[offset] ^= 0x5a;
    WriteFileBytes(path, bytes);
  }

  TempDir dir_;
  LogHarness h_{dir_.path()};
};

TEST_F(RecoveryTest, TornTailAtSeveralOffsetsDropsOnlyTheTornRecord) {
  Write(1, 10);
  h_.log.reset();
  const std::string path = FirstSegment();
  const std::string full = ReadFileBytes(path);
  const uint64_t last = RecordOffset(10);
  ASSERT_EQ(full.size(), RecordOffset(11));

  for (uint64_t cut : {last + 1, last + 7, last + 15, last + 16, last + 20, full.size() - 1}) {
    SCOPED_TRACE("cut at " + std::to_string(cut));
    WriteFileBytes(path, std::string_view(full).substr(0, cut));
    ASSERT_TRUE(h_.Open().ok());
    ExpectReplayed(1, 9);
    EXPECT_EQ(h_.log->last_index(), 9u);
    h_.log.reset();
    EXPECT_EQ(std::filesystem::file_size(path), last);  // truncated away
  }
  // A cut on a record boundary is a clean end, not a torn tail.
  WriteFileBytes(path, std::string_view(full).substr(0, last));
  ASSERT_TRUE(h_.Open().ok());
  ExpectReplayed(1, 9);
  // The log continues after the torn record, reusing its index.
  Write(10, 12);
  ASSERT_TRUE(h_.Open().ok());
  ExpectReplayed(1, 12);
}

TEST_F(RecoveryTest, ZeroFilledTailIsTruncated) {
  Write(1, 10);
  h_.log.reset();
  const std::string path = FirstSegment();
  const std::string full = ReadFileBytes(path);
  WriteFileBytes(path, full + std::string(4096, '\0'));
  ASSERT_TRUE(h_.Open().ok());
  ExpectReplayed(1, 10);
  h_.log.reset();
  EXPECT_EQ(ReadFileBytes(path), full);
  Write(11, 11);
  ASSERT_TRUE(h_.Open().ok());
  ExpectReplayed(1, 11);
}

TEST_F(RecoveryTest, BadChecksumOnFinalRecordIsATornTail) {
  Write(1, 10);
  h_.log.reset();
  FlipByte(FirstSegment(), RecordOffset(10) + kRecordHeaderSize + 3);
  ASSERT_TRUE(h_.Open().ok());
  ExpectReplayed(1, 9);
}

TEST_F(RecoveryTest, CorruptMiddleRecordFailsNamingFileAndOffset) {
  Write(1, 10);
  h_.log.reset();
  const std::string path = FirstSegment();
  FlipByte(path, RecordOffset(5) + kRecordHeaderSize + 2);  // payload byte of entry 5
  ExpectCorruption(path, RecordOffset(5));
}

TEST_F(RecoveryTest, CorruptIndexFieldFails) {
  Write(1, 10);
  h_.log.reset();
  const std::string path = FirstSegment();
  FlipByte(path, RecordOffset(3) + 8);  // the index: the checksum no longer matches
  ExpectCorruption(path, RecordOffset(3));
}

TEST_F(RecoveryTest, BadLengthInMiddleFails) {
  Write(1, 10);
  h_.log.reset();
  const std::string path = FirstSegment();
  std::string bytes = ReadFileBytes(path);
  // Over the limit.
  bytes[RecordOffset(5) + 7] = 0x7f;
  WriteFileBytes(path, bytes);
  ExpectCorruption(path, RecordOffset(5));
  // Within the limit but past the end of the file.
  bytes[RecordOffset(5) + 7] = 0x00;
  bytes[RecordOffset(5) + 6] = 0x01;
  WriteFileBytes(path, bytes);
  ExpectCorruption(path, RecordOffset(5));
}

// Bad bytes followed only by records of the same final write are what a crash
// leaves when that write's pages reach the disk out of order: none of it was
// acknowledged, so it is a torn tail.
TEST_F(RecoveryTest, DamageInsideTheFinalWriteIsATornTail) {
  Write(1, 3);
  Write(4, 10, /*one_write=*/true);
  h_.log.reset();
  const std::string path = FirstSegment();
  FlipByte(path, RecordOffset(6) + kRecordHeaderSize + 1);
  ASSERT_TRUE(h_.Open().ok());
  ExpectReplayed(1, 5);
  h_.log.reset();
  EXPECT_EQ(std::filesystem::file_size(path), RecordOffset(6));
  // Damage in an earlier write, though, is corruption.
  FlipByte(path, RecordOffset(2) + kRecordHeaderSize + 1);
  ExpectCorruption(path, RecordOffset(2));
}

TEST_F(RecoveryTest, DamageInSealedSegmentFailsEvenAtItsEnd) {
  h_.options.segment_bytes = 200;
  Write(1, 40);
  h_.log.reset();
  auto segments = ListFiles(h_.log_dir(), ".seg");
  ASSERT_GT(segments.size(), 2u);
  // Cut the first segment's final record short.
  const std::string path = segments[0];
  std::string bytes = ReadFileBytes(path);
  WriteFileBytes(path, std::string_view(bytes).substr(0, bytes.size() - 1));
  Status st = h_.Open();
  ASSERT_EQ(st.code(), Code::kCorruption) << st.ToString();
  EXPECT_NE(st.message().find(path), std::string::npos) << st.message();
}

TEST_F(RecoveryTest, MissingSegmentIsAnIndexGap) {
  h_.options.segment_bytes = 200;
  Write(1, 40);
  h_.log.reset();
  auto segments = ListFiles(h_.log_dir(), ".seg");
  ASSERT_GT(segments.size(), 3u);
  std::filesystem::remove(segments[1]);
  Status st = h_.Open();
  ASSERT_EQ(st.code(), Code::kCorruption) << st.ToString();
  EXPECT_NE(st.message().find(segments[2]), std::string::npos) << st.message();
  EXPECT_NE(st.message().find("gap"), std::string::npos) << st.message();
}

TEST_F(RecoveryTest, IndexGapInsideSegmentFails) {
  Write(1, 2);
  h_.log.reset();
  const std::string path = FirstSegment();
  // Entries 1, 2, then a well-formed record claiming index 4.
  std::string bytes = ReadFileBytes(path);
  const uint64_t offset = bytes.size();
  std::string record;
  AppendRecord(&record, 4, "four");
  MarkWriteStart(record.data());
  WriteFileBytes(path, bytes + record);
  ExpectCorruption(path, offset);
  Status st = h_.Open();
  EXPECT_NE(st.message().find("index gap"), std::string::npos) << st.message();
}

TEST_F(RecoveryTest, SegmentStartingAfterTheSnapshotFails) {
  Write(1, 5);
  h_.log.reset();
  const std::string path = FirstSegment();
  const std::string renamed = h_.log_dir() + "/" + IndexedFileName(2, ".seg");
  std::filesystem::rename(path, renamed);
  WriteManifestNaming(2);
  ExpectCorruption(renamed, 0);
}

// A roll cut short: the new segment's header was being written, the manifest
// still names the previous segment. The new segment is completed and adopted.
TEST_F(RecoveryTest, TornSegmentHeaderInNewestSegment) {
  Write(1, 10);
  h_.log.reset();
  const std::string next = h_.log_dir() + "/" + IndexedFileName(11, ".seg");
  for (std::string_view header : {std::string_view(""), std::string_view("DSE")}) {
    WriteFileBytes(next, header);
    WriteManifestNaming(1);
    ASSERT_TRUE(h_.Open().ok());
    ExpectReplayed(1, 10);
    h_.log.reset();
    EXPECT_EQ(std::filesystem::file_size(next), kSegmentHeaderSize);
  }
  Write(11, 12);
  ASSERT_TRUE(h_.Open().ok());
  ExpectReplayed(1, 12);
  EXPECT_EQ(ListFiles(h_.log_dir(), ".seg").size(), 2u);
}

// --- Losing the newest segment (log/MANIFEST) --------------------------------

// Opens, expecting Corruption that names `path` and the manifest.
void ExpectLostSegment(LogHarness& h, const std::string& path, std::string_view what) {
  Status st = h.Open();
  ASSERT_EQ(st.code(), Code::kCorruption) << st.ToString();
  EXPECT_NE(st.message().find(path), std::string::npos) << st.message();
  EXPECT_NE(st.message().find("MANIFEST"), std::string::npos) << st.message();
  EXPECT_NE(st.message().find(what), std::string::npos) << st.message();
}

TEST_F(RecoveryTest, DeletedNewestSegmentFailsNamingIt) {
  h_.options.segment_bytes = 200;
  Write(1, 40);
  h_.log.reset();
  auto segments = ListFiles(h_.log_dir(), ".seg");
  ASSERT_GT(segments.size(), 3u);
  const std::string saved = ReadFileBytes(segments.back());
  std::filesystem::remove(segments.back());
  ExpectLostSegment(h_, segments.back(), "missing");
  // The refusal changed nothing: with the file back, everything replays.
  EXPECT_EQ(ListFiles(h_.log_dir(), ".seg").size(), segments.size() - 1);
  WriteFileBytes(segments.back(), saved);
  ASSERT_TRUE(h_.Open().ok());
  ExpectReplayed(1, 40);
}

TEST_F(RecoveryTest, DeletedOnlySegmentFails) {
  Write(1, 10);
  h_.log.reset();
  std::filesystem::remove(FirstSegment());
  ExpectLostSegment(h_, h_.log_dir() + "/" + IndexedFileName(1, ".seg"), "missing");
}

// After a snapshot the segment that follows it may be the only one: losing it
// must not fall back to "start after the snapshot".
TEST_F(RecoveryTest, DeletedSegmentAfterSnapshotFails) {
  Write(1, 10);
  ASSERT_TRUE(h_.log->SaveSnapshot(10, SnapshotProducer([](const SnapshotWriteFn& write) {
                return write("s10");
              })).ok());
  h_.log->WaitForBackgroundWork();
  Write(11, 20);
  h_.log.reset();
  auto segments = ListFiles(h_.log_dir(), ".seg");
  ASSERT_EQ(segments.size(), 1u);
  std::filesystem::remove(segments[0]);
  ExpectLostSegment(h_, segments[0], "missing");
}

TEST_F(RecoveryTest, ZeroedNewestSegmentFailsNamingIt) {
  h_.options.segment_bytes = 200;
  Write(1, 40);
  h_.log.reset();
  const std::string newest = ListFiles(h_.log_dir(), ".seg").back();
  const std::string saved = ReadFileBytes(newest);
  WriteFileBytes(newest, std::string(saved.size(), '\0'));  // same length, all zeros
  ExpectLostSegment(h_, newest, "header destroyed");
  WriteFileBytes(newest, "");  // truncated to nothing
  ExpectLostSegment(h_, newest, "header destroyed");
  WriteFileBytes(newest, saved);
  ASSERT_TRUE(h_.Open().ok());
  ExpectReplayed(1, 40);
}

// The manifest changes nothing for a torn tail: the last, unsynced bytes of
// the newest segment are still truncated and the log accepted.
TEST_F(RecoveryTest, TornTailWithManifestIsStillAccepted) {
  h_.options.segment_bytes = 200;
  Write(1, 40);
  h_.log.reset();
  const std::string newest = ListFiles(h_.log_dir(), ".seg").back();
  const std::string full = ReadFileBytes(newest);
  WriteFileBytes(newest, std::string_view(full).substr(0, full.size() - 3));
  ASSERT_TRUE(h_.Open().ok());
  ExpectReplayed(1, 39);
  Write(40, 41);
  ASSERT_TRUE(h_.Open().ok());
  ExpectReplayed(1, 41);
}

// A directory written before manifests existed opens as before (the newest
// segment may even have a torn header) and gets a manifest.
TEST_F(RecoveryTest, DirectoryWithoutManifestOpensAndGetsOne) {
  h_.options.segment_bytes = 200;
  Write(1, 40);
  h_.log.reset();
  const std::string manifest = h_.log_dir() + "/MANIFEST";
  std::filesystem::remove(manifest);
  ASSERT_TRUE(h_.Open().ok());
  ExpectReplayed(1, 40);
  h_.log.reset();
  ASSERT_TRUE(std::filesystem::exists(manifest));
  auto named = ParseManifest(ReadFileBytes(manifest), manifest);
  ASSERT_TRUE(named.ok());
  EXPECT_EQ(h_.log_dir() + "/" + IndexedFileName(*named, ".seg"),
            ListFiles(h_.log_dir(), ".seg").back());
}

// The roll that compaction starts (to 11.seg, after a snapshot at 10) cut
// short before the manifest named the new segment: 1.seg is still named and
// covered by the snapshot. Open adopts 11.seg; 1.seg goes only once the
// manifest no longer names it, so a crash in between (here: Open failing to
// replace the manifest) cannot make the next Open find the named one missing.
TEST_F(RecoveryTest, CompactionRollCutShortBeforeTheManifest) {
  testing::FaultInjectionFileSystem fs;
  h_.options.file_system = &fs;
  Write(1, 10);
  const std::string first = FirstSegment();
  const std::string first_bytes = ReadFileBytes(first);
  ASSERT_TRUE(h_.log->SaveSnapshot(10, SnapshotProducer([](const SnapshotWriteFn& write) {
                return write("s10");
              })).ok());
  h_.log->WaitForBackgroundWork();
  h_.log.reset();
  const std::string eleven = h_.log_dir() + "/" + IndexedFileName(11, ".seg");
  ASSERT_EQ(ListFiles(h_.log_dir(), ".seg"), std::vector<std::string>{eleven});
  WriteFileBytes(first, first_bytes);
  WriteManifestNaming(1);

  fs.SetRenameFails(true);
  Status st = h_.Open();
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.message().find("rename"), std::string::npos) << st.ToString();
  fs.SetRenameFails(false);

  ASSERT_TRUE(h_.Open().ok());
  EXPECT_EQ(h_.snapshot_index, 10u);
  EXPECT_TRUE(h_.replayed.empty());
  Write(11, 12);
  ASSERT_TRUE(h_.Open().ok());
  ExpectReplayed(11, 12);
  EXPECT_EQ(ListFiles(h_.log_dir(), ".seg"), std::vector<std::string>{eleven});
}

TEST_F(RecoveryTest, CorruptManifestFailsNamingIt) {
  Write(1, 3);
  h_.log.reset();
  const std::string manifest = h_.log_dir() + "/MANIFEST";
  FlipByte(manifest, 9);
  Status st = h_.Open();
  ASSERT_EQ(st.code(), Code::kCorruption) << st.ToString();
  EXPECT_NE(st.message().find(manifest), std::string::npos) << st.message();
}

TEST_F(RecoveryTest, GarbageSegmentHeaderFails) {
  Write(1, 3);
  h_.log.reset();
  const std::string path = FirstSegment();
  FlipByte(path, 1);
  ExpectCorruption(path, 0);
}

// --- Snapshots ---------------------------------------------------------------

SnapshotProducer Producer(std::string state) {
  return [state](const SnapshotWriteFn& write) { return write(state); };
}

TEST_F(RecoveryTest, CorruptSnapshotFailsNamingTheFile) {
  Write(1, 5);
  ASSERT_TRUE(h_.log->SaveSnapshot(5, Producer("the whole state")).ok());
  h_.log.reset();
  const std::string snap = ListFiles(h_.snap_dir(), ".snap").front();
  const std::string good = ReadFileBytes(snap);

  FlipByte(snap, 30);  // a payload byte
  Status st = h_.Open();
  ASSERT_EQ(st.code(), Code::kCorruption) << st.ToString();
  EXPECT_NE(st.message().find(snap), std::string::npos) << st.message();
  EXPECT_NE(st.message().find("checksum"), std::string::npos) << st.message();

  WriteFileBytes(snap, std::string_view(good).substr(0, good.size() - 3));  // truncated
  st = h_.Open();
  ASSERT_EQ(st.code(), Code::kCorruption) << st.ToString();
  EXPECT_NE(st.message().find(snap), std::string::npos) << st.message();

  WriteFileBytes(snap, good);
  ASSERT_TRUE(h_.Open().ok());
  EXPECT_EQ(h_.snapshot, "the whole state");
}

TEST_F(RecoveryTest, LeftoverTempSnapshotIsRemoved) {
  Write(1, 3);
  h_.log.reset();
  const std::string temp = h_.snap_dir() + "/" + IndexedFileName(3, ".snap.tmp");
  WriteFileBytes(temp, "half a snapshot");
  ASSERT_TRUE(h_.Open().ok());
  EXPECT_EQ(h_.snapshot_index, 0u);
  ExpectReplayed(1, 3);
  EXPECT_FALSE(std::filesystem::exists(temp));
}

// A crash after the snapshot became durable but before its segments were
// deleted: Open skips them (without reading them) and deletes them.
TEST_F(RecoveryTest, SegmentsCoveredBySnapshotAreSkippedAndDeleted) {
  h_.options.segment_bytes = 200;
  Write(1, 30);
  h_.log.reset();
  const std::string saved = dir_.path() + "/saved";
  std::filesystem::copy(h_.log_dir(), saved);
  ASSERT_TRUE(h_.Open().ok());
  ASSERT_TRUE(h_.log->SaveSnapshot(30, Producer("s30")).ok());
  h_.log.reset();
  ASSERT_EQ(ListFiles(h_.log_dir(), ".seg").size(), 1u);  // 31.seg, empty
  auto old_segments = ListFiles(saved, ".seg");
  for (const auto& p : old_segments) {
    std::filesystem::copy(p, h_.log_dir() + "/" + std::filesystem::path(p).filename().string());
  }
  FlipByte(ListFiles(h_.log_dir(), ".seg").front(), 20);  // never read

  ASSERT_TRUE(h_.Open().ok());
  EXPECT_EQ(h_.snapshot_index, 30u);
  EXPECT_TRUE(h_.replayed.empty());
  EXPECT_EQ(ListFiles(h_.log_dir(), ".seg").size(), 1u);
  Write(31, 32);
  ASSERT_TRUE(h_.Open().ok());
  ExpectReplayed(31, 32);
}

// Possible only with fsync=false and an OS crash: the snapshot is durable but
// the log lost entries it covers. The log continues after the snapshot.
TEST_F(RecoveryTest, LogShorterThanSnapshotContinuesAfterSnapshot) {
  Write(1, 10);
  h_.log.reset();
  const std::string first_ten = ReadFileBytes(FirstSegment());
  Write(11, 20);
  ASSERT_TRUE(h_.log->SaveSnapshot(20, Producer("s20")).ok());
  h_.log.reset();
  for (const auto& p : ListFiles(h_.log_dir(), ".seg")) std::filesystem::remove(p);
  WriteFileBytes(h_.log_dir() + "/" + IndexedFileName(1, ".seg"), first_ten);
  WriteManifestNaming(1);  // as before the compaction's roll

  ASSERT_TRUE(h_.Open().ok());
  EXPECT_EQ(h_.snapshot_index, 20u);
  EXPECT_TRUE(h_.replayed.empty());
  EXPECT_EQ(h_.log->last_index(), 20u);
  Write(21, 22);
  ASSERT_TRUE(h_.Open().ok());
  EXPECT_EQ(h_.snapshot_index, 20u);
  ExpectReplayed(21, 22);
}

}  // namespace
}  // namespace distri::log
