// ClusterNode: what makes a server a cluster member. It owns the transport (src/cluster/,
// authenticated links on the cluster port) and speaks the node-to-node frames around Raft:
//
//   RAFT         a raft message, stepped into the RaftLog
//   FORWARD      a follower's write (proposal id, entry) for the leader to propose
//   FORWARD_ACK  the leader's answer: the index it got, or why it was refused (not proposed)
//   JOIN         a new node (id, address) asks to be added; any member passes it to the leader
//   PROMOTE      a learner that has caught up asks the leader to make it a voter
//   ADMIN        CLUSTER.REMOVE / TRANSFER / LEAVE given to a follower, passed to the leader
//   HELLO        sent on every link up: this node's client (RESP) and HTTP addresses
//
// Ephemeral traffic between nodes (pub/sub, service calls, statistics) never enters the log:
// frames of type kFirstPeerFrame and up go to the handler registered for their type
// (SetPeerFrameHandler), and only from current members. Types in use:
//   16-23 pub/sub (server/pubsub_routes.cc), 24-39 services (server/service_routes.cc),
//   40-47 statistics.
//
// It also implements the CLUSTER.* commands (commands::ClusterControl) and keeps the node's
// identity (<data>/cluster.id: cluster id and node id, chosen once, never reused: a node whose
// data directory was wiped comes back as a new node).
//
// Membership: a node started without --join founds a cluster of one (one voter, the same code
// path as any cluster). A node started with --join dials the given members until one answers,
// sends JOIN, is added as a learner, receives a snapshot and the log, then asks to be promoted
// once its applied index has reached the commit index it knows. Restarted, it recovers from
// its data directory; --join is then not needed.
//
// Threading: loop thread only.

#ifndef DISTRI_SERVER_CLUSTER_H_
#define DISTRI_SERVER_CLUSTER_H_

#include <uv.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "cluster/transport.h"
#include "commands/command.h"
#include "log/file_system.h"
#include "replication/raft_log.h"

namespace distri::server {

class Server;
struct ClusterOptions;

// <data>/cluster.id.
struct ClusterIdentity {
  uint64_t cluster_id = 0;  // 0: joining, not a member of any cluster yet
  uint64_t node_id = 0;
  // This node founded its cluster: if it crashed before its first Raft record was durable,
  // it founds it again at the next start (a joining node never founds one).
  bool founder = false;
};
// Reads the identity; NotFound if the file does not exist.
Result<ClusterIdentity> LoadClusterIdentity(const std::string& data_dir);
// Writes it durably (temp file, fsync, rename, directory fsync).
Status SaveClusterIdentity(const std::string& data_dir, const ClusterIdentity& identity);
// A random id in [1, 2^53): unique in practice, and exact as a JSON number.
uint64_t NewClusterId();

class ClusterNode final : public cluster::TransportHandler, public commands::ClusterControl {
 public:
  enum FrameType : uint8_t {
    kFrameRaft = 1,
    kFrameForward = 2,
    kFrameForwardAck = 3,
    kFrameJoin = 4,
    kFramePromote = 5,
    kFrameAdmin = 6,
    kFrameSnapshot = 7,       // a raft MsgSnapshot, stepped only once its file is complete
    kFrameSnapshotChunk = 8,  // checkpoint id u64 | size u64 | offset u64 | bytes
    kFrameHello = 9,          // client address '\n' http address
    kFirstPeerFrame = 16,     // from here: ephemeral traffic, to the registered handlers
  };
  // A snapshot transfer keeps at most this much queued on the link (flow control).
  static constexpr uint64_t kSnapshotWindow = 8ull << 20;
  static constexpr uint64_t kSnapshotChunk = 1ull << 20;
  // The largest snapshot file accepted from a peer.
  static constexpr uint64_t kMaxSnapshotBytes = 64ull << 30;

  ClusterNode(Server* server, uv_loop_t* loop, const ClusterOptions& options,
              std::shared_ptr<const cluster::ClusterSecret> secret, ClusterIdentity identity,
              std::string bind, std::string advertise);
  ~ClusterNode() override;

  // Opens the cluster port and starts dialing members (and --join addresses).
  // REQUIRES: the server's RaftLog exists.
  Status Start(replication::RaftLog* raft);
  void Close();

  // RaftLogHooks::send. False when the message could not be queued (no link, queue full).
  bool SendRaft(uint64_t to, std::string_view message);
  // RaftLogHooks::send_snapshot: streams the checkpoint the message refers to, then sends it.
  bool SendSnapshot(uint64_t to, std::string_view message);
  // Sends a write to the leader. False if there is no link to it.
  bool Forward(uint64_t leader, uint64_t proposal, std::string_view entry);
  // The membership changed: keep a link to every member.
  void OnMembersChanged();
  // The leader changed: writes forwarded to the old one that it never acknowledged get
  // UNKNOWN now (it may have proposed them before it went) instead of at the timeout.
  void OnLeaderChanged();
  // The proposal is answered (applied, failed or timed out).
  void Forget(uint64_t proposal) { unacked_.erase(proposal); }

  // ---- Ephemeral traffic between members (pub/sub, services, statistics) ----
  // Frames of `type` (>= kFirstPeerFrame) from a member go to `handler`. One per type.
  using PeerFrameHandler = std::function<void(uint64_t peer, std::string_view payload)>;
  void SetPeerFrameHandler(uint8_t type, PeerFrameHandler handler);
  // Called when a member's first link comes up (up) or its last link goes down (!up), and
  // when a member is removed (!up).
  using PeerLinkHandler = std::function<void(uint64_t peer, bool up)>;
  void AddPeerLinkHandler(PeerLinkHandler handler);
  // Queues a frame to a member. False: no link, or its queue is full (the frame is dropped:
  // ephemeral traffic is at most once). Frames to one peer keep their order while its link
  // stays up.
  bool SendToPeer(uint64_t peer, uint8_t type, std::string_view payload);
  // The other members with a link up now, in ascending id order.
  std::vector<uint64_t> LinkedMembers() const;
  // The other members (up or not), in ascending id order.
  std::vector<uint64_t> OtherMembers() const;
  // A member's client (RESP) and HTTP addresses as its HELLO said ("" until it has);
  // this node's own for its id.
  struct NodeAddresses {
    std::string client, http;
  };
  NodeAddresses AddressesOf(uint64_t id) const;
  // Bytes queued to a member and not yet written, on all its links (a sender's backlog).
  uint64_t QueuedBytesTo(uint64_t peer) const { return transport_->QueuedBytes(peer); }

  // One member as this node sees it now: CLUSTER.NODES and GET /api/cluster render these, so
  // the two always agree.
  struct MemberView {
    uint64_t id = 0;
    std::string address;        // its cluster address
    NodeAddresses addresses;    // client and HTTP, from its HELLO ("" until it has said)
    std::string_view role;      // "leader", "follower" or "learner" (from the membership)
    int64_t match_index = -1;   // -1: unknown here (only the leader knows the others')
    int64_t lag = -1;           // commit index - match index; -1 with match_index
    int64_t last_contact_ms = -1;  // ms since a frame from it; 0 for this node; -1: never
    // A link to it is up (followers hear only from the leader, so not "recent contact").
    bool healthy = false;
    bool self = false;
  };
  std::vector<MemberView> MemberViews();

  const ClusterIdentity& identity() const { return identity_; }
  const std::string& advertise() const { return advertise_; }
  const cluster::TransportStats& transport_stats() const { return transport_->stats(); }
  bool PeerConnected(uint64_t id) const { return transport_->Connected(id); }

  // cluster::TransportHandler
  void OnLinkUp(uint64_t peer, uint64_t cluster_id) override;
  void OnLinkDown(uint64_t peer) override;
  void OnFrame(uint64_t peer, uint8_t type, std::string_view payload) override;

  // commands::ClusterControl
  void Info(protocol::ReplyWriter& reply) override;
  void Nodes(protocol::ReplyWriter& reply) override;
  Status Remove(uint64_t id) override;
  Status Leave() override;
  Status Transfer(uint64_t id) override;
  Status Join(std::string_view address) override;

  // CLUSTER.JOIN: this node (a fresh cluster of one: no data, no other member) was reset
  // into a joining node; dial `address` and ask to be added.
  void JoinThrough(replication::RaftLog* raft, const std::string& address);

  // "leader", "follower", "candidate", "learner" or "removed".
  std::string_view RoleName() const;

 private:
  // An outgoing snapshot: its file is read and sent in chunks as the link drains.
  struct SnapshotOut {
    std::unique_ptr<log::ReadOnlyFile> file;  // the checkpoint (null: a snapshot with no data)
    uint64_t id = 0, size = 0, offset = 0;
    std::string message;  // the MsgSnapshot, sent after the last chunk
  };
  // An incoming one, written to a temp file until complete.
  struct SnapshotIn {
    std::unique_ptr<log::WritableFile> file;
    uint64_t id = 0, size = 0, offset = 0;
    std::string temp_path;
  };
  static void OnTimer(uv_timer_t* timer);
  static void OnPumpTimer(uv_timer_t* timer);
  // Sends what the links can take of every transfer; reports finished ones to raft.
  void PumpSnapshots();
  void EndTransfer(uint64_t to, bool delivered);
  void HandleSnapshotChunk(uint64_t peer, std::string_view payload);
  void HandleSnapshotMessage(uint64_t peer, std::string_view message);
  void DropIncoming(uint64_t peer);
  // Once a second: a joining node asks again; a caught-up learner asks to be promoted.
  void Tick();
  void SendJoin(uint64_t peer);
  void HandleForward(uint64_t peer, std::string_view payload);
  void HandleForwardAck(std::string_view payload);
  void HandleJoin(uint64_t peer, std::string_view payload);
  Status Admin(uint8_t op, uint64_t id);
  void SendHello(uint64_t peer);
  bool IsMember(uint64_t id) const;

  Server* server_;
  uv_loop_t* loop_;
  const ClusterOptions& options_;
  ClusterIdentity identity_;
  std::string advertise_;
  std::vector<std::string> join_;  // addresses dialed until this node is a member
  std::unique_ptr<cluster::Transport> transport_;
  replication::RaftLog* raft_ = nullptr;
  uv_timer_t* timer_ = nullptr;
  std::set<uint64_t> peers_;  // ids given to transport_->SetPeer
  std::map<uint64_t, uint64_t> unacked_;  // forwarded proposal -> the leader it went to
  std::map<uint64_t, SnapshotOut> transfers_;  // by destination node
  std::map<uint64_t, SnapshotIn> incoming_;   // by source node
  uv_timer_t* pump_timer_ = nullptr;
  bool closed_ = false;
  NodeAddresses own_addresses_;
  std::map<uint64_t, NodeAddresses> peer_addresses_;  // from HELLO frames
  std::map<uint8_t, PeerFrameHandler> peer_frame_handlers_;
  std::vector<PeerLinkHandler> peer_link_handlers_;
  std::set<uint64_t> linked_;  // members with a link up, as told to peer_link_handlers_
};

}  // namespace distri::server

#endif  // DISTRI_SERVER_CLUSTER_H_
