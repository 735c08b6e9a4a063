// MessageRouter: pub/sub and services — ephemeral traffic that never enters
// the log. Implements commands::Messaging for the command handlers.
//
// Pub/sub (pubsub.cc): channels and patterns per room; a message is encoded
// once per protocol version and appended to every subscriber's output; a
// large one is stored once and shared by their output queues. In a cluster,
// PubsubRoutes (pubsub_routes.h) carries interest and messages to the other
// nodes; PUBLISH and PUBSUB count their subscribers too.
//
// Services (services.cc): a worker connection serves named services with a
// concurrency limit. CALL goes to exactly one worker: the one with the fewest
// requests in flight that is under its limit, round robin among ties; with
// none available it waits in the service's queue until one frees up or the
// call times out. A request whose worker disconnects is sent once more to
// another worker. CALL.ALL sends the request to every worker registered at
// call time and answers with one entry per worker (reply, error or timeout).
//
// Across the cluster (service_routes.cc; docs/messaging.md): each node
// announces its workers and their load to its peers, which hold them as
// remote Workers in the same Service records, so one PickWorker chooses among
// every worker of the cluster. A call stays on its caller's node (deadline,
// queue, retry); a request to another node's worker is sent there, and that
// node, the authority on its worker's slots, runs it or refuses it ("not
// run", re-dispatched without counting an attempt). CALL.ALL asks every node
// with workers of the service to run the broadcast on its own workers.
//
// Invariants:
//  1. A call is in exactly one place: a service's wait queue, or in flight
//     at one worker (counted in that worker's in_flight; for another node's
//     worker, in_flight is exactly this node's calls at it).
//  2. A blocked caller has exactly one call (or broadcast) outstanding.
//  3. A service record exists only while it has a worker or a call refers to
//     it (Service::calls_open > 0); the last one to go frees it, so callers
//     naming many distinct services leave nothing behind.
//  4. Deadlines never overflow: a call's deadline is now + a timeout of at
//     most commands::kMaxCallTimeoutMs, and the one timer is always armed
//     for the earliest deadline of all (a far one never hides a near one).
//  5. Another node's worker is held only while that node's link is up, and
//     in the records of exactly the services it last announced.
//  6. A request from another node's caller is never queued here: it runs at
//     once on the worker it names, or is refused (NOT_RUN) to its node.
//
// Thread-safety: loop thread only.

#ifndef DISTRI_SERVER_MESSAGING_H_
#define DISTRI_SERVER_MESSAGING_H_

#include <uv.h>

#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <unordered_map>
#include <vector>

#include "base/glob.h"
#include "base/log_limiter.h"
#include "base/strings.h"
#include "commands/messaging.h"
#include "server/pubsub_routes.h"
#include "server/service_wire.h"

namespace distri::server {

class Client;
class ClusterNode;
class Server;

// One service as GET /api/services shows it: its statistics and its workers with the calls
// each holds now.
struct ServiceView {
  struct Worker {
    uint64_t node_id = 0;    // the node it is connected to (0 on a node without a cluster)
    uint64_t worker_id = 0;  // its client id on that node
    std::string label;       // CLIENT SETNAME, else "client-<id>"; "<node id>:" first in a cluster
    uint32_t concurrency = 0;
    // Calls of this service it holds; another node's worker: this node's calls
    // of this service at it plus the other nodes' requests as last announced.
    uint32_t in_flight = 0;
  };
  std::string room, name;
  uint64_t calls = 0, errors = 0, timeouts = 0;
  double p50_ms = 0, p99_ms = 0;
  uint64_t waiting = 0;    // calls queued for a free worker
  uint64_t in_flight = 0;  // calls at a worker
  std::vector<Worker> workers;
};

class MessageRouter final : public commands::Messaging {
 public:
  MessageRouter(Server* server, uv_loop_t* loop);
  ~MessageRouter() override;
  MessageRouter(const MessageRouter&) = delete;
  MessageRouter& operator=(const MessageRouter&) = delete;

  // commands::Messaging
  void Subscribe(commands::Session& session, std::span<const std::string_view> names, bool pattern,
                 protocol::ReplyWriter& reply) override;
  void Unsubscribe(commands::Session& session, std::span<const std::string_view> names,
                   bool pattern, protocol::ReplyWriter& reply) override;
  int64_t Publish(std::string_view room, std::string_view channel, std::string_view message) override;
  std::vector<std::string> Channels(std::string_view room, std::optional<std::string_view> pattern) override;
  int64_t NumSub(std::string_view room, std::string_view channel) override;
  int64_t NumPat(std::string_view room) override;
  void Serve(commands::Session& session, std::span<const std::string_view> services,
             uint32_t concurrency) override;
  size_t ServedWith(const commands::Session& session,
                    std::span<const std::string_view> services) const override;
  size_t Unserve(commands::Session& session, std::span<const std::string_view> services) override;
  bool Answer(commands::Session& session, uint64_t request_id, bool ok, std::string_view payload) override;
  void Call(commands::Session& session, std::string_view service, std::string_view payload,
            int64_t timeout_ms, bool all) override;
  void ListServices(std::string_view room, protocol::ReplyWriter& reply) override;
  bool ServiceStats(std::string_view room, std::string_view service, protocol::ReplyWriter& reply) override;
  // Every service record (with a worker or a call), sorted by room and name; only `room`'s
  // when given.
  std::vector<ServiceView> ServiceViews(std::optional<std::string_view> room) const;

  // The client is going away: drop its subscriptions, re-route or fail the
  // requests it was serving, abandon the calls it was waiting for.
  void RemoveClient(Client* client);
  // Closes the timer handle (server shutdown).
  void Close();

  // The server is a cluster member: pub/sub reaches subscribers on every node.
  // REQUIRES: called once, before the cluster starts; node outlives this.
  void ConnectCluster(ClusterNode* node);
  // Pub/sub between nodes (all zero on a single node), for STATS and /metrics.
  PubsubRouteStats pubsub_route_stats() const {
    return routes_ ? routes_->stats() : PubsubRouteStats{};
  }

  // Counts for ROOM.STATS (this node's subscribers).
  size_t SubscriptionsInRoom(std::string_view room) const;
  // One client's channels and patterns (CLIENT LIST's sub= and psub=).
  struct SubCounts {
    size_t channels = 0;
    size_t patterns = 0;
  };
  SubCounts SubscriptionsOf(Client* c) const;
  size_t ServicesInRoom(std::string_view room) const;
  uint64_t dropped_replies() const { return dropped_replies_; }
  // Service records held (with a worker or a call), for STATS.
  size_t service_records() const { return services_.size(); }

 private:
  // ---- pub/sub ----
  // One pattern and its subscribers: compiled once, however many subscribe.
  struct PatternSubs {
    explicit PatternSubs(std::string_view pattern) : glob(pattern) {}
    base::Glob glob;
    std::vector<Client*> clients;
  };
  struct RoomSubs {
    std::unordered_map<std::string, std::vector<Client*>, base::StringHash, std::equal_to<>> channels;
    // Unique patterns (PUBSUB NUMPAT counts these, as Redis does).
    std::unordered_map<std::string, PatternSubs, base::StringHash, std::equal_to<>> patterns;
  };
  struct ClientSubs {
    std::set<std::pair<std::string, std::string>> channels;  // (room, channel)
    std::set<std::pair<std::string, std::string>> patterns;  // (room, pattern)
  };
  bool AddSub(Client* c, const std::string& room, std::string_view name, bool pattern);
  bool RemoveSub(Client* c, const std::string& room, std::string_view name, bool pattern);
  void WriteConfirm(protocol::ReplyWriter& reply, std::string_view kind, std::string_view name,
                    bool nil_name, const commands::Session& session);
  // To this node's subscribers only; the number of them that got it.
  int64_t DeliverLocal(std::string_view room, std::string_view channel, std::string_view message);

  std::unordered_map<std::string, RoomSubs, base::StringHash, std::equal_to<>> rooms_;
  std::unordered_map<Client*, ClientSubs> client_subs_;
  // In a cluster only. Declared after rooms_, so destroyed first: its callbacks read them.
  std::unique_ptr<PubsubLinks> route_links_;
  std::unique_ptr<PubsubRoutes> routes_;

  // ---- services ----
  struct Worker;
  struct Service {
    std::string room, name;
    std::vector<Worker*> workers;  // this node's and, in a cluster, the peers' announced ones
    size_t rr = 0;                 // round-robin position among ties
    std::deque<uint64_t> waiting;  // call ids with no worker yet
    uint64_t calls = 0, errors = 0, timeouts = 0;  // of calls made on this node
    std::vector<double> latency_ms;  // ring of recent completed call latencies
    size_t latency_next = 0;
    size_t calls_open = 0;  // PendingCalls that point here (invariant 3)
  };
  struct Worker {
    Client* client = nullptr;  // null: a worker on another node (node != 0)
    uint64_t node = 0;         // 0: this node
    uint64_t id = 0;           // its client id on its node
    std::string label;         // a remote worker's label, as announced
    uint32_t concurrency = 1;
    // This node's worker: requests at it, from every node. Another node's: this
    // node's calls at it (known exactly here).
    uint32_t in_flight = 0;
    // Another node's worker: its requests from the other nodes, as last heard
    // (announced, or in a RESULT). Load = in_flight + others.
    uint32_t others = 0;
    // Another node's worker that refused a request (NOT_RUN) or could not be
    // sent one: picked by nobody until its node is next heard from (an
    // announcement or a result) or the next stats tick, so a refusal or a
    // full link queue never turns into a resend per round trip.
    bool blocked = false;
    std::vector<Service*> services;
    std::map<uint64_t, uint32_t> from_peer;  // this node's worker: in flight per calling node
  };
  struct PendingCall {
    uint64_t id;
    uint64_t caller_id;  // 0 once the caller has gone
    Service* service;
    // Shared by every call of one CALL.ALL: stored once however many
    // workers it goes to (each worker's output still gets its own copy,
    // counted against that worker's output limit).
    std::shared_ptr<const std::string> payload;
    uint64_t start_ns;     // uv_hrtime() when the call was made
    int64_t deadline_ms;   // on the monotonic clock (MonoMs)
    Worker* worker = nullptr;  // null while waiting in the queue
    int attempts = 0;
    uint64_t group = 0;        // CALL.ALL broadcast id, 0 for CALL
    size_t slot = 0;           // position in the broadcast's results
    // A request from a caller on another node, run here: that node, and the
    // call's id there (0 once that node's link went down: the answer is dropped).
    uint64_t from_node = 0;
    uint64_t remote_id = 0;
    uint64_t remote_worker = 0;  // the worker id that request named
    // Made for another node (a remote request, or its CALL.ALL run here): that
    // node counts it in its SVC.STATS, this one does not.
    bool for_peer = false;
  };
  struct Broadcast {
    uint64_t caller_id;
    std::string service;
    struct Slot {
      std::string worker;
      std::string status;  // "ok", "error", "timeout", "" = pending
      std::string payload;
    };
    std::vector<Slot> slots;  // this node's workers
    size_t outstanding = 0;   // pending local slots + pending peers
    int64_t deadline_ms = 0;  // its entry in deadlines_ (none while 0 outstanding)
    // Run here for a CALL.ALL made on another node: that node and its group id.
    uint64_t from_node = 0;
    uint64_t remote_group = 0;
    // Made here: each peer asked, with the labels of its workers known when it
    // was asked (reported as timeout or error if it never answers), then its answer.
    struct Part {
      bool done = false;
      std::vector<Slot> slots;
    };
    std::map<uint64_t, Part> parts;
  };

  Service* FindService(std::string_view room, std::string_view name);
  Service& GetService(const std::string& room, std::string_view name);
  // Frees the record if nothing refers to it any more (invariant 3).
  void MaybeFreeService(Service* svc);
  // False: a remote worker could not be sent the request (no link, queue full).
  bool Assign(PendingCall& call, Worker* worker);
  Worker* PickWorker(Service& svc);
  bool HasLiveWorker(const Service& svc) const;
  // To the best worker now, else into the service's queue (a retry first).
  void Dispatch(uint64_t call_id, bool retry);
  void DrainWaiting(Worker* worker);
  // A CALL made on this node whose caller has disconnected: run for nobody, so
  // it is finished rather than sent again after a refusal or a lost worker.
  static bool CallerGone(const PendingCall& call) {
    return call.group == 0 && call.from_node == 0 && call.caller_id == 0;
  }
  // A call whose worker is gone (it may have run): once more to another
  // worker if attempts allow and one exists now, else it fails.
  void Orphan(uint64_t call_id, bool reroute, std::string_view why);
  // Ends a call: the caller (or its broadcast slot) gets the outcome.
  void Finish(uint64_t call_id, std::string_view status, std::string_view payload);
  void DeliverToCaller(uint64_t caller_id, const std::string& bytes_resp2, const std::string& bytes_resp3);
  void FinishBroadcast(uint64_t group);
  void ArmTimer();
  void OnTimer();
  std::string WorkerLabel(const Worker& w) const;
  void DropWorker(Worker* w, bool reroute);
  // Sends a broadcast's request to each of the `room` workers of `svc` on this node.
  void StartLocalBroadcast(uint64_t group, Service* svc, std::string_view payload,
                           uint64_t start_ns, int64_t deadline);
  static double MergedPercentile(const std::vector<std::pair<double, double>>& weighted, double p);

  // ---- services across the cluster (service_routes.cc) ----
  // This node's id, 0 on a single node (no cluster).
  uint64_t NodeId() const;
  void RegisterClusterHandlers();
  // A local worker's announcement is due (once per loop iteration, coalesced).
  void MarkWorkerDirty(const Worker& w, bool full);
  void MarkWorkerGone(uint64_t id);
  void FlushAnnouncements();
  // This node's whole table as `peer` is told it, in frames under the receiver's bound.
  std::vector<std::string> FullTableFor(uint64_t peer) const;
  // False (and the peer is due a resync) if a frame could not be queued.
  bool SendFullTable(uint64_t peer);
  void OnResyncFrame(uint64_t peer, std::string_view payload);
  void OnPeerLink(uint64_t peer, bool up);
  void OnWorkersFrame(uint64_t peer, std::string_view payload);
  void OnRequestFrame(uint64_t peer, std::string_view payload);
  void OnResultFrame(uint64_t peer, std::string_view payload);
  void OnBroadcastFrame(uint64_t peer, std::string_view payload);
  void OnBroadcastResultFrame(uint64_t peer, std::string_view payload);
  void OnStatsFrame(uint64_t peer, std::string_view payload);
  void UpsertRemoteWorker(uint64_t peer, const svcwire::WorkerRecord& record);
  void SendResult(const PendingCall& call, svcwire::Status status, std::string_view payload);
  Worker* LocalWorker(uint64_t id) const;
  // How `w` is announced to `peer` (its load leaves out that peer's requests).
  svcwire::WorkerRecord RecordFor(const Worker& w, uint64_t peer) const;
  // Peers with at least one worker of (room, service), in id order, with those workers' labels.
  std::map<uint64_t, std::vector<std::string>> RemoteWorkersOf(const Service& svc) const;
  std::string EncodeLocalStats() const;
  void SendStats();
  // Drops other nodes' workers that are gone, rerouting their calls to workers not in `gone`.
  void DropRemoteWorkers(const std::vector<Worker*>& gone);
  // The stats tick lifts every remote worker's `blocked` and offers it the waiting calls.
  void UnblockRemoteWorkers();
  void LogBadFrame(uint64_t peer, std::string_view what);
  // Cluster-wide counters of one service: this node's plus the peers' last announced.
  struct ClusterCounters {
    uint64_t calls = 0, errors = 0, timeouts = 0, waiting = 0, dropped = 0;
    double p50 = 0, p99 = 0;
  };
  ClusterCounters CountersOf(std::string_view room, std::string_view name,
                             const Service* svc) const;

  // Monotonic time for deadlines and latencies: a wall-clock step must not
  // time out every call at once.
  int64_t MonoMs() const { return static_cast<int64_t>(uv_now(loop_)); }

  Server* server_;
  uv_loop_t* loop_;
  uv_timer_t timer_;
  bool timer_open_ = false;
  std::unordered_map<std::string, std::unique_ptr<Service>> services_;  // room '\n' name
  std::unordered_map<Client*, std::unique_ptr<Worker>> workers_;
  std::unordered_map<uint64_t, PendingCall> calls_;
  std::unordered_map<uint64_t, Broadcast> broadcasts_;
  // (deadline, call id or broadcast group id: one id space, from next_id_)
  std::set<std::pair<int64_t, uint64_t>> deadlines_;
  uint64_t next_id_ = 1;
  uint64_t dropped_replies_ = 0;

  // ---- services across the cluster (all empty on a single node) ----
  // Other nodes' workers as they announced them, by (node, worker id).
  std::map<std::pair<uint64_t, uint64_t>, std::unique_ptr<Worker>> remote_workers_;
  struct PeerTable {
    size_t workers = 0, entries = 0;  // workers and (worker, service) pairs held
    uint64_t boot = 0;                // its boot id, from its WORKERS frames
    // A whole table sent in parts: the workers its parts so far listed, while one is in
    // progress (its first part arrived, its last not yet). Parts that arrive with none in
    // progress (the first was refused) only update: they never sweep.
    std::set<uint64_t> listed;
    bool in_table = false;
  };
  std::map<uint64_t, PeerTable> peer_tables_;  // per linked peer
  // This node's workers whose announcement is due, by id.
  std::set<uint64_t> dirty_full_, dirty_load_, dirty_gone_;
  std::set<uint64_t> resync_;  // peers that missed a change: sent the full table next tick
  // Random per start, in every WORKERS frame: a peer that sees it change knows
  // this node restarted even if it never saw the old link go down.
  uint64_t boot_id_ = 0;
  uv_idle_t announce_idle_;  // flushes them once per loop iteration
  bool announce_open_ = false, announce_armed_ = false;
  uv_timer_t stats_timer_;  // announces this node's counters, at most once a second
  bool stats_open_ = false;
  std::string last_stats_;  // the last counters announced
  std::map<uint64_t, svcwire::StatsFrame> peer_stats_;  // each peer's, as last announced
  base::LogLimiter bad_frames_{10000};
};

}  // namespace distri::server

#endif  // DISTRI_SERVER_MESSAGING_H_
