// Pub/sub frames between nodes: round trips, and every truncation or absurd length refused
// (a peer's frame is never trusted to be well formed).

#include "server/pubsub_wire.h"

#include <gtest/gtest.h>

#include <array>

#include "base/endian.h"

namespace distri::server::pubsub_wire {
namespace {

std::string_view Body(const std::string& frame, Header* h) {
  std::string_view body;
  EXPECT_TRUE(DecodeHeader(frame, h, &body).ok());
  return body;
}

std::string MessageFrame(Header h, std::vector<std::array<std::string_view, 3>> messages) {
  std::string frame;
  AppendHeader(&frame, h);
  for (const auto& [room, channel, message] : messages) {
    AppendMessage(&frame, room, channel, message);
  }
  return frame;
}

TEST(PubsubWireTest, MessagesRoundTrip) {
  std::string frame = MessageFrame({7, 0}, {{"ROOM1", "news", std::string_view("a\0b\r\n", 5)},
                                            {"", "", ""},
                                            {"R", "c", "last"}});
  SetSeq(&frame, 42);
  Header h;
  std::vector<Message> m;
  ASSERT_TRUE(DecodeMessages(Body(frame, &h), &m).ok());
  EXPECT_EQ(h.epoch, 7u);
  EXPECT_EQ(h.seq, 42u);
  ASSERT_EQ(m.size(), 3u);
  EXPECT_EQ(m[0].room, "ROOM1");
  EXPECT_EQ(m[0].channel, "news");
  EXPECT_EQ(m[0].payload, std::string_view("a\0b\r\n", 5));
  EXPECT_TRUE(m[1].room.empty() && m[1].channel.empty() && m[1].payload.empty());
  EXPECT_EQ(m[2].payload, "last");
}

TEST(PubsubWireTest, EmptyMessageBodyRefused) {
  std::vector<Message> m;
  EXPECT_FALSE(DecodeMessages("", &m).ok());
}

TEST(PubsubWireTest, InterestRoundTrip) {
  InterestWriter w({9, 3}, /*full=*/true);
  w.Add(false, 2, "", "news");
  w.Add(true, 1, "ROOM", "user.*");
  w.Add(false, 0, "ROOM", "gone");
  EXPECT_EQ(w.entries(), 3u);
  std::string frame = w.Finish();
  Header h;
  Interest in;
  ASSERT_TRUE(DecodeInterest(Body(frame, &h), &in).ok());
  EXPECT_EQ(h.seq, 3u);
  EXPECT_TRUE(in.full);
  ASSERT_EQ(in.entries.size(), 3u);
  EXPECT_FALSE(in.entries[0].pattern);
  EXPECT_EQ(in.entries[0].count, 2u);
  EXPECT_EQ(in.entries[0].room, "");
  EXPECT_EQ(in.entries[0].name, "news");
  EXPECT_TRUE(in.entries[1].pattern);
  EXPECT_EQ(in.entries[1].room, "ROOM");
  EXPECT_EQ(in.entries[1].name, "user.*");
  EXPECT_EQ(in.entries[2].count, 0u);
}

TEST(PubsubWireTest, EmptyDeltaInterest) {
  std::string frame = InterestWriter({1, 1}, false).Finish();
  Header h;
  Interest in;
  ASSERT_TRUE(DecodeInterest(Body(frame, &h), &in).ok());
  EXPECT_FALSE(in.full);
  EXPECT_TRUE(in.entries.empty());
}

TEST(PubsubWireTest, ShortHeaderRefused) {
  Header h;
  std::string_view body;
  EXPECT_FALSE(DecodeHeader(std::string(15, 'x'), &h, &body).ok());
  EXPECT_FALSE(DecodeHeader("", &h, &body).ok());
}

TEST(PubsubWireTest, EveryTruncatedInterestRefused) {
  InterestWriter w({1, 1}, true);
  w.Add(false, 1, "R", "chan");
  w.Add(true, 5, "R", "p*");
  std::string frame = w.Finish();
  for (size_t n = kHeaderBytes; n < frame.size(); ++n) {
    Interest in;
    EXPECT_FALSE(DecodeInterest(std::string_view(frame).substr(kHeaderBytes, n - kHeaderBytes),
                                &in).ok())
        << "prefix of " << n << " bytes";
  }
  Interest in;
  EXPECT_FALSE(DecodeInterest(frame.substr(kHeaderBytes) + "x", &in).ok()) << "trailing byte";
}

TEST(PubsubWireTest, EveryTruncatedMessageRefused) {
  std::string frame = MessageFrame({1, 1}, {{"ROOM", "chan", "one"}, {"R", "c", "two"}});
  const size_t first_end = kHeaderBytes + kMessageOverhead + 4 + 4 + 3;
  for (size_t n = kHeaderBytes + 1; n < frame.size(); ++n) {
    if (n == first_end) continue;  // a whole first message alone is a valid frame
    std::vector<Message> m;
    EXPECT_FALSE(DecodeMessages(std::string_view(frame).substr(kHeaderBytes, n - kHeaderBytes),
                                &m).ok())
        << "prefix of " << n << " bytes";
    EXPECT_TRUE(m.empty()) << "a bad frame yields no message at all";
  }
}

TEST(PubsubWireTest, AbsurdLengthsRefused) {
  // A room length of 4 GiB in a frame of a few bytes.
  std::string body;
  base::AppendLe32(&body, 0xffffffffu);
  body += "abc";
  std::vector<Message> m;
  EXPECT_FALSE(DecodeMessages(body, &m).ok());
  // An entry count that could not fit: refused before anything is reserved.
  std::string interest;
  interest.push_back(0);
  base::AppendLe32(&interest, 0xffffffffu);
  Interest in;
  EXPECT_FALSE(DecodeInterest(interest, &in).ok());
  // A name length past the end inside an entry.
  std::string entry;
  entry.push_back(0);
  base::AppendLe32(&entry, 1);
  entry.push_back(0);                       // kind
  base::AppendLe32(&entry, 1);              // count
  base::AppendLe32(&entry, 0);              // room ""
  base::AppendLe32(&entry, 0x7fffffffu);    // name: 2 GiB
  EXPECT_FALSE(DecodeInterest(entry, &in).ok());
}

TEST(PubsubWireTest, UnknownKindAndFlagsRefused) {
  InterestWriter w({1, 1}, false);
  w.Add(false, 1, "R", "c");
  std::string frame = w.Finish();
  std::string bad_kind = frame;
  bad_kind[kHeaderBytes + 1 + 4] = 2;
  Interest in;
  EXPECT_FALSE(DecodeInterest(std::string_view(bad_kind).substr(kHeaderBytes), &in).ok());
  std::string bad_flags = frame;
  bad_flags[kHeaderBytes] = 4;
  EXPECT_FALSE(DecodeInterest(std::string_view(bad_flags).substr(kHeaderBytes), &in).ok());
}

}  // namespace
}  // namespace distri::server::pubsub_wire
