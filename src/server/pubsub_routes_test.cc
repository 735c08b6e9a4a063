// PubsubRoutes between in-memory nodes: interest reports and deltas, forwarding only to
// peers with matching interest, sequence gaps and stale frames, a restarted peer, link loss,
// backlog drops and hostile frames. The links are queues a test delivers (or drops, or
// reorders) by hand; the real cluster is exercised by tests/test_cluster_pubsub.py.

#include "server/pubsub_routes.h"

#include <gtest/gtest.h>

#include <deque>
#include <map>
#include <random>

#include "server/pubsub_wire.h"

namespace distri::server {
namespace {

namespace wire = pubsub_wire;

struct Frame {
  uint64_t from, to;
  uint8_t type;
  std::string bytes;
};

// The network: every frame sent, in order, until a test delivers it.
struct Net {
  std::deque<Frame> queue;
  std::map<uint64_t, uint64_t> queued_bytes;  // what QueuedBytes reports, set by tests
  std::set<std::pair<uint64_t, uint64_t>> up;  // (from, to) links up
  std::set<std::pair<uint64_t, uint64_t>> full;  // (from, to) queues full: Send refuses
};

class FakeLinks final : public PubsubLinks {
 public:
  FakeLinks(Net* net, uint64_t self) : net_(net), self_(self) {}
  bool Send(uint64_t peer, uint8_t type, std::string_view frame) override {
    if (!net_->up.contains({self_, peer}) || net_->full.contains({self_, peer})) return false;
    net_->queue.push_back({self_, peer, type, std::string(frame)});
    return true;
  }
  std::vector<uint64_t> Linked() const override {
    std::vector<uint64_t> out;
    for (const auto& [from, to] : net_->up) {
      if (from == self_) out.push_back(to);
    }
    return out;
  }
  uint64_t QueuedBytes(uint64_t peer) const override {
    auto it = net_->queued_bytes.find(peer);
    return it == net_->queued_bytes.end() ? 0 : it->second;
  }

 private:
  Net* net_;
  uint64_t self_;
};

// One node: its routes, its local subscriptions, what its subscribers received.
struct Node {
  Node(uv_loop_t* loop, Net* net, uint64_t id, uint64_t epoch,
       PubsubRoutes::Limits limits = {})
      : id(id), links(net, id) {
    routes = std::make_unique<PubsubRoutes>(
        loop, &links, epoch, limits,
        [this](std::string_view room, std::string_view channel, std::string_view message) {
          delivered.push_back(std::string(room) + "/" + std::string(channel) + "=" +
                              std::string(message));
        },
        [this](const PubsubRoutes::LocalVisitor& fn) {
          for (const auto& [key, count] : local) fn(key.first, key.second[0] == 'p',
                                                    key.second.substr(1), count);
        });
  }
  // REQUIRES: the pattern flag is the first byte of the key's name ('c' or 'p').
  void Sub(std::string room, bool pattern, std::string name, uint32_t count) {
    std::string key = (pattern ? "p" : "c") + name;
    if (count == 0) {
      local.erase({room, key});
    } else {
      local[{room, key}] = count;
    }
    routes->LocalChanged(room, pattern, name, count);
  }
  uint64_t id;
  FakeLinks links;
  std::unique_ptr<PubsubRoutes> routes;
  std::map<std::pair<std::string, std::string>, uint32_t> local;
  std::vector<std::string> delivered;
};

class PubsubRoutesTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_EQ(uv_loop_init(&loop_), 0); }
  void TearDown() override {
    for (auto& [id, n] : nodes_) n->routes->Close();
    uv_run(&loop_, UV_RUN_DEFAULT);
    nodes_.clear();
    ASSERT_EQ(uv_loop_close(&loop_), 0);
  }

  Node& Add(uint64_t id, uint64_t epoch = 0, PubsubRoutes::Limits limits = {}) {
    auto& slot = nodes_[id];
    slot = std::make_unique<Node>(&loop_, &net_, id, epoch == 0 ? 1000 + id : epoch, limits);
    return *slot;
  }
  // Brings the link between a and b up (both directions), as ClusterNode reports it.
  void Link(uint64_t a, uint64_t b) {
    net_.up.insert({a, b});
    net_.up.insert({b, a});
    nodes_[a]->routes->OnLink(b, true);
    nodes_[b]->routes->OnLink(a, true);
  }
  void Unlink(uint64_t a, uint64_t b) {
    net_.up.erase({a, b});
    net_.up.erase({b, a});
    std::erase_if(net_.queue, [&](const Frame& f) {
      return (f.from == a && f.to == b) || (f.from == b && f.to == a);
    });
    nodes_[a]->routes->OnLink(b, false);
    nodes_[b]->routes->OnLink(a, false);
  }
  // Delivers every queued frame (and those they cause) in order.
  void Pump() {
    while (!net_.queue.empty()) Deliver(Take());
  }
  Frame Take() {
    Frame f = std::move(net_.queue.front());
    net_.queue.pop_front();
    return f;
  }
  void Deliver(const Frame& f) { nodes_[f.to]->routes->OnFrame(f.from, f.type, f.bytes); }
  void FlushAll() {
    for (auto& [id, n] : nodes_) n->routes->Flush();
  }
  size_t Queued(uint8_t type) const {
    size_t n = 0;
    for (const Frame& f : net_.queue) n += f.type == type;
    return n;
  }

  uv_loop_t loop_;
  Net net_;
  std::map<uint64_t, std::unique_ptr<Node>> nodes_;
};

TEST_F(PubsubRoutesTest, FullReportOnLinkUpThenDeltas) {
  Node& a = Add(1);
  Node& b = Add(2);
  a.Sub("", false, "news", 2);
  a.Sub("R", true, "user.*", 1);
  a.routes->Flush();  // no peer yet: nothing to send to
  EXPECT_TRUE(net_.queue.empty());
  Link(1, 2);
  Pump();
  EXPECT_EQ(b.routes->RemoteNumSub("", "news"), 2);
  std::set<std::string> patterns;
  b.routes->RemotePatterns("R", &patterns);
  EXPECT_EQ(patterns, std::set<std::string>{"user.*"});
  // Deltas: coalesced, absolute counts.
  a.Sub("", false, "news", 3);
  a.Sub("", false, "news", 1);
  a.Sub("", false, "sport", 1);
  a.routes->Flush();
  EXPECT_EQ(Queued(wire::kInterest), 1u);
  Pump();
  EXPECT_EQ(b.routes->RemoteNumSub("", "news"), 1);
  std::set<std::string> channels;
  b.routes->RemoteChannels("", nullptr, &channels);
  EXPECT_EQ(channels, (std::set<std::string>{"news", "sport"}));
  a.Sub("", false, "news", 0);
  a.routes->Flush();
  Pump();
  EXPECT_EQ(b.routes->RemoteNumSub("", "news"), 0);
  EXPECT_EQ(b.routes->stats().remote_entries, 2u);  // sport, user.*
}

TEST_F(PubsubRoutesTest, ForwardsOnceOnlyToPeersWithMatchingInterest) {
  Node& a = Add(1);
  Node& b = Add(2);
  Node& c = Add(3);
  b.Sub("", false, "news", 2);
  c.Sub("", true, "n*", 1);
  c.Sub("", false, "news", 1);  // both match at C: still one frame to C
  Link(1, 2);
  Link(1, 3);
  Link(2, 3);
  Pump();
  EXPECT_EQ(a.routes->Forward("", "news", "hello"), 4);
  a.routes->Flush();
  EXPECT_EQ(Queued(wire::kMessage), 2u);
  Pump();
  EXPECT_EQ(b.delivered, std::vector<std::string>{"/news=hello"});
  EXPECT_EQ(c.delivered, std::vector<std::string>{"/news=hello"});
  EXPECT_TRUE(a.delivered.empty());
  // No interest: no frame at all.
  EXPECT_EQ(a.routes->Forward("", "sport", "x"), 0);
  EXPECT_EQ(a.routes->Forward("OTHER", "news", "x"), 0);
  a.routes->Flush();
  EXPECT_EQ(Queued(wire::kMessage), 0u);
  // Only the pattern matches at C.
  EXPECT_EQ(a.routes->Forward("", "nope", "y"), 1);
  a.routes->Flush();
  Pump();
  EXPECT_EQ(c.delivered.back(), "/nope=y");
  EXPECT_EQ(a.routes->stats().messages_sent, 3u);
  EXPECT_EQ(b.routes->stats().messages_received + c.routes->stats().messages_received, 3u);
  // A received message is never forwarded again: B and C sent no message frames.
  EXPECT_EQ(b.routes->stats().messages_sent + c.routes->stats().messages_sent, 0u);
}

TEST_F(PubsubRoutesTest, MessagesOfOneIterationShareAFrameInOrder) {
  Node& a = Add(1);
  Node& b = Add(2);
  b.Sub("", false, "ch", 1);
  Link(1, 2);
  Pump();
  for (int i = 0; i < 100; ++i) EXPECT_EQ(a.routes->Forward("", "ch", std::to_string(i)), 1);
  EXPECT_EQ(Queued(wire::kMessage), 0u) << "batched until the flush";
  // A message over kBatchBytes goes alone, after what was batched before it.
  const std::string big(PubsubRoutes::kBatchBytes + 1, 'x');
  a.routes->Forward("", "ch", big);
  a.routes->Forward("", "ch", "after");
  a.routes->Flush();
  EXPECT_EQ(Queued(wire::kMessage), 3u);
  Pump();
  ASSERT_EQ(b.delivered.size(), 102u);
  for (int i = 0; i < 100; ++i) EXPECT_EQ(b.delivered[i], "/ch=" + std::to_string(i));
  EXPECT_EQ(b.delivered[100], "/ch=" + big);
  EXPECT_EQ(b.delivered[101], "/ch=after");
  EXPECT_EQ(a.routes->stats().messages_sent, 102u);
  EXPECT_EQ(b.routes->stats().messages_received, 102u);
  // Many small ones: frames of about kBatchBytes, never one per message.
  const std::string kb(1000, 'k');
  for (int i = 0; i < 1000; ++i) a.routes->Forward("", "ch", kb);
  a.routes->Flush();
  EXPECT_LE(Queued(wire::kMessage), 1000 * 1012 / PubsubRoutes::kBatchBytes + 1);
  EXPECT_GE(Queued(wire::kMessage), 1000 * 1012 / PubsubRoutes::kBatchBytes);
}

TEST_F(PubsubRoutesTest, StaleFrameDroppedNeverDeliveredOutOfOrder) {
  Node& a = Add(1);
  Node& b = Add(2);
  b.Sub("", false, "ch", 1);
  Link(1, 2);
  Pump();
  for (const char* m : {"1", "2", "3"}) {
    a.routes->Forward("", "ch", m);
    a.routes->Flush();  // one frame each (as in three loop iterations)
  }
  Frame one = Take(), two = Take(), three = Take();
  Deliver(one);
  Deliver(three);  // "2" is late (it took another link)
  Deliver(two);
  EXPECT_EQ(b.delivered, (std::vector<std::string>{"/ch=1", "/ch=3"}));
  EXPECT_EQ(b.routes->stats().frames_stale, 1u);
  EXPECT_EQ(b.routes->stats().frames_lost, 1u);
}

TEST_F(PubsubRoutesTest, GapAsksForAFullReport) {
  Node& a = Add(1);
  Node& b = Add(2);
  Link(1, 2);
  Pump();
  a.Sub("", false, "lost", 1);  // this delta is lost with a broken link
  a.routes->Flush();
  net_.queue.clear();
  a.Sub("", false, "kept", 1);
  a.routes->Flush();
  Deliver(Take());
  EXPECT_EQ(b.routes->stats().frames_lost, 1u);
  EXPECT_EQ(b.routes->stats().resyncs_asked, 1u);
  EXPECT_EQ(Queued(wire::kResync), 1u);
  Pump();  // the resync request, then A's full report
  EXPECT_EQ(b.routes->RemoteNumSub("", "lost"), 1);
  EXPECT_EQ(b.routes->RemoteNumSub("", "kept"), 1);
}

TEST_F(PubsubRoutesTest, HeartbeatRevealsALostTail) {
  Node& a = Add(1);
  Node& b = Add(2);
  Link(1, 2);
  Pump();
  a.Sub("", false, "tail", 1);
  a.routes->Flush();
  net_.queue.clear();  // nothing follows it but the heartbeat
  a.routes->Tick();
  b.routes->Tick();
  Pump();
  EXPECT_EQ(b.routes->RemoteNumSub("", "tail"), 1);
}

TEST_F(PubsubRoutesTest, RefusedDeltaBecomesAFullReportAtTheNextTick) {
  Node& a = Add(1);
  Node& b = Add(2);
  Link(1, 2);
  Pump();
  net_.full.insert({1, 2});  // the queue is full: Send refuses
  a.Sub("", false, "x", 1);
  a.routes->Flush();
  EXPECT_TRUE(net_.queue.empty());
  net_.full.clear();
  a.routes->Tick();
  Pump();
  EXPECT_EQ(b.routes->RemoteNumSub("", "x"), 1);
  EXPECT_EQ(b.routes->stats().frames_lost, 0u);  // a refused frame uses no sequence number
}

TEST_F(PubsubRoutesTest, LinkDownForgetsAndRestartedPeerStartsOver) {
  Node& a = Add(1);
  Node& b = Add(2);
  a.Sub("", false, "news", 1);
  Link(1, 2);
  Pump();
  ASSERT_EQ(b.routes->RemoteNumSub("", "news"), 1);
  Unlink(1, 2);
  EXPECT_EQ(b.routes->RemoteNumSub("", "news"), 0);
  EXPECT_EQ(b.routes->Forward("", "news", "x"), 0);
  EXPECT_EQ(b.routes->stats().remote_entries, 0u);
  // A restarts (new epoch, sequence from 1) with other subscriptions.
  a.routes->Close();
  uv_run(&loop_, UV_RUN_NOWAIT);
  Node& a2 = Add(1, /*epoch=*/777);
  a2.Sub("", false, "sport", 1);
  a2.routes->Flush();
  Link(1, 2);
  Pump();
  EXPECT_EQ(b.routes->RemoteNumSub("", "news"), 0);
  EXPECT_EQ(b.routes->RemoteNumSub("", "sport"), 1);
  EXPECT_EQ(b.routes->stats().frames_stale, 0u);
}

TEST_F(PubsubRoutesTest, BacklogOverTheBoundDropsAndCounts) {
  Node& a = Add(1);
  Node& b = Add(2);
  b.Sub("", false, "ch", 1);
  Link(1, 2);
  Pump();
  net_.queued_bytes[2] = PubsubRoutes::kMaxPeerBacklog + 1;
  EXPECT_EQ(a.routes->Forward("", "ch", "x"), 0);
  a.routes->Flush();
  EXPECT_EQ(a.routes->stats().messages_dropped, 1u);
  EXPECT_EQ(Queued(wire::kMessage), 0u);
  net_.queued_bytes[2] = 0;
  EXPECT_EQ(a.routes->Forward("", "ch", "y"), 1);
  a.routes->Flush();
  Pump();
  EXPECT_EQ(b.delivered, std::vector<std::string>{"/ch=y"});
  EXPECT_EQ(b.routes->stats().frames_lost, 0u);  // a dropped message uses no seq
}

TEST_F(PubsubRoutesTest, LimitsOnWhatAPeerSends) {
  Node& a = Add(1);
  Node& b = Add(2, 0, {.max_message_bytes = 4, .max_pattern_bytes = 3});
  b.Sub("", false, "ch", 1);
  a.Sub("", true, "long*", 1);  // over B's pattern limit: ignored there
  a.Sub("", true, "a*", 1);
  a.routes->Flush();  // no peer yet: the deltas go nowhere (the full report carries them)
  Link(1, 2);
  Pump();
  std::set<std::string> patterns;
  b.routes->RemotePatterns("", &patterns);
  EXPECT_EQ(patterns, std::set<std::string>{"a*"});
  a.routes->Forward("", "ch", "12345");  // over B's max bulk
  a.routes->Forward("", "ch", "1234");
  a.routes->Flush();
  Pump();
  EXPECT_EQ(b.delivered, std::vector<std::string>{"/ch=1234"});
  EXPECT_EQ(b.routes->stats().bad_frames, 2u);
}

TEST_F(PubsubRoutesTest, PeerInterestIsBoundedInBytes) {
  // Few entries, long names: the entry count alone would let a peer hold gigabytes here.
  Node& a = Add(1);
  Node& b = Add(2);
  const size_t name_bytes = 1 << 20;
  const size_t n = PubsubRoutes::kMaxRemoteBytes / name_bytes + 6;
  for (size_t i = 0; i < n; ++i) {
    a.Sub("", false, std::string(name_bytes, 'x') + std::to_string(i), 1);
  }
  Link(1, 2);
  Pump();
  EXPECT_LT(b.routes->stats().remote_entries, n);
  EXPECT_LE(b.routes->stats().remote_entries * name_bytes, PubsubRoutes::kMaxRemoteBytes);
  EXPECT_GT(b.routes->stats().bad_frames, 0u);
}

TEST_F(PubsubRoutesTest, HostileFramesAreIgnored) {
  Node& a = Add(1);
  Node& b = Add(2);
  b.Sub("", false, "ch", 1);
  Link(1, 2);
  Pump();
  std::mt19937_64 rng(42);
  uint64_t seq = 1000;
  for (int i = 0; i < 5000; ++i) {
    std::string frame;
    // Half with a plausible header (so the body is parsed), half random from the start.
    if (i % 2 == 0) wire::AppendHeader(&frame, {2000, seq++});
    const size_t n = rng() % 64;
    for (size_t j = 0; j < n; ++j) frame.push_back(static_cast<char>(rng()));
    const uint8_t type = static_cast<uint8_t>(wire::kInterest + rng() % 5);
    b.routes->OnFrame(1, type, frame);
  }
  EXPECT_GT(b.routes->stats().bad_frames, 0u);
  EXPECT_LE(b.routes->stats().remote_entries, PubsubRoutes::kMaxRemoteEntries);
  // A's own frames (its epoch) are back in charge after a full report.
  net_.queue.clear();
  b.routes->OnLink(1, false);
  a.routes->OnLink(2, false);
  a.Sub("", false, "ok", 1);
  a.routes->Flush();
  net_.queue.clear();
  Link(1, 2);
  Pump();
  EXPECT_EQ(b.routes->RemoteNumSub("", "ok"), 1);
}

}  // namespace
}  // namespace distri::server
