// Service frames between nodes: every frame round-trips, and no truncation or
// corruption of a valid frame decodes into something (or crashes). The routing
// that uses them is tested against real 3-node clusters in
// tests/test_cluster_services.py.

#include "server/service_wire.h"

#include <gtest/gtest.h>

#include <functional>
#include <string>

namespace distri::server::svcwire {
namespace {

// Every proper prefix of a valid frame is refused.
void ExpectPrefixesRefused(const std::string& frame,
                           const std::function<bool(std::string_view)>& decode) {
  for (size_t n = 0; n < frame.size(); n++) {
    EXPECT_FALSE(decode(std::string_view(frame).substr(0, n))) << "prefix of " << n << " bytes";
  }
  EXPECT_TRUE(decode(frame));
}

TEST(ServiceWire, WorkersRoundTrip) {
  std::string frame = BeginWorkers(/*full=*/true);
  WorkerRecord up;
  up.id = 42;
  up.concurrency = 4;
  up.in_flight = 3;
  up.yours = 1;
  up.label = "7:w1";
  up.services = {{"room", "echo"}, {"", "add"}};
  AppendWorker(&frame, up);
  AppendWorker(&frame, {.kind = RecordKind::kLoad, .id = 43, .in_flight = 2, .yours = 2});
  AppendWorker(&frame, {.kind = RecordKind::kGone, .id = 44});
  WorkersFrame out;
  ASSERT_TRUE(DecodeWorkers(frame, 10, &out));
  EXPECT_TRUE(out.full);
  ASSERT_EQ(out.records.size(), 3u);
  EXPECT_EQ(out.records[0].id, 42u);
  EXPECT_EQ(out.records[0].concurrency, 4u);
  EXPECT_EQ(out.records[0].in_flight, 3u);
  EXPECT_EQ(out.records[0].yours, 1u);
  EXPECT_EQ(out.records[0].label, "7:w1");
  EXPECT_EQ(out.records[0].services, up.services);
  EXPECT_EQ(out.records[1].kind, RecordKind::kLoad);
  EXPECT_EQ(out.records[1].in_flight, 2u);
  EXPECT_EQ(out.records[2].kind, RecordKind::kGone);
  EXPECT_EQ(out.records[2].id, 44u);
  // A record cut anywhere is refused (the empty frame is not even a header).
  std::string cut = frame.substr(0, frame.size() - 1);
  EXPECT_FALSE(DecodeWorkers(cut, 10, &out));
  EXPECT_FALSE(DecodeWorkers("", 10, &out));
  // More records than the bound: refused, not truncated.
  EXPECT_FALSE(DecodeWorkers(frame, 2, &out));
}

TEST(ServiceWire, UnknownRecordKindOrFlagIsRefused) {
  WorkersFrame out;
  std::string frame = BeginWorkers(false);
  frame.push_back(9);
  frame.append(8, '\0');
  EXPECT_FALSE(DecodeWorkers(frame, 10, &out));
  EXPECT_FALSE(DecodeWorkers(std::string(1, '\2'), 10, &out));
}

TEST(ServiceWire, HugeCountsAreRefusedBeforeAllocating) {
  // A record claiming 2^32-1 services in a few bytes.
  std::string frame = BeginWorkers(false);
  WorkerRecord r;
  r.id = 1;
  AppendWorker(&frame, r);
  frame.replace(frame.size() - 4, 4, std::string(4, '\xff'));
  WorkersFrame out;
  EXPECT_FALSE(DecodeWorkers(frame, 1000, &out));
  BroadcastResult br;
  std::string b = EncodeBroadcastResult({.group = 1});
  b.replace(8, 4, std::string(4, '\xff'));
  EXPECT_FALSE(DecodeBroadcastResult(b, 1u << 30, &br));
}

TEST(ServiceWire, RequestAndResult) {
  const std::string payload("p\0q", 3);
  Request r{.call_id = 5, .worker_id = 9, .timeout_ms = 1500, .room = "r", .service = "s",
            .payload = payload};
  std::string frame = EncodeRequest(r);
  Request out;
  ExpectPrefixesRefused(frame, [&](std::string_view f) { return DecodeRequest(f, &out); });
  EXPECT_EQ(out.call_id, 5u);
  EXPECT_EQ(out.worker_id, 9u);
  EXPECT_EQ(out.timeout_ms, 1500u);
  EXPECT_EQ(out.payload, std::string_view("p\0q", 3));
  EXPECT_FALSE(DecodeRequest(frame + "x", &out));  // trailing bytes

  Result res{.call_id = 5, .worker_id = 9, .status = Status::kNotRun, .in_flight = 2,
             .yours = 1, .payload = "no"};
  std::string rf = EncodeResult(res);
  Result rout;
  ExpectPrefixesRefused(rf, [&](std::string_view f) { return DecodeResult(f, &rout); });
  EXPECT_EQ(rout.status, Status::kNotRun);
  EXPECT_EQ(rout.worker_id, 9u);
  EXPECT_EQ(rout.in_flight, 2u);
  EXPECT_EQ(rout.yours, 1u);
  rf[16] = 17;  // not a status
  EXPECT_FALSE(DecodeResult(rf, &rout));
}

TEST(ServiceWire, BroadcastAndItsResult) {
  Broadcast b{.group = 3, .timeout_ms = 700, .room = "", .service = "reload", .payload = "cfg"};
  Broadcast out;
  const std::string frame = EncodeBroadcast(b);  // out's views point into it
  ExpectPrefixesRefused(frame,
                        [&](std::string_view f) { return DecodeBroadcast(f, &out); });
  EXPECT_EQ(out.service, "reload");
  BroadcastResult r{.group = 3,
                    .slots = {{"2:a", Status::kOk, "done"}, {"2:b", Status::kTimeout, ""}}};
  BroadcastResult rout;
  ExpectPrefixesRefused(EncodeBroadcastResult(r), [&](std::string_view f) {
    return DecodeBroadcastResult(f, 10, &rout);
  });
  ASSERT_EQ(rout.slots.size(), 2u);
  EXPECT_EQ(rout.slots[0].label, "2:a");
  EXPECT_EQ(rout.slots[1].status, Status::kTimeout);
  EXPECT_FALSE(DecodeBroadcastResult(EncodeBroadcastResult(r), 1, &rout));
}

TEST(ServiceWire, Stats) {
  StatsFrame s;
  s.dropped_replies = 4;
  s.services.push_back({.room = "r", .name = "echo", .calls = 10, .errors = 1, .timeouts = 2,
                        .waiting = 3, .samples = 8, .quantiles = {0.5, 1.5, 9.0}});
  StatsFrame out;
  ExpectPrefixesRefused(EncodeStats(s),
                        [&](std::string_view f) { return DecodeStats(f, 10, &out); });
  EXPECT_EQ(out.dropped_replies, 4u);
  ASSERT_EQ(out.services.size(), 1u);
  EXPECT_EQ(out.services[0].calls, 10u);
  EXPECT_EQ(out.services[0].quantiles, (std::vector<double>{0.5, 1.5, 9.0}));
  EXPECT_FALSE(DecodeStats(EncodeStats(s), 0, &out));
}

}  // namespace
}  // namespace distri::server::svcwire
