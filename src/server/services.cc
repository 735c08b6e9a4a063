// MessageRouter, services half: SVC.SERVE, CALL, CALL.ALL, SVC.REPLY/ERROR,
// SVC.LIST/STATS, timeouts and worker loss. See messaging.h. What crosses
// nodes (announcements, remote requests and broadcasts) is in service_routes.cc;
// this file treats a remote worker like a local one wherever it can.

#include <algorithm>
#include <cmath>
#include <tuple>

#include "base/logging.h"
#include "server/client.h"
#include "server/cluster.h"
#include "server/messaging.h"
#include "server/server.h"

namespace distri::server {

namespace {

constexpr size_t kLatencySamples = 1024;
constexpr int kMaxAttempts = 2;  // first worker + one retry after a worker is lost

std::string ServiceKey(std::string_view room, std::string_view name) {
  std::string key(room);
  key.push_back('\n');
  key.append(name);
  return key;
}

// a + b, clamped to the int64 range instead of overflowing.
int64_t AddSaturating(int64_t a, int64_t b) {
  int64_t sum;
  if (__builtin_add_overflow(a, b, &sum)) return b > 0 ? INT64_MAX : INT64_MIN;
  return sum;
}

}  // namespace

MessageRouter::MessageRouter(Server* server, uv_loop_t* loop) : server_(server), loop_(loop) {
  uv_timer_init(loop, &timer_);
  timer_.data = this;
  timer_open_ = true;
  RegisterClusterHandlers();
}

MessageRouter::~MessageRouter() = default;

void MessageRouter::Close() {
  if (timer_open_) {
    uv_close(reinterpret_cast<uv_handle_t*>(&timer_), nullptr);
    timer_open_ = false;
  }
  if (announce_open_) {
    uv_close(reinterpret_cast<uv_handle_t*>(&announce_idle_), nullptr);
    announce_open_ = false;
  }
  if (stats_open_) {
    uv_close(reinterpret_cast<uv_handle_t*>(&stats_timer_), nullptr);
    stats_open_ = false;
  }
  if (routes_) routes_->Close();  // pub/sub between nodes: its idle and timer handles
}

MessageRouter::Service* MessageRouter::FindService(std::string_view room, std::string_view name) {
  auto it = services_.find(ServiceKey(room, name));
  return it == services_.end() ? nullptr : it->second.get();
}

MessageRouter::Service& MessageRouter::GetService(const std::string& room, std::string_view name) {
  auto& slot = services_[ServiceKey(room, name)];
  if (!slot) {
    slot = std::make_unique<Service>();
    slot->room = room;
    slot->name = std::string(name);
  }
  return *slot;
}

void MessageRouter::MaybeFreeService(Service* svc) {
  if (svc->workers.empty() && svc->calls_open == 0) {
    services_.erase(ServiceKey(svc->room, svc->name));
  }
}

bool MessageRouter::HasLiveWorker(const Service& svc) const {
  // Another node's worker is live while its node's link is up (it leaves the
  // table when the link goes down).
  return std::any_of(svc.workers.begin(), svc.workers.end(), [](const Worker* w) {
    return w->client == nullptr || !w->client->conn().closing();
  });
}

std::string MessageRouter::WorkerLabel(const Worker& w) const {
  if (w.client == nullptr) return w.label;
  const commands::Session& s = w.client->session();
  std::string label = s.name.empty() ? "client-" + std::to_string(s.id) : s.name;
  // In a cluster a name alone does not say where the worker is, and two
  // nodes' client ids overlap: "<node id>:<name>" is unique and says both.
  const uint64_t node = NodeId();
  return node == 0 ? label : std::to_string(node) + ":" + label;
}

// ---------------------------------------------------------------------------
// Workers

void MessageRouter::Serve(commands::Session& session, std::span<const std::string_view> names,
                          uint32_t concurrency) {
  Client* c = server_->FindClient(session.id);
  auto& w = workers_[c];
  if (!w) {
    w = std::make_unique<Worker>();
    w->client = c;
    w->id = session.id;
  }
  w->concurrency = concurrency;
  for (std::string_view name : names) {
    Service& svc = GetService(session.room, name);
    if (std::find(w->services.begin(), w->services.end(), &svc) == w->services.end()) {
      w->services.push_back(&svc);
      svc.workers.push_back(w.get());
    }
  }
  c->serving = true;
  MarkWorkerDirty(*w, /*full=*/true);
  DrainWaiting(w.get());  // calls may have been waiting for a worker to appear
}

size_t MessageRouter::ServedWith(const commands::Session& session,
                                 std::span<const std::string_view> names) const {
  std::set<std::pair<std::string_view, std::string_view>> served;  // (room, name)
  if (auto it = workers_.find(server_->FindClient(session.id)); it != workers_.end()) {
    for (const Service* svc : it->second->services) served.insert({svc->room, svc->name});
  }
  for (std::string_view name : names) {
    served.insert({session.room, name});
    if (served.size() > commands::kMaxServicesPerWorker) break;  // enough to refuse
  }
  return served.size();
}

size_t MessageRouter::Unserve(commands::Session& session, std::span<const std::string_view> names) {
  Client* c = server_->FindClient(session.id);
  auto it = workers_.find(c);
  if (it == workers_.end()) return 0;
  Worker* w = it->second.get();
  size_t stopped = 0;
  for (auto s = w->services.begin(); s != w->services.end();) {
    Service* svc = *s;
    bool named = names.empty() ||
                 (svc->room == session.room &&
                  std::find(names.begin(), names.end(), std::string_view(svc->name)) != names.end());
    if (named) {
      std::erase(svc->workers, w);
      s = w->services.erase(s);
      stopped++;
      MaybeFreeService(svc);
    } else {
      ++s;
    }
  }
  // In-flight requests still get their answers; the worker just gets no new ones.
  if (stopped > 0) MarkWorkerDirty(*w, /*full=*/true);
  return stopped;
}

void MessageRouter::DropWorker(Worker* w, bool reroute) {
  std::vector<uint64_t> orphaned;
  for (auto& [id, call] : calls_) {
    if (call.worker == w) orphaned.push_back(id);
  }
  std::vector<Service*> services = std::move(w->services);
  for (Service* svc : services) std::erase(svc->workers, w);
  const uint64_t node = w->node;
  std::string why = "worker disconnected before replying";
  if (node == 0) {
    MarkWorkerGone(w->id);
    workers_.erase(w->client);  // frees w
  } else {
    why += " (its node " + std::to_string(node) + " is unreachable)";
    if (auto t = peer_tables_.find(node); t != peer_tables_.end()) {
      t->second.entries -= std::min(t->second.entries, services.size());
      t->second.workers -= std::min<size_t>(t->second.workers, 1);
    }
    remote_workers_.erase({node, w->id});  // frees w
  }
  // A record nothing refers to goes now; one with calls goes with its last
  // call (in Finish), so no pointer below outlives its record.
  std::erase_if(services, [&](Service* svc) {
    bool unused = svc->workers.empty() && svc->calls_open == 0;
    if (unused) MaybeFreeService(svc);
    return unused;
  });
  std::vector<uint64_t> failed, lost;
  for (uint64_t id : orphaned) {
    PendingCall& call = calls_.at(id);
    call.worker = nullptr;
    if (call.from_node != 0) {
      lost.push_back(id);  // a request from another node: its caller's node decides on a retry
      continue;
    }
    // The retry goes to another worker only if one exists now: waiting for a
    // worker to appear would leave the caller hanging for its whole timeout
    // for a request that may already have run.
    if (!CallerGone(call) && reroute && call.group == 0 && call.attempts < kMaxAttempts &&
        HasLiveWorker(*call.service)) {
      Dispatch(id, /*retry=*/true);  // once more, to another worker (invariant 1)
    } else {
      failed.push_back(id);
    }
  }
  // Retries queued behind busy workers of a service that has just lost its
  // last live worker fail now too, for the same reason.
  for (Service* svc : services) {
    if (HasLiveWorker(*svc)) continue;
    for (uint64_t id : svc->waiting) {
      if (calls_.at(id).attempts > 0) failed.push_back(id);
    }
  }
  for (uint64_t id : lost) Finish(id, "lost", why);
  for (uint64_t id : failed) Finish(id, "error", why);
}

void MessageRouter::Orphan(uint64_t call_id, bool reroute, std::string_view why) {
  PendingCall& call = calls_.at(call_id);
  call.worker = nullptr;
  if (CallerGone(call)) {
    Finish(call_id, "error", "caller disconnected");
  } else if (reroute && call.group == 0 && call.attempts < kMaxAttempts &&
      HasLiveWorker(*call.service)) {
    Dispatch(call_id, /*retry=*/true);
  } else {
    Finish(call_id, "error", why);
  }
}

// ---------------------------------------------------------------------------
// Calls

MessageRouter::Worker* MessageRouter::PickWorker(Service& svc) {
  // Fewest in flight among workers under their limit; round robin among ties.
  // A remote worker's load is this node's calls at it (exact) plus the other
  // nodes' as last heard (its node refuses the request if that was stale).
  Worker* best = nullptr;
  uint64_t best_load = 0;
  size_t best_pos = 0;
  size_t n = svc.workers.size();
  for (size_t k = 0; k < n; k++) {
    size_t pos = (svc.rr + k) % n;
    Worker* w = svc.workers[pos];
    const uint64_t load = uint64_t{w->in_flight} + w->others;
    if (load >= w->concurrency || w->blocked ||
        (w->client != nullptr && w->client->conn().closing())) {
      continue;
    }
    if (best == nullptr || load < best_load) {
      best = w;
      best_load = load;
      best_pos = pos;
    }
  }
  if (best != nullptr) svc.rr = best_pos + 1;
  return best;
}

bool MessageRouter::Assign(PendingCall& call, Worker* w) {
  if (w->client == nullptr) {
    // Another node's worker: the request goes to its node with the time left.
    const int64_t left = std::max<int64_t>(1, call.deadline_ms - MonoMs());
    svcwire::Request r{call.id, w->id, static_cast<uint64_t>(left), call.service->room,
                       call.service->name, *call.payload};
    if (!server_->cluster_node()->SendToPeer(w->node, svcwire::kFrameRequest,
                                              svcwire::EncodeRequest(r))) {
      // Not picked again until its node is heard from or the next stats tick
      // (an idle worker's node may never announce it again).
      w->blocked = true;
      return false;
    }
    call.worker = w;
    call.attempts++;
    w->in_flight++;
    return true;
  }
  call.worker = w;
  call.attempts++;
  w->in_flight++;
  if (call.from_node != 0) w->from_peer[call.from_node]++;
  MarkWorkerDirty(*w, /*full=*/false);
  Client* c = w->client;
  protocol::ReplyWriter out(&c->conn().output(), 3);
  out.Push(4);
  out.Bulk("svc.request");
  out.Integer(static_cast<int64_t>(call.id));
  out.Bulk(call.service->name);
  out.Bulk(*call.payload);
  server_->MarkDirty(c);
  server_->CheckOutputLimit(c);
  return true;
}

void MessageRouter::Dispatch(uint64_t call_id, bool retry) {
  PendingCall& call = calls_.at(call_id);
  // A failed send blocks its worker, so this ends.
  while (Worker* w = PickWorker(*call.service)) {
    if (Assign(call, w)) return;
  }
  // A retry has waited once already: it goes first in line.
  if (retry) {
    call.service->waiting.push_front(call_id);
  } else {
    call.service->waiting.push_back(call_id);
  }
}

void MessageRouter::DrainWaiting(Worker* w) {
  for (Service* svc : std::vector<Service*>(w->services)) {
    while (!svc->waiting.empty()) {
      Worker* pick = PickWorker(*svc);
      if (pick == nullptr) break;
      uint64_t id = svc->waiting.front();
      auto it = calls_.find(id);
      if (it == calls_.end()) {
        svc->waiting.pop_front();
        continue;
      }
      if (!Assign(it->second, pick)) continue;  // pick is now full: try the next one
      svc->waiting.pop_front();
    }
  }
}

void MessageRouter::StartLocalBroadcast(uint64_t group, Service* svc, std::string_view payload,
                                        uint64_t start_ns, int64_t deadline) {
  Broadcast& b = broadcasts_.at(group);
  auto shared = std::make_shared<const std::string>(payload);
  for (Worker* w : std::vector<Worker*>(svc->workers)) {
    if (w->client == nullptr) continue;  // another node's: its node runs its part
    uint64_t id = next_id_++;
    PendingCall& call =
        calls_.emplace(id, PendingCall{id, 0, svc, shared, start_ns, deadline}).first->second;
    svc->calls_open++;
    call.group = group;
    call.slot = b.slots.size();
    call.for_peer = b.from_node != 0;
    b.slots.push_back({WorkerLabel(*w), "", ""});
    b.outstanding++;
    (void)Assign(call, w);  // every worker, whatever its load: a broadcast is not balanced
  }
}

void MessageRouter::Call(commands::Session& session, std::string_view service,
                         std::string_view payload, int64_t timeout_ms, bool all) {
  const int64_t now = MonoMs();
  // Saturating, so even a caller that bypassed the TIMEOUT check could not
  // wrap its deadline into the past (invariant 4).
  const int64_t deadline = AddSaturating(now, timeout_ms);
  const uint64_t start_ns = uv_hrtime();
  session.blocked = true;  // the reply comes from Finish (invariant 2)
  if (!all) {
    Service& svc = GetService(session.room, service);  // its wait queue lives there
    svc.calls++;
    svc.calls_open++;
    uint64_t id = next_id_++;
    calls_.emplace(id, PendingCall{id, session.id, &svc,
                                   std::make_shared<const std::string>(payload), start_ns,
                                   deadline});
    deadlines_.emplace(deadline, id);
    Dispatch(id, /*retry=*/false);
  } else {
    uint64_t group = next_id_++;
    Broadcast& b = broadcasts_[group];
    b.caller_id = session.id;
    b.service = std::string(service);
    // A broadcast to a service nobody serves is answered at once and leaves
    // no record behind (invariant 3).
    if (Service* svc = FindService(session.room, service); svc != nullptr) {
      svc->calls++;
      StartLocalBroadcast(group, svc, payload, start_ns, deadline);
      // Each other node with workers of the service runs it on its own and
      // answers with their slots.
      for (auto& [peer, labels] : RemoteWorkersOf(*svc)) {
        Broadcast::Part& part = b.parts[peer];
        for (std::string& label : labels) part.slots.push_back({std::move(label), "", ""});
        svcwire::Broadcast frame{group, static_cast<uint64_t>(timeout_ms), session.room,
                                 service, payload};
        if (server_->cluster_node()->SendToPeer(peer, svcwire::kFrameBroadcast,
                                                 svcwire::EncodeBroadcast(frame))) {
          b.outstanding++;
        } else {
          part.done = true;
          for (Broadcast::Slot& slot : part.slots) {
            slot.status = "error";
            slot.payload = "node " + std::to_string(peer) + " could not be reached";
          }
        }
      }
    }
    if (b.outstanding == 0) {
      FinishBroadcast(group);
    } else {
      b.deadline_ms = deadline;
      deadlines_.emplace(deadline, group);
    }
  }
  ArmTimer();
}

bool MessageRouter::Answer(commands::Session& session, uint64_t request_id, bool ok,
                           std::string_view payload) {
  Client* c = server_->FindClient(session.id);
  auto it = calls_.find(request_id);
  if (it == calls_.end() || it->second.worker == nullptr || it->second.worker->client != c) {
    dropped_replies_++;  // unknown, late (timed out), duplicate, or not this worker's
    return false;
  }
  Finish(request_id, ok ? "ok" : "error", payload);
  return true;
}

void MessageRouter::Finish(uint64_t call_id, std::string_view status, std::string_view payload) {
  auto it = calls_.find(call_id);
  if (it == calls_.end()) return;
  PendingCall call = std::move(it->second);
  calls_.erase(it);
  deadlines_.erase({call.deadline_ms, call_id});
  Service& svc = *call.service;
  svc.calls_open--;
  if (call.worker == nullptr) std::erase(svc.waiting, call_id);
  if (call.for_peer) {
    // Counted by the caller's node.
  } else if (status == "ok") {
    double ms = static_cast<double>(uv_hrtime() - call.start_ns) / 1e6;
    if (svc.latency_ms.size() < kLatencySamples) {
      svc.latency_ms.push_back(ms);
    } else {
      svc.latency_ms[svc.latency_next++ % kLatencySamples] = ms;
    }
  } else if (status == "timeout") {
    svc.timeouts++;
  } else {
    svc.errors++;
  }
  Worker* w = call.worker;
  if (w != nullptr) {
    w->in_flight--;
    if (w->client != nullptr) {
      if (auto p = w->from_peer.find(call.from_node);
          call.from_node != 0 && call.remote_id != 0 && p != w->from_peer.end()) {
        if (--p->second == 0) w->from_peer.erase(p);
      }
      MarkWorkerDirty(*w, /*full=*/false);
    }
  }

  if (call.group != 0) {
    auto b = broadcasts_.find(call.group);
    if (b != broadcasts_.end()) {
      Broadcast::Slot& slot = b->second.slots[call.slot];
      slot.status = status == "lost" ? "error" : std::string(status);
      slot.payload = std::string(payload);
      if (--b->second.outstanding == 0) FinishBroadcast(call.group);
    }
  } else if (call.from_node != 0) {
    // The caller is on another node: the outcome goes back there.
    svcwire::Status code = status == "ok"        ? svcwire::Status::kOk
                           : status == "timeout" ? svcwire::Status::kTimeout
                           : status == "lost"    ? svcwire::Status::kLost
                                                 : svcwire::Status::kError;
    SendResult(call, code, payload);
  } else if (call.caller_id != 0) {
    std::string out2, out3;
    for (int p : {2, 3}) {
      protocol::ReplyWriter w2(p == 2 ? &out2 : &out3, p);
      if (status == "ok") {
        w2.Bulk(payload);
      } else if (status == "timeout") {
        w2.Error("TIMEOUT service '" + svc.name + "' did not answer in time");
      } else if (status == "noworker") {
        w2.Error("NOWORKER no worker for service '" + svc.name + "' appeared in time");
      } else {
        w2.Error("SVCERR " + std::string(payload));
      }
    }
    DeliverToCaller(call.caller_id, out2, out3);
  }
  if (w != nullptr) DrainWaiting(w);  // its freed slot may serve a waiting call
  MaybeFreeService(&svc);
  ArmTimer();
}

void MessageRouter::FinishBroadcast(uint64_t group) {
  auto it = broadcasts_.find(group);
  if (it == broadcasts_.end()) return;
  Broadcast b = std::move(it->second);
  broadcasts_.erase(it);
  // At once, not at the deadline: with long timeouts, stale entries would
  // pile up for as long.
  deadlines_.erase({b.deadline_ms, group});
  if (b.from_node != 0) {
    // Run here for another node's CALL.ALL: this node's slots go back to it.
    svcwire::BroadcastResult result;
    result.group = b.remote_group;
    for (Broadcast::Slot& s : b.slots) {
      svcwire::Status code = s.status == "ok"      ? svcwire::Status::kOk
                             : s.status == "error" ? svcwire::Status::kError
                                                   : svcwire::Status::kTimeout;
      result.slots.push_back({std::move(s.worker), code, std::move(s.payload)});
    }
    if (b.remote_group != 0) {  // 0: the caller's node went away
      (void)server_->cluster_node()->SendToPeer(b.from_node, svcwire::kFrameBroadcastResult,
                                                 svcwire::EncodeBroadcastResult(result));
    }
    return;
  }
  // This node's workers first, then each other node's, in node id order.
  std::vector<const Broadcast::Slot*> slots;
  for (const Broadcast::Slot& s : b.slots) slots.push_back(&s);
  for (const auto& [peer, part] : b.parts) {
    for (const Broadcast::Slot& s : part.slots) slots.push_back(&s);
  }
  std::string out2, out3;
  for (int p : {2, 3}) {
    protocol::ReplyWriter w(p == 2 ? &out2 : &out3, p);
    w.Array(slots.size());
    for (const Broadcast::Slot* s : slots) {
      w.Array(3);
      w.Bulk(s->worker);
      w.Bulk(s->status.empty() ? "timeout" : s->status);
      if (s->status == "ok" || s->status == "error") {
        w.Bulk(s->payload);
      } else {
        w.Null();
      }
    }
  }
  DeliverToCaller(b.caller_id, out2, out3);
}

void MessageRouter::DeliverToCaller(uint64_t caller_id, const std::string& resp2,
                                    const std::string& resp3) {
  Client* c = server_->FindClient(caller_id);
  if (c == nullptr) return;  // the caller left
  commands::Session& s = c->session();
  c->conn().output().append(s.protocol == 3 ? resp3 : resp2);
  s.blocked = false;
  server_->MarkDirty(c);
  server_->Resume(c);
}

// ---------------------------------------------------------------------------
// Timeouts

void MessageRouter::ArmTimer() {
  if (!timer_open_) return;
  if (deadlines_.empty()) {
    uv_timer_stop(&timer_);
    return;
  }
  // Always the earliest deadline of all (invariant 4). The difference is
  // taken only when positive, so it cannot overflow; an overdue deadline
  // fires on the next loop iteration.
  const int64_t earliest = deadlines_.begin()->first, now = MonoMs();
  uint64_t wait =
      earliest <= now ? 0 : static_cast<uint64_t>(earliest) - static_cast<uint64_t>(now);
  uv_timer_start(&timer_, [](uv_timer_t* t) { static_cast<MessageRouter*>(t->data)->OnTimer(); },
                 wait, 0);
}

void MessageRouter::OnTimer() {
  const int64_t now = MonoMs();
  while (!deadlines_.empty() && deadlines_.begin()->first <= now) {
    uint64_t id = deadlines_.begin()->second;
    deadlines_.erase(deadlines_.begin());
    if (auto c = calls_.find(id); c != calls_.end()) {
      bool had_workers = !c->second.service->workers.empty();
      Finish(id, c->second.worker == nullptr && !had_workers ? "noworker" : "timeout", {});
    } else if (auto b = broadcasts_.find(id); b != broadcasts_.end()) {
      // Every worker that has not answered is reported as timed out.
      std::vector<uint64_t> members;
      for (const auto& [cid, call] : calls_) {
        if (call.group == id) members.push_back(cid);
      }
      for (uint64_t cid : members) Finish(cid, "timeout", {});
      // Other nodes that have not answered: their workers are reported as timed out.
      if (auto left = broadcasts_.find(id); left != broadcasts_.end()) FinishBroadcast(id);
    }
  }
  ArmTimer();
}

// ---------------------------------------------------------------------------
// Lifecycle and introspection

void MessageRouter::RemoveClient(Client* c) {
  if (auto cs = client_subs_.find(c); cs != client_subs_.end()) {
    ClientSubs subs = cs->second;
    for (const auto& [room, name] : subs.channels) RemoveSub(c, room, name, false);
    for (const auto& [room, name] : subs.patterns) RemoveSub(c, room, name, true);
  }
  if (auto w = workers_.find(c); w != workers_.end()) DropWorker(w->second.get(), true);
  // Calls this client was waiting for: nobody will read the answer.
  uint64_t id = c->session().id;
  std::vector<uint64_t> abandoned;
  for (auto& [cid, call] : calls_) {
    if (call.caller_id == id) {
      if (call.worker == nullptr) {
        abandoned.push_back(cid);
      } else {
        call.caller_id = 0;  // the worker's answer will be dropped quietly
      }
    }
  }
  for (uint64_t cid : abandoned) Finish(cid, "error", "caller disconnected");
  for (auto& [gid, b] : broadcasts_) {
    if (b.caller_id == id) b.caller_id = 0;
  }
}

size_t MessageRouter::ServicesInRoom(std::string_view room) const {
  // This node's own: ROOM.STATS is per node.
  size_t n = 0;
  for (const auto& [key, svc] : services_) {
    n += svc->room == room && std::any_of(svc->workers.begin(), svc->workers.end(),
                                          [](const Worker* w) { return w->client != nullptr; });
  }
  return n;
}

namespace {

// Requests in flight at the service's workers, over the cluster: every call
// here with a worker (this node's calls anywhere, other nodes' requests at
// this node's workers), plus what other nodes have at the remote workers.
// A remote worker serving several services counts its other nodes' requests
// under each (its node announces one load per worker).
template <typename Calls, typename Svc>
uint64_t InFlightOf(const Calls& calls, const Svc* svc) {
  uint64_t n = 0;
  for (const auto& [id, call] : calls) n += call.service == svc && call.worker != nullptr;
  for (const auto* w : svc->workers) n += w->client == nullptr ? w->others : 0;
  return n;
}

}  // namespace

void MessageRouter::ListServices(std::string_view room, protocol::ReplyWriter& reply) {
  std::vector<const Service*> list;
  for (const auto& [key, svc] : services_) {
    if (svc->room == room && !svc->workers.empty()) list.push_back(svc.get());
  }
  std::sort(list.begin(), list.end(), [](const Service* a, const Service* b) { return a->name < b->name; });
  reply.Array(list.size());
  for (const Service* svc : list) {
    ClusterCounters counters = CountersOf(room, svc->name, svc);
    reply.Map(4);
    reply.Bulk("name");
    reply.Bulk(svc->name);
    reply.Bulk("workers");
    reply.Integer(static_cast<int64_t>(svc->workers.size()));
    reply.Bulk("in_flight");
    reply.Integer(static_cast<int64_t>(InFlightOf(calls_, svc)));
    reply.Bulk("waiting");
    reply.Integer(static_cast<int64_t>(counters.waiting));
  }
}

bool MessageRouter::ServiceStats(std::string_view room, std::string_view name,
                                 protocol::ReplyWriter& reply) {
  Service* svc = FindService(room, name);
  ClusterCounters counters = CountersOf(room, name, svc);
  bool elsewhere = false;  // another node has a call of it (no worker anywhere)
  for (const auto& [peer, stats] : peer_stats_) {
    for (const svcwire::ServiceCounters& c : stats.services) {
      elsewhere |= c.room == room && c.name == name;
    }
  }
  if (svc == nullptr && !elsewhere) return false;
  std::vector<const Worker*> workers;
  if (svc != nullptr) workers.assign(svc->workers.begin(), svc->workers.end());
  reply.Map(11);
  reply.Bulk("name");
  reply.Bulk(name);
  reply.Bulk("workers");
  reply.Array(workers.size());
  for (const Worker* w : workers) reply.Bulk(WorkerLabel(*w));
  reply.Bulk("in_flight");
  reply.Integer(svc == nullptr ? 0 : static_cast<int64_t>(InFlightOf(calls_, svc)));
  reply.Bulk("waiting");
  reply.Integer(static_cast<int64_t>(counters.waiting));
  reply.Bulk("calls");
  reply.Integer(static_cast<int64_t>(counters.calls));
  reply.Bulk("errors");
  reply.Integer(static_cast<int64_t>(counters.errors));
  reply.Bulk("timeouts");
  reply.Integer(static_cast<int64_t>(counters.timeouts));
  reply.Bulk("dropped_replies");
  reply.Integer(static_cast<int64_t>(counters.dropped));
  reply.Bulk("p50_ms");
  reply.Double(counters.p50);
  reply.Bulk("p99_ms");
  reply.Double(counters.p99);
  // Where each worker is and how busy: node 0 on a single node.
  reply.Bulk("worker_details");
  reply.Array(workers.size());
  const uint64_t self = NodeId();
  for (const Worker* w : workers) {
    reply.Map(5);
    reply.Bulk("node_id");
    reply.Integer(static_cast<int64_t>(w->client == nullptr ? w->node : self));
    reply.Bulk("worker_id");
    reply.Integer(static_cast<int64_t>(w->id));
    reply.Bulk("label");
    reply.Bulk(WorkerLabel(*w));
    reply.Bulk("concurrency");
    reply.Integer(w->concurrency);
    reply.Bulk("in_flight");
    reply.Integer(static_cast<int64_t>(uint64_t{w->in_flight} + w->others));
  }
  return true;
}

MessageRouter::ClusterCounters MessageRouter::CountersOf(std::string_view room,
                                                         std::string_view name,
                                                         const Service* svc) const {
  ClusterCounters out;
  out.dropped = dropped_replies_;
  // Latency: this node's samples weigh one each; a peer's announced quantile
  // points stand for its samples in equal shares.
  std::vector<std::pair<double, double>> weighted;
  if (svc != nullptr) {
    out.calls = svc->calls;
    out.errors = svc->errors;
    out.timeouts = svc->timeouts;
    out.waiting = svc->waiting.size();
    for (double ms : svc->latency_ms) weighted.emplace_back(ms, 1.0);
  }
  for (const auto& [peer, stats] : peer_stats_) {
    out.dropped += stats.dropped_replies;
    for (const svcwire::ServiceCounters& c : stats.services) {
      if (c.room != room || c.name != name) continue;
      out.calls += c.calls;
      out.errors += c.errors;
      out.timeouts += c.timeouts;
      out.waiting += c.waiting;
      if (!c.quantiles.empty()) {
        const double share =
            static_cast<double>(c.samples) / static_cast<double>(c.quantiles.size());
        for (double q : c.quantiles) weighted.emplace_back(q, share);
      }
    }
  }
  out.p50 = MergedPercentile(weighted, 0.5);
  out.p99 = MergedPercentile(weighted, 0.99);
  return out;
}

double MessageRouter::MergedPercentile(const std::vector<std::pair<double, double>>& weighted,
                                       double p) {
  // When every weight is one, the single-node rule of old: the value at
  // (0-based) position floor(p * n) of the sorted samples, n the total weight.
  if (weighted.empty()) return 0;
  std::vector<std::pair<double, double>> v = weighted;
  std::sort(v.begin(), v.end());
  double total = 0;
  for (const auto& [value, weight] : v) total += weight;
  const double rank = std::floor(p * total);
  double seen = 0;
  for (const auto& [value, weight] : v) {
    seen += weight;
    if (seen > rank) return value;
  }
  return v.back().first;
}

std::vector<ServiceView> MessageRouter::ServiceViews(std::optional<std::string_view> room) const {
  // One pass over the calls: in flight per (service, worker).
  std::map<std::pair<const Service*, const Worker*>, uint32_t> held;
  for (const auto& [id, call] : calls_) {
    if (call.worker != nullptr) held[{call.service, call.worker}]++;
  }
  const ClusterNode* node = server_->cluster_node();
  const uint64_t node_id = node != nullptr ? node->identity().node_id : 0;
  std::vector<ServiceView> out;
  for (const auto& [key, svc] : services_) {
    if (room && svc->room != *room) continue;
    // Cluster-wide: the counters as in SVC.STATS (this node's plus the peers'
    // last announced), every worker of every node (docs/messaging.md).
    const ClusterCounters counters = CountersOf(svc->room, svc->name, svc.get());
    ServiceView v;
    v.room = svc->room;
    v.name = svc->name;
    v.calls = counters.calls;
    v.errors = counters.errors;
    v.timeouts = counters.timeouts;
    v.p50_ms = counters.p50;
    v.p99_ms = counters.p99;
    v.waiting = counters.waiting;
    for (const Worker* w : svc->workers) {
      auto it = held.find({svc.get(), w});
      // Another node's worker: this node's calls at it, plus the other
      // nodes' as its node last announced.
      const uint32_t in_flight =
          (it == held.end() ? 0 : it->second) + (w->client == nullptr ? w->others : 0);
      v.in_flight += in_flight;
      v.workers.push_back({w->client == nullptr ? w->node : node_id, w->id, WorkerLabel(*w),
                           w->concurrency, in_flight});
    }
    out.push_back(std::move(v));
  }
  std::sort(out.begin(), out.end(), [](const ServiceView& a, const ServiceView& b) {
    return std::tie(a.room, a.name) < std::tie(b.room, b.name);
  });
  return out;
}

}  // namespace distri::server
