// PubsubRoutes: pub/sub across the nodes of a cluster, in the manner of NATS routes. Owned by
// MessageRouter (pubsub.cc) when the server is a cluster member; absent on a single node.
//
//  * Interest. Each node tells every linked peer which (room, channel) and (room, pattern) its
//    own clients subscribe to, with the number of local subscribers of each: in full when a
//    link comes up (or when the peer asks, after a gap), and as deltas of absolute counts
//    after every change (coalesced per loop iteration). A peer's interest is forgotten when
//    its last link goes down or it leaves membership.
//  * Messages. A PUBLISH is sent once to each peer whose interest matches (a channel it
//    counts, or a pattern of it that matches the channel); the receiver delivers it to its
//    own subscribers only and never forwards it: one hop, so no loops and no duplicates.
//    The messages for one peer in one loop iteration travel in one frame (up to
//    kBatchBytes; a larger message goes alone), so the link's per-frame costs (header,
//    HMAC, a write) are paid once per batch, not per message.
//  * Order. Frames to one peer carry a sequence number (per destination, over all types)
//    and the sender's epoch. The transport keeps a link's frames in order; when a peer's
//    frames move to another link (a second link, a reconnect), a frame that arrives after a
//    later one is dropped, never delivered out of order, and a gap makes the receiver ask
//    for the sender's full interest again (its deltas may be among the lost). At most once,
//    as NATS core and Redis pub/sub: a link that breaks loses what it had queued.
//  * Bounds. A message is sent to a peer only while that peer's link holds less than
//    kMaxPeerBacklog unsent bytes (Raft shares the link and must not be starved); otherwise
//    it is dropped for that peer and counted. A peer's interest table holds at most
//    kMaxRemoteEntries entries and kMaxRemoteBytes of names. Frames that do not decode are
//    counted and logged at most once a second, never trusted.
//
// Wire format: pubsub_wire.h. Docs: docs/messaging.md, "Across the cluster".
// Thread-safety: loop thread only.

#ifndef DISTRI_SERVER_PUBSUB_ROUTES_H_
#define DISTRI_SERVER_PUBSUB_ROUTES_H_

#include <uv.h>

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "base/glob.h"
#include "base/log_limiter.h"
#include "base/strings.h"

namespace distri::server {

class ClusterNode;

// What PubsubRoutes needs of the cluster: ClusterNode in the server (ClusterLinks below),
// in-memory pipes in pubsub_routes_test.cc.
class PubsubLinks {
 public:
  virtual ~PubsubLinks() = default;
  // Queues a frame; false when it was not queued (no link, queue full).
  virtual bool Send(uint64_t peer, uint8_t type, std::string_view frame) = 0;
  // Peers with a link up, ascending.
  virtual std::vector<uint64_t> Linked() const = 0;
  // Bytes queued to the peer and not yet written.
  virtual uint64_t QueuedBytes(uint64_t peer) const = 0;
};

// Counters since start (remote_entries: current). Read by STATS and /metrics.
struct PubsubRouteStats {
  uint64_t messages_sent = 0;      // message frames queued to peers
  uint64_t messages_received = 0;  // message frames from peers, delivered here
  uint64_t messages_dropped = 0;   // not sent: the peer's link over its backlog, or refused
  uint64_t frames_lost = 0;        // gaps in peers' sequences (frames lost with a link)
  uint64_t frames_stale = 0;       // arrived after a later one (another link): dropped
  uint64_t interest_sent = 0;      // interest frames queued (full and deltas)
  uint64_t interest_received = 0;
  uint64_t resyncs_asked = 0;      // full interest asked of a peer after a gap
  uint64_t bad_frames = 0;         // did not decode, or over a limit: ignored
  uint64_t remote_entries = 0;     // (room, channel/pattern) entries known from peers now
};

class PubsubRoutes {
 public:
  // A message from a peer, for this node's subscribers.
  using DeliverFn = std::function<void(std::string_view room, std::string_view channel,
                                       std::string_view message)>;
  // Calls fn(room, pattern, name, subscribers) for every local subscription (a full report).
  using LocalVisitor =
      std::function<void(std::string_view, bool, std::string_view, uint32_t)>;
  using ForEachLocalFn = std::function<void(const LocalVisitor& fn)>;

  struct Limits {
    uint64_t max_message_bytes = 0;  // 0: no limit (a message over it from a peer is dropped)
    uint64_t max_pattern_bytes = 0;  // 0: no limit (a longer remote pattern is ignored)
  };

  static constexpr uint64_t kMaxPeerBacklog = 64ull << 20;
  static constexpr size_t kMaxRemoteEntries = 1 << 20;
  // Room and channel/pattern bytes held for one peer's interest.
  static constexpr size_t kMaxRemoteBytes = 64 << 20;
  // Interest frames are split at about this size (a full report of many subscriptions).
  static constexpr size_t kInterestFrameBytes = 256 << 10;
  static constexpr uint64_t kTickMs = 1000;
  // Messages to one peer are gathered into frames of about this size.
  static constexpr size_t kBatchBytes = 64 << 10;

  // REQUIRES: loop and links outlive this; epoch != 0 and new at each start.
  PubsubRoutes(uv_loop_t* loop, PubsubLinks* links, uint64_t epoch, Limits limits,
               DeliverFn deliver, ForEachLocalFn for_each_local);
  ~PubsubRoutes();
  PubsubRoutes(const PubsubRoutes&) = delete;
  PubsubRoutes& operator=(const PubsubRoutes&) = delete;

  // Registers the frame and link handlers with a cluster member and makes the links.
  // The returned links object must outlive the routes.
  static std::unique_ptr<PubsubLinks> LinksOf(ClusterNode* node);
  void AttachTo(ClusterNode* node);

  // The number of local subscribers of (room, name) is now `count` (0: none). Sent to the
  // peers at the end of the loop iteration.
  void LocalChanged(std::string_view room, bool pattern, std::string_view name, uint32_t count);

  // Sends a message published here to every peer with matching interest. Returns the
  // subscribers those peers reported (PUBLISH adds them to its local receivers).
  int64_t Forward(std::string_view room, std::string_view channel, std::string_view message);

  // From the cluster (ClusterNode's handlers).
  void OnFrame(uint64_t peer, uint8_t type, std::string_view frame);
  void OnLink(uint64_t peer, bool up);

  // Remote interest, for PUBSUB: channel names in the room (matching `glob` if given), the
  // subscribers of one channel, the patterns in the room.
  void RemoteChannels(std::string_view room, const base::Glob* glob,
                      std::set<std::string>* out) const;
  int64_t RemoteNumSub(std::string_view room, std::string_view channel) const;
  void RemotePatterns(std::string_view room, std::set<std::string>* out) const;

  // Sends the pending deltas and message batches now (normally done by an idle handle at
  // the start of the next loop iteration).
  void Flush();
  // Sends the pending deltas now. SUBSCRIBE calls it before its confirmation is written, so
  // anything the node sends a peer afterwards (a write the subscriber then makes, forwarded
  // to the leader) follows the interest on the link.
  void FlushInterest();
  // Heartbeats, and retries of full reports and resync requests (normally once a second).
  void Tick();
  // Closes the handles; the object may be destroyed once the loop has run their callbacks.
  // REQUIRES: called before destruction unless the loop closes every handle itself first.
  void Close();

  const PubsubRouteStats& stats() const { return stats_; }

 private:
  struct RemotePattern {
    explicit RemotePattern(std::string_view pattern) : glob(pattern) {}
    base::Glob glob;
    uint32_t count = 0;
  };
  struct RemoteRoom {
    std::unordered_map<std::string, uint32_t, base::StringHash, std::equal_to<>> channels;
    std::unordered_map<std::string, RemotePattern, base::StringHash, std::equal_to<>> patterns;
  };
  // What this node knows of one peer.
  struct Peer {
    // Receiving. Invariant: while !known, rooms is empty.
    bool known = false;    // a frame of this link-up period has arrived
    uint64_t epoch = 0;    // the peer's, from its frames
    uint64_t last_seq = 0; // the last accepted frame's
    bool synced = false;   // a full report arrived since the last gap
    int64_t resync_asked_ms = -1;
    std::unordered_map<std::string, RemoteRoom, base::StringHash, std::equal_to<>> rooms;
    size_t entries = 0;
    size_t entry_bytes = 0;  // room + name bytes of `entries`
    // Sending (kept across link changes: a peer drops what is older than it has seen).
    uint64_t next_seq = 1;
    bool needs_full = false;  // a report or delta to it was refused: send a full one
    std::string batch;        // a message frame being filled (empty: none)
    uint64_t batch_messages = 0;
  };
  struct PendingKey {
    std::string room;
    bool pattern;
    std::string name;
    auto operator<=>(const PendingKey&) const = default;
  };

  // Sets the frame's seq for `peer` and queues it; false (and seq unused) if refused.
  bool SendFrame(uint64_t peer, Peer& p, uint8_t type, std::string* frame);
  // Sends every local subscription to the peer: a full frame, then deltas if it is large.
  void SendFull(uint64_t peer);
  // Queues the peer's message batch (counted as sent, or as dropped if refused).
  void FlushBatch(uint64_t peer, Peer& p);
  void ScheduleFlush();
  void ApplyInterest(uint64_t peer, Peer& p, std::string_view body);
  void Deliver(uint64_t peer, std::string_view body);
  void Forget(Peer& p);
  void BadFrame(uint64_t peer, std::string_view what);
  uint64_t Matching(const RemoteRoom& room, std::string_view channel) const;
  int64_t NowMs() const { return static_cast<int64_t>(uv_now(loop_)); }
  static void OnIdle(uv_idle_t* idle);
  static void OnTimer(uv_timer_t* timer);

  uv_loop_t* loop_;
  PubsubLinks* links_;
  const uint64_t epoch_;
  const Limits limits_;
  DeliverFn deliver_;
  ForEachLocalFn for_each_local_;
  std::map<uint64_t, Peer> peers_;
  std::map<PendingKey, uint32_t> pending_;  // deltas not yet sent (absolute counts)
  // Closed by Close(), or by the server's final walk over the loop's handles.
  uv_idle_t idle_;
  uv_timer_t timer_;
  bool batches_open_ = false;  // some peer's batch is not empty
  bool idle_active_ = false;
  bool open_ = true;
  base::LogLimiter bad_frame_log_{1000};
  base::LogLimiter drop_log_{1000};
  PubsubRouteStats stats_;
};

}  // namespace distri::server

#endif  // DISTRI_SERVER_PUBSUB_ROUTES_H_
