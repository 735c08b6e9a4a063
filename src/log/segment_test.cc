// Unit tests for the segment format (segment.h) and the snapshot file format
// (snapshot_file.h) on in-memory bytes: names, record round trips, and the
// scanner's torn-versus-corrupt decisions.

#include "log/segment.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "log/local_log_test_util.h"
#include "log/snapshot_file.h"

namespace distri::log {
namespace {

// A segment starting at entry `first` holding `payloads`; each entry index in
// `write_starts` begins a new write.
std::string MakeSegment(uint64_t first, const std::vector<std::string>& payloads,
                        const std::vector<uint64_t>& write_starts) {
  std::string bytes(SegmentHeader());
  for (size_t i = 0; i < payloads.size(); ++i) {
    const size_t at = bytes.size();
    AppendRecord(&bytes, first + i, payloads[i]);
    for (uint64_t w : write_starts) {
      if (w == first + i) MarkWriteStart(bytes.data() + at);
    }
  }
  return bytes;
}

struct Collected {
  std::vector<std::pair<uint64_t, std::string>> records;
  RecordVisitor Visitor() {
    return [this](uint64_t index, std::string_view payload) {
      records.emplace_back(index, std::string(payload));
      return Status::Ok();
    };
  }
};

TEST(SegmentTest, FileNames) {
  EXPECT_EQ(IndexedFileName(1, ".seg"), "00000000000000000001.seg");
  EXPECT_EQ(IndexedFileName(UINT64_MAX, ".snap"), "18446744073709551615.snap");
  uint64_t index = 0;
  EXPECT_TRUE(ParseIndexedFileName("00000000000000000042.seg", ".seg", &index));
  EXPECT_EQ(index, 42u);
  EXPECT_FALSE(ParseIndexedFileName("00000000000000000042.snap", ".seg", &index));
  EXPECT_FALSE(ParseIndexedFileName("0000000000000000042.seg", ".seg", &index));
  EXPECT_FALSE(ParseIndexedFileName("0000000000000000004x.seg", ".seg", &index));
  EXPECT_FALSE(ParseIndexedFileName("99999999999999999999.seg", ".seg", &index));  // overflow
}

TEST(SegmentTest, RecordRoundTrip) {
  std::string bytes;
  AppendRecord(&bytes, 7, "hello");
  AppendRecord(&bytes, 8, "");
  ASSERT_EQ(bytes.size(), 2 * kRecordHeaderSize + 5);
  MarkWriteStart(bytes.data());
  DecodedRecord a = DecodeTrustedRecord(bytes);
  EXPECT_EQ(a.index, 7u);
  EXPECT_EQ(a.payload, "hello");
  DecodedRecord b = DecodeTrustedRecord(std::string_view(bytes).substr(a.size));
  EXPECT_EQ(b.index, 8u);
  EXPECT_EQ(b.payload, "");
}

TEST(SegmentTest, ScanCleanSegment) {
  std::string seg = MakeSegment(5, {"a", "", "ccc"}, {5, 7});
  Collected c;
  auto scan = ScanSegment(seg, "s", 5, /*is_last=*/false, c.Visitor());
  ASSERT_TRUE(scan.ok()) << scan.status().ToString();
  EXPECT_EQ(scan->next_index, 8u);
  EXPECT_EQ(scan->valid_bytes, seg.size());
  EXPECT_FALSE(scan->torn);
  ASSERT_EQ(c.records.size(), 3u);
  EXPECT_EQ(c.records[2], std::make_pair(uint64_t{7}, std::string("ccc")));
}

TEST(SegmentTest, FirstRecordMustMatchTheName) {
  std::string seg = MakeSegment(5, {"a"}, {5});
  Collected c;
  auto scan = ScanSegment(seg, "s", 4, true, c.Visitor());
  ASSERT_EQ(scan.status().code(), Code::kCorruption);
  EXPECT_NE(scan.status().message().find("s: offset 8: index gap"), std::string::npos)
      << scan.status().message();
}

TEST(SegmentTest, TornTailOnlyInLastSegment) {
  std::string seg = MakeSegment(1, {"one", "two", "three"}, {1, 2, 3});
  const size_t third = kSegmentHeaderSize + 2 * kRecordHeaderSize + 6;
  std::string cut = seg.substr(0, seg.size() - 2);
  Collected c;
  auto scan = ScanSegment(cut, "s", 1, true, c.Visitor());
  ASSERT_TRUE(scan.ok());
  EXPECT_TRUE(scan->torn);
  EXPECT_EQ(scan->valid_bytes, third);
  EXPECT_EQ(scan->next_index, 3u);
  auto sealed = ScanSegment(cut, "s", 1, false, c.Visitor());
  ASSERT_EQ(sealed.status().code(), Code::kCorruption);
  EXPECT_NE(sealed.status().message().find("offset " + std::to_string(third)), std::string::npos);
}

TEST(SegmentTest, WriteStartAfterDamageMeansCorruption) {
  // Entries 2 and 3 were one write; entry 4 a later one.
  std::string seg = MakeSegment(1, {"one", "two", "three", "four"}, {1, 2, 4});
  const size_t second = kSegmentHeaderSize + kRecordHeaderSize + 3;
  std::string damaged = seg;
  damaged[second + kRecordHeaderSize] ^= 1;
  Collected c;
  auto scan = ScanSegment(damaged, "s", 1, true, c.Visitor());
  EXPECT_EQ(scan.status().code(), Code::kCorruption);

  // Without the later write, the same damage is a torn final write.
  std::string last_write = MakeSegment(1, {"one", "two", "three"}, {1, 2});
  last_write[second + kRecordHeaderSize] ^= 1;
  scan = ScanSegment(last_write, "s", 1, true, c.Visitor());
  ASSERT_TRUE(scan.ok());
  EXPECT_TRUE(scan->torn);
  EXPECT_EQ(scan->valid_bytes, second);
}

TEST(SegmentTest, HeaderChecks) {
  Collected c;
  for (std::string_view torn : {std::string_view(""), std::string_view("DS"),
                                std::string_view("\0\0\0\0\0\0\0\0\0\0", 10)}) {
    auto scan = ScanSegment(torn, "s", 9, true, c.Visitor());
    ASSERT_TRUE(scan.ok());
    EXPECT_EQ(scan->valid_bytes, 0u);
    EXPECT_EQ(scan->next_index, 9u);
  }
  EXPECT_EQ(ScanSegment("DS", "s", 9, false, c.Visitor()).status().code(), Code::kCorruption);
  EXPECT_EQ(ScanSegment("XSEG\1\0\0\0", "s", 9, true, c.Visitor()).status().code(),
            Code::kCorruption);
}

TEST(SegmentTest, VisitorErrorStopsTheScan) {
  std::string seg = MakeSegment(1, {"a", "b"}, {1});
  int calls = 0;
  auto scan = ScanSegment(seg, "s", 1, true, [&](uint64_t, std::string_view) {
    ++calls;
    return Status::Internal("stop");
  });
  EXPECT_EQ(scan.status().message(), "stop");
  EXPECT_EQ(calls, 1);
}

TEST(SnapshotFileTest, WriteThenParse) {
  testing::TempDir dir;
  const std::string path = dir.path() + "/s.snap";
  auto writer = SnapshotFileWriter::Create(DefaultFileSystem(), path, 42);
  ASSERT_TRUE(writer.ok());
  ASSERT_TRUE((*writer)->Append("state ").ok());
  ASSERT_TRUE((*writer)->Append(std::string(3 << 20, 'z')).ok());  // larger than the buffer
  ASSERT_TRUE((*writer)->Append("end").ok());
  ASSERT_TRUE((*writer)->Finish().ok());
  writer->reset();
  const std::string bytes = testing::ReadFileBytes(path);
  ASSERT_EQ(bytes.size(), kSnapshotHeaderSize + 6 + (3 << 20) + 3 + kSnapshotTrailerSize);

  auto parsed = ParseSnapshotFile(bytes, path, 42);
  ASSERT_TRUE(parsed.ok()) << parsed.status().ToString();
  EXPECT_EQ(parsed->index, 42u);
  EXPECT_EQ(parsed->payload.substr(0, 6), "state ");
  EXPECT_EQ(parsed->payload.size(), 6u + (3 << 20) + 3);

  EXPECT_EQ(ParseSnapshotFile(bytes, path, 41).status().code(), Code::kCorruption);  // name
  std::string flipped = bytes;
  flipped[100] ^= 1;
  EXPECT_EQ(ParseSnapshotFile(flipped, path, 42).status().code(), Code::kCorruption);
  EXPECT_EQ(ParseSnapshotFile(std::string_view(bytes).substr(0, bytes.size() - 1), path, 42)
                .status()
                .code(),
            Code::kCorruption);
  EXPECT_EQ(ParseSnapshotFile("short", path, 42).status().code(), Code::kCorruption);
  std::string wrong_magic = bytes;
  wrong_magic[0] = 'X';
  auto bad = ParseSnapshotFile(wrong_magic, path, 42);
  ASSERT_EQ(bad.status().code(), Code::kCorruption);
  EXPECT_NE(bad.status().message().find(path), std::string::npos);
}

}  // namespace
}  // namespace distri::log
