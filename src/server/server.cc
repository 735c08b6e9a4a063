// Server: start-up and recovery, the accept path, group commit plumbing,
// applying committed entries, active expiry and snapshots. See server.h.

#include "server/server.h"

#include <openssl/rand.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>

#include <cstring>

#include "base/log_limiter.h"
#include "base/logging.h"
#include "server/client.h"
#include "server/cluster.h"
#include "server/cluster_stats.h"
#include "http/security.h"
#include "server/http_backend.h"

namespace distri::server {

namespace {

constexpr uint64_t kExpireIntervalMs = 100;
constexpr size_t kExpireKeysPerEntry = 256;
constexpr size_t kExpireEntriesPerCycle = 16;

Status UvError(const char* what, int rc) {
  return Status::IOError(std::string(what) + ": " + uv_strerror(rc));
}

}  // namespace

Server::Server(ServerOptions options) : options_(std::move(options)) {
  commands::ServerSettings& s = options_.settings;
  s.open_admin = s.requirepass.empty() && s.trust_loopback && http::IsLoopbackAddress(s.bind);
}

Server::~Server() {
  if (cluster_) cluster_->Close();
  if (log_) log_->Close();
  if (loop_ready_) {
    // Close every handle still open, then let libuv finish their callbacks.
    uv_walk(&loop_, [](uv_handle_t* h, void*) {
      if (!uv_is_closing(h)) uv_close(h, nullptr);
    }, nullptr);
    uv_run(&loop_, UV_RUN_DEFAULT);
    uv_loop_close(&loop_);
  }
}

int64_t Server::RealtimeMs() {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1000 + ts.tv_nsec / 1000000;
}

// The loop's cached monotonic time plus an offset to the wall clock, resynced
// every expiry cycle: one clock read per loop iteration instead of several
// per command, and still wall-clock time for TTLs.
int64_t Server::NowMs() const {
  if (!loop_ready_) return RealtimeMs();
  return wall_offset_ms_ + static_cast<int64_t>(uv_now(&loop_));
}

void Server::SyncClock() {
  uv_update_time(&loop_);
  wall_offset_ms_ = RealtimeMs() - static_cast<int64_t>(uv_now(&loop_));
}

Status Server::Start() {
  started_ms_ = NowMs();
  const commands::ServerSettings& s = options_.settings;
  if (::mkdir(s.data_dir.c_str(), 0755) != 0 && errno != EEXIST) {
    return Status::IOError("cannot create data directory " + s.data_dir + ": " + std::strerror(errno));
  }
  CHECK(uv_loop_init(&loop_) == 0);
  SyncClock();
  loop_ready_ = true;
  uint64_t replayed = 0;
  if (options_.cluster.enabled()) {
    DISTRI_RETURN_IF_ERROR(StartCluster());
  } else {
    log::LocalLogOptions log_options;
    log_options.dir = s.data_dir;
    log_options.fsync = s.fsync;
    log_options.segment_bytes = options_.segment_bytes;
    auto opened = log::LocalLog::Open(
        log_options,
        [this](uint64_t index, std::string_view data) { return state_.LoadSnapshot(index, data); },
        [this, &replayed](uint64_t index, std::string_view entry) {
          state::EntryView view;
          DISTRI_RETURN_IF_ERROR(state::DecodeEntry(entry, &view));
          (void)state_.Apply(index, view);
          replayed++;
          return Status::Ok();
        });
    if (!opened.ok()) return opened.status();
    log_ = std::move(opened).value();
  }
  DISTRI_RETURN_IF_ERROR(LoadNodeId());
  mirrors_ = std::make_unique<MirrorHub>(this, options_.mirror, state_.applied_index());
  state_.set_observer(mirrors_.get());
  LOG(INFO) << "recovered " << state_.key_count() << " keys in " << state_.rooms().size()
            << " rooms at revision " << state_.applied_index() << " (" << replayed
            << " log entries replayed)";
  // A long replayed tail (say --snapshot-bytes was lowered) is compacted now,
  // not at the first write, which a read-only server might never see. Before
  // any socket is open, so the child inherits none.
  MaybeSnapshot();

  router_ = std::make_unique<MessageRouter>(this, &loop_);
  if (cluster_) router_->ConnectCluster(cluster_.get());
  auth_gate_ = std::make_unique<AuthGate>(this, &loop_);
  FitConnectionsToFdLimit();
  steps_ = std::make_unique<StepRunner>(this, &loop_);
  // Signals first: once the start line is out, SIGTERM must mean a clean stop.
  for (uv_signal_t* sig : {&sigint_, &sigterm_}) {
    uv_signal_init(&loop_, sig);
    sig->data = this;
  }
  uv_signal_start(&sigint_, OnSignal, SIGINT);
  uv_signal_start(&sigterm_, OnSignal, SIGTERM);
  signal(SIGPIPE, SIG_IGN);
  loop_.data = this;
  uv_tcp_init(&loop_, &listener_);
  listener_.data = this;
  sockaddr_storage addr;
  int rc = uv_ip4_addr(s.bind.c_str(), s.port, reinterpret_cast<sockaddr_in*>(&addr));
  if (rc != 0) rc = uv_ip6_addr(s.bind.c_str(), s.port, reinterpret_cast<sockaddr_in6*>(&addr));
  if (rc != 0) return Status::InvalidArgument("bad --bind address: " + s.bind);
  rc = uv_tcp_bind(&listener_, reinterpret_cast<const sockaddr*>(&addr), 0);
  if (rc != 0) return UvError(("cannot bind " + s.bind + ":" + std::to_string(s.port)).c_str(), rc);
  rc = uv_listen(reinterpret_cast<uv_stream_t*>(&listener_), 511, OnConnection);
  if (rc != 0) return UvError(("cannot listen on " + s.bind + ":" + std::to_string(s.port)).c_str(), rc);
  // HTTP endpoint: dashboard, JSON API, WebSocket mirrors, /metrics (src/http/).
  http_backend_ = std::make_unique<HttpBackend>(this);
  http::HttpOptions http_options = options_.http;
  http_options.bind = s.bind;
  http_options.port = s.http_port;
  http_ = std::make_unique<http::HttpServer>(&loop_, http_backend_.get(), std::move(http_options));
  DISTRI_RETURN_IF_ERROR(http_->Listen());
  // One line, once both listeners accept: a client that can read it can connect.
  const bool v6 = s.bind.find(':') != std::string::npos;
  LOG(INFO) << "distri " << kVersion << " listening on " << s.bind << ":" << s.port
            << " (RESP) and http://" << (v6 ? "[" : "") << s.bind << (v6 ? "]" : "") << ":"
            << s.http_port << "/ (dashboard, HTTP API), data in " << s.data_dir << ", fsync "
            << (s.fsync ? "always" : "off") << ", pid " << getpid();

  if (cluster_) DISTRI_RETURN_IF_ERROR(ListenCluster());
  if (cluster_) stats_gatherer_ = std::make_unique<StatsGatherer>(this, cluster_.get(), &loop_);
  uv_check_init(&loop_, &check_);
  check_.data = this;
  uv_check_start(&check_, OnCheck);
  uv_async_init(&loop_, &log_async_, OnLogWakeup);
  log_async_.data = this;
  log_->SetWakeup([this] { uv_async_send(&log_async_); });
  uv_timer_init(&loop_, &expire_timer_);
  expire_timer_.data = this;
  uv_timer_start(&expire_timer_, OnExpireTimer, kExpireIntervalMs, kExpireIntervalMs);
  uv_idle_init(&loop_, &pump_idle_);
  pump_idle_.data = this;
  return Status::Ok();
}

void Server::Run() { uv_run(&loop_, UV_RUN_DEFAULT); }

void Server::Stop() {
  LOG(INFO) << "shutting down";
  uv_close(reinterpret_cast<uv_handle_t*>(&listener_), nullptr);
  for (auto& [id, client] : clients_) client->conn().Close();
  if (http_) http_->Close();
  uv_timer_stop(&expire_timer_);
  router_->Close();
  auth_gate_->Close();
  steps_->Close();
  // Let the writes already handed to the log finish, and their replies go out.
  // No snapshot from here on: the log is closing (and a snapshot at exit
  // would only delay it; the next start replays the tail).
  stopping_ = true;
  if (stats_gatherer_) stats_gatherer_->Close();  // answers what is in flight
  if (cluster_) CloseCluster();
  log_->Close();
  if (!raft_) ApplyCommitted();
  uv_stop(&loop_);
}

commands::AuthCheck Server::CheckPassword(const commands::Session& session,
                                          std::string_view password) {
  return auth_gate_->Check(session.peer, password);
}

// Each connection costs a file descriptor; besides them the server needs a
// few for the listeners, log segments, snapshots and the data directory.
void Server::FitConnectionsToFdLimit() {
  constexpr uint64_t kReservedFds = 32;
  commands::ServerSettings& s = options_.settings;
  http::HttpOptions& h = options_.http;
  const uint64_t http_fds = h.max_connections + h.health_connections;
  const uint64_t wanted = (s.max_clients == 0 ? 100000 : s.max_clients) + http_fds + kReservedFds;
  rlimit lim;
  if (getrlimit(RLIMIT_NOFILE, &lim) != 0) return;
  if (lim.rlim_cur != RLIM_INFINITY && lim.rlim_cur < wanted) {
    rlim_t old = lim.rlim_cur;
    lim.rlim_cur = lim.rlim_max == RLIM_INFINITY ? wanted : std::min<rlim_t>(wanted, lim.rlim_max);
    if (setrlimit(RLIMIT_NOFILE, &lim) != 0) lim.rlim_cur = old;
    if (lim.rlim_cur != old) {
      LOG(INFO) << "raised the open files limit from " << old << " to " << lim.rlim_cur;
    }
  }
  if (lim.rlim_cur == RLIM_INFINITY || lim.rlim_cur >= wanted) return;
  // Not enough: give HTTP at most a quarter, the RESP clients the rest.
  const uint64_t budget = lim.rlim_cur > kReservedFds + 8 ? lim.rlim_cur - kReservedFds : 8;
  if (http_fds > budget / 4) {
    h.health_connections = std::min<uint64_t>(h.health_connections, budget / 8);
    h.max_connections = std::max<uint64_t>(budget / 4, 2) - h.health_connections;
  }
  const uint64_t fit = budget - (h.max_connections + h.health_connections);
  const uint64_t clients = s.max_clients == 0 || s.max_clients > fit ? fit : s.max_clients;
  LOG(WARNING) << "open files limit is " << lim.rlim_cur << " (hard limit " << lim.rlim_max
               << "): --max-clients lowered from "
               << (s.max_clients == 0 ? std::string("unlimited") : std::to_string(s.max_clients))
               << " to " << clients << ", HTTP connections to " << h.max_connections;
  s.max_clients = clients;
}

void Server::OnSignal(uv_signal_t* handle, int) { static_cast<Server*>(handle->data)->Stop(); }

void Server::OnPumpIdle(uv_idle_t*) {}  // its only job is to keep the loop from blocking

void Server::WakePump() {
  if (!pump_active_ && mirrors_->snapshotting()) {
    uv_idle_start(&pump_idle_, OnPumpIdle);
    pump_active_ = true;
  }
}

// ---------------------------------------------------------------------------
// Clients

void Server::OnConnection(uv_stream_t* listener, int status) {
  auto* self = static_cast<Server*>(listener->data);
  if (status < 0) {
    LOG(WARNING) << "accept failed: " << uv_strerror(status);
    return;
  }
  auto* client = new Client(self, self->next_client_id_++);
  if (client->conn().Accept(listener) != 0) {
    client->conn().Close();  // deletes the client in its close callback
    return;
  }
  self->stats_.connections_received++;
  client->session().peer = client->conn().PeerAddress();
  client->session().local = client->conn().LocalAddress();
  if (!self->auth_gate_->Admit(client, self->clients_.size())) {
    self->stats_.rejected_connections++;
    client->conn().CloseAfterFlush();
    return;
  }
  self->clients_.emplace(client->session().id, client);
}

void Server::OnClientClosed(Client* client) {
  clients_.erase(client->session().id);
  auth_gate_->OnClosed(client);
  if (client->mirrors > 0) mirrors_->Stop(client, std::nullopt);
  router_->RemoveClient(client);
  if (client->dirty) std::erase(dirty_, client);
  std::erase(resumable_, client);
}

Client* Server::FindClient(uint64_t id) const {
  auto it = clients_.find(id);
  return it == clients_.end() ? nullptr : it->second;
}

void Server::Resume(Client* client) { resumable_.push_back(client); }

void Server::RunInSteps(commands::Session& session, commands::Step step) {
  steps_->Start(session, std::move(step));
}

void Server::MarkDirty(Client* client) {
  if (!client->dirty) {
    client->dirty = true;
    dirty_.push_back(client);
  }
}

void Server::FlushClients() {
  // Flush may close a connection; its deletion happens later in the loop's
  // closing phase, so the pointers stay valid for this pass.
  // A flush that drains a client may wake the mirror pump, which marks
  // clients dirty again: repeat until nothing new was written.
  while (!dirty_.empty()) {
    flush_batch_.clear();
    flush_batch_.swap(dirty_);  // both keep their capacity: no allocation per iteration
    for (Client* c : flush_batch_) {
      c->dirty = false;
      if (c->conn().Flush()) CheckOutputLimit(c);
    }
  }
}

// Runs after the loop has handled this iteration's I/O: send the replies,
// then hand the iteration's writes to the log as one group commit.
void Server::OnCheck(uv_check_t* handle) {
  auto* self = static_cast<Server*>(handle->data);
  bool more = self->mirrors_->Pump();
  if (more != self->pump_active_) {
    // An active idle handle makes the loop poll without blocking, so the
    // snapshot keeps streaming even when no socket event arrives.
    if (more) {
      uv_idle_start(&self->pump_idle_, OnPumpIdle);
    } else {
      uv_idle_stop(&self->pump_idle_);
    }
    self->pump_active_ = more;
  }
  // Clients unblocked by a service reply run their buffered commands now.
  std::vector<Client*> resumable;
  resumable.swap(self->resumable_);
  for (Client* c : resumable) c->ProcessInput();
  self->FlushClients();
  if (self->http_) self->http_->FlushDirty();  // WebSocket mirrors fall under the budget too
  // After the flush: the budget cuts off what fast readers could not take.
  self->EnforcePushBudget();
  if (self->raft_) self->IssueReadIndex();
  self->log_->Flush();
}

// ---------------------------------------------------------------------------
// Memory: every term is a running total, so this is O(1) (it is asked for by
// every write). Entries proposed but not yet applied count by their size: a
// pipeline of big writes cannot pass the limit while the state has not yet
// grown (commands::Dispatch adds the new write's own size).

uint64_t Server::used_memory() const {
  uint64_t mirrors = mirrors_ ? mirrors_->history_bytes() : 0;
  // Unsent output counts too, as in Redis.
  return state_.memory_bytes() + mirrors + in_flight_bytes_ + room_counters_bytes_ +
         output_bytes();
}

// ---------------------------------------------------------------------------
// Writes

void Server::AddPending(uint64_t proposal, uint64_t client_id, uint64_t bytes,
                        std::function<void(const state::ApplyResult&)> done) {
  CHECK(pending_.empty() || pending_.back().proposal < proposal) << "proposal ids must grow";
  pending_.push_back(PendingEntry{proposal, client_id, std::move(done), bytes, NowMs()});
  in_flight_bytes_ += bytes;
}

Status Server::Propose(commands::Session& session, std::string_view entry,
                       commands::ReplyShape shape) {
  Result<uint64_t> proposal = ProposeOrForward(entry);
  if (!proposal.ok()) return proposal.status();
  auto it = clients_.find(session.id);
  CHECK(it != clients_.end());
  AddPending(proposal.value(), session.id, entry.size(), nullptr);
  it->second->AddPendingWrite(proposal.value(), shape);
  return Status::Ok();
}

Status Server::ProposeEntry(std::string_view entry, bool adds_data,
                            std::function<void(const state::ApplyResult&)> done) {
  // The entry's size stands for what it adds, as a command's arguments do.
  if (adds_data && commands::OverMemoryLimit(options_.settings, used_memory(), entry.size())) {
    return Status::OutOfMemory(commands::kOomMessage);
  }
  Result<uint64_t> proposal = ProposeOrForward(entry);
  if (!proposal.ok()) return proposal.status();
  AddPending(proposal.value(), 0, entry.size(), std::move(done));
  return Status::Ok();
}

void Server::OnLogWakeup(uv_async_t* handle) { static_cast<Server*>(handle->data)->ApplyCommitted(); }

void Server::ApplyCommitted() {
  if (raft_) {
    raft_->PollProposals(
        [this](uint64_t index, std::string_view entry, uint64_t proposal) {
          OnCommit(index, entry, proposal);
        },
        [this](uint64_t proposal, const Status& why) {
          FailProposal(proposal, state::ApplyResult::Error("UNKNOWN " + why.message()));
        });
    ReleaseReads();
  } else {
    // LocalLog: a proposal's id is its index.
    log_->Poll([this](uint64_t index, std::string_view entry) { OnCommit(index, entry, index); },
               [this](uint64_t first, const Status& why) { OnLogFailure(first, why); });
  }
  // Clients whose writes all applied may run the commands they had buffered.
  std::vector<Client*> batch;
  batch.swap(resumable_);
  for (Client* c : batch) c->ProcessInput();
  MaybeSnapshot();
}

void Server::OnCommit(uint64_t index, std::string_view entry, uint64_t proposal) {
  if (log_failing_) {
    // Poll reports a failure after the entries made durable before it, so an
    // entry delivered now was written after the failure: the log works again.
    log_failing_ = false;
    LOG(INFO) << "log writes succeed again at index " << index << " (" << refused_entries_
              << " entries were refused while they failed)";
    log_failure_log_.Reset();
    refused_entries_ = 0;
  }
  state::ApplyResult result = state_.Apply(index, entry);
  stats_.entries_applied++;
  if (proposal != 0 && proposal == expiry_proposal_) {
    expiry_in_flight_ = false;
    if (result.kind == state::ApplyResult::Kind::kInt) stats_.expired_keys += result.integer;
  }
  if (!entry.empty() && entry[0] == static_cast<char>(state::Op::kRoomDrop)) {
    state::EntryView drop;
    if (state::DecodeEntry(entry, &drop).ok() && state_.FindRoom(drop.room) == nullptr) {
      ForgetCounters(drop.room);
    }
  }
  if (proposal != 0) CompletePending(proposal, result);
}

void Server::CompletePending(uint64_t proposal, const state::ApplyResult& result) {
  if (cluster_) cluster_->Forget(proposal);
  PendingEntry p;
  if (!TakePending(proposal, &p)) return;  // proposed before a restart, or already answered
  if (p.done) p.done(result);
  if (p.client_id == 0) return;
  auto it = clients_.find(p.client_id);
  if (it == clients_.end()) return;  // the client left; the write stands
  Client* client = it->second;
  if (!client->HasPendingWrite(proposal)) return;
  // Replies go out in the client's order. A client's proposals apply in order except across a
  // leader change, where an older one may be lost or still in flight: it gets UNKNOWN now.
  static const state::ApplyResult kOvertaken = state::ApplyResult::Error(
      "UNKNOWN a later write of this connection applied first; this one may or may not apply");
  bool resume = false;
  while (client->front_pending_write() != proposal) {
    PendingEntry older;
    (void)TakePending(client->front_pending_write(), &older);
    client->CompletePendingWrite(kOvertaken);
  }
  resume = client->CompletePendingWrite(result);
  if (resume) resumable_.push_back(client);
}

bool Server::TakePending(uint64_t proposal, PendingEntry* out) {
  if (pending_.empty()) return false;
  auto it = pending_.begin();
  if (it->proposal != proposal) {
    it = std::lower_bound(pending_.begin(), pending_.end(), proposal,
                          [](const PendingEntry& p, uint64_t id) { return p.proposal < id; });
    if (it == pending_.end() || it->proposal != proposal) return false;
  }
  *out = std::move(*it);
  in_flight_bytes_ -= out->bytes;
  if (it == pending_.begin()) {
    pending_.pop_front();
  } else {
    pending_.erase(it);  // out of order (a cluster's leader change): rare
  }
  return true;
}

void Server::FailProposal(uint64_t proposal, const state::ApplyResult& error) {
  if (proposal == expiry_proposal_) expiry_in_flight_ = false;
  CompletePending(proposal, error);
}

// The failed entries were never applied and the log has truncated them away,
// so their writers get IOERR, an error that promises exactly that: nothing
// changed and the write may be sent again (docs/protocol.md, "Errors").
void Server::OnLogFailure(uint64_t first_index, const Status& why) {
  stats_.log_failures++;
  log_failing_ = true;
  // Poll delivers every durable entry before reporting a failure, so every
  // write still pending is one of the failed ones.
  std::deque<PendingEntry> failed;
  failed.swap(pending_);
  refused_entries_ += failed.size();
  uint64_t suppressed = 0;
  if (log_failure_log_.Allow(NowMs(), &suppressed)) {
    LOG(ERROR) << "log write failed from index " << first_index << ": " << why.ToString()
               << "; writes are refused with IOERR until the log can write again"
               << base::SuppressedNote(suppressed);
  }
  state::ApplyResult error = state::ApplyResult::Error(
      "IOERR write not applied: the server could not persist it (" + why.message() +
      "); nothing changed, retry later");
  in_flight_bytes_ = 0;
  for (PendingEntry& p : failed) {
    CHECK(p.proposal >= first_index);
    if (p.done) p.done(error);
  }
  for (auto& [id, client] : clients_) {
    bool resume = false;
    while (client->pending_writes() > 0) resume = client->CompletePendingWrite(error);
    if (resume) resumable_.push_back(client);
  }
  if (expiry_proposal_ >= first_index) expiry_in_flight_ = false;
}

// ---------------------------------------------------------------------------
// Active expiry: keys past their time are deleted by ordinary log entries.

void Server::OnExpireTimer(uv_timer_t* handle) {
  auto* self = static_cast<Server*>(handle->data);
  self->ExpireCycle();
  self->SweepSoftLimits();
  if (self->raft_) self->SweepClusterTimeouts();
}

void Server::ExpireCycle() {
  SyncClock();
  const int64_t now = NowMs();
  mirrors_->PruneRetained(now);
  if (expiry_in_flight_) return;
  // In a cluster only the leader expires keys, with its own clock in the entry; followers
  // apply its deletes (a follower never expires anything from its clock).
  if (raft_ && !raft_->is_leader()) return;
  std::vector<std::string> keys;
  std::string entry;
  size_t entries = 0;
  // The index is ordered by each room's earliest expiry: the cycle visits only
  // rooms with a key due now, never the rooms without TTLs or not yet due.
  for (const auto& [earliest, code] : state_.expiry_index()) {
    if (earliest > now) break;
    const state::Room* room = state_.FindRoom(code);
    CHECK(room != nullptr) << "expiry index names a missing room";
    keys.clear();
    room->CollectExpired(now, kExpireKeysPerEntry * (kExpireEntriesPerCycle - entries), &keys);
    for (size_t i = 0; i < keys.size(); i += kExpireKeysPerEntry) {
      std::vector<std::string_view> args;
      for (size_t j = i; j < keys.size() && j < i + kExpireKeysPerEntry; j++) args.push_back(keys[j]);
      entry.clear();
      state::EncodeEntry(&entry, state::Op::kExpireKeys, 0, now, 0, code, args);
      Result<uint64_t> proposal = log_->Propose(entry);
      if (!proposal.ok()) return;
      AddPending(proposal.value(), 0, entry.size(), nullptr);
      expiry_proposal_ = proposal.value();
      expiry_in_flight_ = true;
      entries++;
    }
    if (entries >= kExpireEntriesPerCycle) break;
  }
  if (entries > 0) log_->Flush();  // timers run before the loop's check phase
}

// ---------------------------------------------------------------------------
// Snapshots compact the log once enough of it has been written.

// The log forks a child that serialises state_ from its copy-on-write image
// (LocalLog::SaveSnapshot), so this costs the loop only the fork itself. The
// producer runs in that child: it must only read state_ and call write().
// After a failure (a full disk) the log holds off the next try for a while
// (SnapshotBusy), and repeated failures log through a limiter.
void Server::MaybeSnapshot() {
  if (stopping_ || log_->bytes_since_snapshot() < options_.snapshot_bytes) return;
  if (log_->SnapshotBusy()) return;  // one at a time; after a failure, wait a while
  const uint64_t index = state_.applied_index();
  Status st = log_->SaveSnapshot(index, [this](const log::SnapshotWriteFn& write) {
    return state_.SaveSnapshot(write);
  });
  if (st.code() == Code::kBusy) return;  // RaftLog: none due now (raft_log.h)
  if (st.ok()) {
    stats_.snapshots++;
    snapshot_failure_log_.Reset();
    LOG(INFO) << "snapshot at revision " << index << " started (fork took "
              << log_->last_fork_us() << " us)";
  } else {
    uint64_t suppressed = 0;
    if (snapshot_failure_log_.Allow(NowMs(), &suppressed)) {
      LOG(ERROR) << "snapshot failed: " << st.ToString() << "; retrying later"
                 << base::SuppressedNote(suppressed);
    }
  }
}

std::string Server::NewRoomCode() {
  unsigned char raw[16];  // 128 bits
  CHECK(RAND_bytes(raw, sizeof raw) == 1) << "RAND_bytes failed";
  static const char kAlphabet[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  std::string code;
  uint32_t acc = 0;
  int bits = 0;
  for (unsigned char b : raw) {
    acc = (acc << 8) | b;
    bits += 8;
    while (bits >= 6) {
      bits -= 6;
      code.push_back(kAlphabet[(acc >> bits) & 63]);
    }
  }
  if (bits > 0) code.push_back(kAlphabet[(acc << (6 - bits)) & 63]);
  return code;  // 22 URL-safe characters
}

}  // namespace distri::server
