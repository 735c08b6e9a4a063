// Server: wires the event loop, the log, the state machine and the clients.
//
// Life of a write (see docs/architecture.md):
//   Client parses a command -> handler encodes an entry -> Server::Propose
//   appends it to the log and remembers (index -> client) -> once per loop
//   iteration Log::Flush starts a group commit -> the log's writer thread
//   fsyncs and wakes the loop -> Server applies each durable entry in order
//   and writes the reply to the client that proposed it.
// Reads are answered at once from the state machine.
//
// Threading: everything here runs on the one libuv loop thread; the log has a
// writer thread of its own and wakes the loop through an uv_async handle.

#ifndef DISTRI_SERVER_SERVER_H_
#define DISTRI_SERVER_SERVER_H_

#include <uv.h>

#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <unordered_map>
#include <variant>
#include <vector>

#include "base/histogram.h"
#include "base/log_limiter.h"
#include "base/rate_counter.h"
#include "base/strings.h"
#include "distri/version.h"
#include "commands/command.h"
#include "http/http_server.h"
#include "log/local_log.h"
#include "replication/raft_log.h"
#include "net/connection.h"
#include "server/auth_gate.h"
#include "server/messaging.h"
#include "server/mirror.h"
#include "server/steps.h"
#include "state/state_machine.h"

namespace distri::server {

class Client;
class ClusterNode;
class StatsGatherer;
struct NodeReport;
enum class StatsKind : uint8_t;
struct ClusterIdentity;
class HttpBackend;

// The cluster flags (docs/replication.md). Without a secret file the node runs alone on its
// LocalLog and opens no cluster port.
struct ClusterOptions {
  std::string secret_file;            // --cluster-secret-file
  int port = 7381;                    // --cluster-port
  std::vector<std::string> join;      // --join host:port,...
  std::string advertise;              // --advertise host:port (default bind:cluster-port)
  uint64_t tick_ms = 100;             // --raft-tick-ms
  uint32_t election_ticks = 10;       // --raft-election-ticks
  uint32_t heartbeat_ticks = 2;       // --raft-heartbeat-ticks
  uint64_t request_timeout_ms = 5000; // a write or read not answered by then gets UNKNOWN/TRYAGAIN
  bool enabled() const { return !secret_file.empty(); }
};

// Redis's client-output-buffer-limit: disconnect a client whose unsent output
// passes `hard`, or stays above `soft` for `soft_seconds`. 0 disables a bound.
struct OutputLimit {
  uint64_t hard = 0;
  uint64_t soft = 0;
  uint64_t soft_seconds = 0;
};

struct ServerOptions {
  commands::ServerSettings settings;
  MirrorOptions mirror;
  OutputLimit normal_limit{256ull << 20, 0, 0};          // ordinary clients
  OutputLimit push_limit{32ull << 20, 8ull << 20, 60};   // clients with mirrors
  // Unsent pushed output (mirrors, messages, requests) of all push clients
  // together; over it the largest push backlogs are cut off. 0: no budget.
  uint64_t push_output_budget = 256ull << 20;
  uint64_t snapshot_bytes = 64ull << 20;  // snapshot once this much log is written
  uint64_t segment_bytes = 64ull << 20;
  // HTTP endpoint limits (bind and port come from `settings`).
  http::HttpOptions http;
  ClusterOptions cluster;
};

struct ServerStats {
  uint64_t connections_received = 0;
  uint64_t rejected_connections = 0;
  uint64_t commands_processed = 0;
  uint64_t entries_applied = 0;
  uint64_t expired_keys = 0;
  uint64_t protocol_errors = 0;
  uint64_t log_failures = 0;
  uint64_t snapshots = 0;
  uint64_t slow_consumer_disconnects = 0;  // every client cut off for its output
  uint64_t push_budget_disconnects = 0;    // of which for --push-output-budget
  base::RateCounter ops;     // every command
  base::RateCounter reads;
  base::RateCounter writes;
};

// One named statistic; STATS, ROOM.STATS, INFO and the HTTP API all render
// the same lists.
struct StatField {
  std::string_view name;
  std::variant<int64_t, double, std::string> value;
};
using StatFields = std::vector<StatField>;

// Per-room activity, kept by the server (not replicated state).
struct RoomCounters {
  base::RateCounter reads;
  base::RateCounter writes;
};

class Server final : public commands::Context {
 public:
  explicit Server(ServerOptions options);
  ~Server() override;
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // Recovers the data directory and binds the port. Fails without side effects
  // on the network if the data cannot be recovered.
  Status Start();
  // Runs the loop until Stop() or a signal. REQUIRES: Start() succeeded.
  void Run();
  void Stop();

  // commands::Context
  const state::StateMachine& state() const override { return state_; }
  int64_t NowMs() const override;
  const commands::ServerSettings& settings() const override { return options_.settings; }
  uint64_t used_memory() const override;
  Status Propose(commands::Session& session, std::string_view entry,
                 commands::ReplyShape shape) override;
  std::string NewRoomCode() override;
  std::string Info(std::span<const std::string_view> sections) override;
  std::string ClientList(const commands::Session& viewer,
                         const commands::ClientListFilter& filter) override;
  commands::AuthCheck CheckPassword(const commands::Session& session,
                                    std::string_view password) override;
  void Mirror(commands::Session& session, std::string_view prefix, std::optional<uint64_t> from,
              protocol::ReplyWriter& reply) override;
  size_t Unmirror(commands::Session& session, std::optional<std::string_view> room) override;
  void RoomStats(commands::Session& session, std::string_view code,
                 protocol::ReplyWriter& reply) override;
  void SiteStats(commands::Session& session, protocol::ReplyWriter& reply) override;
  void ClusterStats(commands::Session& session, protocol::ReplyWriter& reply) override;
  commands::Messaging& messaging() override { return *router_; }
  MessageRouter& router() { return *router_; }
  void RunInSteps(commands::Session& session, commands::Step step) override;
  StatFields RoomStatsFields(std::string_view code);
  // The same with the room's client count given: listing every room counts
  // the clients of all rooms once (ClientsPerRoom), not once per room.
  StatFields RoomStatsFields(std::string_view code, int64_t clients);
  std::unordered_map<std::string_view, int64_t> ClientsPerRoom() const;
  StatFields SiteStatsFields();
  // Every member's own figures (server/cluster_stats.h), ascending id, this node's included:
  // gathered over the cluster links on demand, `done` running once all have answered or at the
  // timeout (never before GatherStats returns); on a single node this node's alone, at once.
  // False: too many requests are in flight (`done` never runs).
  using StatsDone = std::function<void(std::vector<NodeReport> nodes)>;
  bool GatherStats(StatsKind kind, std::string_view room, StatsDone done);

  // Called by clients.
  void MarkDirty(Client* client);
  void OnClientClosed(Client* client);
  // Disconnects the client if its unsent output broke its class's limit.
  // (The budget of all pushed output is enforced once per loop iteration,
  // EnforcePushBudget.)
  void CheckOutputLimit(Client* client);
  // The output limit of the client's class (unauthenticated, push or
  // ordinary).
  const OutputLimit& OutputLimitFor(const Client* client) const;
  // --output-limit: ordinary clients' (HTTP connections use its hard limit).
  const OutputLimit& normal_limit() const { return options_.normal_limit; }
  // Cuts the client off for its output: logged, counted, connection reset.
  void DisconnectSlowConsumer(Client* client, const char* why);
  // A shared payload was queued to clients: count it as pushed output once,
  // for as long as any of them holds it. Cuts nobody off: that waits for
  // EnforcePushBudget, after the clients have been flushed.
  void CountShared(std::shared_ptr<net::SharedBytes> payload);
  net::OutputGauge& normal_output() { return normal_output_; }
  net::OutputGauge& push_output() { return push_output_; }
  // Unsent output of all clients, in bytes (counted in used memory).
  uint64_t output_bytes() const { return normal_output_.bytes + push_output_.bytes; }
  // Proposes an encoded entry on behalf of no client (the HTTP API, timers);
  // `done` runs on the loop thread when it applies, or with an error result
  // if the log could not make it durable.
  // `adds_data`: refused with OutOfMemory when used memory plus the entry's
  // size would pass --max-memory (deletes are not).
  Status ProposeEntry(std::string_view entry, bool adds_data,
                      std::function<void(const state::ApplyResult&)> done);
  MirrorHub& mirrors() { return *mirrors_; }
  // Counts one command for statistics.
  void CountCommand(std::string_view room, uint32_t flags);
  // `ran`: the handler ran (false: refused before it, e.g. arity or NOAUTH).
  void CountCall(const commands::CommandSpec* spec, bool ran);
  // Per command name (index in CommandTable::all()), refused ones included;
  // see the HTTP /metrics.
  const std::vector<uint64_t>& command_calls() const { return command_calls_; }
  // Proposal to applied reply, for writes from clients (includes the fsync).
  base::LatencyHistogram& write_latency() { return write_latency_; }
  const base::LatencyHistogram& fsync_latency() const { return log_->fsync_latency(); }
  // The Raft log and the cluster glue; nullptr for a node without --cluster-secret-file.
  replication::RaftLog* raft() { return raft_; }
  ClusterNode* cluster_node() { return cluster_.get(); }
  commands::ClusterControl* cluster() override;
  // A forwarded write of ours was refused by the leader before it was proposed, or its
  // outcome became unknown.
  void FailProposal(uint64_t proposal, const state::ApplyResult& error);
  // Linearizable reads: the client waits until a read point covering its buffered input is
  // applied (ReadIndex; docs/replication.md "Reads").
  bool NeedsReadPoint(const commands::Session& session) const;
  void RequestReadBarrier(Client* client);
  void OnReadIndex(uint64_t ctx, uint64_t index);
  // CLUSTER.JOIN on a fresh cluster of one: discard its Raft state and join through
  // `address` (server/cluster.cc).
  Status RejoinThrough(const std::string& address);
  // After a snapshot from the leader replaced the state machine.
  Status LoadState(uint64_t index, std::string_view state);
  // The client with this id, or nullptr if it has gone.
  Client* FindClient(uint64_t id) const;
  // The client may run buffered commands again (after a blocking call).
  void Resume(Client* client);
  // Writes the reply of a command that blocked its session (its handler set
  // Session::blocked), unblocks it and lets it run what it has pipelined.
  // Nothing happens if the client has gone.
  void AnswerBlocked(uint64_t client_id, const std::function<void(protocol::ReplyWriter&)>& write);
  // Snapshot streaming has work: keep the loop turning until it is done.
  void WakePump();
  ServerStats& stats() { return stats_; }
  // True from a failed log write until an entry written after it is durable
  // (then /readyz is ready again).
  bool log_failing() const { return log_failing_; }
  uv_loop_t* loop() { return &loop_; }
  // Limits on clients that have not authenticated (auth_gate.h).
  AuthGate& auth_gate() { return *auth_gate_; }

 private:
  // A proposal waiting to apply, by proposal id (LocalLog: its index; RaftLog: an id that
  // comes back with the committed entry, whatever index it got).
  struct PendingEntry {
    uint64_t proposal;
    uint64_t client_id;  // 0: no client waits (expiry entries, callbacks)
    std::function<void(const state::ApplyResult&)> done;  // for ProposeEntry
    uint64_t bytes = 0;  // the entry's size, counted in in_flight_bytes_ until it applies
    int64_t proposed_ms = 0;
  };
  // Clients waiting for one ReadIndex answer.
  struct ReadBatch {
    std::vector<uint64_t> clients;
    uint64_t index = 0;  // 0: not answered yet
    int64_t started_ms = 0;
    int64_t asked_ms = 0;  // the last ReadIndex for it (a lost one is asked again)
  };

  static void OnConnection(uv_stream_t* server, int status);
  static void OnCheck(uv_check_t* handle);
  static void OnLogWakeup(uv_async_t* handle);
  static void OnExpireTimer(uv_timer_t* handle);
  static void OnSignal(uv_signal_t* handle, int signum);
  static void OnPumpIdle(uv_idle_t* handle);

  static int64_t RealtimeMs();
  void SyncClock();
  void ApplyCommitted();
  // Remembers a proposed entry until it applies (or fails).
  void AddPending(uint64_t proposal, uint64_t client_id, uint64_t bytes,
                  std::function<void(const state::ApplyResult&)> done);
  // Proposes locally (LocalLog, or the Raft leader) or forwards to the leader.
  Result<uint64_t> ProposeOrForward(std::string_view entry);
  void OnCommit(uint64_t index, std::string_view entry, uint64_t proposal);
  // Removes the pending proposal into *out; false if there is none (proposed before a
  // restart, or already answered).
  bool TakePending(uint64_t proposal, PendingEntry* out);
  // Completes a pending proposal; the client's older ones first get UNKNOWN.
  void CompletePending(uint64_t proposal, const state::ApplyResult& result);
  Status StartCluster();   // server/cluster.cc
  Result<std::unique_ptr<replication::RaftLog>> OpenRaftLog(const ClusterIdentity& identity,
                                                            const std::string& advertise,
                                                            bool bootstrap);
  Status ListenCluster();
  void CloseCluster();
  // Cluster mode: unanswered proposals and reads past the request timeout.
  void SweepClusterTimeouts();
  void IssueReadIndex();
  void ReleaseReads();
  void OnLogFailure(uint64_t first_index, const Status& why);
  void ExpireCycle();
  void MaybeSnapshot();
  void FlushClients();
  void AppendInfoSection(std::string_view name, std::string* out);
  void AppendClientLine(Client& client, const commands::Session& viewer, std::string* out);
  Status LoadNodeId();
  // Raises the open-files limit towards what the connection limits need,
  // and lowers the connection limits to what fits (as Redis does).
  void FitConnectionsToFdLimit();
  // The room's counters; nullptr for a room that does not exist (counters
  // live as long as their room, so they cannot be used to grow memory).
  RoomCounters* CountersFor(std::string_view room);
  void ForgetCounters(std::string_view room);
  // If pushed output is over its budget, cuts off the largest push backlogs
  // until what would be left is not. Called once per loop iteration, after
  // FlushClients.
  void EnforcePushBudget();
  // Once a second: a client over its soft output limit is cut off when the
  // soft time ends even if nothing more is written to it.
  void SweepSoftLimits();
  // STATS, ROOM.STATS and CLUSTER.STATS: gathers, then `write`s the reply (at once on a single
  // node; else the session blocks until the gather completes).
  using GatheredWrite =
      std::function<void(const std::vector<NodeReport>& nodes, protocol::ReplyWriter& reply)>;
  void AnswerStats(commands::Session& session, protocol::ReplyWriter& reply, StatsKind kind,
                   std::string_view room, GatheredWrite write);

  ServerOptions options_;
  uv_loop_t loop_;
  uv_tcp_t listener_;
  uv_check_t check_;
  uv_async_t log_async_;
  uv_timer_t expire_timer_;
  uv_signal_t sigint_, sigterm_;
  uv_idle_t pump_idle_;
  bool pump_active_ = false;
  bool loop_ready_ = false;
  bool stopping_ = false;  // Stop() has begun: no more snapshots

  state::StateMachine state_;
  std::unique_ptr<MirrorHub> mirrors_;
  std::unique_ptr<MessageRouter> router_;
  std::unique_ptr<AuthGate> auth_gate_;
  std::unique_ptr<StepRunner> steps_;  // long reads, a slice per loop iteration
  std::unique_ptr<log::Log> log_;
  replication::RaftLog* raft_ = nullptr;  // log_, when it is a RaftLog
  // Declared before cluster_, so destroyed after it: its frame handlers live in cluster_.
  std::unique_ptr<StatsGatherer> stats_gatherer_;  // in a cluster
  std::unique_ptr<ClusterNode> cluster_;
  // By ascending proposal id (ids only grow: LocalLog's indexes, RaftLog's sequence). They
  // almost always complete in that order, so finding one is a look at the front.
  std::deque<PendingEntry> pending_;
  std::vector<uint64_t> read_waiting_;         // clients wanting a read point this iteration
  std::map<uint64_t, ReadBatch> read_batches_;  // by ReadIndex context
  uint64_t next_read_ctx_ = 1;
  uint64_t in_flight_bytes_ = 0;      // sum of pending_[i].bytes
  bool expiry_in_flight_ = false;
  uint64_t expiry_proposal_ = 0;
  bool log_failing_ = false;      // see log_failing()
  uint64_t refused_entries_ = 0;  // entries failed since log_failing_ was set
  // A failing log (a full disk) fails every write: one ERROR line per 10 s,
  // with a count of the failures left out.
  base::LogLimiter log_failure_log_{10000};
  base::LogLimiter snapshot_failure_log_{10000};

  std::unordered_map<uint64_t, Client*> clients_;
  std::vector<Client*> dirty_;
  std::vector<Client*> flush_batch_;
  std::vector<Client*> resumable_;
  uint64_t next_client_id_ = 1;
  net::OutputGauge normal_output_;  // unsent bytes of ordinary clients
  net::OutputGauge push_output_;    // of push clients, and shared payloads
  int64_t soft_sweep_s_ = 0;        // the second SweepSoftLimits last ran
  int64_t started_ms_ = 0;
  int64_t wall_offset_ms_ = 0;  // wall clock minus the loop's monotonic clock
  std::string node_id_;
  ServerStats stats_;
  std::unordered_map<std::string, RoomCounters, base::StringHash, std::equal_to<>> room_counters_;
  uint64_t room_counters_bytes_ = 0;  // what room_counters_ holds, for used_memory()
  std::vector<uint64_t> command_calls_;
  std::vector<uint64_t> command_rejected_;  // of command_calls_, refused before the handler
  base::LatencyHistogram write_latency_;

  // The HTTP endpoint (dashboard, JSON API, /metrics; src/http/). Last, so it
  // is destroyed before the state and mirrors its connections refer to.
  std::unique_ptr<HttpBackend> http_backend_;
  std::unique_ptr<http::HttpServer> http_;
};

}  // namespace distri::server

#endif  // DISTRI_SERVER_SERVER_H_
