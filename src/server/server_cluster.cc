// The cluster side of the Server (see server.h): starting Raft (a founder, a joiner, a
// restart), proposing or forwarding writes, linearizable reads by ReadIndex, and the
// timeouts of forwarded writes and read points. ClusterNode (cluster.h) owns the links.
//
// Thread-safety: loop thread only.

#include <algorithm>
#include <filesystem>
#include <string>

#include "base/logging.h"
#include "replication/groups.h"
#include "server/client.h"
#include "server/cluster.h"
#include "server/server.h"

namespace distri::server {

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
    // Raft dropped it (a leadership transfer under way): this node is still the one to ask.
    return Status(Code::kBusy,
                  "TRYAGAIN the leader dropped the proposal (leadership is moving); the write "
                  "was not applied");
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
