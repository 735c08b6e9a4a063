// The statistics gather's bookkeeping and frames (stats_gather.h), without sockets: requests
// completing on the last reply or at the deadline, late/unknown/duplicate replies dropped, the
// in-flight bound, every truncation of a frame refused, and the sums. A real cluster gathering
// over its links is tests/test_cluster_stats.py.

#include "server/stats_gather.h"

#include <gtest/gtest.h>

#include <limits>
#include <string>

#include "protocol/resp_writer.h"

namespace distri::server {
namespace {

using Answers = std::map<uint64_t, std::optional<Figures>>;

Figures Clients(int64_t n) { return {{"id", int64_t{9}}, {"clients", n}}; }

TEST(StatsFrames, RequestRoundTrips) {
  StatsRequest out;
  ASSERT_TRUE(DecodeStatsRequest(EncodeStatsRequest({42, StatsKind::kSite, ""}), &out));
  EXPECT_EQ(out.id, 42u);
  EXPECT_EQ(out.kind, StatsKind::kSite);
  ASSERT_TRUE(DecodeStatsRequest(EncodeStatsRequest({7, StatsKind::kRoom, "abc"}), &out));
  EXPECT_EQ(out.id, 7u);
  EXPECT_EQ(out.kind, StatsKind::kRoom);
  EXPECT_EQ(out.room, "abc");
}

TEST(StatsFrames, BadRequestsAreRefused) {
  StatsRequest out;
  const std::string good = EncodeStatsRequest({1, StatsKind::kSite, ""});
  for (size_t n = 0; n < good.size(); n++) {
    EXPECT_FALSE(DecodeStatsRequest(good.substr(0, n), &out)) << n;
  }
  EXPECT_FALSE(DecodeStatsRequest(good + "x", &out));  // a site request carries no room
  std::string unknown_kind = good;
  unknown_kind[8] = 9;
  EXPECT_FALSE(DecodeStatsRequest(unknown_kind, &out));
  EXPECT_FALSE(DecodeStatsRequest(
      EncodeStatsRequest({1, StatsKind::kRoom, std::string(kMaxStatsRoomCode + 1, 'r')}), &out));
}

TEST(StatsFrames, ReplyRoundTripsEveryType) {
  const Figures in = {{"null", std::monostate{}},
                      {"int", int64_t{-5}},
                      {"big", std::numeric_limits<int64_t>::max()},
                      {"rate", 2.5},
                      {"text", std::string("127.0.0.1:7379")},
                      {"yes", true},
                      {"no", false}};
  uint64_t id = 0;
  Figures out;
  ASSERT_TRUE(DecodeStatsReply(EncodeStatsReply(77, in), &id, &out));
  EXPECT_EQ(id, 77u);
  ASSERT_EQ(out.size(), in.size());
  for (size_t i = 0; i < in.size(); i++) {
    EXPECT_EQ(out[i].name, in[i].name);
    EXPECT_EQ(out[i].value, in[i].value) << in[i].name;
  }
}

TEST(StatsFrames, EveryTruncatedOrExtendedReplyIsRefused) {
  const std::string good = EncodeStatsReply(
      3, {{"a", int64_t{1}}, {"b", 1.5}, {"c", std::string("xyz")}, {"d", true}});
  uint64_t id = 0;
  Figures out;
  for (size_t n = 0; n < good.size(); n++) {
    EXPECT_FALSE(DecodeStatsReply(good.substr(0, n), &id, &out)) << n;
  }
  EXPECT_FALSE(DecodeStatsReply(good + '\0', &id, &out));
}

TEST(StatsFrames, HostileRepliesAreRefused) {
  uint64_t id = 0;
  Figures out;
  auto header = [](uint16_t count) {
    std::string s(8, '\0');
    s.push_back(static_cast<char>(count & 0xff));
    s.push_back(static_cast<char>(count >> 8));
    return s;
  };
  // More figures than allowed, claimed without the bytes.
  EXPECT_FALSE(DecodeStatsReply(header(kMaxFigures + 1), &id, &out));
  EXPECT_FALSE(DecodeStatsReply(header(0xffff), &id, &out));
  // An empty name; a name over the bound.
  EXPECT_FALSE(DecodeStatsReply(header(1) + std::string("\0\0", 2), &id, &out));
  std::string long_name = header(1) + static_cast<char>(kMaxFigureName + 1) +
                          std::string(kMaxFigureName + 1, 'n') + '\0';
  EXPECT_FALSE(DecodeStatsReply(long_name, &id, &out));
  // An unknown tag; a boolean that is neither 0 nor 1.
  EXPECT_FALSE(DecodeStatsReply(header(1) + "\1a\7", &id, &out));
  EXPECT_FALSE(DecodeStatsReply(header(1) + "\1a\4\2", &id, &out));
  // A text longer than the bound, and one whose length runs past the end.
  std::string long_text = header(1) + "\1a\3";
  long_text += std::string("\xff\xff\xff\x7f", 4);
  EXPECT_FALSE(DecodeStatsReply(long_text, &id, &out));
  std::string short_text = header(1) + "\1a\3" + std::string("\5\0\0\0", 4) + "abc";
  EXPECT_FALSE(DecodeStatsReply(short_text, &id, &out));
  // Zero figures is a valid (if useless) reply.
  EXPECT_TRUE(DecodeStatsReply(header(0), &id, &out));
  EXPECT_TRUE(out.empty());
}

TEST(GatherTable, CompletesOnTheLastReply) {
  GatherTable table(8);
  std::optional<Answers> got;
  const uint64_t peers[] = {2, 3};
  uint64_t id = table.Start(peers, 1000, [&](Answers a) { got = std::move(a); });
  ASSERT_NE(id, 0u);
  EXPECT_TRUE(table.OnReply(id, 2, Clients(4)));
  EXPECT_FALSE(got.has_value());
  EXPECT_FALSE(table.OnReply(id, 2, Clients(4)));  // a duplicate
  EXPECT_TRUE(table.OnReply(id, 3, Clients(5)));
  ASSERT_TRUE(got.has_value());
  ASSERT_EQ(got->size(), 2u);
  EXPECT_EQ(std::get<int64_t>(*FindFigure(*got->at(3), "clients")), 5);
  EXPECT_EQ(table.in_flight(), 0u);
  EXPECT_FALSE(table.OnReply(id, 3, Clients(5)));  // after completion
  EXPECT_EQ(table.dropped_replies(), 2u);
  EXPECT_FALSE(table.NextDeadline().has_value());
}

TEST(GatherTable, TheDeadlineMarksSilentMembers) {
  GatherTable table(8);
  std::optional<Answers> got;
  const uint64_t peers[] = {2, 3, 4};
  uint64_t id = table.Start(peers, 1000, [&](Answers a) { got = std::move(a); });
  EXPECT_TRUE(table.OnReply(id, 3, Clients(1)));
  EXPECT_EQ(table.NextDeadline(), 1000);
  table.Expire(999);
  EXPECT_FALSE(got.has_value());
  table.Expire(1000);
  ASSERT_TRUE(got.has_value());
  EXPECT_FALSE(got->at(2).has_value());
  EXPECT_TRUE(got->at(3).has_value());
  EXPECT_FALSE(got->at(4).has_value());
  EXPECT_FALSE(table.OnReply(id, 2, Clients(1)));  // late
}

TEST(GatherTable, RepliesFromStrangersOrForUnknownIdsAreDropped) {
  GatherTable table(8);
  int done = 0;
  const uint64_t peers[] = {2};
  uint64_t id = table.Start(peers, 1000, [&](Answers) { done++; });
  EXPECT_FALSE(table.OnReply(id, 5, Clients(1)));       // not asked
  EXPECT_FALSE(table.OnReply(id + 100, 2, Clients(1)));  // no such request
  EXPECT_EQ(done, 0);
  EXPECT_EQ(table.dropped_replies(), 2u);
  EXPECT_TRUE(table.OnReply(id, 2, Clients(1)));
  EXPECT_EQ(done, 1);
}

TEST(GatherTable, NoPeersOrAllGivenUpCompletesAtTheNextExpireNotInStart) {
  GatherTable table(8);
  int done = 0;
  uint64_t id = table.Start({}, 1000, [&](Answers a) {
    EXPECT_TRUE(a.empty());
    done++;
  });
  ASSERT_NE(id, 0u);
  EXPECT_EQ(done, 0);  // never from inside Start
  EXPECT_EQ(table.NextDeadline(), std::numeric_limits<int64_t>::min());
  table.Expire(0);
  EXPECT_EQ(done, 1);

  const uint64_t peers[] = {2, 3};
  std::optional<Answers> got;
  id = table.Start(peers, 1000, [&](Answers a) { got = std::move(a); });
  table.GiveUp(id, 2);  // could not be sent
  table.PeerDown(3);    // its link went down
  EXPECT_FALSE(got.has_value());
  table.Expire(0);
  ASSERT_TRUE(got.has_value());
  EXPECT_FALSE(got->at(2).has_value());
  EXPECT_FALSE(got->at(3).has_value());
}

TEST(GatherTable, BoundsRequestsInFlight) {
  GatherTable table(2);
  const uint64_t peers[] = {2};
  uint64_t a = table.Start(peers, 10, [](Answers) {});
  uint64_t b = table.Start(peers, 20, [](Answers) {});
  EXPECT_NE(a, 0u);
  EXPECT_NE(b, 0u);
  EXPECT_NE(a, b);
  EXPECT_EQ(table.Start(peers, 30, [](Answers) {}), 0u);
  EXPECT_EQ(table.refused(), 1u);
  table.Expire(10);
  uint64_t c = table.Start(peers, 30, [](Answers) {});
  EXPECT_NE(c, 0u);
  EXPECT_NE(c, a);  // ids never repeat
  table.ExpireAll();
  EXPECT_EQ(table.in_flight(), 0u);
}

TEST(GatherTable, DoneMayStartAnotherGather) {
  GatherTable table(1);  // the finished one must be gone before done runs
  const uint64_t peers[] = {2};
  uint64_t second = 0;
  uint64_t first = table.Start(peers, 10, [&](Answers) {
    second = table.Start(peers, 20, [](Answers) {});
  });
  EXPECT_TRUE(table.OnReply(first, 2, Clients(1)));
  EXPECT_NE(second, 0u);
  EXPECT_EQ(table.NextDeadline(), 20);
}

TEST(Combine, SumsPerNodeFiguresAndKeepsReplicatedOnes) {
  const StatFields local = {{"rooms", int64_t{3}},
                            {"clients", int64_t{1}},
                            {"ops_per_sec_1m", 0.5},
                            {"version", std::string("v")}};
  const std::vector<NodeReport> nodes = {
      {1, true, {{"rooms", int64_t{3}}, {"clients", int64_t{1}}, {"ops_per_sec_1m", 0.5}}},
      {2, true, {{"rooms", int64_t{3}}, {"clients", int64_t{4}}, {"ops_per_sec_1m", 1.0}}},
      {3, false, {{"clients", std::monostate{}}}},           // unreachable: not counted
      {4, true, {{"clients", std::string("hostile")}}},     // the wrong type: skipped
  };
  const std::string_view summed[] = {"clients", "ops_per_sec_1m"};
  StatFields out = Combine(local, nodes, summed);
  ASSERT_EQ(out.size(), 4u);
  EXPECT_EQ(std::get<int64_t>(out[0].value), 3);  // rooms: replicated, this node's
  EXPECT_EQ(std::get<int64_t>(out[1].value), 5);
  EXPECT_DOUBLE_EQ(std::get<double>(out[2].value), 1.5);
  EXPECT_EQ(std::get<std::string>(out[3].value), "v");
}

TEST(Combine, IntegerSumsSaturate) {
  const StatFields local = {{"clients", int64_t{1}}};
  const int64_t max = std::numeric_limits<int64_t>::max();
  const std::vector<NodeReport> nodes = {{1, true, {{"clients", max}}},
                                         {2, true, {{"clients", max}}}};
  const std::string_view summed[] = {"clients"};
  EXPECT_EQ(std::get<int64_t>(Combine(local, nodes, summed)[0].value), max);
}

TEST(WriteGathered, AMapWithNodesLast) {
  std::string out;
  protocol::ReplyWriter w(&out, 3);
  const StatFields combined = {{"clients", int64_t{2}}};
  const std::vector<NodeReport> nodes = {
      {1, true, {{"id", int64_t{1}}, {"reachable", true}}},
      {2, false, {{"id", int64_t{2}}, {"reachable", false}, {"term", std::monostate{}}}}};
  WriteGathered(combined, nodes, w);
  EXPECT_EQ(out,
            "%2\r\n$7\r\nclients\r\n:2\r\n$5\r\nnodes\r\n*2\r\n"
            "%2\r\n$2\r\nid\r\n:1\r\n$9\r\nreachable\r\n#t\r\n"
            "%3\r\n$2\r\nid\r\n:2\r\n$9\r\nreachable\r\n#f\r\n$4\r\nterm\r\n_\r\n");
}

}  // namespace
}  // namespace distri::server
