// See cluster_stats.h.

#include "server/cluster_stats.h"

#include <algorithm>

#include "base/logging.h"
#include "server/cluster.h"
#include "server/cluster_status.h"
#include "server/server.h"

namespace distri::server {

namespace {

int64_t I(uint64_t v) { return static_cast<int64_t>(v); }

// The figures every node entry starts with: who it is, where clients reach it, that it answered.
Figures Identity(Server& server) {
  const ClusterStatus status = ReadClusterStatus(server);
  std::string client_address;
  if (ClusterNode* node = server.cluster_node()) {
    client_address = node->AddressesOf(status.node_id).client;
  } else {
    const commands::ServerSettings& s = server.settings();
    client_address = s.bind + ":" + std::to_string(s.port);
  }
  return {{"id", I(status.node_id)},
          {"client_address", std::move(client_address)},
          {"reachable", true}};
}

}  // namespace

Figures NodeFigures(Server& server, StatsKind kind, std::string_view room) {
  Figures out = Identity(server);
  if (kind == StatsKind::kRoom) {
    for (Figure& f : ToFigures(server.RoomStatsFields(room))) {
      const auto& per_node = kSummedRoomFields;
      if (std::find(std::begin(per_node), std::end(per_node), f.name) != std::end(per_node)) {
        out.push_back(std::move(f));
      }
    }
    return out;
  }
  const ClusterStatus s = ReadClusterStatus(server);
  const uint64_t applied = s.enabled ? s.applied_index : server.state().applied_index();
  out.push_back({"role", std::string(s.enabled ? s.role : "standalone")});
  out.push_back({"term", I(s.term)});
  out.push_back({"commit_index", I(s.enabled ? s.commit_index : applied)});
  out.push_back({"applied_index", I(applied)});
  out.push_back({"leader_id", I(s.leader_id)});
  Figures site = ToFigures(server.SiteStatsFields());
  // "clients" first (the dashboard's column), then the rest in STATS' order.
  auto clients = std::find_if(site.begin(), site.end(),
                              [](const Figure& f) { return f.name == "clients"; });
  CHECK(clients != site.end());
  out.push_back(std::move(*clients));
  site.erase(clients);
  for (Figure& f : site) out.push_back(std::move(f));
  return out;
}

StatsGatherer::StatsGatherer(Server* server, ClusterNode* node, uv_loop_t* loop)
    : server_(server), node_(node), loop_(loop) {
  uv_timer_init(loop_, &timer_);
  timer_.data = this;
  node_->SetPeerFrameHandler(kFrameRequest, [this](uint64_t peer, std::string_view payload) {
    OnRequest(peer, payload);
  });
  node_->SetPeerFrameHandler(kFrameReply, [this](uint64_t peer, std::string_view payload) {
    OnReply(peer, payload);
  });
  node_->AddPeerLinkHandler([this](uint64_t peer, bool up) {
    if (up || closed_) return;
    table_.PeerDown(peer);  // no answer will come over a link that is gone
    ArmTimer();
  });
}

void StatsGatherer::Close() {
  if (closed_) return;
  closed_ = true;
  table_.ExpireAll();
  uv_close(reinterpret_cast<uv_handle_t*>(&timer_), nullptr);
}

bool StatsGatherer::Gather(StatsKind kind, std::string_view room, Done done) {
  if (closed_) return false;
  const std::vector<uint64_t> peers = node_->OtherMembers();
  // This node's own figures now, with the request: the others answer as it reaches them.
  NodeReport own{node_->identity().node_id, true, NodeFigures(*server_, kind, room)};
  const int64_t deadline = static_cast<int64_t>(uv_now(loop_)) + kTimeoutMs;
  auto finish = [this, kind, own = std::move(own), done = std::move(done)](
                    std::map<uint64_t, std::optional<Figures>> answers) mutable {
    std::vector<NodeReport> nodes;
    nodes.reserve(answers.size() + 1);
    bool own_placed = false;  // in id order among the others
    for (auto& [id, figures] : answers) {
      if (!own_placed && own.id < id) {
        nodes.push_back(std::move(own));
        own_placed = true;
      }
      if (!figures) {
        nodes.push_back(Unreachable(id, kind));
        continue;
      }
      // Its id is the link's, whatever the frame says.
      for (Figure& f : *figures) {
        if (f.name == "id") f.value = I(id);
        if (f.name == "reachable") f.value = true;
      }
      nodes.push_back({id, true, std::move(*figures)});
    }
    if (!own_placed) nodes.push_back(std::move(own));
    done(std::move(nodes));
  };
  const uint64_t id = table_.Start(peers, deadline, std::move(finish));
  if (id == 0) return false;
  const std::string frame = EncodeStatsRequest({id, kind, std::string(room)});
  for (uint64_t peer : peers) {
    if (!node_->SendToPeer(peer, kFrameRequest, frame)) table_.GiveUp(id, peer);
  }
  ArmTimer();
  return true;
}

void StatsGatherer::OnRequest(uint64_t peer, std::string_view payload) {
  StatsRequest request;
  if (closed_) return;
  if (!DecodeStatsRequest(payload, &request)) {
    bad_frames_++;
    LOG(DEBUG) << "cluster stats: malformed request from " << peer << " dropped";
    return;
  }
  // At most once, like all ephemeral traffic: if the link cannot take it, the asker times out.
  (void)node_->SendToPeer(peer, kFrameReply,
                          EncodeStatsReply(request.id, NodeFigures(*server_, request.kind,
                                                                   request.room)));
}

void StatsGatherer::OnReply(uint64_t peer, std::string_view payload) {
  uint64_t id = 0;
  Figures figures;
  if (closed_) return;
  if (!DecodeStatsReply(payload, &id, &figures)) {
    bad_frames_++;
    LOG(DEBUG) << "cluster stats: malformed reply from " << peer << " dropped";
    return;
  }
  table_.OnReply(id, peer, std::move(figures));  // late or unasked: dropped and counted
  ArmTimer();
}

NodeReport StatsGatherer::Unreachable(uint64_t id, StatsKind kind) const {
  NodeReport r{id, false, {}};
  r.figures = {{"id", I(id)},
               {"client_address", node_->AddressesOf(id).client},
               {"reachable", false}};
  if (kind == StatsKind::kRoom) {
    for (std::string_view name : kSummedRoomFields) {
      r.figures.push_back({std::string(name), std::monostate{}});
    }
    return r;
  }
  // Its role as this node's membership shows it (as CLUSTER.NODES does); its own state unknown.
  replication::RaftLog* raft = server_->raft();
  std::string role = "follower";
  if (raft != nullptr) {
    if (raft->leader_id() == id) {
      role = "leader";
    } else if (raft->IsLearner(id)) {
      role = "learner";
    }
  }
  r.figures.push_back({"role", std::move(role)});
  for (const char* name : {"term", "commit_index", "applied_index", "leader_id", "clients"}) {
    r.figures.push_back({name, std::monostate{}});
  }
  return r;
}

void StatsGatherer::ArmTimer() {
  if (closed_) return;
  const std::optional<int64_t> next = table_.NextDeadline();
  if (!next) {
    uv_timer_stop(&timer_);
    return;
  }
  const int64_t now = static_cast<int64_t>(uv_now(loop_));
  const uint64_t wait = *next <= now ? 0 : static_cast<uint64_t>(*next - now);
  uv_timer_start(
      &timer_,
      [](uv_timer_t* t) {
        auto* self = static_cast<StatsGatherer*>(t->data);
        self->table_.Expire(static_cast<int64_t>(uv_now(self->loop_)));
        self->ArmTimer();
      },
      wait, 0);
}

}  // namespace distri::server
