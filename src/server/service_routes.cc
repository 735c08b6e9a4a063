// MessageRouter, services across the cluster: what one node tells the others
// about its workers, and the requests, results and broadcasts that cross nodes.
// Frames are svcwire's (service_wire.h), over ClusterNode's ephemeral links;
// nothing here enters the Raft log. On a single node (no ClusterNode) every
// function here is a no-op and services.cc behaves as it always did.
//
// Who knows what:
//  - A node is the authority on its own workers: their slots, their answers.
//    It announces each worker (services, concurrency, load) to every linked
//    peer: in full when a link comes up, then the changes, coalesced into one
//    frame per peer per loop iteration. The load it tells peer P leaves out
//    P's own requests (which P counts exactly), so P never counts one twice.
//    Each WORKERS frame carries the sender's boot id: a peer seen with a new
//    one restarted, and its old workers go as on a link down.
//  - A call lives on its caller's node: its deadline, its place in the wait
//    queue, its attempts and the counters of SVC.STATS. A request sent to a
//    remote worker that is gone or full on arrival is refused (NOT_RUN) and
//    re-dispatched here without counting an attempt, and the worker is
//    blocked until its node is heard from or the next stats tick (so a
//    refusal cannot bounce once per round trip); one whose worker
//    disconnects (LOST), or whose node's link goes down, may have run: it gets
//    one more attempt, as for a local worker.
//  - CALL.ALL: every node with workers of the service runs the broadcast on
//    its own workers and returns their slots a little before the deadline.
//  - SVC.STATS counters are announced by each node once a second (if changed).
//
// Bounds: a peer's announced workers and (worker, service) pairs are capped,
// senders cut WORKERS frames well under the receiver's per-frame bound,
// decoders refuse truncated frames (logged, rate limited, and a refused
// WORKERS frame is answered RESYNC), and a peer can only answer requests this
// node sent it. Loop thread only.

#include <algorithm>
#include <random>
#include <set>
#include <tuple>

#include "base/logging.h"
#include "server/client.h"
#include "server/cluster.h"
#include "server/messaging.h"
#include "server/server.h"

namespace distri::server {

namespace {

constexpr size_t kMaxPeerWorkers = 16384;      // announced workers held per peer (and per frame)
constexpr size_t kMaxPeerEntries = 65536;      // (worker, service) pairs held per peer
constexpr size_t kMaxBroadcastSlots = 65536;   // slots one peer may return to a CALL.ALL
constexpr size_t kMaxPeerStatsServices = 4096; // services in one peer's counters
constexpr size_t kQuantilePoints = 21;         // latency points announced per service
constexpr uint64_t kStatsIntervalMs = 1000;
// A WORKERS frame is cut after this many records or bytes (well under the
// receiver's kMaxPeerWorkers records), so no table is too big for one frame.
constexpr size_t kRecordsPerFrame = 4096;
constexpr size_t kBytesPerFrame = 1 << 20;
// In a RESULT: the worker is gone or does not serve the service.
constexpr uint32_t kUnusable = UINT32_MAX;
// A broadcast run for another node ends this much before the caller's deadline
// (at most), so its slots arrive in time; a fifth of the timeout when shorter.
constexpr uint64_t kBroadcastMarginMs = 200;

uint32_t Others(uint32_t in_flight, uint32_t yours) {
  return in_flight > yours ? in_flight - yours : 0;
}

}  // namespace

uint64_t MessageRouter::NodeId() const {
  const ClusterNode* cluster = server_->cluster_node();
  return cluster == nullptr ? 0 : cluster->identity().node_id;
}

void MessageRouter::RegisterClusterHandlers() {
  ClusterNode* cluster = server_->cluster_node();
  if (cluster == nullptr) return;
  // Call ids go to other nodes and come back in their results. A node that
  // restarts must not reuse the ids of its previous life: a peer that has not
  // yet seen the old link go down could answer an old call under a new one's
  // id. Starting at a random point of [2^40, 2^52) makes that practically
  // impossible (and keeps ids exact as JSON numbers).
  std::random_device random;
  const uint64_t start = (uint64_t{random()} << 32 | random()) & ((uint64_t{1} << 52) - 1);
  next_id_ = std::max(start, uint64_t{1} << 40);
  boot_id_ = (uint64_t{random()} << 32 | random()) | 1;  // never 0 (0: not yet heard)
  uv_idle_init(loop_, &announce_idle_);
  announce_idle_.data = this;
  announce_open_ = true;
  uv_timer_init(loop_, &stats_timer_);
  stats_timer_.data = this;
  stats_open_ = true;
  uv_timer_start(
      &stats_timer_, [](uv_timer_t* t) { static_cast<MessageRouter*>(t->data)->SendStats(); },
      kStatsIntervalMs, kStatsIntervalMs);
  auto handle = [this](void (MessageRouter::*fn)(uint64_t, std::string_view)) {
    return [this, fn](uint64_t peer, std::string_view payload) { (this->*fn)(peer, payload); };
  };
  cluster->SetPeerFrameHandler(svcwire::kFrameWorkers, handle(&MessageRouter::OnWorkersFrame));
  cluster->SetPeerFrameHandler(svcwire::kFrameRequest, handle(&MessageRouter::OnRequestFrame));
  cluster->SetPeerFrameHandler(svcwire::kFrameResult, handle(&MessageRouter::OnResultFrame));
  cluster->SetPeerFrameHandler(svcwire::kFrameBroadcast,
                               handle(&MessageRouter::OnBroadcastFrame));
  cluster->SetPeerFrameHandler(svcwire::kFrameBroadcastResult,
                               handle(&MessageRouter::OnBroadcastResultFrame));
  cluster->SetPeerFrameHandler(svcwire::kFrameStats, handle(&MessageRouter::OnStatsFrame));
  cluster->SetPeerFrameHandler(svcwire::kFrameResync, handle(&MessageRouter::OnResyncFrame));
  cluster->AddPeerLinkHandler([this](uint64_t peer, bool up) { OnPeerLink(peer, up); });
}

void MessageRouter::LogBadFrame(uint64_t peer, std::string_view what) {
  uint64_t suppressed = 0;
  if (bad_frames_.Allow(MonoMs(), &suppressed)) {
    LOG(WARNING) << "services: dropped a malformed " << what << " frame from node " << peer
                 << base::SuppressedNote(suppressed);
  }
}

MessageRouter::Worker* MessageRouter::LocalWorker(uint64_t id) const {
  Client* c = server_->FindClient(id);
  if (c == nullptr) return nullptr;
  auto it = workers_.find(c);
  return it == workers_.end() ? nullptr : it->second.get();
}

// ---------------------------------------------------------------------------
// Announcing this node's workers

void MessageRouter::MarkWorkerDirty(const Worker& w, bool full) {
  if (!announce_open_ || w.client == nullptr) return;
  (full ? dirty_full_ : dirty_load_).insert(w.id);
  if (!announce_armed_) {
    uv_idle_start(&announce_idle_,
                  [](uv_idle_t* h) { static_cast<MessageRouter*>(h->data)->FlushAnnouncements(); });
    announce_armed_ = true;
  }
}

void MessageRouter::MarkWorkerGone(uint64_t id) {
  if (!announce_open_) return;
  dirty_full_.erase(id);
  dirty_load_.erase(id);
  dirty_gone_.insert(id);
  if (!announce_armed_) {
    uv_idle_start(&announce_idle_,
                  [](uv_idle_t* h) { static_cast<MessageRouter*>(h->data)->FlushAnnouncements(); });
    announce_armed_ = true;
  }
}

svcwire::WorkerRecord MessageRouter::RecordFor(const Worker& w, uint64_t peer) const {
  svcwire::WorkerRecord r;
  r.kind = svcwire::RecordKind::kUpsert;
  r.id = w.id;
  r.concurrency = w.concurrency;
  r.in_flight = w.in_flight;
  auto yours = w.from_peer.find(peer);
  r.yours = yours == w.from_peer.end() ? 0 : yours->second;
  r.label = WorkerLabel(w);
  for (const Service* svc : w.services) r.services.emplace_back(svc->room, svc->name);
  return r;
}

std::vector<std::string> MessageRouter::FullTableFor(uint64_t peer) const {
  // In parts if big: the receiver drops the workers that none of the parts
  // listed only when the last arrives, and a first part starts afresh (a
  // table whose sending failed half way leaves nothing behind).
  using svcwire::TablePart;
  std::vector<std::string> frames;
  std::string frame = svcwire::BeginWorkers(TablePart::kFirst, boot_id_);
  size_t records = 0;
  for (const auto& [client, w] : workers_) {
    if (records == kRecordsPerFrame || frame.size() >= kBytesPerFrame) {
      frames.push_back(std::move(frame));
      frame = svcwire::BeginWorkers(TablePart::kNext, boot_id_);
      records = 0;
    }
    svcwire::AppendWorker(&frame, RecordFor(*w, peer));
    records++;
  }
  frames.push_back(std::move(frame));
  const uint8_t last = static_cast<uint8_t>(frames.size() == 1 ? TablePart::kWhole
                                                                 : TablePart::kLast);
  frames.back()[0] = static_cast<char>(last);
  return frames;
}

bool MessageRouter::SendFullTable(uint64_t peer) {
  ClusterNode* cluster = server_->cluster_node();
  for (const std::string& frame : FullTableFor(peer)) {
    if (!cluster->SendToPeer(peer, svcwire::kFrameWorkers, frame)) {
      resync_.insert(peer);  // the whole table again at the next stats tick
      return false;
    }
  }
  resync_.erase(peer);
  return true;
}

void MessageRouter::OnResyncFrame(uint64_t peer, std::string_view payload) {
  if (!payload.empty()) return LogBadFrame(peer, "resync");
  resync_.insert(peer);  // at the next stats tick: at most one table a second
}

void MessageRouter::FlushAnnouncements() {
  uv_idle_stop(&announce_idle_);
  announce_armed_ = false;
  ClusterNode* cluster = server_->cluster_node();
  for (uint64_t id : dirty_full_) dirty_load_.erase(id);
  for (uint64_t peer : cluster->LinkedMembers()) {
    // Cut into frames under the receiver's bound; a change the peer could not
    // be sent leaves its view wrong: it gets the whole table again at the
    // next stats tick.
    std::vector<std::string> frames;
    std::string frame = svcwire::BeginWorkers(svcwire::TablePart::kChanges, boot_id_);
    const size_t empty = frame.size();
    size_t records = 0;
    auto append = [&](const svcwire::WorkerRecord& r) {
      if (records == kRecordsPerFrame || frame.size() >= kBytesPerFrame) {
        frames.push_back(std::move(frame));
        frame = svcwire::BeginWorkers(svcwire::TablePart::kChanges, boot_id_);
        records = 0;
      }
      svcwire::AppendWorker(&frame, r);
      records++;
    };
    for (uint64_t id : dirty_gone_) append({.kind = svcwire::RecordKind::kGone, .id = id});
    for (uint64_t id : dirty_full_) {
      if (const Worker* w = LocalWorker(id)) append(RecordFor(*w, peer));
    }
    for (uint64_t id : dirty_load_) {
      const Worker* w = LocalWorker(id);
      if (w == nullptr) continue;
      svcwire::WorkerRecord r = RecordFor(*w, peer);
      r.kind = svcwire::RecordKind::kLoad;
      append(r);
    }
    if (frame.size() > empty) frames.push_back(std::move(frame));
    for (const std::string& f : frames) {
      if (!cluster->SendToPeer(peer, svcwire::kFrameWorkers, f)) {
        resync_.insert(peer);
        break;
      }
    }
  }
  dirty_full_.clear();
  dirty_load_.clear();
  dirty_gone_.clear();
}

std::string MessageRouter::EncodeLocalStats() const {
  svcwire::StatsFrame f;
  f.dropped_replies = dropped_replies_;
  // In a fixed order, so an unchanged state encodes the same, and the same
  // services are the ones kept when there are more than the cap.
  std::vector<const Service*> called;
  for (const auto& [key, svc] : services_) {
    if (svc->calls == 0 && svc->waiting.empty()) continue;  // nothing called from here
    called.push_back(svc.get());
  }
  std::sort(called.begin(), called.end(), [](const Service* a, const Service* b) {
    return std::tie(a->room, a->name) < std::tie(b->room, b->name);
  });
  if (called.size() > kMaxPeerStatsServices) called.resize(kMaxPeerStatsServices);
  for (const Service* svc : called) {
    svcwire::ServiceCounters c;
    c.room = svc->room;
    c.name = svc->name;
    c.calls = svc->calls;
    c.errors = svc->errors;
    c.timeouts = svc->timeouts;
    c.waiting = svc->waiting.size();
    std::vector<double> sorted = svc->latency_ms;
    std::sort(sorted.begin(), sorted.end());
    c.samples = sorted.size();
    const size_t k = std::min(kQuantilePoints, sorted.size());
    for (size_t i = 0; i < k; i++) {
      c.quantiles.push_back(sorted[k == 1 ? 0 : i * (sorted.size() - 1) / (k - 1)]);
    }
    f.services.push_back(std::move(c));
  }
  return svcwire::EncodeStats(f);
}

void MessageRouter::SendStats() {
  ClusterNode* cluster = server_->cluster_node();
  std::string stats = EncodeLocalStats();
  const bool changed = stats != last_stats_;
  last_stats_ = std::move(stats);
  for (uint64_t peer : cluster->LinkedMembers()) {
    if (resync_.contains(peer)) (void)SendFullTable(peer);
    if (changed) (void)cluster->SendToPeer(peer, svcwire::kFrameStats, last_stats_);
  }
  UnblockRemoteWorkers();
}

void MessageRouter::UnblockRemoteWorkers() {
  std::vector<Worker*> blocked;
  for (auto& [key, w] : remote_workers_) {
    if (w->blocked) blocked.push_back(w.get());
  }
  // Draining never drops a worker (a failed send only blocks it again).
  for (Worker* w : blocked) {
    w->blocked = false;
    DrainWaiting(w);
  }
  if (!blocked.empty()) ArmTimer();
}

// ---------------------------------------------------------------------------
// Other nodes' workers

void MessageRouter::OnPeerLink(uint64_t peer, bool up) {
  ClusterNode* cluster = server_->cluster_node();
  if (up) {
    (void)SendFullTable(peer);
    // Only to the new peer: last_stats_ stays what the others were last
    // sent, so a change since then still reaches them at the next tick.
    (void)cluster->SendToPeer(peer, svcwire::kFrameStats, EncodeLocalStats());
    return;
  }
  resync_.erase(peer);
  peer_stats_.erase(peer);
  // Its workers leave the table; calls from here in flight at them may have
  // run: one more attempt elsewhere, or a clear error (DropWorker).
  std::vector<Worker*> gone;
  for (auto it = remote_workers_.lower_bound({peer, 0});
       it != remote_workers_.end() && it->first.first == peer; ++it) {
    gone.push_back(it->second.get());
  }
  DropRemoteWorkers(gone);
  peer_tables_.erase(peer);
  // Requests from its callers run on: their answers are dropped quietly.
  for (auto& [id, call] : calls_) {
    if (call.from_node == peer) call.remote_id = 0;
  }
  for (auto& [client, w] : workers_) w->from_peer.erase(peer);
  std::vector<uint64_t> finished;
  for (auto& [group, b] : broadcasts_) {
    if (b.from_node == peer) b.remote_group = 0;
    auto part = b.parts.find(peer);
    if (part == b.parts.end() || part->second.done) continue;
    part->second.done = true;
    for (Broadcast::Slot& slot : part->second.slots) {
      slot.status = "error";
      slot.payload = "node " + std::to_string(peer) + " became unreachable";
    }
    if (--b.outstanding == 0) finished.push_back(group);
  }
  for (uint64_t group : finished) FinishBroadcast(group);
  ArmTimer();
}

void MessageRouter::DropRemoteWorkers(const std::vector<Worker*>& gone) {
  // All of them leave the choice first: a call rerouted from the first must not be sent to
  // the next, which is going too (its link may well be up: a restart, a table without it),
  // spending the call's one retry on a worker about to be dropped.
  for (Worker* w : gone) w->blocked = true;
  for (Worker* w : gone) DropWorker(w, /*reroute=*/true);
}

void MessageRouter::OnWorkersFrame(uint64_t peer, std::string_view payload) {
  svcwire::WorkersFrame frame;
  if (!svcwire::DecodeWorkers(payload, kMaxPeerWorkers, &frame)) {
    // This node's view of the peer's workers may now be wrong: it asks for
    // the whole table (sent at the peer's next stats tick). A table in
    // progress lost a part: it must not sweep.
    if (auto t = peer_tables_.find(peer); t != peer_tables_.end()) {
      t->second.listed.clear();
      t->second.in_table = false;
    }
    (void)server_->cluster_node()->SendToPeer(peer, svcwire::kFrameResync, {});
    return LogBadFrame(peer, "workers");
  }
  if (auto t = peer_tables_.find(peer);
      t != peer_tables_.end() && t->second.boot != 0 && t->second.boot != frame.boot) {
    // The peer restarted behind a link this node never saw go down: its old
    // workers (whose ids its new ones reuse) and the calls at them go as on
    // a link down, and it is told this node's table, which it has lost.
    LOG(INFO) << "services: node " << peer << " restarted; dropping its previous workers";
    OnPeerLink(peer, /*up=*/false);
    OnPeerLink(peer, /*up=*/true);
  }
  PeerTable& table = peer_tables_[peer];
  table.boot = frame.boot;
  using svcwire::TablePart;
  if (frame.part == TablePart::kWhole || frame.part == TablePart::kFirst) {
    table.listed.clear();
    table.in_table = true;
  }
  // Only a table whose every part arrived may say which workers are gone.
  const bool ends = table.in_table &&
                    (frame.part == TablePart::kWhole || frame.part == TablePart::kLast);
  if (frame.part != TablePart::kChanges && table.in_table) {
    for (const svcwire::WorkerRecord& r : frame.records) table.listed.insert(r.id);
    if (table.listed.size() > kMaxPeerWorkers) {
      table.listed.clear();  // endless parts: refused; the next whole table starts afresh
      table.in_table = false;
      return LogBadFrame(peer, "workers (a table over the per-node worker bound)");
    }
  }
  if (ends) {
    table.in_table = false;
    // The whole table's last part: workers none of its parts listed are gone.
    std::set<uint64_t> listed = std::move(table.listed);
    table.listed.clear();
    std::vector<Worker*> gone;
    for (auto it = remote_workers_.lower_bound({peer, 0});
         it != remote_workers_.end() && it->first.first == peer; ++it) {
      if (!listed.contains(it->first.second)) gone.push_back(it->second.get());
    }
    DropRemoteWorkers(gone);
  }
  for (const svcwire::WorkerRecord& r : frame.records) {
    auto it = remote_workers_.find({peer, r.id});
    switch (r.kind) {
      case svcwire::RecordKind::kUpsert:
        UpsertRemoteWorker(peer, r);
        break;
      case svcwire::RecordKind::kLoad:
        if (it != remote_workers_.end()) {
          Worker* w = it->second.get();
          const uint32_t before = w->others;
          const bool was_blocked = w->blocked;
          w->others = Others(r.in_flight, r.yours);
          w->blocked = false;
          if (w->others < before || was_blocked) DrainWaiting(w);  // a slot freed there
        }
        break;
      case svcwire::RecordKind::kGone:
        if (it != remote_workers_.end()) DropWorker(it->second.get(), /*reroute=*/true);
        break;
    }
  }
  ArmTimer();
}

void MessageRouter::UpsertRemoteWorker(uint64_t peer, const svcwire::WorkerRecord& r) {
  // A worker that serves nothing any more (SVC.UNSERVE) stays, as it does on
  // its node, so that requests in flight at it still end with its answer
  // instead of being retried; it goes when its node says it is gone.
  auto it = remote_workers_.find({peer, r.id});
  PeerTable& table = peer_tables_[peer];
  const size_t had = it == remote_workers_.end() ? 0 : it->second->services.size();
  const bool added = it == remote_workers_.end();
  if (table.entries - had + r.services.size() > kMaxPeerEntries ||
      (added && table.workers >= kMaxPeerWorkers)) {
    return LogBadFrame(peer, "workers (over the per-node worker bound)");
  }
  auto& slot = remote_workers_[{peer, r.id}];
  if (added) {
    slot = std::make_unique<Worker>();
    slot->node = peer;
    slot->id = r.id;
    table.workers++;
  }
  Worker* w = slot.get();
  w->label = r.label;
  w->concurrency = std::max<uint32_t>(1, r.concurrency);
  w->others = Others(r.in_flight, r.yours);
  w->blocked = false;
  // Services it stopped serving: no new requests (those in flight still end).
  std::set<std::pair<std::string_view, std::string_view>> wanted;
  for (const auto& [room, name] : r.services) wanted.emplace(room, name);
  std::vector<Service*> dropped;
  std::erase_if(w->services, [&](Service* svc) {
    const bool keep = wanted.contains({svc->room, svc->name});
    if (!keep) dropped.push_back(svc);
    return !keep;
  });
  for (Service* svc : dropped) {
    std::erase(svc->workers, w);
    MaybeFreeService(svc);
  }
  for (const auto& [room, name] : r.services) {
    Service& svc = GetService(room, name);
    if (std::find(w->services.begin(), w->services.end(), &svc) == w->services.end()) {
      w->services.push_back(&svc);
      svc.workers.push_back(w);
    }
  }
  table.entries = table.entries - had + w->services.size();
  DrainWaiting(w);  // calls may have been waiting for it
}

std::map<uint64_t, std::vector<std::string>> MessageRouter::RemoteWorkersOf(
    const Service& svc) const {
  std::map<uint64_t, std::vector<std::string>> out;
  for (const Worker* w : svc.workers) {
    if (w->client == nullptr) out[w->node].push_back(w->label);
  }
  return out;
}

// ---------------------------------------------------------------------------
// Requests from other nodes' callers, and their results

void MessageRouter::OnRequestFrame(uint64_t peer, std::string_view payload) {
  svcwire::Request r;
  if (!svcwire::DecodeRequest(payload, &r)) return LogBadFrame(peer, "request");
  Worker* w = LocalWorker(r.worker_id);
  Service* svc = FindService(r.room, r.service);
  const bool serves = w != nullptr && svc != nullptr &&
                      std::find(w->services.begin(), w->services.end(), svc) != w->services.end();
  if (!serves || w->in_flight >= w->concurrency || w->client->conn().closing() ||
      r.timeout_ms == 0) {
    // Not run: the caller's node sends it elsewhere without counting an attempt.
    svcwire::Result refusal{r.call_id, r.worker_id, svcwire::Status::kNotRun, kUnusable, 0, {}};
    if (serves && !w->client->conn().closing()) {  // closing: as good as gone
      refusal.in_flight = w->in_flight;
      auto yours = w->from_peer.find(peer);
      refusal.yours = yours == w->from_peer.end() ? 0 : yours->second;
    }
    (void)server_->cluster_node()->SendToPeer(peer, svcwire::kFrameResult,
                                               svcwire::EncodeResult(refusal));
    return;
  }
  const int64_t timeout =
      static_cast<int64_t>(std::min<uint64_t>(r.timeout_ms, commands::kMaxCallTimeoutMs));
  const int64_t deadline = MonoMs() + timeout;
  uint64_t id = next_id_++;
  PendingCall& call =
      calls_.emplace(id, PendingCall{id, 0, svc, std::make_shared<const std::string>(r.payload),
                                     uv_hrtime(), deadline})
          .first->second;
  call.from_node = peer;
  call.remote_id = r.call_id;
  call.remote_worker = r.worker_id;
  call.for_peer = true;
  svc->calls_open++;
  deadlines_.emplace(deadline, id);
  (void)Assign(call, w);
  ArmTimer();
}

void MessageRouter::SendResult(const PendingCall& call, svcwire::Status status,
                               std::string_view payload) {
  if (call.remote_id == 0) return;  // its caller's node went away
  svcwire::Result r{call.remote_id, call.remote_worker, status, kUnusable, 0, payload};
  if (const Worker* w = LocalWorker(call.remote_worker)) {
    r.in_flight = w->in_flight;
    auto yours = w->from_peer.find(call.from_node);
    r.yours = yours == w->from_peer.end() ? 0 : yours->second;
  }
  (void)server_->cluster_node()->SendToPeer(call.from_node, svcwire::kFrameResult,
                                             svcwire::EncodeResult(r));
}

void MessageRouter::OnResultFrame(uint64_t peer, std::string_view payload) {
  svcwire::Result r;
  if (!svcwire::DecodeResult(payload, &r)) return LogBadFrame(peer, "result");
  auto it = calls_.find(r.call_id);
  // Only for a request this node sent that worker and still waits for: late
  // (timed out here) or stray results are dropped; a worker's answer dropped
  // so is counted, as SVC.REPLY to an ended request is on the worker's node.
  if (it == calls_.end() || it->second.worker == nullptr || it->second.worker->node != peer ||
      it->second.worker->id != r.worker_id) {
    if (r.status == svcwire::Status::kOk || r.status == svcwire::Status::kError) {
      dropped_replies_++;
    }
    return;
  }
  PendingCall& call = it->second;
  Worker* w = call.worker;
  w->others = r.in_flight == kUnusable ? w->concurrency : Others(r.in_flight, r.yours);
  // Heard from its node: usable again, unless this is a refusal. A refusal
  // may come from a slot its node still holds for a call this node has
  // already ended (it frees at its own deadline there), or from a view of
  // its services older than the request: resending at once would bounce
  // once per round trip. Blocked, the worker waits for its node's next
  // announcement (sent when the slot frees) or the next stats tick.
  w->blocked = r.status == svcwire::Status::kNotRun;
  switch (r.status) {
    case svcwire::Status::kOk:
      Finish(r.call_id, "ok", r.payload);
      break;
    case svcwire::Status::kError:
      Finish(r.call_id, "error", r.payload);
      break;
    case svcwire::Status::kTimeout:
      Finish(r.call_id, "timeout", {});
      break;
    case svcwire::Status::kNotRun:
      // Never reached a worker: as if it had not been sent.
      w->in_flight--;
      call.worker = nullptr;
      call.attempts--;
      if (CallerGone(call)) {
        Finish(r.call_id, "error", "caller disconnected");  // runs for nobody
      } else {
        Dispatch(r.call_id, /*retry=*/true);
      }
      break;
    case svcwire::Status::kLost:
      w->in_flight--;
      Orphan(r.call_id, /*reroute=*/true, "worker disconnected before replying");
      break;
  }
  ArmTimer();
}

// ---------------------------------------------------------------------------
// CALL.ALL from other nodes

void MessageRouter::OnBroadcastFrame(uint64_t peer, std::string_view payload) {
  svcwire::Broadcast f;
  if (!svcwire::DecodeBroadcast(payload, &f)) return LogBadFrame(peer, "broadcast");
  const uint64_t timeout = std::clamp<uint64_t>(f.timeout_ms, 1, commands::kMaxCallTimeoutMs);
  const uint64_t margin = std::min(kBroadcastMarginMs, timeout / 5);
  const int64_t deadline = MonoMs() + static_cast<int64_t>(timeout - margin);
  uint64_t group = next_id_++;
  Broadcast& b = broadcasts_[group];
  b.caller_id = 0;
  b.service = std::string(f.service);
  b.from_node = peer;
  b.remote_group = f.group;
  if (Service* svc = FindService(f.room, f.service)) {
    StartLocalBroadcast(group, svc, f.payload, uv_hrtime(), deadline);
  }
  if (b.outstanding == 0) {
    FinishBroadcast(group);  // no worker here (any more): an empty answer
  } else {
    b.deadline_ms = deadline;
    deadlines_.emplace(deadline, group);
    ArmTimer();
  }
}

void MessageRouter::OnBroadcastResultFrame(uint64_t peer, std::string_view payload) {
  svcwire::BroadcastResult r;
  if (!svcwire::DecodeBroadcastResult(payload, kMaxBroadcastSlots, &r)) {
    return LogBadFrame(peer, "broadcast result");
  }
  auto it = broadcasts_.find(r.group);
  if (it == broadcasts_.end() || it->second.from_node != 0) return;  // late or stray
  Broadcast& b = it->second;
  auto part = b.parts.find(peer);
  if (part == b.parts.end() || part->second.done) return;
  part->second.done = true;
  // The workers it had when asked that its answer leaves out (gone before the
  // broadcast ran there) are reported as errors, not silently dropped.
  std::multiset<std::string> missing;
  for (Broadcast::Slot& s : part->second.slots) missing.insert(std::move(s.worker));
  part->second.slots.clear();
  for (svcwire::BroadcastSlot& s : r.slots) {
    if (auto m = missing.find(s.label); m != missing.end()) missing.erase(m);
    std::string status = s.status == svcwire::Status::kOk      ? "ok"
                         : s.status == svcwire::Status::kError ? "error"
                                                               : "timeout";
    part->second.slots.push_back({std::move(s.label), std::move(status), std::move(s.payload)});
  }
  for (const std::string& label : missing) {
    part->second.slots.push_back(
        {label, "error", "worker left node " + std::to_string(peer) + " before it ran"});
  }
  if (--b.outstanding == 0) FinishBroadcast(r.group);
}

void MessageRouter::OnStatsFrame(uint64_t peer, std::string_view payload) {
  svcwire::StatsFrame f;
  if (!svcwire::DecodeStats(payload, kMaxPeerStatsServices, &f)) {
    return LogBadFrame(peer, "stats");
  }
  peer_stats_[peer] = std::move(f);
}

}  // namespace distri::server
