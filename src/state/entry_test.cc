// Entry codec round trips and rejection of malformed bytes.

#include "state/entry.h"

#include <gtest/gtest.h>

namespace distri::state {
namespace {

TEST(EntryTest, RoundTrip) {
  std::string buf;
  std::string_view args[] = {"key", std::string_view("v\0al", 4), ""};
  EncodeEntry(&buf, Op::kDel, kSetNx | kSetGet, 1700000000123, -42, "room1", args);
  EntryView e;
  ASSERT_TRUE(DecodeEntry(buf, &e).ok());
  EXPECT_EQ(e.op, Op::kDel);
  EXPECT_EQ(e.flags, kSetNx | kSetGet);
  EXPECT_EQ(e.now_ms, 1700000000123);
  EXPECT_EQ(e.num, -42);
  EXPECT_EQ(e.room, "room1");
  ASSERT_EQ(e.args.size(), 3u);
  EXPECT_EQ(e.args[1], std::string_view("v\0al", 4));
  EXPECT_EQ(e.args[2], "");
}

TEST(EntryTest, RoomWithoutDecoding) {
  std::string buf;
  std::string_view args[] = {"k", "v"};
  EncodeEntry(&buf, Op::kSet, 0, -5, INT64_MAX, "the-room", args);
  EXPECT_EQ(EntryRoom(buf), "the-room");
  EXPECT_EQ(EntryRoom(""), "");
  EXPECT_EQ(EntryRoom(std::string_view(buf).substr(0, 3)), "");  // truncated before the room
}

TEST(EntryTest, ExtremeNumbers) {
  std::string buf;
  std::string_view key[] = {"k"};
  EncodeEntry(&buf, Op::kIncrBy, 0, INT64_MIN, INT64_MAX, "", key);
  EntryView e;
  ASSERT_TRUE(DecodeEntry(buf, &e).ok());
  EXPECT_EQ(e.now_ms, INT64_MIN);
  EXPECT_EQ(e.num, INT64_MAX);
}

TEST(EntryTest, EveryTruncationIsRejected) {
  std::string buf;
  std::string_view args[] = {"k", "value"};
  EncodeEntry(&buf, Op::kSet, 0, 5, 0, "default", args);
  EntryView e;
  for (size_t n = 0; n < buf.size(); n++) {
    EXPECT_FALSE(DecodeEntry(std::string_view(buf).substr(0, n), &e).ok()) << n;
  }
  EXPECT_FALSE(DecodeEntry(buf + "x", &e).ok());
}

TEST(EntryTest, UnknownOpRejected) {
  std::string buf;
  EncodeEntry(&buf, Op::kSet, 0, 0, 0, "", {});
  buf[0] = 99;
  EntryView e;
  EXPECT_EQ(DecodeEntry(buf, &e).code(), Code::kCorruption);
}

}  // namespace
}  // namespace distri::state

namespace distri::state {
namespace {

TEST(EntryTest, ArgumentCountCheckedPerOp) {
  EntryView e;
  std::string buf;
  std::string_view one[] = {"k"};
  EncodeEntry(&buf, Op::kSet, 0, 0, 0, "r", one);  // SET needs key and value
  EXPECT_EQ(DecodeEntry(buf, &e).code(), Code::kCorruption);
  buf.clear();
  std::string_view three[] = {"a", "1", "b"};
  EncodeEntry(&buf, Op::kMSet, 0, 0, 0, "r", three);  // MSET needs pairs
  EXPECT_EQ(DecodeEntry(buf, &e).code(), Code::kCorruption);
  buf.clear();
  EncodeEntry(&buf, Op::kCas, kCasMustNotExist, 0, 0, "r", std::span(three).first(2));
  EXPECT_TRUE(DecodeEntry(buf, &e).ok());
}

TEST(EntryTest, NewOpsAreCheckedToo) {
  EntryView e;
  std::string buf;
  std::string_view two[] = {"k", "v"};
  EncodeEntry(&buf, Op::kSetRange, 0, 0, -1, "r", two);  // negative offset
  EXPECT_EQ(DecodeEntry(buf, &e).code(), Code::kCorruption);
  buf.clear();
  EncodeEntry(&buf, Op::kGetEx, kGetExPersist | kGetExExpire, 0, 5, "r", std::span(two).first(1));
  EXPECT_EQ(DecodeEntry(buf, &e).code(), Code::kCorruption);
  buf.clear();
  EncodeEntry(&buf, Op::kCopy, kCopyReplace, 0, 0, "r", two);
  EXPECT_TRUE(DecodeEntry(buf, &e).ok());
  EXPECT_EQ(e.op, Op::kCopy);
  buf.clear();
  EncodeEntry(&buf, Op::kRenameNx, 0, 0, 0, "r", std::span(two).first(1));
  EXPECT_EQ(DecodeEntry(buf, &e).code(), Code::kCorruption);
}

}  // namespace
}  // namespace distri::state
