// The durable Raft state's formats and replay rules (raft_wal.h).

#include "replication/raft_wal.h"

#include <gtest/gtest.h>

namespace distri::replication {
namespace {

RaftEntry E(uint64_t index, uint64_t term, std::string_view data, std::string_view ctx = "") {
  return RaftEntry{index, term, EntryType::kNormal, data, ctx};
}

std::string Record(const std::optional<HardState>& hs, const std::vector<RaftEntry>& entries,
                   const SnapshotMeta* snap = nullptr, std::string_view data = {}) {
  std::string out;
  EncodeRecord(&out, hs, snap, data, entries);
  return out;
}

std::vector<uint64_t> Indexes(const RaftDurableState& s) {
  std::vector<uint64_t> out;
  for (const StoredEntry& e : s.entries) out.push_back(e.index);
  return out;
}

TEST(RaftWalTest, RecordsReplayInOrderAndTheNewestHardStateWins) {
  RaftDurableState s;
  ASSERT_TRUE(s.ApplyRecord(Record(HardState{1, 7, 1}, {E(1, 1, "a"), E(2, 1, "b", "ctx")})).ok());
  ASSERT_TRUE(s.ApplyRecord(Record(HardState{2, 0, 2}, {E(3, 2, "c")})).ok());
  EXPECT_TRUE(s.has_hard_state);
  EXPECT_EQ(s.hard_state.term, 2u);
  EXPECT_EQ(s.hard_state.vote, 0u);
  EXPECT_EQ(s.hard_state.commit, 2u);
  EXPECT_EQ(Indexes(s), (std::vector<uint64_t>{1, 2, 3}));
  EXPECT_EQ(s.entries[1].data, "b");
  EXPECT_EQ(s.entries[1].context, "ctx");
  EXPECT_EQ(s.entries[2].term, 2u);
}

TEST(RaftWalTest, AnEntryReplacesItsIndexAndEverythingAfter) {
  RaftDurableState s;
  ASSERT_TRUE(s.ApplyRecord(Record(std::nullopt, {E(1, 1, "a"), E(2, 1, "b"), E(3, 1, "c")})).ok());
  // A new leader overwrote the uncommitted tail from index 2.
  ASSERT_TRUE(s.ApplyRecord(Record(std::nullopt, {E(2, 2, "B")})).ok());
  EXPECT_EQ(Indexes(s), (std::vector<uint64_t>{1, 2}));
  EXPECT_EQ(s.entries[1].data, "B");
  EXPECT_EQ(s.entries[1].term, 2u);
}

TEST(RaftWalTest, AnOlderRecordReplayedOverACheckpointChangesNothing) {
  // A checkpoint taken while records were still in flight holds more than they do: the
  // tail up to 110 and commit 110. A record proposed before it (entries 101..105 and an older
  // hard state), durable only afterwards, is replayed over it and must not roll it back.
  std::vector<StoredEntry> tail;
  for (uint64_t i = 101; i <= 110; i++) tail.push_back({i, 3, EntryType::kNormal, "x", ""});
  std::string checkpoint =
      EncodeCheckpointHeader(HardState{3, 2, 110}, SnapshotMeta{100, 3, {1, 2, 3}, {}}, tail);
  RaftDurableState s;
  std::string_view payload;
  ASSERT_TRUE(s.ApplyCheckpoint(checkpoint, &payload).ok());
  ASSERT_TRUE(s.ApplyRecord(Record(HardState{3, 2, 100},
                                   {E(101, 3, "x"), E(102, 3, "x"), E(103, 3, "x"),
                                    E(104, 3, "x"), E(105, 3, "x")}))
                  .ok());
  EXPECT_EQ(s.entries.size(), 10u);
  EXPECT_EQ(s.entries.back().index, 110u);
  EXPECT_EQ(s.hard_state.commit, 110u);
  EXPECT_EQ(s.hard_state.term, 3u);
  // A newer term still replaces the hard state, and a conflicting entry still truncates.
  ASSERT_TRUE(s.ApplyRecord(Record(HardState{4, 0, 104}, {E(105, 4, "y")})).ok());
  EXPECT_EQ(s.hard_state.term, 4u);
  EXPECT_EQ(s.entries.back().index, 105u);
  EXPECT_EQ(s.entries.back().data, "y");
}

TEST(RaftWalTest, AGapIsCorruption) {
  RaftDurableState s;
  ASSERT_TRUE(s.ApplyRecord(Record(std::nullopt, {E(1, 1, "a")})).ok());
  Status st = s.ApplyRecord(Record(std::nullopt, {E(3, 1, "c")}));
  EXPECT_EQ(st.code(), Code::kCorruption);
}

TEST(RaftWalTest, ASnapshotReplacesTheEntriesItCovers) {
  RaftDurableState s;
  ASSERT_TRUE(s.ApplyRecord(Record(std::nullopt, {E(1, 1, "a"), E(2, 1, "b"), E(3, 1, "c")})).ok());
  SnapshotMeta meta{5, 3, {1, 2, 3}, {4}};
  ASSERT_TRUE(s.ApplyRecord(Record(HardState{3, 1, 5}, {}, &meta, "payload")).ok());
  EXPECT_TRUE(s.entries.empty());
  EXPECT_EQ(s.snapshot.index, 5u);
  EXPECT_EQ(s.snapshot.voters, (std::vector<uint64_t>{1, 2, 3}));
  EXPECT_EQ(s.snapshot.learners, (std::vector<uint64_t>{4}));
  EXPECT_TRUE(s.snapshot_from_record);
  EXPECT_EQ(s.snapshot_data, "payload");
  // Entries covered by it are ignored; the next one follows it.
  ASSERT_TRUE(s.ApplyRecord(Record(std::nullopt, {E(4, 3, "x"), E(5, 3, "y"), E(6, 3, "z")})).ok());
  EXPECT_EQ(Indexes(s), (std::vector<uint64_t>{6}));
}

TEST(RaftWalTest, CheckpointThenRecords) {
  std::vector<StoredEntry> tail = {{11, 4, EntryType::kNormal, "d11", "c"},
                                   {12, 4, EntryType::kConfChangeV2, "d12", ""}};
  std::string checkpoint =
      EncodeCheckpointHeader(HardState{4, 2, 11}, SnapshotMeta{10, 4, {1, 2}, {}}, tail);
  checkpoint += "PAYLOAD";
  RaftDurableState s;
  ASSERT_TRUE(s.ApplyRecord(Record(std::nullopt, {E(1, 1, "old")})).ok());
  std::string_view payload;
  ASSERT_TRUE(s.ApplyCheckpoint(checkpoint, &payload).ok());
  EXPECT_EQ(payload, "PAYLOAD");
  EXPECT_FALSE(s.snapshot_from_record);
  EXPECT_EQ(s.snapshot.index, 10u);
  EXPECT_EQ(s.hard_state.commit, 11u);
  EXPECT_EQ(Indexes(s), (std::vector<uint64_t>{11, 12}));
  EXPECT_EQ(s.entries[1].type, EntryType::kConfChangeV2);
  ASSERT_TRUE(s.ApplyRecord(Record(HardState{5, 0, 12}, {E(12, 5, "new")})).ok());
  EXPECT_EQ(Indexes(s), (std::vector<uint64_t>{11, 12}));
  EXPECT_EQ(s.entries[1].data, "new");
}

TEST(RaftWalTest, TruncatedOrGarbageBytesAreCorruption) {
  std::string rec = Record(HardState{1, 1, 1}, {E(1, 1, "abc")});
  for (size_t n = 0; n < rec.size(); n++) {
    RaftDurableState s;
    EXPECT_FALSE(s.ApplyRecord(std::string_view(rec).substr(0, n)).ok()) << n;
  }
  RaftDurableState s;
  EXPECT_FALSE(s.ApplyRecord(rec + "x").ok());
  std::string_view payload;
  EXPECT_FALSE(s.ApplyCheckpoint("DRCPgarbage", &payload).ok());
  EXPECT_FALSE(DecodePayload("nope").ok());
}

TEST(RaftWalTest, PayloadRoundTrip) {
  MemberAddresses members = {{7, "10.0.0.1:7381"}, {9, "[::1]:7381"}};
  std::string bytes = EncodePayloadHeader(members, 42) + "STATE";
  auto decoded = DecodePayload(bytes);
  ASSERT_TRUE(decoded.ok());
  EXPECT_EQ(decoded.value().members, members);
  EXPECT_EQ(decoded.value().state_index, 42u);
  EXPECT_EQ(decoded.value().state, "STATE");
}

}  // namespace
}  // namespace distri::replication
