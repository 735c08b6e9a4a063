// ClusterNode (see cluster.h) and the server's cluster plumbing: starting Raft, proposing or
// forwarding writes, linearizable reads, request timeouts.

#include "server/cluster.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <openssl/rand.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "base/endian.h"
#include "base/logging.h"
#include "replication/groups.h"
#include "server/client.h"
#include "server/server.h"

namespace distri::server {

namespace {

constexpr uint8_t kAdminRemove = 1;
constexpr uint8_t kAdminTransfer = 2;

std::string IdentityPath(const std::string& data_dir) { return data_dir + "/cluster.id"; }

const char* RoleText(replication::Role role) {
  switch (role) {
    case replication::Role::kLeader: return "leader";
    case replication::Role::kCandidate: return "candidate";
    case replication::Role::kPreCandidate: return "candidate";
    case replication::Role::kFollower: return "follower";
  }
  return "follower";
}

}  // namespace

// ---------------------------------------------------------------------------
// Identity

uint64_t NewClusterId() {
  uint64_t v = 0;
  while (v == 0) {
    CHECK(RAND_bytes(reinterpret_cast<unsigned char*>(&v), sizeof v) == 1) << "RAND_bytes failed";
    v &= (uint64_t{1} << 53) - 1;
  }
  return v;
}

Result<ClusterIdentity> LoadClusterIdentity(const std::string& data_dir) {
  const std::string path = IdentityPath(data_dir);
  std::ifstream in(path);
  if (!in) {
    if (errno == ENOENT) return Status::NotFound(path);
    return Status::IOError("cannot read " + path + ": " + std::strerror(errno));
  }
  std::string magic, key1, key2, key3;
  ClusterIdentity id;
  int founder = 0;
  if (!(in >> magic >> key1 >> id.cluster_id >> key2 >> id.node_id >> key3 >> founder) ||
      magic != "distri-cluster-v1" || key1 != "cluster_id" || key2 != "node_id" ||
      key3 != "founder" || id.node_id == 0) {
    return Status::Corruption(path + " is not a Distri cluster identity file");
  }
  id.founder = founder != 0;
  return id;
}

Status SaveClusterIdentity(const std::string& data_dir, const ClusterIdentity& identity) {
  const std::string path = IdentityPath(data_dir);
  const std::string temp = path + ".tmp";
  std::ostringstream text;
  text << "distri-cluster-v1\ncluster_id " << identity.cluster_id << "\nnode_id "
       << identity.node_id << "\nfounder " << (identity.founder ? 1 : 0) << "\n";
  log::FileSystem* fs = log::DefaultFileSystem();
  {
    auto file = fs->OpenWritable(temp, /*truncate=*/true);
    if (!file.ok()) return file.status();
    DISTRI_RETURN_IF_ERROR(file.value()->WriteAt(0, text.str()));
    DISTRI_RETURN_IF_ERROR(file.value()->Sync());
  }
  DISTRI_RETURN_IF_ERROR(fs->Rename(temp, path));
  return fs->SyncDir(data_dir);
}

// ---------------------------------------------------------------------------
// ClusterNode

ClusterNode::ClusterNode(Server* server, uv_loop_t* loop, const ClusterOptions& options,
                         std::shared_ptr<const cluster::ClusterSecret> secret,
                         ClusterIdentity identity, std::string bind, std::string advertise)
    : server_(server),
      loop_(loop),
      options_(options),
      identity_(identity),
      advertise_(std::move(advertise)),
      join_(options.join) {
  cluster::TransportOptions t;
  t.bind = std::move(bind);
  t.port = static_cast<uint16_t>(options.port);
  t.node_id = identity.node_id;
  t.cluster_id = identity.cluster_id;
  t.secret = std::move(secret);
  transport_ = std::make_unique<cluster::Transport>(loop, std::move(t), this);
}

ClusterNode::~ClusterNode() { Close(); }

Status ClusterNode::Start(replication::RaftLog* raft) {
  raft_ = raft;
  DISTRI_RETURN_IF_ERROR(transport_->Listen());
  // Peers learn where clients reach this node from HELLO: the advertised host, our ports.
  const std::string host = advertise_.substr(0, advertise_.rfind(':'));
  const auto& settings = server_->settings();
  own_addresses_.client = host + ":" + std::to_string(settings.port);
  if (settings.http_port > 0) own_addresses_.http = host + ":" + std::to_string(settings.http_port);
  OnMembersChanged();
  // A node that is not yet a member dials the --join addresses until one answers.
  if (raft_->Members().empty()) {
    for (const std::string& address : join_) transport_->Dial(address);
  }
  timer_ = new uv_timer_t;
  uv_timer_init(loop_, timer_);
  timer_->data = this;
  uv_timer_start(timer_, OnTimer, 1000, 1000);
  LOG(INFO) << "cluster: node " << identity_.node_id << " of cluster " << identity_.cluster_id
            << " listening on port " << transport_->port() << " (advertised as " << advertise_
            << ")";
  return Status::Ok();
}

void ClusterNode::Close() {
  if (closed_) return;
  closed_ = true;
  transfers_.clear();
  for (auto it = incoming_.begin(); it != incoming_.end(); it = incoming_.begin()) {
    DropIncoming(it->first);
  }
  if (pump_timer_ != nullptr) {
    uv_timer_stop(pump_timer_);
    uv_close(reinterpret_cast<uv_handle_t*>(pump_timer_),
             [](uv_handle_t* h) { delete reinterpret_cast<uv_timer_t*>(h); });
    pump_timer_ = nullptr;
  }
  if (timer_ != nullptr) {
    uv_timer_stop(timer_);
    uv_close(reinterpret_cast<uv_handle_t*>(timer_),
             [](uv_handle_t* h) { delete reinterpret_cast<uv_timer_t*>(h); });
    timer_ = nullptr;
  }
  transport_->Close();
}

bool ClusterNode::SendRaft(uint64_t to, std::string_view message) {
  if (closed_) return false;
  return transport_->Send(to, kFrameRaft, message);
}

// ---------------------------------------------------------------------------
// Snapshots beside Raft: the leader streams the checkpoint file a MsgSnapshot refers to in
// chunks, at most kSnapshotWindow queued on the link at a time, then the message. The
// follower writes the chunks to a temp file, makes it durable under its final name, and steps
// the message only if that file is complete (otherwise it drops it and raft sends again).

bool ClusterNode::SendSnapshot(uint64_t to, std::string_view message) {
  if (closed_) return false;
  auto snap = replication::RaftNode::SnapshotOf(message);
  if (!snap.ok()) return false;
  SnapshotOut t;
  t.message = std::string(message);
  if (!snap.value().second.empty()) {
    uint64_t id = 0, size = 0;
    if (!replication::DecodeSnapshotRef(snap.value().second, &id, &size)) return false;
    // Mapped now: a newer checkpoint may delete the file meanwhile; the mapping stays.
    const std::string path = raft_->CheckpointPath(id);
    auto file = log::DefaultFileSystem()->OpenReadOnly(path);
    if (!file.ok() || file.value()->data().size() != size) {
      LOG(WARNING) << "cluster: cannot send snapshot " << path << " to node " << to << ": "
                   << (file.ok() ? "size differs" : file.status().ToString());
      return false;
    }
    t.file = std::move(file).value();
    t.id = id;
    t.size = size;
  }
  transfers_.erase(to);
  LOG(INFO) << "cluster: sending snapshot " << t.id << " (" << t.size << " bytes) to node "
            << to;
  transfers_.emplace(to, std::move(t));
  if (pump_timer_ == nullptr) {
    pump_timer_ = new uv_timer_t;
    uv_timer_init(loop_, pump_timer_);
    pump_timer_->data = this;
  }
  // The pump runs from the timer: never inside raft's Ready window, where this is called.
  uv_timer_start(pump_timer_, OnPumpTimer, 0, 5);
  return true;
}

void ClusterNode::OnPumpTimer(uv_timer_t* timer) {
  static_cast<ClusterNode*>(timer->data)->PumpSnapshots();
}

void ClusterNode::PumpSnapshots() {
  std::vector<std::pair<uint64_t, bool>> done;
  std::string frame;
  for (auto& [to, t] : transfers_) {
    if (!transport_->Connected(to)) {
      done.push_back({to, false});
      continue;
    }
    bool failed = false;
    while (t.offset < t.size && transport_->QueuedBytes(to) < kSnapshotWindow) {
      const uint64_t n = std::min(kSnapshotChunk, t.size - t.offset);
      frame.clear();
      base::AppendLe64(&frame, t.id);
      base::AppendLe64(&frame, t.size);
      base::AppendLe64(&frame, t.offset);
      frame.append(t.file->data().substr(t.offset, n));
      if (!transport_->Send(to, kFrameSnapshotChunk, frame)) {
        failed = true;
        break;
      }
      t.offset += n;
    }
    if (failed) {
      done.push_back({to, false});
    } else if (t.offset == t.size) {
      done.push_back({to, transport_->Send(to, kFrameSnapshot, t.message)});
    }
  }
  for (auto [to, delivered] : done) EndTransfer(to, delivered);
  if (transfers_.empty() && pump_timer_ != nullptr) uv_timer_stop(pump_timer_);
}

void ClusterNode::EndTransfer(uint64_t to, bool delivered) {
  auto it = transfers_.find(to);
  if (it == transfers_.end()) return;
  LOG(INFO) << "cluster: snapshot " << it->second.id << " to node " << to
            << (delivered ? " sent" : " failed (raft will retry)");
  transfers_.erase(it);
  // Queued counts as delivered: if the follower did not get it, it rejects the next append
  // and raft sends a snapshot again.
  raft_->ReportSnapshot(to, delivered);
}

void ClusterNode::DropIncoming(uint64_t peer) {
  auto it = incoming_.find(peer);
  if (it == incoming_.end()) return;
  const std::string temp_path = std::move(it->second.temp_path);
  incoming_.erase(it);  // closes the file
  (void)log::DefaultFileSystem()->Unlink(temp_path);
}

void ClusterNode::HandleSnapshotChunk(uint64_t peer, std::string_view payload) {
  if (payload.size() < 24) return;
  const uint64_t id = base::GetLe64(payload.data());
  const uint64_t size = base::GetLe64(payload.data() + 8);
  const uint64_t offset = base::GetLe64(payload.data() + 16);
  std::string_view bytes = payload.substr(24);
  if (size > kMaxSnapshotBytes || offset + bytes.size() > size) return DropIncoming(peer);
  auto it = incoming_.find(peer);
  if (offset == 0) {
    DropIncoming(peer);  // a new transfer replaces an unfinished one
    SnapshotIn in;
    in.id = id;
    in.size = size;
    in.temp_path = raft_->ReceivedSnapshotPath(id) + "." + std::to_string(peer) + ".tmp";
    auto file = log::DefaultFileSystem()->OpenWritable(in.temp_path, /*truncate=*/true);
    if (!file.ok()) {
      LOG(ERROR) << "cluster: " << file.status().ToString();
      return;
    }
    in.file = std::move(file).value();
    it = incoming_.emplace(peer, std::move(in)).first;
  }
  if (it == incoming_.end() || it->second.id != id || it->second.size != size ||
      it->second.offset != offset) {
    return DropIncoming(peer);  // out of order: the sender starts again
  }
  SnapshotIn& in = it->second;
  if (Status st = in.file->WriteAt(offset, bytes); !st.ok()) {
    LOG(ERROR) << "cluster: " << st.ToString();
    return DropIncoming(peer);
  }
  in.offset += bytes.size();
  if (in.offset < in.size) return;
  // Complete: durable under its final name before raft may rely on it.
  log::FileSystem* fs = log::DefaultFileSystem();
  const std::string path = raft_->ReceivedSnapshotPath(id);
  Status st = in.file->Sync();
  if (st.ok()) st = fs->Rename(in.temp_path, path);
  if (st.ok()) st = fs->SyncDir(path.substr(0, path.rfind('/')));
  if (!st.ok()) {
    LOG(ERROR) << "cluster: cannot keep received snapshot " << path << ": " << st.ToString();
    return DropIncoming(peer);
  }
  incoming_.erase(it);
  LOG(INFO) << "cluster: received snapshot " << id << " (" << size << " bytes) from node "
            << peer;
}

void ClusterNode::HandleSnapshotMessage(uint64_t peer, std::string_view message) {
  auto snap = replication::RaftNode::SnapshotOf(message);
  if (!snap.ok()) return;
  uint64_t id = 0, size = 0;
  if (!snap.value().second.empty()) {
    if (!replication::DecodeSnapshotRef(snap.value().second, &id, &size)) return;
    struct stat st;
    const std::string path = raft_->ReceivedSnapshotPath(id);
    if (::stat(path.c_str(), &st) != 0 || static_cast<uint64_t>(st.st_size) != size) {
      LOG(WARNING) << "cluster: snapshot " << id << " from node " << peer
                   << " is not complete here; dropped (raft will send it again)";
      return;
    }
  }
  Status st = raft_->Step(message);
  if (!st.ok()) LOG(DEBUG) << "cluster: snapshot message from " << peer << ": " << st.ToString();
}

bool ClusterNode::Forward(uint64_t leader, uint64_t proposal, std::string_view entry) {
  std::string frame;
  frame.reserve(8 + entry.size());
  base::AppendLe64(&frame, proposal);
  frame.append(entry);
  if (!transport_->Send(leader, kFrameForward, frame)) return false;
  unacked_[proposal] = leader;
  return true;
}

void ClusterNode::OnLeaderChanged() {
  const uint64_t leader = raft_->leader_id();
  std::vector<uint64_t> orphaned;
  for (const auto& [proposal, to] : unacked_) {
    if (to != leader) orphaned.push_back(proposal);
  }
  for (uint64_t proposal : orphaned) {
    unacked_.erase(proposal);
    server_->FailProposal(proposal, state::ApplyResult::Error(
        "UNKNOWN the leader changed before it acknowledged the forwarded write; it may or may "
        "not apply"));
  }
}

void ClusterNode::OnMembersChanged() {
  if (raft_ == nullptr || closed_) return;
  std::set<uint64_t> now;
  for (const auto& [id, address] : raft_->addresses()) {
    if (id == identity_.node_id || address.empty()) continue;
    now.insert(id);
    transport_->SetPeer(id, address);
  }
  for (uint64_t id : peers_) {
    if (now.contains(id)) continue;
    transport_->RemovePeer(id);
    peer_addresses_.erase(id);
    if (linked_.erase(id) != 0) {
      for (const PeerLinkHandler& handler : peer_link_handlers_) handler(id, false);
    }
  }
  // A link that came up before its node was a member (a joiner's) counts from now.
  for (uint64_t id : now) {
    if (transport_->Connected(id) && linked_.insert(id).second) {
      for (const PeerLinkHandler& handler : peer_link_handlers_) handler(id, true);
    }
  }
  peers_ = std::move(now);
  if (!raft_->Members().empty()) {
    // A member now: stop dialing the join addresses.
    for (const std::string& address : join_) transport_->CancelDial(address);
  }
}

void ClusterNode::OnLinkUp(uint64_t peer, uint64_t cluster_id) {
  if (identity_.cluster_id == 0 && cluster_id != 0) {
    // A joining node learns its cluster from the first member it authenticates with.
    identity_.cluster_id = cluster_id;
    transport_->set_cluster_id(cluster_id);
    Status st = SaveClusterIdentity(server_->settings().data_dir, identity_);
    if (!st.ok()) LOG(ERROR) << "cluster: " << st.ToString();
    LOG(INFO) << "cluster: joining cluster " << cluster_id << " through node " << peer;
  }
  if (raft_ != nullptr && raft_->Members().empty()) SendJoin(peer);
  SendHello(peer);
  if (IsMember(peer) && linked_.insert(peer).second) {
    for (const PeerLinkHandler& handler : peer_link_handlers_) handler(peer, true);
  }
}

void ClusterNode::OnLinkDown(uint64_t peer) {
  if (linked_.erase(peer) == 0) return;
  for (const PeerLinkHandler& handler : peer_link_handlers_) handler(peer, false);
}

// ---------------------------------------------------------------------------
// Ephemeral traffic between members

void ClusterNode::SendHello(uint64_t peer) {
  std::string frame = own_addresses_.client;
  frame.push_back('\n');
  frame.append(own_addresses_.http);
  transport_->Send(peer, kFrameHello, frame);
}

bool ClusterNode::IsMember(uint64_t id) const {
  return raft_ != nullptr && id != identity_.node_id && raft_->addresses().contains(id);
}

void ClusterNode::SetPeerFrameHandler(uint8_t type, PeerFrameHandler handler) {
  CHECK(type >= kFirstPeerFrame);
  peer_frame_handlers_[type] = std::move(handler);
}

void ClusterNode::AddPeerLinkHandler(PeerLinkHandler handler) {
  peer_link_handlers_.push_back(std::move(handler));
}

bool ClusterNode::SendToPeer(uint64_t peer, uint8_t type, std::string_view payload) {
  if (closed_ || !IsMember(peer)) return false;
  return transport_->Send(peer, type, payload);
}

std::vector<uint64_t> ClusterNode::LinkedMembers() const {
  return std::vector<uint64_t>(linked_.begin(), linked_.end());
}

std::vector<uint64_t> ClusterNode::OtherMembers() const {
  std::vector<uint64_t> out;
  if (raft_ == nullptr) return out;
  for (const auto& [id, address] : raft_->addresses()) {
    if (id != identity_.node_id) out.push_back(id);
  }
  std::sort(out.begin(), out.end());
  return out;
}

ClusterNode::NodeAddresses ClusterNode::AddressesOf(uint64_t id) const {
  if (id == identity_.node_id) return own_addresses_;
  auto it = peer_addresses_.find(id);
  return it == peer_addresses_.end() ? NodeAddresses{} : it->second;
}

void ClusterNode::SendJoin(uint64_t peer) {
  std::string frame;
  base::AppendLe64(&frame, identity_.node_id);
  frame.append(advertise_);
  transport_->Send(peer, kFrameJoin, frame);
}

void ClusterNode::OnTimer(uv_timer_t* timer) { static_cast<ClusterNode*>(timer->data)->Tick(); }

void ClusterNode::Tick() {
  if (raft_ == nullptr || closed_) return;
  const uint64_t me = identity_.node_id;
  if (raft_->Members().empty()) {
    // Not added yet (or the snapshot has not come): ask every member we reach again.
    for (uint64_t peer : transport_->ConnectedPeers()) SendJoin(peer);
    return;
  }
  if (raft_->IsLearner(me) && raft_->leader_id() != 0) {
    auto status = raft_->GetStatus();
    if (status.ok() && status.value().commit > 0 &&
        raft_->applied_index() >= status.value().commit) {
      std::string frame;
      base::AppendLe64(&frame, me);
      transport_->Send(raft_->leader_id(), kFramePromote, frame);
    }
  }
}

void ClusterNode::OnFrame(uint64_t peer, uint8_t type, std::string_view payload) {
  if (raft_ == nullptr || closed_) return;
  switch (type) {
    case kFrameRaft: {
      Status st = raft_->Step(payload);
      if (!st.ok()) LOG(DEBUG) << "cluster: raft message from " << peer << ": " << st.ToString();
      return;
    }
    case kFrameSnapshot:
      return HandleSnapshotMessage(peer, payload);
    case kFrameSnapshotChunk:
      return HandleSnapshotChunk(peer, payload);
    case kFrameForward:
      return HandleForward(peer, payload);
    case kFrameForwardAck:
      return HandleForwardAck(payload);
    case kFrameJoin:
      return HandleJoin(peer, payload);
    case kFramePromote:
      if (payload.size() == 8 && raft_->is_leader()) {
        const uint64_t id = base::GetLe64(payload.data());
        if (raft_->IsLearner(id)) {
          Status st = raft_->Promote(id);
          LOG(INFO) << "cluster: promoting learner " << id << " to voter: " << st.ToString();
        }
      }
      return;
    case kFrameAdmin:
      if (payload.size() == 9) (void)Admin(static_cast<uint8_t>(payload[0]),
                                           base::GetLe64(payload.data() + 1));
      return;
    case kFrameHello: {
      const size_t nl = payload.find('\n');
      if (nl == std::string_view::npos || payload.size() > 1024) return;
      peer_addresses_[peer] = {std::string(payload.substr(0, nl)),
                               std::string(payload.substr(nl + 1))};
      return;
    }
    default:
      break;
  }
  if (type >= kFirstPeerFrame) {
    auto it = peer_frame_handlers_.find(type);
    // Ephemeral traffic only from members: a removed node's stale link delivers nothing.
    if (it != peer_frame_handlers_.end() && IsMember(peer)) return it->second(peer, payload);
  }
  LOG(DEBUG) << "cluster: unknown frame type " << int{type} << " from " << peer;
}

void ClusterNode::HandleForward(uint64_t peer, std::string_view payload) {
  if (payload.size() < 8) return;
  const uint64_t proposal = base::GetLe64(payload.data());
  std::string ack;
  base::AppendLe64(&ack, proposal);
  auto index = raft_->ProposeFor(peer, proposal, payload.substr(8));
  if (index.ok()) {
    base::AppendLe64(&ack, index.value());
  } else {
    base::AppendLe64(&ack, 0);
    ack.append("TRYAGAIN the leader refused the forwarded write (" + index.status().message() +
               "); it was not applied");
  }
  transport_->Send(peer, kFrameForwardAck, ack);
}

void ClusterNode::HandleForwardAck(std::string_view payload) {
  if (payload.size() < 16) return;
  const uint64_t proposal = base::GetLe64(payload.data());
  const uint64_t index = base::GetLe64(payload.data() + 8);
  if (unacked_.erase(proposal) == 0) return;  // already failed (leader change, timeout)
  if (index != 0) {
    raft_->ExpectAt(index, proposal);
  } else {
    server_->FailProposal(proposal, state::ApplyResult::Error(payload.substr(16)));
  }
}

void ClusterNode::HandleJoin(uint64_t peer, std::string_view payload) {
  if (payload.size() < 8 || payload.size() > 8 + 256) return;
  const uint64_t id = base::GetLe64(payload.data());
  const std::string address(payload.substr(8));
  // A node asks for itself; a member may pass on another node's request.
  const bool from_member = raft_->IsVoter(peer) || raft_->IsLearner(peer);
  if (id == 0 || (id != peer && !from_member)) return;
  if (raft_->IsVoter(id) || raft_->IsLearner(id)) return;
  if (raft_->is_leader()) {
    Status st = raft_->AddLearner(id, address);
    LOG(INFO) << "cluster: node " << id << " at " << address << " asks to join: "
              << (st.ok() ? "adding it as a learner" : st.ToString());
  } else if (raft_->leader_id() != 0) {
    // Not the leader: pass it on (the leader accepts it because we are a member).
    transport_->Send(raft_->leader_id(), kFrameJoin, payload);
  }
}

std::string_view ClusterNode::RoleName() const {
  if (raft_->removed()) return "removed";
  if (raft_->IsLearner(identity_.node_id)) return "learner";
  return RoleText(raft_->role());
}

void ClusterNode::Info(protocol::ReplyWriter& reply) {
  auto status = raft_->GetStatus();
  const replication::RaftStatus s = status.ok() ? status.value() : replication::RaftStatus{};
  std::vector<uint64_t> voters, learners;
  for (const replication::MemberInfo& m : raft_->Members()) {
    (m.voter ? voters : learners).push_back(m.id);
  }
  reply.Map(9);
  reply.Bulk("cluster_id");
  reply.Integer(static_cast<int64_t>(identity_.cluster_id));
  reply.Bulk("node_id");
  reply.Integer(static_cast<int64_t>(identity_.node_id));
  reply.Bulk("role");
  reply.Bulk(RoleName());
  reply.Bulk("leader_id");
  reply.Integer(static_cast<int64_t>(raft_->leader_id()));
  reply.Bulk("term");
  reply.Integer(static_cast<int64_t>(s.term));
  reply.Bulk("commit_index");
  reply.Integer(static_cast<int64_t>(s.commit));
  reply.Bulk("applied_index");
  reply.Integer(static_cast<int64_t>(raft_->applied_index()));
  reply.Bulk("voters");
  reply.Array(voters.size());
  for (uint64_t id : voters) reply.Integer(static_cast<int64_t>(id));
  reply.Bulk("learners");
  reply.Array(learners.size());
  for (uint64_t id : learners) reply.Integer(static_cast<int64_t>(id));
}

std::vector<ClusterNode::MemberView> ClusterNode::MemberViews() {
  std::vector<MemberView> out;
  auto status = raft_->GetStatus();
  const uint64_t commit = status.ok() ? status.value().commit : 0;
  const std::vector<std::pair<uint64_t, uint64_t>> progress = raft_->Progress();
  for (const replication::MemberInfo& m : raft_->Members()) {
    MemberView v;
    v.id = m.id;
    v.address = m.address;
    v.addresses = AddressesOf(m.id);
    v.self = m.id == identity_.node_id;
    v.role = m.id == raft_->leader_id() ? "leader" : (m.voter ? "follower" : "learner");
    v.last_contact_ms = v.self ? 0 : transport_->LastContactMs(m.id);
    if (!v.self && v.last_contact_ms >= 0) {
      v.last_contact_ms = static_cast<int64_t>(uv_now(loop_)) - v.last_contact_ms;
    }
    v.healthy = v.self || transport_->Connected(m.id);
    // Match index: the leader knows every member's; a follower knows its own log only
    // (its last index).
    for (const auto& [id, matched] : progress) {
      if (id == m.id) v.match_index = static_cast<int64_t>(matched);
    }
    if (v.match_index < 0 && v.self) v.match_index = static_cast<int64_t>(raft_->last_index());
    if (v.match_index >= 0) {
      v.lag = std::max<int64_t>(0, static_cast<int64_t>(commit) - v.match_index);
    }
    out.push_back(std::move(v));
  }
  return out;
}

void ClusterNode::Nodes(protocol::ReplyWriter& reply) {
  const std::vector<MemberView> members = MemberViews();
  reply.Array(members.size());
  for (const MemberView& m : members) {
    reply.Map(9);
    reply.Bulk("id");
    reply.Integer(static_cast<int64_t>(m.id));
    reply.Bulk("address");
    reply.Bulk(m.address);
    reply.Bulk("client_address");
    reply.Bulk(m.addresses.client);
    reply.Bulk("http_address");
    reply.Bulk(m.addresses.http);
    reply.Bulk("role");
    reply.Bulk(m.role);
    reply.Bulk("match_index");
    reply.Integer(m.match_index);
    reply.Bulk("lag");
    reply.Integer(m.lag);
    reply.Bulk("last_contact_ms");
    reply.Integer(m.last_contact_ms);
    reply.Bulk("healthy");
    reply.Boolean(m.healthy);
  }
}

Status ClusterNode::Admin(uint8_t op, uint64_t id) {
  if (!raft_->is_leader()) {
    const uint64_t leader = raft_->leader_id();
    if (leader == 0 || leader == identity_.node_id) {
      return Status(Code::kBusy, "TRYAGAIN no leader is known; retry");
    }
    std::string frame(1, static_cast<char>(op));
    base::AppendLe64(&frame, id);
    if (!transport_->Send(leader, kFrameAdmin, frame)) {
      return Status(Code::kBusy, "TRYAGAIN the leader is not reachable from this node");
    }
    return Status::Ok();
  }
  switch (op) {
    case kAdminRemove:
      LOG(INFO) << "cluster: removing node " << id;
      return raft_->Remove(id);
    case kAdminTransfer:
      LOG(INFO) << "cluster: transferring leadership to node " << id;
      return raft_->TransferLeader(id);
  }
  return Status::InvalidArgument("unknown cluster operation");
}

Status ClusterNode::Remove(uint64_t id) {
  if (!raft_->IsVoter(id) && !raft_->IsLearner(id)) {
    return Status::InvalidArgument("no node " + std::to_string(id) + " in this cluster");
  }
  return Admin(kAdminRemove, id);
}

Status ClusterNode::Leave() { return Remove(identity_.node_id); }

Status ClusterNode::Transfer(uint64_t id) {
  if (!raft_->IsVoter(id)) {
    return Status::InvalidArgument("node " + std::to_string(id) + " is not a voter");
  }
  return Admin(kAdminTransfer, id);
}

Status ClusterNode::Join(std::string_view address) {
  sockaddr_storage addr;
  if (!cluster::Transport::ParseAddress(address, &addr)) {
    return Status::InvalidArgument("CLUSTER.JOIN takes a member's cluster address as ip:port");
  }
  // Run on the new node, naming any member (as --join). Only a node that is still a fresh
  // cluster of one may give up its own cluster: nothing in it may be lost.
  std::vector<replication::MemberInfo> members = raft_->Members();
  if (members.size() != 1 || members[0].id != identity_.node_id) {
    return Status::InvalidArgument(
        "this node already has other members; CLUSTER.JOIN is run on a new node (a cluster "
        "of one with no data), naming any member of the cluster to join");
  }
  if (server_->state().key_count() != 0 || server_->state().user_room_count() != 0) {
    return Status::InvalidArgument(
        "this node holds data; only a node with none may join another cluster (its own "
        "would be discarded)");
  }
  return server_->RejoinThrough(std::string(address));
}

void ClusterNode::JoinThrough(replication::RaftLog* raft, const std::string& address) {
  raft_ = raft;
  identity_.cluster_id = 0;
  identity_.founder = false;
  transport_->set_cluster_id(0);
  for (uint64_t id : peers_) transport_->RemovePeer(id);
  peers_.clear();
  unacked_.clear();
  join_ = {address};
  transport_->Dial(address);
  LOG(INFO) << "cluster: node " << identity_.node_id << " left its own cluster to join through "
            << address;
}

// ---------------------------------------------------------------------------
// Server: the cluster side of starting, proposing and reading

Status Server::StartCluster() {
  const ClusterOptions& c = options_.cluster;
  const commands::ServerSettings& s = options_.settings;
  // A mirror may resume FROM its revision on any node: every node keeps every room's history.
  options_.mirror.retain_all_rooms = true;
  auto secret = cluster::LoadClusterSecret(c.secret_file);
  if (!secret.ok()) return secret.status();
  ClusterIdentity identity;
  auto loaded = LoadClusterIdentity(s.data_dir);
  if (loaded.ok()) {
    identity = loaded.value();
  } else if (loaded.status().code() == Code::kNotFound) {
    identity.node_id = NewClusterId();
    identity.founder = c.join.empty();
    identity.cluster_id = identity.founder ? NewClusterId() : 0;
    DISTRI_RETURN_IF_ERROR(SaveClusterIdentity(s.data_dir, identity));
  } else {
    return loaded.status();
  }
  // Bootstraps only if the Raft log is empty (a founder that crashed before its first record).
  const bool founding = identity.founder;
  const std::string advertise =
      c.advertise.empty() ? s.bind + ":" + std::to_string(c.port) : c.advertise;

  auto opened = OpenRaftLog(identity, advertise, founding);
  if (!opened.ok()) return opened.status();
  if (opened.value()->Members().empty() && c.join.empty()) {
    return Status::InvalidArgument(
        "this node has not finished joining its cluster: start it with --join <member address>");
  }
  raft_ = opened.value().get();
  log_ = std::move(opened).value();
  cluster_ = std::make_unique<ClusterNode>(this, &loop_, options_.cluster, secret.value(),
                                           identity, s.bind, advertise);
  return Status::Ok();
}

Result<std::unique_ptr<replication::RaftLog>> Server::OpenRaftLog(const ClusterIdentity& identity,
                                                                   const std::string& advertise,
                                                                   bool bootstrap) {
  const ClusterOptions& c = options_.cluster;
  const commands::ServerSettings& s = options_.settings;
  replication::RaftLogOptions ro;
  ro.dir = s.data_dir + "/raft";
  ro.fsync = s.fsync;
  ro.segment_bytes = options_.segment_bytes;
  ro.node_id = identity.node_id;
  ro.address = advertise;
  ro.bootstrap = bootstrap;
  ro.tick_ms = c.tick_ms;
  ro.election_tick = c.election_ticks;
  ro.heartbeat_tick = c.heartbeat_ticks;
  ro.compact_bytes = options_.snapshot_bytes;
  replication::RaftLogHooks hooks;
  hooks.send = [this](uint64_t to, int32_t, std::string_view message) {
    return cluster_ != nullptr && cluster_->SendRaft(to, message);
  };
  hooks.send_snapshot = [this](uint64_t to, std::string_view message) {
    return cluster_ != nullptr && cluster_->SendSnapshot(to, message);
  };
  hooks.load_state = [this](uint64_t index, std::string_view state) {
    return LoadState(index, state);
  };
  hooks.save_state = [this](const log::SnapshotWriteFn& write) {
    return state_.SaveSnapshot(write);
  };
  hooks.state_index = [this] { return state_.applied_index(); };
  hooks.on_members = [this] {
    if (cluster_) cluster_->OnMembersChanged();
  };
  hooks.on_role = [this] {
    if (cluster_) cluster_->OnLeaderChanged();
    LOG(INFO) << "cluster: " << (raft_->is_leader() ? "this node is the leader" : "leader is node ")
              << (raft_->is_leader() ? "" : std::to_string(raft_->leader_id()));
  };
  hooks.on_read_index = [this](uint64_t ctx, uint64_t index) { OnReadIndex(ctx, index); };
  return replication::RaftLog::Open(&loop_, ro, std::move(hooks));
}

Status Server::RejoinThrough(const std::string& address) {
  ClusterIdentity identity = cluster_->identity();
  identity.cluster_id = 0;
  identity.founder = false;
  const std::string dir = options_.settings.data_dir + "/raft";
  log_->Close();
  raft_ = nullptr;
  log_.reset();
  // Nothing may be pending on a node with no data, but a write in flight gets its answer.
  std::vector<uint64_t> pending;
  for (const PendingEntry& p : pending_) pending.push_back(p.proposal);
  for (uint64_t proposal : pending) {
    FailProposal(proposal, state::ApplyResult::Error(
                               "UNKNOWN this node left its cluster to join another"));
  }
  std::error_code ec;
  std::filesystem::remove_all(dir, ec);
  // Half-way through (the old log closed), there is no way back: stop rather than serve.
  if (ec) LOG(FATAL) << "cluster: cannot remove " << dir << " to join: " << ec.message();
  Status saved = SaveClusterIdentity(options_.settings.data_dir, identity);
  if (!saved.ok()) LOG(FATAL) << "cluster: " << saved.ToString();
  auto opened = OpenRaftLog(identity, cluster_->advertise(), /*bootstrap=*/false);
  if (!opened.ok()) {
    LOG(FATAL) << "cluster: cannot reopen the raft log to join: " << opened.status().ToString();
  }
  raft_ = opened.value().get();
  log_ = std::move(opened).value();
  log_->SetWakeup([this] { uv_async_send(&log_async_); });
  cluster_->JoinThrough(raft_, address);
  return Status::Ok();
}

Status Server::ListenCluster() { return cluster_->Start(raft_); }

void Server::CloseCluster() { cluster_->Close(); }

commands::ClusterControl* Server::cluster() { return cluster_.get(); }

Status Server::LoadState(uint64_t index, std::string_view state) {
  if (state.empty()) {
    // The empty state (a bootstrap snapshot carries no data).
    state::StateMachine empty;
    std::string bytes;
    DISTRI_RETURN_IF_ERROR(empty.SaveSnapshot([&](std::string_view b) {
      bytes.append(b);
      return Status::Ok();
    }));
    DISTRI_RETURN_IF_ERROR(state_.LoadSnapshot(index, bytes));
  } else {
    DISTRI_RETURN_IF_ERROR(state_.LoadSnapshot(index, state));
  }
  // The state jumped: every mirror on this node (RESP and WebSocket) starts over from a
  // snapshot of the new state (a reset frame, then snapshot frames), as MIRROR without FROM.
  if (mirrors_) mirrors_->Rebase(state_.applied_index());
  return Status::Ok();
}

Result<uint64_t> Server::ProposeOrForward(std::string_view entry) {
  if (raft_ == nullptr) return log_->Propose(entry);
  // The entry's room decides its Raft group; there is one group today (raft_).
  const uint64_t group = replication::GroupOfRoom(state::EntryRoom(entry));
  CHECK(group == replication::kDefaultGroup) << "no Raft group " << group << " on this node";
  if (raft_->removed()) {
    return Status(Code::kBusy, "ERR this node was removed from the cluster");
  }
  if (raft_->is_leader()) {
    auto proposal = raft_->Propose(entry);
    if (proposal.ok() || proposal.status().code() != Code::kBusy) return proposal;
  }
  const uint64_t leader = raft_->leader_id();
  if (leader == 0 || leader == raft_->id()) {
    return Status(Code::kBusy,
                  "TRYAGAIN no leader is known (an election is under way); the write was not "
                  "applied");
  }
  const uint64_t proposal = raft_->NextProposalId();
  if (!cluster_->Forward(leader, proposal, entry)) {
    return Status(Code::kBusy,
                  "TRYAGAIN the leader is not reachable from this node; the write was not applied");
  }
  return proposal;
}

bool Server::NeedsReadPoint(const commands::Session& session) const {
  return raft_ != nullptr && !session.local_reads;
}

void Server::RequestReadBarrier(Client* client) { read_waiting_.push_back(client->session().id); }

// Once per loop iteration: one ReadIndex for every client that asked since the last one.
void Server::IssueReadIndex() {
  if (read_waiting_.empty()) return;
  const uint64_t ctx = next_read_ctx_++;
  ReadBatch& batch = read_batches_[ctx];
  batch.clients.swap(read_waiting_);
  batch.started_ms = batch.asked_ms = NowMs();
  Status st = raft_->ReadIndex(ctx);
  if (!st.ok()) {
    for (uint64_t id : batch.clients) {
      if (Client* c = FindClient(id)) {
        c->FailRead("TRYAGAIN no linearizable read point (" + st.message() + ")");
        resumable_.push_back(c);
      }
    }
    read_batches_.erase(ctx);
  }
}

void Server::OnReadIndex(uint64_t ctx, uint64_t index) {
  auto it = read_batches_.find(ctx);
  if (it == read_batches_.end()) return;
  it->second.index = std::max<uint64_t>(index, 1);
  uv_async_send(&log_async_);  // ReleaseReads runs once the index is applied
}

void Server::ReleaseReads() {
  const uint64_t applied = raft_->applied_index();
  for (auto it = read_batches_.begin(); it != read_batches_.end();) {
    if (it->second.index == 0 || it->second.index > applied) {
      ++it;
      continue;
    }
    for (uint64_t id : it->second.clients) {
      if (Client* c = FindClient(id)) {
        c->GrantRead();
        resumable_.push_back(c);
      }
    }
    it = read_batches_.erase(it);
  }
}

void Server::SweepClusterTimeouts() {
  const int64_t now = NowMs();
  const int64_t timeout = static_cast<int64_t>(options_.cluster.request_timeout_ms);
  std::vector<uint64_t> expired;
  for (const PendingEntry& p : pending_) {
    if (now - p.proposed_ms > timeout) expired.push_back(p.proposal);
  }
  for (uint64_t proposal : expired) {
    FailProposal(proposal, state::ApplyResult::Error(
                               "UNKNOWN no answer from the cluster within " +
                               std::to_string(timeout) + " ms; the write may or may not apply"));
  }
  // A ReadIndex request or its answer can be lost on the way (raft does not resend it):
  // one not answered within two heartbeats is asked again under a new context.
  const int64_t retry_ms = static_cast<int64_t>(
      std::max<uint64_t>(2 * options_.cluster.tick_ms * options_.cluster.heartbeat_ticks, 50));
  std::vector<uint64_t> retry;
  for (auto& [ctx, batch] : read_batches_) {
    if (batch.index == 0 && now - batch.asked_ms >= retry_ms &&
        now - batch.started_ms <= timeout) {
      retry.push_back(ctx);
    }
  }
  for (uint64_t ctx : retry) {
    const uint64_t again = next_read_ctx_++;
    ReadBatch batch = std::move(read_batches_[ctx]);
    read_batches_.erase(ctx);
    batch.asked_ms = now;
    read_batches_.emplace(again, std::move(batch));
    (void)raft_->ReadIndex(again);  // refused (no leader): the next sweep asks again
  }
  for (auto it = read_batches_.begin(); it != read_batches_.end();) {
    if (now - it->second.started_ms <= timeout) {
      ++it;
      continue;
    }
    for (uint64_t id : it->second.clients) {
      if (Client* c = FindClient(id)) {
        c->FailRead("TRYAGAIN no linearizable read point within " + std::to_string(timeout) +
                    " ms (no quorum reachable?)");
        c->ProcessInput();
      }
    }
    it = read_batches_.erase(it);
  }
  if (!expired.empty()) {
    std::vector<Client*> batch;
    batch.swap(resumable_);
    for (Client* c : batch) c->ProcessInput();
  }
}

}  // namespace distri::server
