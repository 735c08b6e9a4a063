// Transport: the cluster port on libuv. Moves typed frames between nodes that
// proved they hold the cluster secret; knows nothing of Raft.
//
// Links. A node keeps one OUTBOUND link (it dials, the handshake initiator) to
// every peer set with SetPeer() and reconnects it with backoff, and accepts
// INBOUND links (handshake responder) on its listener. Every link opens with
// the handshake of handshake.h; frames then flow both ways on it, each
// authenticated with the link's session key (frame.h). So between two nodes
// there are usually two links, one per direction of dialling; Send() prefers
// the outbound one. Dial() dials an address whose node id is not known yet
// (--join, CLUSTER.JOIN): the handshake reveals the id and cluster.
//
// Nothing from a peer reaches the handler before its handshake is done; at
// most kMaxHandshakeMessage bytes are buffered from it until then, and a
// handshake that does not finish in handshake_timeout_ms is closed. Failed
// inbound handshakes count per address in a base::AuthLimiter (an address
// over the limit is refused at accept) and are logged through a
// base::LogLimiter, as are bad frames. A frame whose tag is wrong or whose
// length is over max_frame_bytes closes its link.
//
// Memory is bounded per link: the read buffer by max_frame_bytes + 21 (or a
// 64 KiB read), the output queue by max_queued_bytes (Send() returns false
// above it, or one frame when it is empty), the handshake buffer by 64 bytes;
// at most max_handshaking inbound connections may be unauthenticated at once.
//
// Frames queued in one loop iteration leave in one uv_write per link (an idle
// handle flushes them at the start of the next iteration, before polling); a
// payload is copied once, into the queue.
//
// Events. OnLinkUp fires for every link that authenticates (again for a
// second link to a peer that is already up); OnLinkDown fires when a peer's
// last link closes, always from a loop callback (a link Send() has to close
// is reported from the next idle pass, never from inside Send()). Neither
// fires from RemovePeer() or Close(): the caller knows. The handler may call any method from a callback except destroying
// the Transport.
//
// Usage (loop thread):
//
//   TransportOptions options;
//   options.port = 7381; options.node_id = 1; options.cluster_id = cluster;
//   options.secret = secret;  // from LoadClusterSecret
//   Transport transport(loop, options, &handler);
//   if (Status s = transport.Listen(); !s.ok()) ...;
//   transport.SetPeer(2, "10.0.0.2:7381");
//   transport.Send(2, kRaftMessage, bytes);   // false: no link or queue full; raft retries
//   ...
//   transport.Close();  // then let the loop run once more to release the handles
//
// Thread-safety: none; everything runs on the loop thread.

#ifndef DISTRI_CLUSTER_TRANSPORT_H_
#define DISTRI_CLUSTER_TRANSPORT_H_

#include <uv.h>

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "base/auth_limiter.h"
#include "base/log_limiter.h"
#include "cluster/handshake.h"
#include "distri/status.h"

namespace distri::cluster {

struct TransportOptions {
  // The cluster listener. port 0 with Listen() picks a free port (port());
  // without Listen() there is no listener.
  std::string bind = "127.0.0.1";
  uint16_t port = 0;
  uint64_t node_id = 0;     // this node (non-zero)
  uint64_t cluster_id = 0;  // 0 while this node is joining and has no cluster yet
  // Shared, not owned: the handshake keeps a reference per connection.
  std::shared_ptr<const ClusterSecret> secret;
  uint64_t max_frame_bytes = 512ull << 20;   // a bigger frame closes the link
  uint64_t max_queued_bytes = 256ull << 20;  // per link: Send() refuses above it
  uint64_t handshake_timeout_ms = 5000;      // from connect (or accept) to authenticated
  uint64_t reconnect_min_ms = 50, reconnect_max_ms = 2000;  // outbound backoff
  uint32_t handshake_failures_per_sec = kDefaultHandshakeFailuresPerSec;  // per address
  uint32_t max_handshaking = 64;             // unauthenticated inbound connections at once
};

class TransportHandler {
 public:
  virtual ~TransportHandler() = default;
  // An authenticated link to `peer` is up (outbound or inbound). cluster_id is
  // the link's (the responder's): how a joining node learns its cluster.
  virtual void OnLinkUp(uint64_t peer, uint64_t cluster_id) = 0;
  // The last link to `peer` closed.
  virtual void OnLinkDown(uint64_t peer) = 0;
  // A frame from an authenticated peer. The view is valid during the call only.
  virtual void OnFrame(uint64_t peer, uint8_t type, std::string_view payload) = 0;
};

// Counters for CLUSTER.NODES and /metrics. All are totals since start except
// links_up, handshaking, queued_bytes and read_buffer_bytes (current values).
struct TransportStats {
  uint64_t frames_sent = 0;      // queued by Send()
  uint64_t bytes_sent = 0;       // payload bytes of those
  uint64_t frames_received = 0;  // delivered to OnFrame
  uint64_t bytes_received = 0;
  uint64_t send_refused = 0;       // Send() returned false
  uint64_t writes = 0;             // uv_write calls (each of one or more frames)
  uint64_t links_opened = 0;       // authenticated links
  uint64_t links_up = 0;
  uint64_t handshaking = 0;        // connections not yet authenticated
  uint64_t handshake_failures = 0; // bad handshakes and timeouts, both directions
  uint64_t handshake_timeouts = 0; // of which timeouts
  uint64_t connections_refused = 0;  // inbound refused at accept (limiter, too many, no cluster)
  uint64_t bad_frames = 0;         // links closed for a wrong tag or an oversize length
  uint64_t peer_id_mismatches = 0; // outbound links to a node other than the one expected
  uint64_t queued_bytes = 0;       // unsent output, all links
  uint64_t read_buffer_bytes = 0;  // read buffers allocated, all links
  uint64_t max_read_buffer_bytes = 0;  // high-water mark of one link's read buffer
};

class Transport {
 public:
  // REQUIRES: options.node_id != 0, options.secret != nullptr,
  // options.max_frame_bytes <= kMaxFramePayload.
  Transport(uv_loop_t* loop, TransportOptions options, TransportHandler* handler);
  // Closes (see Close()).
  ~Transport();
  Transport(const Transport&) = delete;
  Transport& operator=(const Transport&) = delete;

  // Binds and listens on options.bind:options.port. The error names the
  // address ("cluster port 127.0.0.1:7381: address already in use").
  Status Listen();
  // The port listened on (the one picked for port 0), 0 if not listening.
  uint16_t port() const { return port_; }

  // Keeps an outbound link to node `id` at `address` ("host:port", numeric
  // IPv4 or IPv6 host, e.g. "[::1]:7381"), reconnecting with backoff. Setting
  // another address replaces the link. A link whose handshake shows another
  // node id is closed and logged. This node's own id is ignored.
  void SetPeer(uint64_t id, std::string address);
  // Closes every link to `id` (outbound and inbound) and forgets it.
  void RemovePeer(uint64_t id);
  // Dials `address`, whose node id is not known yet; retries with backoff
  // until the link is up (OnLinkUp(peer, cluster_id)), CancelDial() or Close().
  // The link then stays open until it fails; it is not redialled (SetPeer()
  // for that node opens its own outbound link).
  void Dial(std::string address);
  void CancelDial(std::string_view address);
  // A joining node learned its cluster: later handshakes use it, and the
  // listener accepts links (a node with no cluster refuses inbound links).
  void set_cluster_id(uint64_t id) { options_.cluster_id = id; }
  uint64_t cluster_id() const { return options_.cluster_id; }

  // Queues one frame to `peer` on an authenticated link to it (outbound
  // preferred). Returns false if there is none, if the payload is over
  // max_frame_bytes, or if the link's queue holds more than max_queued_bytes
  // with this frame (a frame is always accepted by an empty queue); the frame
  // is then dropped.
  bool Send(uint64_t peer, uint8_t type, std::string_view payload);
  bool Connected(uint64_t peer) const;
  // Loop time (uv_now, ms) of the last frame from `peer` or of its last link
  // coming up; -1 if never (or since RemovePeer).
  int64_t LastContactMs(uint64_t peer) const;
  // Unsent bytes queued to `peer` on all its links.
  uint64_t QueuedBytes(uint64_t peer) const;
  // Authenticated peers (a node with two links appears once).
  std::vector<uint64_t> ConnectedPeers() const;

  // Closes the listener and every link, and stops reconnecting. The handles
  // are released in the loop's next close phase (run the loop once more
  // before uv_loop_close); the Transport may be destroyed at once.
  void Close();

  const TransportStats& stats() const { return stats_; }

  // "1.2.3.4:5" or "[::1]:5" -> a socket address; false if not numeric.
  static bool ParseAddress(std::string_view address, sockaddr_storage* out);

 private:
  class Link;
  friend class Link;
  struct Peer {
    std::string address;
    Link* link = nullptr;      // the outbound link (connecting, handshaking or up)
    int64_t next_attempt_ms = 0;
    uint64_t backoff_ms = 0;
  };
  struct Dialing {
    Link* link = nullptr;
    int64_t next_attempt_ms = 0;
    uint64_t backoff_ms = 0;
  };

  int64_t Now() const;
  // Opens an outbound link for a peer (owner_peer) or a dial (dial_address)
  // and stores it in *slot; on a bad address schedules a retry instead.
  void Connect(Link** slot, const std::string& address, uint64_t expected_peer,
               uint64_t owner_peer, const std::string& dial_address, int64_t* next_attempt_ms,
               uint64_t* backoff_ms);
  static void OnConnect(uv_connect_t* req, int status);
  static void OnConnection(uv_stream_t* server, int status);
  void Accept();
  void StartHandshake(Link* link);
  void FeedHandshake(Link* link);
  // Counts, logs (rate-limited) and closes; an inbound failure also counts
  // against the peer's address in limiter_.
  void FailHandshake(Link* link, const Status& status, bool timeout);
  // The handshake of `link` completed.
  void LinkUp(Link* link);
  static void OnAlloc(uv_handle_t* handle, size_t suggested, uv_buf_t* buf);
  static void OnRead(uv_stream_t* stream, ssize_t nread, const uv_buf_t* buf);
  void ParseFrames(Link* link);
  void BadFrame(Link* link, const std::string& why);
  void EnqueueRaw(Link* link, std::string_view bytes);
  void ScheduleFlush();
  static void OnIdle(uv_idle_t* idle);
  void Flush(Link* link);
  static void OnWrite(uv_write_t* req, int status);
  // Closes `link`, updates the tables, schedules the reconnect of the peer or
  // dial it worked for; calls OnLinkDown last if it was the peer's last link
  // and `notify`.
  void CloseLink(Link* link, bool notify);
  void ScheduleRetry(int64_t* next_attempt_ms, uint64_t* backoff_ms);
  // Points the timer at the earliest handshake deadline or redial.
  void Rearm();
  static void OnTimer(uv_timer_t* timer);
  void RunTimers();
  void LogFailure(base::LogLimiter* limiter, const std::string& line);

  uv_loop_t* loop_;
  TransportOptions options_;
  TransportHandler* handler_;
  uv_tcp_t* listener_ = nullptr;  // heap: freed by its close callback
  uv_timer_t* timer_ = nullptr;
  uv_idle_t* idle_ = nullptr;
  uint16_t port_ = 0;
  bool closed_ = false;
  uint32_t inbound_handshaking_ = 0;
  std::unordered_set<Link*> links_;  // every open link; deleted by its close callback
  std::unordered_map<uint64_t, std::vector<Link*>> up_;  // authenticated links by peer
  // Peers whose last link Send() closed: told to the handler from the idle callback.
  std::vector<uint64_t> down_pending_;
  std::unordered_map<uint64_t, Peer> peers_;
  std::unordered_map<std::string, Dialing> dials_;
  std::unordered_map<uint64_t, int64_t> last_contact_;
  base::AuthLimiter limiter_;
  base::LogLimiter inbound_log_{10000};
  base::LogLimiter outbound_log_{10000};
  base::LogLimiter frame_log_{10000};
  base::LogLimiter refused_log_{10000};
  uint64_t jitter_state_;
  TransportStats stats_;
};

}  // namespace distri::cluster

#endif  // DISTRI_CLUSTER_TRANSPORT_H_
