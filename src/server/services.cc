// MessageRouter, services half: SVC.SERVE, CALL, CALL.ALL, SVC.REPLY/ERROR,
// SVC.LIST/STATS, timeouts and worker loss. See messaging.h.

#include <algorithm>
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

double Percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  size_t i = std::min(v.size() - 1, static_cast<size_t>(p * static_cast<double>(v.size())));
  std::nth_element(v.begin(), v.begin() + static_cast<long>(i), v.end());
  return v[i];
}

}  // namespace

MessageRouter::MessageRouter(Server* server, uv_loop_t* loop) : server_(server), loop_(loop) {
  uv_timer_init(loop, &timer_);
  timer_.data = this;
  timer_open_ = true;
}

MessageRouter::~MessageRouter() = default;

void MessageRouter::Close() {
  if (timer_open_) {
    uv_close(reinterpret_cast<uv_handle_t*>(&timer_), nullptr);
    timer_open_ = false;
  }
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
  return std::any_of(svc.workers.begin(), svc.workers.end(),
                     [](const Worker* w) { return !w->client->conn().closing(); });
}

std::string MessageRouter::WorkerLabel(const Worker& w) const {
  const commands::Session& s = w.client->session();
  return s.name.empty() ? "client-" + std::to_string(s.id) : s.name;
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
  DrainWaiting(w.get());  // calls may have been waiting for a worker to appear
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
  return stopped;
}

void MessageRouter::DropWorker(Worker* w, bool reroute) {
  std::vector<uint64_t> orphaned;
  for (auto& [id, call] : calls_) {
    if (call.worker == w) orphaned.push_back(id);
  }
  std::vector<Service*> services = std::move(w->services);
  for (Service* svc : services) std::erase(svc->workers, w);
  workers_.erase(w->client);  // frees w
  // A record nothing refers to goes now; one with calls goes with its last
  // call (in Finish), so no pointer below outlives its record.
  std::erase_if(services, [&](Service* svc) {
    bool unused = svc->workers.empty() && svc->calls_open == 0;
    if (unused) MaybeFreeService(svc);
    return unused;
  });
  std::vector<uint64_t> failed;
  for (uint64_t id : orphaned) {
    PendingCall& call = calls_.at(id);
    call.worker = nullptr;
    // The retry goes to another worker only if one exists now: waiting for a
    // worker to appear would leave the caller hanging for its whole timeout
    // for a request that may already have run.
    if (reroute && call.group == 0 && call.attempts < kMaxAttempts &&
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
  for (uint64_t id : failed) Finish(id, "error", "worker disconnected before replying");
}

// ---------------------------------------------------------------------------
// Calls

MessageRouter::Worker* MessageRouter::PickWorker(Service& svc) {
  // Fewest in flight among workers under their limit; round robin among ties.
  Worker* best = nullptr;
  size_t best_pos = 0;
  size_t n = svc.workers.size();
  for (size_t k = 0; k < n; k++) {
    size_t pos = (svc.rr + k) % n;
    Worker* w = svc.workers[pos];
    if (w->in_flight >= w->concurrency || w->client->conn().closing()) continue;
    if (best == nullptr || w->in_flight < best->in_flight) {
      best = w;
      best_pos = pos;
    }
  }
  if (best != nullptr) svc.rr = best_pos + 1;
  return best;
}

void MessageRouter::Assign(PendingCall& call, Worker* w) {
  call.worker = w;
  call.attempts++;
  w->in_flight++;
  Client* c = w->client;
  protocol::ReplyWriter out(&c->conn().output(), 3);
  out.Push(4);
  out.Bulk("svc.request");
  out.Integer(static_cast<int64_t>(call.id));
  out.Bulk(call.service->name);
  out.Bulk(*call.payload);
  server_->MarkDirty(c);
  server_->CheckOutputLimit(c);
}

void MessageRouter::Dispatch(uint64_t call_id, bool retry) {
  PendingCall& call = calls_.at(call_id);
  Worker* w = PickWorker(*call.service);
  if (w == nullptr) {
    // A retry has waited once already: it goes first in line.
    if (retry) {
      call.service->waiting.push_front(call_id);
    } else {
      call.service->waiting.push_back(call_id);
    }
    return;
  }
  Assign(call, w);
}

void MessageRouter::DrainWaiting(Worker* w) {
  for (Service* svc : std::vector<Service*>(w->services)) {
    while (!svc->waiting.empty()) {
      Worker* pick = PickWorker(*svc);
      if (pick == nullptr) break;
      uint64_t id = svc->waiting.front();
      svc->waiting.pop_front();
      auto it = calls_.find(id);
      if (it != calls_.end()) Assign(it->second, pick);
    }
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
      auto shared = std::make_shared<const std::string>(payload);
      for (Worker* w : svc->workers) {
        uint64_t id = next_id_++;
        PendingCall& call =
            calls_.emplace(id, PendingCall{id, 0, svc, shared, start_ns, deadline})
                .first->second;
        svc->calls_open++;
        call.group = group;
        call.slot = b.slots.size();
        b.slots.push_back({WorkerLabel(*w), "", ""});
        b.outstanding++;
        Assign(call, w);  // every worker, whatever its load: a broadcast is not balanced
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
  if (status == "ok") {
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
  if (w != nullptr) w->in_flight--;

  if (call.group != 0) {
    auto b = broadcasts_.find(call.group);
    if (b != broadcasts_.end()) {
      Broadcast::Slot& slot = b->second.slots[call.slot];
      slot.status = std::string(status);
      slot.payload = std::string(payload);
      if (--b->second.outstanding == 0) FinishBroadcast(call.group);
    }
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
  std::string out2, out3;
  for (int p : {2, 3}) {
    protocol::ReplyWriter w(p == 2 ? &out2 : &out3, p);
    w.Array(b.slots.size());
    for (const Broadcast::Slot& s : b.slots) {
      w.Array(3);
      w.Bulk(s.worker);
      w.Bulk(s.status.empty() ? "timeout" : s.status);
      if (s.status == "ok" || s.status == "error") {
        w.Bulk(s.payload);
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
  size_t n = 0;
  for (const auto& [key, svc] : services_) n += svc->room == room && !svc->workers.empty();
  return n;
}

void MessageRouter::ListServices(std::string_view room, protocol::ReplyWriter& reply) {
  std::vector<const Service*> list;
  for (const auto& [key, svc] : services_) {
    if (svc->room == room && !svc->workers.empty()) list.push_back(svc.get());
  }
  std::sort(list.begin(), list.end(), [](const Service* a, const Service* b) { return a->name < b->name; });
  reply.Array(list.size());
  for (const Service* svc : list) {
    uint64_t in_flight = 0;
    for (const auto& [id, call] : calls_) in_flight += call.service == svc && call.worker != nullptr;
    reply.Map(4);
    reply.Bulk("name");
    reply.Bulk(svc->name);
    reply.Bulk("workers");
    reply.Integer(static_cast<int64_t>(svc->workers.size()));
    reply.Bulk("in_flight");
    reply.Integer(static_cast<int64_t>(in_flight));
    reply.Bulk("waiting");
    reply.Integer(static_cast<int64_t>(svc->waiting.size()));
  }
}

bool MessageRouter::ServiceStats(std::string_view room, std::string_view name,
                                 protocol::ReplyWriter& reply) {
  Service* svc = FindService(room, name);
  if (svc == nullptr) return false;
  uint64_t in_flight = 0;
  for (const auto& [id, call] : calls_) in_flight += call.service == svc && call.worker != nullptr;
  reply.Map(10);
  reply.Bulk("name");
  reply.Bulk(svc->name);
  reply.Bulk("workers");
  reply.Array(svc->workers.size());
  for (const Worker* w : svc->workers) reply.Bulk(WorkerLabel(*w));
  reply.Bulk("in_flight");
  reply.Integer(static_cast<int64_t>(in_flight));
  reply.Bulk("waiting");
  reply.Integer(static_cast<int64_t>(svc->waiting.size()));
  reply.Bulk("calls");
  reply.Integer(static_cast<int64_t>(svc->calls));
  reply.Bulk("errors");
  reply.Integer(static_cast<int64_t>(svc->errors));
  reply.Bulk("timeouts");
  reply.Integer(static_cast<int64_t>(svc->timeouts));
  reply.Bulk("dropped_replies");
  reply.Integer(static_cast<int64_t>(dropped_replies_));
  reply.Bulk("p50_ms");
  reply.Double(Percentile(svc->latency_ms, 0.5));
  reply.Bulk("p99_ms");
  reply.Double(Percentile(svc->latency_ms, 0.99));
  return true;
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
    ServiceView v;
    v.room = svc->room;
    v.name = svc->name;
    v.calls = svc->calls;
    v.errors = svc->errors;
    v.timeouts = svc->timeouts;
    v.p50_ms = Percentile(svc->latency_ms, 0.5);
    v.p99_ms = Percentile(svc->latency_ms, 0.99);
    v.waiting = svc->waiting.size();
    for (const Worker* w : svc->workers) {
      auto it = held.find({svc.get(), w});
      const uint32_t in_flight = it == held.end() ? 0 : it->second;
      v.in_flight += in_flight;
      v.workers.push_back({node_id, w->client->session().id, WorkerLabel(*w), w->concurrency,
                           in_flight});
    }
    out.push_back(std::move(v));
  }
  std::sort(out.begin(), out.end(), [](const ServiceView& a, const ServiceView& b) {
    return std::tie(a.room, a.name) < std::tie(b.room, b.name);
  });
  return out;
}

}  // namespace distri::server
