// Tests of the cluster transport over real TCP on 127.0.0.1: transports on
// one libuv loop in the test thread, and raw sockets that play a peer by hand
// (garbage, a replayed handshake, forged frames, a peer that stops reading)
// using the handshake and frame code directly.

#include "cluster/transport.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "cluster/frame.h"
#include "cluster/handshake.h"
#include "gtest/gtest.h"

namespace distri::cluster {
namespace {

std::shared_ptr<const ClusterSecret> Secret(char fill) {
  return std::move(ClusterSecret::FromBytes(std::string(40, fill))).value();
}

struct Recorder : TransportHandler {
  struct Frame {
    uint64_t peer;
    uint8_t type;
    std::string payload;
  };
  void OnLinkUp(uint64_t peer, uint64_t cluster_id) override { ups.emplace_back(peer, cluster_id); }
  void OnLinkDown(uint64_t peer) override { downs.push_back(peer); }
  void OnFrame(uint64_t peer, uint8_t type, std::string_view payload) override {
    frames.push_back(Frame{peer, type, std::string(payload)});
  }
  std::vector<std::pair<uint64_t, uint64_t>> ups;
  std::vector<uint64_t> downs;
  std::vector<Frame> frames;
};

struct Node {
  Recorder handler;
  std::unique_ptr<Transport> transport;
  std::string address;
};

// A TCP client outside the loop, non-blocking, driven by Pump().
class RawPeer {
 public:
  explicit RawPeer(uint16_t port, int rcvbuf = 0) {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    if (rcvbuf > 0) ::setsockopt(fd_, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    connected_ = ::connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
    ::fcntl(fd_, F_SETFL, ::fcntl(fd_, F_GETFL) | O_NONBLOCK);
  }
  ~RawPeer() { ::close(fd_); }
  bool connected() const { return connected_; }

  // Small writes only: the socket buffer takes them at once.
  void Write(std::string_view bytes) {
    sent_.append(bytes);
    ASSERT_EQ(::send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL),
              static_cast<ssize_t>(bytes.size()));
  }
  // Reads what is there; returns true once the peer closed.
  bool Pump() {
    char buf[65536];
    for (;;) {
      const ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
      if (n > 0) {
        received_.append(buf, static_cast<size_t>(n));
        continue;
      }
      if (n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) eof_ = true;
      return eof_;
    }
  }
  bool eof() const { return eof_; }
  std::string& received() { return received_; }
  const std::string& sent() const { return sent_; }

 private:
  int fd_ = -1;
  bool connected_ = false;
  bool eof_ = false;
  std::string received_;
  std::string sent_;
};

class TransportTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_EQ(uv_loop_init(&loop_), 0);
    uv_timer_init(&loop_, &ticker_);
  }
  void TearDown() override {
    for (auto& node : nodes_) node->transport->Close();
    nodes_.clear();
    uv_close(reinterpret_cast<uv_handle_t*>(&ticker_), nullptr);
    uv_run(&loop_, UV_RUN_DEFAULT);
    EXPECT_EQ(uv_loop_close(&loop_), 0);
  }

  TransportOptions Options(uint64_t id, uint64_t cluster = 7) {
    TransportOptions options;
    options.node_id = id;
    options.cluster_id = cluster;
    options.secret = secret_;
    options.reconnect_min_ms = 10;
    options.reconnect_max_ms = 100;
    return options;
  }

  Node* Start(TransportOptions options, bool listen = true) {
    auto node = std::make_unique<Node>();
    node->transport = std::make_unique<Transport>(&loop_, options, &node->handler);
    if (listen) {
      Status status = node->transport->Listen();
      EXPECT_TRUE(status.ok()) << status.message();
      node->address = "127.0.0.1:" + std::to_string(node->transport->port());
    }
    nodes_.push_back(std::move(node));
    return nodes_.back().get();
  }
  Node* Start(uint64_t id, uint64_t cluster = 7) { return Start(Options(id, cluster)); }

  void Destroy(Node* node) {
    node->transport.reset();
    std::erase_if(nodes_, [&](const auto& n) { return n.get() == node; });
  }

  // Runs the loop until `done` holds or `timeout_ms` pass; a 1 ms ticker
  // re-checks conditions on raw sockets, which are outside the loop.
  bool RunUntil(const std::function<bool()>& done, int timeout_ms = 3000) {
    const uint64_t deadline = uv_now(&loop_) + static_cast<uint64_t>(timeout_ms);
    uv_timer_start(&ticker_, [](uv_timer_t*) {}, 1, 1);
    bool ok = done();
    while (!ok && uv_now(&loop_) < deadline) {
      uv_run(&loop_, UV_RUN_ONCE);
      ok = done();
    }
    uv_timer_stop(&ticker_);
    return ok;
  }

  // Runs a full handshake from `raw` as node `id` to a transport; returns the
  // frame MAC of the link (kFromInitiator for what raw sends).
  std::unique_ptr<FrameMac> Authenticate(RawPeer* raw, uint64_t id, uint64_t cluster = 7) {
    Handshake handshake(HandshakeConfig{Role::kInitiator, secret_, cluster, id});
    std::string out;
    EXPECT_TRUE(handshake.Start(&out).ok());
    raw->Write(out);
    size_t fed = 0;
    const bool done = RunUntil([&] {
      raw->Pump();
      std::string_view input = std::string_view(raw->received()).substr(fed);
      size_t consumed = 0;
      std::string reply;
      EXPECT_TRUE(handshake.Feed(input, &consumed, &reply).ok());
      fed += consumed;
      if (!reply.empty()) raw->Write(reply);
      return handshake.done() || handshake.failed() || raw->eof();
    });
    EXPECT_TRUE(done && handshake.done());
    if (!handshake.done()) return nullptr;
    raw->received().erase(0, fed);
    return std::move(FrameMac::Create(*handshake.session_key())).value();
  }

  static std::string Frame(FrameMac* mac, Direction direction, uint64_t sequence, uint8_t type,
                           std::string_view payload) {
    std::string frame(kFrameHeaderBytes, '\0');
    EncodeFrameHeader(type, static_cast<uint32_t>(payload.size()), frame.data());
    frame.append(payload);
    FrameMac::Tag tag;
    EXPECT_TRUE(mac->Compute(direction, sequence, type, payload, &tag).ok());
    frame.append(reinterpret_cast<const char*>(tag.data()), tag.size());
    return frame;
  }

  uv_loop_t loop_;
  uv_timer_t ticker_;
  std::shared_ptr<const ClusterSecret> secret_ = Secret('s');
  std::vector<std::unique_ptr<Node>> nodes_;
};

// ---------------------------------------------------------------------------
// Frames between transports

TEST_F(TransportTest, TwoNodesExchangeFramesBothWays) {
  Node* a = Start(1);
  Node* b = Start(2);
  a->transport->SetPeer(2, b->address);
  b->transport->SetPeer(1, a->address);
  ASSERT_TRUE(RunUntil([&] { return a->transport->Connected(2) && b->transport->Connected(1); }));
  EXPECT_FALSE(a->transport->Send(3, 1, "nobody"));

  const std::string big(3 << 20, 'x');  // several reads, its own queue chunk
  constexpr int kFrames = 2000;
  for (int i = 0; i < kFrames; ++i) {
    ASSERT_TRUE(a->transport->Send(2, static_cast<uint8_t>(i % 256), "a" + std::to_string(i)));
    ASSERT_TRUE(b->transport->Send(1, 9, "b" + std::to_string(i)));
  }
  ASSERT_TRUE(a->transport->Send(2, 200, big));
  ASSERT_TRUE(b->transport->Send(1, 0, ""));  // an empty payload is a frame too
  ASSERT_TRUE(RunUntil([&] {
    return a->handler.frames.size() == kFrames + 1 && b->handler.frames.size() == kFrames + 1;
  }));
  for (int i = 0; i < kFrames; ++i) {  // in order, intact, from the right peer
    EXPECT_EQ(b->handler.frames[i].peer, 1u);
    EXPECT_EQ(b->handler.frames[i].type, i % 256);
    EXPECT_EQ(b->handler.frames[i].payload, "a" + std::to_string(i));
    EXPECT_EQ(a->handler.frames[i].peer, 2u);
    EXPECT_EQ(a->handler.frames[i].payload, "b" + std::to_string(i));
  }
  EXPECT_EQ(b->handler.frames.back().type, 200);
  EXPECT_TRUE(b->handler.frames.back().payload == big);
  EXPECT_EQ(a->handler.frames.back().payload, "");
  EXPECT_EQ(a->transport->stats().frames_sent, kFrames + 1u);
  // Frames queued in one iteration leave together.
  EXPECT_LT(a->transport->stats().writes, 100u);
  EXPECT_EQ(b->transport->stats().frames_received, kFrames + 1u);
  EXPECT_GE(a->transport->LastContactMs(2), 0);
  EXPECT_EQ(a->transport->LastContactMs(5), -1);
  // Each dialled the other: two links per pair, both up.
  EXPECT_EQ(a->transport->stats().links_up, 2u);
  // The big frame's read buffer was released once drained.
  EXPECT_LT(b->transport->stats().read_buffer_bytes, 1u << 20);
  EXPECT_GE(b->transport->stats().max_read_buffer_bytes, big.size());
  RunUntil([&] { return a->transport->stats().queued_bytes == 0; });
  EXPECT_EQ(a->transport->stats().queued_bytes, 0u);
}

TEST_F(TransportTest, InboundLinkCarriesFramesBothWays) {
  Node* a = Start(1);
  Node* b = Start(2);
  a->transport->SetPeer(2, b->address);  // b never dials a
  ASSERT_TRUE(RunUntil([&] { return b->transport->Connected(1); }));
  ASSERT_TRUE(b->transport->Send(1, 4, "over the inbound link"));
  ASSERT_TRUE(RunUntil([&] { return a->handler.frames.size() == 1; }));
  EXPECT_EQ(a->handler.frames[0].payload, "over the inbound link");
  EXPECT_EQ(b->handler.ups, (std::vector<std::pair<uint64_t, uint64_t>>{{1, 7}}));
}

TEST_F(TransportTest, ThreeNodesMesh) {
  Node* nodes[3] = {Start(1), Start(2), Start(3)};
  for (int i = 0; i < 3; ++i) {
    for (int j = 0; j < 3; ++j) {
      if (i != j) nodes[i]->transport->SetPeer(j + 1, nodes[j]->address);
    }
  }
  ASSERT_TRUE(RunUntil([&] {
    for (Node* n : nodes) {
      if (n->transport->ConnectedPeers().size() != 2) return false;
    }
    return true;
  }));
  for (int i = 0; i < 3; ++i) {
    for (int j = 0; j < 3; ++j) {
      if (i != j) ASSERT_TRUE(nodes[i]->transport->Send(j + 1, 1, std::to_string(i + 1)));
    }
  }
  ASSERT_TRUE(RunUntil([&] {
    for (Node* n : nodes) {
      if (n->handler.frames.size() != 2) return false;
    }
    return true;
  }));
  for (int j = 0; j < 3; ++j) {
    for (const auto& frame : nodes[j]->handler.frames) {
      EXPECT_EQ(frame.payload, std::to_string(frame.peer));
      EXPECT_NE(frame.peer, static_cast<uint64_t>(j + 1));
    }
  }
}

TEST_F(TransportTest, RemovedPeerMayStillDialIn) {
  Node* a = Start(1);
  Node* b = Start(2);
  a->transport->SetPeer(2, b->address);
  b->transport->SetPeer(1, a->address);
  ASSERT_TRUE(RunUntil([&] { return a->transport->stats().links_up == 2; }));
  // b forgets a: both links close; a redials, and b can answer on that
  // inbound link (membership is checked above the transport).
  b->transport->RemovePeer(1);
  ASSERT_TRUE(RunUntil([&] { return a->transport->stats().links_up == 1 &&
                                    b->transport->stats().links_up <= 1; }));
  ASSERT_TRUE(RunUntil([&] { return a->transport->Connected(2) && b->transport->Connected(1); }));
  ASSERT_TRUE(b->transport->Send(1, 1, "still here"));
  ASSERT_TRUE(RunUntil([&] { return !a->handler.frames.empty(); }));
}

// ---------------------------------------------------------------------------
// Authentication

TEST_F(TransportTest, WrongSecretNeverLinks) {
  Node* a = Start(1);
  TransportOptions options = Options(2);
  options.secret = Secret('t');
  Node* b = Start(options);
  a->transport->SetPeer(2, b->address);
  b->transport->SetPeer(1, a->address);
  ASSERT_TRUE(RunUntil([&] {
    return a->transport->stats().handshake_failures >= 4 &&
           b->transport->stats().handshake_failures >= 4;
  }));
  EXPECT_FALSE(a->transport->Send(2, 1, "x"));
  for (Node* n : {a, b}) {
    EXPECT_TRUE(n->handler.ups.empty());
    EXPECT_TRUE(n->handler.frames.empty());
    EXPECT_EQ(n->transport->stats().links_opened, 0u);
  }
}

TEST_F(TransportTest, GarbageIsClosedAndNothingReachesTheHandler) {
  Node* a = Start(1);
  RawPeer raw(a->transport->port());
  raw.Write("*1\r\n$4\r\nPING\r\n");
  ASSERT_TRUE(RunUntil([&] { return raw.Pump(); }));
  EXPECT_EQ(raw.received(), "");
  EXPECT_EQ(a->transport->stats().handshake_failures, 1u);
  EXPECT_TRUE(a->handler.ups.empty());
  EXPECT_TRUE(a->handler.frames.empty());
}

TEST_F(TransportTest, ReplayedHandshakeIsRefused) {
  Node* a = Start(1);
  RawPeer honest(a->transport->port());
  ASSERT_NE(Authenticate(&honest, 9), nullptr);
  ASSERT_TRUE(RunUntil([&] { return a->handler.ups.size() == 1; }));
  // Everything the honest peer sent (HELLO, PROOF), replayed on a new
  // connection: the PROOF is for another nonce.
  RawPeer replay(a->transport->port());
  replay.Write(honest.sent());
  ASSERT_TRUE(RunUntil([&] { return replay.Pump(); }));
  // At most a CHALLENGE (here none: the PROOF arrived with the HELLO and
  // failed before the CHALLENGE left), never a CONFIRM.
  EXPECT_LE(replay.received().size(), 56u);
  EXPECT_EQ(a->handler.ups.size(), 1u);
  EXPECT_EQ(a->transport->stats().handshake_failures, 1u);
  EXPECT_TRUE(a->handler.frames.empty());
}

TEST_F(TransportTest, FramesBeforeTheHandshakeEndsAreNotDelivered) {
  Node* a = Start(1);
  RawPeer raw(a->transport->port());
  Handshake handshake(HandshakeConfig{Role::kInitiator, secret_, 7, 9});
  std::string hello;
  ASSERT_TRUE(handshake.Start(&hello).ok());
  // A HELLO followed by what would look like frames: the responder reads at
  // most 64 bytes ahead and finds no PROOF there.
  raw.Write(hello + std::string(4096, '\0'));
  ASSERT_TRUE(RunUntil([&] { return raw.Pump(); }));
  EXPECT_TRUE(a->handler.ups.empty());
  EXPECT_TRUE(a->handler.frames.empty());
  EXPECT_EQ(a->transport->stats().read_buffer_bytes, 0u);
}

TEST_F(TransportTest, FlippedTagClosesTheLink) {
  Node* a = Start(1);
  RawPeer raw(a->transport->port());
  std::unique_ptr<FrameMac> mac = Authenticate(&raw, 9);
  ASSERT_NE(mac, nullptr);
  raw.Write(Frame(mac.get(), Direction::kFromInitiator, 0, 3, "good"));
  ASSERT_TRUE(RunUntil([&] { return a->handler.frames.size() == 1; }));
  std::string forged = Frame(mac.get(), Direction::kFromInitiator, 1, 3, "forged");
  forged.back() ^= 1;
  raw.Write(forged);
  ASSERT_TRUE(RunUntil([&] { return raw.Pump(); }));
  EXPECT_EQ(a->handler.frames.size(), 1u);
  EXPECT_EQ(a->handler.frames[0].payload, "good");
  EXPECT_EQ(a->handler.downs, std::vector<uint64_t>{9});
  EXPECT_EQ(a->transport->stats().bad_frames, 1u);
  EXPECT_FALSE(a->transport->Connected(9));
}

TEST_F(TransportTest, ReplayedOrReflectedFrameClosesTheLink) {
  Node* a = Start(1);
  for (int variant = 0; variant < 3; ++variant) {
    RawPeer raw(a->transport->port());
    std::unique_ptr<FrameMac> mac = Authenticate(&raw, 9);
    ASSERT_NE(mac, nullptr);
    const std::string first = Frame(mac.get(), Direction::kFromInitiator, 0, 3, "once");
    raw.Write(first);
    std::string second;
    if (variant == 0) second = first;  // replayed
    if (variant == 1) second = Frame(mac.get(), Direction::kFromInitiator, 2, 3, "skip");
    if (variant == 2) second = Frame(mac.get(), Direction::kFromResponder, 1, 3, "reflect");
    raw.Write(second);
    ASSERT_TRUE(RunUntil([&] { return raw.Pump(); })) << variant;
    EXPECT_EQ(a->transport->stats().bad_frames, static_cast<uint64_t>(variant + 1));
  }
  EXPECT_EQ(a->handler.frames.size(), 3u);  // only the first of each link
}

TEST_F(TransportTest, OversizeLengthClosesWithoutAllocating) {
  TransportOptions options = Options(1);
  options.max_frame_bytes = 1 << 20;
  Node* a = Start(options);
  RawPeer raw(a->transport->port());
  std::unique_ptr<FrameMac> mac = Authenticate(&raw, 9);
  ASSERT_NE(mac, nullptr);
  char header[kFrameHeaderBytes];
  EncodeFrameHeader(1, 0x7fffffff, header);
  raw.Write(std::string_view(header, sizeof header));
  ASSERT_TRUE(RunUntil([&] { return raw.Pump(); }));
  EXPECT_EQ(a->transport->stats().bad_frames, 1u);
  EXPECT_LT(a->transport->stats().max_read_buffer_bytes, 256u << 10);
  EXPECT_TRUE(a->handler.frames.empty());
  // Sending is bounded the same way.
  EXPECT_FALSE(a->transport->Send(9, 1, std::string((1 << 20) + 1, 'x')));
}

TEST_F(TransportTest, HandshakeTimeoutClosesASilentConnection) {
  TransportOptions options = Options(1);
  options.handshake_timeout_ms = 100;
  Node* a = Start(options);
  const uint64_t start = uv_now(&loop_);
  RawPeer raw(a->transport->port());
  ASSERT_TRUE(RunUntil([&] { return raw.Pump(); }));
  EXPECT_GE(uv_now(&loop_) - start, 90u);
  EXPECT_EQ(a->transport->stats().handshake_timeouts, 1u);
  EXPECT_EQ(a->transport->stats().handshaking, 0u);
}

TEST_F(TransportTest, FailedHandshakesAreRateLimitedPerAddress) {
  TransportOptions options = Options(1);
  options.handshake_failures_per_sec = 3;
  Node* a = Start(options);
  const uint64_t start = uv_now(&loop_);
  for (int i = 0; i < 3; ++i) {
    RawPeer raw(a->transport->port());
    raw.Write("GET / HTTP/1.1\r\n\r\n");
    ASSERT_TRUE(RunUntil([&] { return raw.Pump(); }));
  }
  EXPECT_EQ(a->transport->stats().handshake_failures, 3u);
  // The fourth within the second is refused at accept, before any reading.
  RawPeer refused(a->transport->port());
  ASSERT_TRUE(RunUntil([&] { return refused.Pump(); }));
  if (uv_now(&loop_) - start < 1000) {
    EXPECT_EQ(a->transport->stats().connections_refused, 1u);
    EXPECT_EQ(a->transport->stats().handshake_failures, 3u);
    EXPECT_EQ(refused.received(), "");
  }
}

TEST_F(TransportTest, TooManyUnauthenticatedConnectionsAreRefused) {
  TransportOptions options = Options(1);
  options.max_handshaking = 2;
  Node* a = Start(options);
  RawPeer one(a->transport->port()), two(a->transport->port());
  ASSERT_TRUE(RunUntil([&] { return a->transport->stats().handshaking == 2; }));
  RawPeer three(a->transport->port());
  ASSERT_TRUE(RunUntil([&] { return three.Pump(); }));
  EXPECT_EQ(a->transport->stats().connections_refused, 1u);
  EXPECT_FALSE(one.Pump());
}

TEST_F(TransportTest, PeerWithAnotherIdIsClosed) {
  Node* a = Start(1);
  Node* b = Start(2);
  a->transport->SetPeer(3, b->address);  // stale: node 2 is there now
  ASSERT_TRUE(RunUntil([&] { return a->transport->stats().peer_id_mismatches >= 2; }));
  EXPECT_TRUE(a->handler.ups.empty());
  EXPECT_FALSE(a->transport->Connected(3));
  EXPECT_FALSE(a->transport->Connected(2));
}

TEST_F(TransportTest, NodeWithoutClusterRefusesInboundLinks) {
  Node* a = Start(1, /*cluster=*/0);
  Node* b = Start(2);
  b->transport->SetPeer(1, a->address);
  ASSERT_TRUE(RunUntil([&] { return a->transport->stats().connections_refused >= 1; }));
  EXPECT_TRUE(a->handler.ups.empty());
  a->transport->set_cluster_id(7);  // it learned its cluster: b's redial gets in
  ASSERT_TRUE(RunUntil([&] { return a->transport->Connected(2); }));
}

// ---------------------------------------------------------------------------
// Dialling and reconnecting

TEST_F(TransportTest, DialLearnsPeerIdAndCluster) {
  Node* b = Start(2, /*cluster=*/77);
  Node* a = Start(Options(1, /*cluster=*/0), /*listen=*/false);
  a->transport->Dial(b->address);
  ASSERT_TRUE(RunUntil([&] { return !a->handler.ups.empty() && !b->handler.ups.empty(); }));
  EXPECT_EQ(a->handler.ups[0], std::make_pair(uint64_t{2}, uint64_t{77}));
  EXPECT_EQ(b->handler.ups[0], std::make_pair(uint64_t{1}, uint64_t{77}));
  ASSERT_TRUE(a->transport->Send(2, 1, "join me"));
  ASSERT_TRUE(b->transport->Send(1, 2, "welcome"));
  ASSERT_TRUE(RunUntil([&] { return !a->handler.frames.empty() && !b->handler.frames.empty(); }));
  EXPECT_EQ(b->handler.frames[0].payload, "join me");
  EXPECT_EQ(a->handler.frames[0].payload, "welcome");
}

TEST_F(TransportTest, DialRetriesUntilTheListenerAppears) {
  Node* b = Start(2);
  const std::string address = b->address;
  const uint16_t port = b->transport->port();
  Destroy(b);
  Node* a = Start(Options(1), /*listen=*/false);
  a->transport->Dial(address);
  ASSERT_TRUE(RunUntil([&] { return a->transport->stats().handshake_failures >= 2; }));
  TransportOptions options = Options(2);
  options.port = port;
  b = Start(options);
  ASSERT_TRUE(RunUntil([&] { return a->transport->Connected(2); }));
  EXPECT_EQ(a->handler.ups.size(), 1u);
}

TEST_F(TransportTest, ReconnectsAfterThePeerIsRecreated) {
  Node* a = Start(1);
  Node* b = Start(2);
  const uint16_t port = b->transport->port();
  a->transport->SetPeer(2, b->address);
  ASSERT_TRUE(RunUntil([&] { return a->transport->Connected(2); }));
  Destroy(b);
  ASSERT_TRUE(RunUntil([&] { return a->handler.downs == std::vector<uint64_t>{2}; }));
  EXPECT_FALSE(a->transport->Send(2, 1, "lost"));
  TransportOptions options = Options(2);
  options.port = port;
  b = Start(options);
  ASSERT_TRUE(RunUntil([&] { return a->transport->Connected(2); }));
  ASSERT_TRUE(a->transport->Send(2, 1, "again"));
  ASSERT_TRUE(RunUntil([&] { return b->handler.frames.size() == 1; }));
  EXPECT_EQ(b->handler.frames[0].payload, "again");
  EXPECT_EQ(a->handler.ups.size(), 2u);
}

TEST_F(TransportTest, RemovePeerClosesItsLinks) {
  Node* a = Start(1);
  Node* b = Start(2);
  a->transport->SetPeer(2, b->address);
  ASSERT_TRUE(RunUntil([&] { return b->transport->Connected(1); }));
  a->transport->RemovePeer(2);
  EXPECT_FALSE(a->transport->Connected(2));
  EXPECT_TRUE(a->handler.downs.empty());  // the caller knows
  ASSERT_TRUE(RunUntil([&] { return b->handler.downs == std::vector<uint64_t>{1}; }));
  EXPECT_EQ(a->transport->LastContactMs(2), -1);
}

// ---------------------------------------------------------------------------
// Bounds

TEST_F(TransportTest, PeerThatStopsReadingFillsABoundedQueue) {
  TransportOptions options = Options(1);
  options.max_queued_bytes = 1 << 20;
  Node* a = Start(options);
  RawPeer raw(a->transport->port(), /*rcvbuf=*/64 << 10);
  std::unique_ptr<FrameMac> mac = Authenticate(&raw, 9);
  ASSERT_NE(mac, nullptr);
  ASSERT_TRUE(RunUntil([&] { return a->transport->Connected(9); }));
  const std::string payload(64 << 10, 'p');
  int accepted = 0;
  bool refused = false;
  for (int i = 0; i < 10000 && !refused; ++i) {  // raw does not read meanwhile
    if (a->transport->Send(9, 1, payload)) {
      accepted++;
    } else {
      refused = true;
    }
    uv_run(&loop_, UV_RUN_NOWAIT);
    ASSERT_LE(a->transport->QueuedBytes(9), options.max_queued_bytes);
  }
  ASSERT_TRUE(refused);
  EXPECT_GT(accepted, 0);
  EXPECT_GE(a->transport->stats().send_refused, 1u);
  // The peer reads again: everything accepted arrives, in order and intact.
  const size_t frame = kFrameHeaderBytes + payload.size() + kFrameTagBytes;
  ASSERT_TRUE(RunUntil([&] {
    raw.Pump();
    return raw.received().size() >= frame * accepted;
  }));
  EXPECT_EQ(raw.received().size(), frame * accepted);
  for (int i = 0; i < accepted; ++i) {
    const char* start = raw.received().data() + i * frame;
    const FrameHeader header = DecodeFrameHeader(start);
    ASSERT_EQ(header.payload_bytes, payload.size());
    ASSERT_TRUE(mac->Verify(Direction::kFromResponder, i, 1,
                            std::string_view(start + kFrameHeaderBytes, payload.size()),
                            start + kFrameHeaderBytes + payload.size()));
  }
  EXPECT_TRUE(a->transport->Send(9, 1, payload));
}

// ---------------------------------------------------------------------------
// The frame format

TEST(FrameTest, TagCoversDirectionSequenceTypeAndPayload) {
  std::array<uint8_t, kMacBytes> key{};
  key[0] = 1;
  std::unique_ptr<FrameMac> mac = std::move(FrameMac::Create(key)).value();
  FrameMac::Tag tag;
  ASSERT_TRUE(mac->Compute(Direction::kFromInitiator, 5, 2, "payload", &tag).ok());
  const char* t = reinterpret_cast<const char*>(tag.data());
  EXPECT_TRUE(mac->Verify(Direction::kFromInitiator, 5, 2, "payload", t));
  EXPECT_FALSE(mac->Verify(Direction::kFromResponder, 5, 2, "payload", t));
  EXPECT_FALSE(mac->Verify(Direction::kFromInitiator, 6, 2, "payload", t));
  EXPECT_FALSE(mac->Verify(Direction::kFromInitiator, 5, 3, "payload", t));
  EXPECT_FALSE(mac->Verify(Direction::kFromInitiator, 5, 2, "payloaD", t));
  key[0] = 2;
  std::unique_ptr<FrameMac> other = std::move(FrameMac::Create(key)).value();
  EXPECT_FALSE(other->Verify(Direction::kFromInitiator, 5, 2, "payload", t));
  char header[kFrameHeaderBytes];
  EncodeFrameHeader(7, 0x01020304, header);
  EXPECT_EQ(std::string(header, 5), std::string("\x04\x03\x02\x01\x07", 5));
  EXPECT_EQ(DecodeFrameHeader(header).payload_bytes, 0x01020304u);
  EXPECT_EQ(DecodeFrameHeader(header).type, 7);
}

TEST(TransportAddressTest, ParsesNumericAddresses) {
  sockaddr_storage addr;
  EXPECT_TRUE(Transport::ParseAddress("127.0.0.1:7381", &addr));
  EXPECT_EQ(addr.ss_family, AF_INET);
  EXPECT_TRUE(Transport::ParseAddress("[::1]:7381", &addr));
  EXPECT_EQ(addr.ss_family, AF_INET6);
  for (const char* bad : {"127.0.0.1", "127.0.0.1:", "127.0.0.1:0", "127.0.0.1:65536",
                          "localhost:7381", ":7381", "1.2.3.4:12a", "[::1:7381"}) {
    EXPECT_FALSE(Transport::ParseAddress(bad, &addr)) << bad;
  }
}

}  // namespace
}  // namespace distri::cluster
