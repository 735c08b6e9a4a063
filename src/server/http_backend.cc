// HttpBackend; see http_backend.h.

#include "server/http_backend.h"

#include <unistd.h>

#include <algorithm>
#include <cstdio>

#include "commands/access.h"
#include "http/metrics.h"
#include "cluster/transport.h"
#include "server/cluster.h"
#include "server/cluster_status.h"
#include "server/mirror.h"
#include "server/server.h"
#include "server/stats_gather.h"

namespace distri::server {

namespace {

http::Fields Convert(const StatFields& fields) {
  http::Fields out;
  out.reserve(fields.size());
  for (const StatField& f : fields) {
    http::Field h;
    h.name = std::string(f.name);
    std::visit([&](const auto& v) { h.value = v; }, f.value);
    out.push_back(std::move(h));
  }
  return out;
}

bool HasPrefix(std::string_view s, std::string_view prefix) {
  return s.size() >= prefix.size() && s.compare(0, prefix.size(), prefix) == 0;
}

// A MirrorHub sink that forwards events to the WebSocket session; stopping
// it on destruction is what makes it a handle.
class MirrorAdapter final : public MirrorSink, public http::MirrorHandle {
 public:
  MirrorAdapter(Server* server, http::MirrorOutput* out) : server_(server), out_(out) {}
  ~MirrorAdapter() override { server_->mirrors().Stop(this, std::nullopt); }

  void Deliver(const MirrorEvent& e) override {
    http::MirrorUpdate u;
    u.revision = e.revision;
    u.key = e.key;
    u.value = e.value;
    u.expire_at_ms = e.expire_at_ms;
    u.expired = e.expired;
    switch (e.kind) {
      case MirrorEvent::Kind::kReset:
        u.kind = http::MirrorUpdate::Kind::kReset;
        break;
      case MirrorEvent::Kind::kReady:
        u.kind = http::MirrorUpdate::Kind::kReady;
        break;
      case MirrorEvent::Kind::kSet:
        u.kind = http::MirrorUpdate::Kind::kSet;
        break;
      case MirrorEvent::Kind::kDel:
        u.kind = http::MirrorUpdate::Kind::kDel;
        break;
      case MirrorEvent::Kind::kFlush:
        u.kind = http::MirrorUpdate::Kind::kFlush;
        break;
      case MirrorEvent::Kind::kSnapshot:
        u.kind = http::MirrorUpdate::Kind::kSnapshot;
        items_.clear();
        for (const state::Item* item : e.items)
          items_.push_back({item->key(), item->value(), item->expire_at_ms()});
        u.items = items_;
        break;
    }
    out_->Deliver(u);
  }
  size_t unsent_bytes() const override { return out_->unsent_bytes(); }
  bool sink_closed() const override { return out_->closed(); }

 private:
  Server* server_;
  http::MirrorOutput* out_;
  std::vector<http::KeyView> items_;  // reused per snapshot chunk
};

// Resident set size from /proc (0 where unavailable).
uint64_t ResidentBytes() {
  FILE* f = std::fopen("/proc/self/statm", "r");
  if (f == nullptr) return 0;
  unsigned long size = 0, resident = 0;
  int n = std::fscanf(f, "%lu %lu", &size, &resident);
  std::fclose(f);
  return n == 2 ? static_cast<uint64_t>(resident) * static_cast<uint64_t>(sysconf(_SC_PAGESIZE))
                : 0;
}

}  // namespace

net::OutputGauge* HttpBackend::response_gauge() { return &server_->normal_output(); }

net::OutputGauge* HttpBackend::push_gauge() { return &server_->push_output(); }

uint64_t HttpBackend::response_output_limit() const {
  return server_->normal_limit().hard;
}

int64_t HttpBackend::NowMs() const { return server_->NowMs(); }

http::Fields HttpBackend::SiteStats() { return Convert(server_->SiteStatsFields()); }

namespace {

// The combined figures plus "nodes", one object per member (as STATS replies).
http::Fields ConvertGathered(const StatFields& combined, const std::vector<NodeReport>& nodes) {
  http::Fields out = Convert(combined);
  std::vector<http::Fields> list;
  list.reserve(nodes.size());
  for (const NodeReport& node : nodes) {
    http::Fields fields;
    fields.reserve(node.figures.size());
    for (const Figure& f : node.figures) {
      http::Field h;
      h.name = f.name;
      std::visit([&](const auto& v) { h.value = v; }, f.value);
      fields.push_back(std::move(h));
    }
    list.push_back(std::move(fields));
  }
  out.push_back({"nodes", std::move(list)});
  return out;
}

}  // namespace

// Only the Server is captured: it outlives every gather (Server::Stop completes them).
void HttpBackend::GatherSiteStats(http::StatsDone done) {
  Server* server = server_;
  auto finish = [server, done](std::vector<NodeReport> nodes) {
    done(ConvertGathered(Combine(server->SiteStatsFields(), nodes, kSummedSiteFields), nodes));
  };
  if (!server_->GatherStats(StatsKind::kSite, {}, finish)) done(std::nullopt);
}

void HttpBackend::GatherRoomStats(std::string_view code, http::StatsDone done) {
  Server* server = server_;
  auto finish = [server, done, room = std::string(code)](std::vector<NodeReport> nodes) {
    done(ConvertGathered(Combine(server->RoomStatsFields(room, 0), nodes, kSummedRoomFields),
                         nodes));
  };
  if (!server_->GatherStats(StatsKind::kRoom, code, finish)) done(std::nullopt);
}

std::vector<http::Fields> HttpBackend::ListRooms(bool with_codes) {
  std::vector<http::Fields> out;
  const auto clients = server_->ClientsPerRoom();  // once, not once per room
  for (const auto& [code, room] : server_->state().rooms()) {
    auto it = clients.find(code);
    http::Fields fields =
        Convert(server_->RoomStatsFields(code, it == clients.end() ? 0 : it->second));
    std::string id = commands::RoomId(code);
    for (http::Field& f : fields) {
      if (f.name == "name" && !with_codes) {
        f.value = std::string(commands::PublicRoomName(code, room->name(), id));
      }
    }
    auto at_code = std::find_if(fields.begin(), fields.end(),
                                [](const http::Field& f) { return f.name == "code"; });
    if (with_codes) {
      fields.insert(at_code == fields.end() ? fields.begin() : at_code + 1, http::Field{"id", id});
    } else if (at_code != fields.end()) {
      *at_code = http::Field{"id", std::move(id)};
    }
    out.push_back(std::move(fields));
  }
  return out;
}

bool HttpBackend::open_admin() const { return server_->settings().open_admin; }

bool HttpBackend::auth_required() const { return !server_->settings().requirepass.empty(); }

http::AuthResult HttpBackend::Authenticate(std::string_view peer, std::string_view password) {
  switch (server_->auth_gate().Check(peer, password)) {
    case commands::AuthCheck::kOk:
      return http::AuthResult::kOk;
    case commands::AuthCheck::kWrong:
      return http::AuthResult::kWrong;
    case commands::AuthCheck::kLimited:
      return http::AuthResult::kLimited;
  }
  return http::AuthResult::kWrong;
}

bool HttpBackend::RoomExists(std::string_view code) { return server_->state().RoomJoinable(code); }

http::Fields HttpBackend::RoomStats(std::string_view code) {
  return Convert(server_->RoomStatsFields(code));
}

std::optional<http::KeyEntry> HttpBackend::GetKey(std::string_view room, std::string_view key) {
  server_->CountCommand(room, commands::kReadOnly);
  const state::Room* r = server_->state().FindRoom(room);
  const state::Item* item = r ? r->Get(key, server_->NowMs()) : nullptr;
  if (item == nullptr) return std::nullopt;
  return http::KeyEntry{std::string(item->key()), std::string(item->value()), item->expire_at_ms()};
}

uint64_t HttpBackend::ScanKeys(std::string_view room, std::string_view prefix, uint64_t cursor,
                               size_t limit, std::vector<http::KeyEntry>* out) {
  server_->CountCommand(room, commands::kReadOnly);
  const state::Room* r = server_->state().FindRoom(room);
  if (r == nullptr) return 0;
  const int64_t now = server_->NowMs();
  // Bounded work per page: a rare prefix returns a short (even empty) page
  // with a cursor to go on from, as SCAN with MATCH does.
  size_t budget = 64 * limit + 1024;
  do {
    size_t step = std::max<size_t>(1, (limit - out->size()) / 2);
    cursor = r->keys().Scan(cursor, step, [&](const state::Item& item) {
      if (item.expired(now) || !HasPrefix(item.key(), prefix)) return;
      out->push_back({std::string(item.key()), std::string(item.value()), item.expire_at_ms()});
    });
    budget -= std::min(budget, step);
  } while (cursor != 0 && out->size() < limit && budget > 0);
  return cursor;
}

void HttpBackend::Propose(std::string_view entry, bool adds_data, std::string text,
                          http::WriteDone done) {
  Server* server = server_;
  Status st = server_->ProposeEntry(entry, adds_data, [server, text, done](const state::ApplyResult& r) {
    http::WriteOutcome out;
    out.revision = server->state().applied_index();
    out.text = text;
    switch (r.kind) {
      case state::ApplyResult::Kind::kError:
        out.error = r.text;
        break;
      case state::ApplyResult::Kind::kInt:
        out.ok = true;
        out.integer = r.integer;
        break;
      default:
        out.ok = true;
        if (r.kind == state::ApplyResult::Kind::kBulk && text.empty()) out.text = r.text;
        break;
    }
    done(out);
  });
  if (!st.ok()) {
    http::WriteOutcome out;
    out.error = (st.code() == Code::kOutOfMemory ? "OOM " : "ERR ") + st.message();
    done(out);
  }
}

void HttpBackend::SetKey(std::string_view room, std::string_view key, std::string_view value,
                         int64_t expire_at_ms, http::WriteDone done) {
  server_->CountCommand(room, commands::kWrite);
  std::string entry;
  std::string_view args[] = {key, value};
  state::EncodeEntry(&entry, state::Op::kSet, 0, server_->NowMs(), expire_at_ms, room, args);
  Propose(entry, /*adds_data=*/true, {}, std::move(done));
}

void HttpBackend::DeleteKey(std::string_view room, std::string_view key, http::WriteDone done) {
  server_->CountCommand(room, commands::kWrite);
  std::string entry;
  std::string_view args[] = {key};
  state::EncodeEntry(&entry, state::Op::kDel, 0, server_->NowMs(), 0, room, args);
  Propose(entry, /*adds_data=*/false, {}, std::move(done));
}

void HttpBackend::CreateRoom(std::string_view name, http::WriteDone done) {
  // As ROOM.NEW: refused at once past --max-rooms, and the entry carries the
  // limit so apply settles creations already in flight.
  const uint64_t max_rooms = server_->settings().max_rooms;
  if (max_rooms != 0 && server_->state().user_room_count() >= max_rooms) {
    http::WriteOutcome out;
    out.error = state::kMaxRoomsError;
    done(out);
    return;
  }
  std::string code = server_->NewRoomCode();
  server_->CountCommand(code, commands::kWrite);
  std::string entry;
  std::string_view args[] = {name.empty() ? std::string_view(code) : name};
  state::EncodeEntry(&entry, state::Op::kRoomCreate, 0, server_->NowMs(),
                     static_cast<int64_t>(max_rooms), code, args);
  Propose(entry, /*adds_data=*/true, code, std::move(done));
}

void HttpBackend::DropRoom(std::string_view code, http::WriteDone done) {
  server_->CountCommand(code, commands::kWrite);
  std::string entry;
  state::EncodeEntry(&entry, state::Op::kRoomDrop, 0, server_->NowMs(), 0, code, {});
  Propose(entry, /*adds_data=*/false, {}, std::move(done));
}

std::unique_ptr<http::MirrorHandle> HttpBackend::StartMirror(
    std::string_view room, std::string_view prefix, std::optional<uint64_t> from,
    http::MirrorOutput* out, const std::function<void(const http::MirrorBegin&)>& begin) {
  auto adapter = std::make_unique<MirrorAdapter>(server_, out);
  server_->mirrors().Start(adapter.get(), room, prefix, from, [&](const MirrorStart& s) {
    begin(http::MirrorBegin{s.revision, s.resume});
  });
  return adapter;
}

void HttpBackend::MirrorDrained() { server_->WakePump(); }

bool HttpBackend::Ready(std::string* why) {
  if (server_->log_failing()) {
    // The last log write failed (e.g. a full disk); ready again once a later
    // write is durable.
    *why = "the log failed to persist a write (see the server log); writes get IOERR";
    return false;
  }
  // A cluster node without a leader can answer only local reads: not ready, so that a load
  // balancer sends clients to a node in the majority.
  return ClusterReady(ReadClusterStatus(*server_), why);
}

http::ClusterView HttpBackend::Cluster() {
  http::ClusterView view;
  ClusterNode* node = server_->cluster_node();
  const ClusterStatus s = ReadClusterStatus(*server_);
  if (!s.enabled || node == nullptr) {
    // A node without a cluster: itself, always the one that takes writes.
    const commands::ServerSettings& settings = server_->settings();
    http::ClusterMember self;
    self.client_address = settings.bind + ":" + std::to_string(settings.port);
    if (settings.http_port > 0) {
      self.http_address = settings.bind + ":" + std::to_string(settings.http_port);
    }
    self.role = view.role = "standalone";
    // Every entry it has is committed once durable and applied in order.
    view.commit_index = view.applied_index = server_->state().applied_index();
    self.match_index = static_cast<int64_t>(view.applied_index);
    self.lag = 0;
    self.last_contact_ms = 0;
    self.healthy = self.self = true;
    view.nodes.push_back(std::move(self));
    return view;
  }
  view.cluster = true;
  view.node_id = s.node_id;
  view.cluster_id = s.cluster_id;
  view.leader_id = s.leader_id;
  view.term = s.term;
  view.role = std::string(s.role);
  view.commit_index = s.commit_index;
  view.applied_index = s.applied_index;
  for (ClusterNode::MemberView& m : node->MemberViews()) {
    http::ClusterMember out;
    out.id = m.id;
    out.address = std::move(m.address);
    out.client_address = std::move(m.addresses.client);
    out.http_address = std::move(m.addresses.http);
    out.role = std::string(m.role);
    out.match_index = m.match_index;
    out.lag = m.lag;
    out.last_contact_ms = m.last_contact_ms;
    out.healthy = m.healthy;
    out.self = m.self;
    view.nodes.push_back(std::move(out));
  }
  return view;
}

std::vector<http::ServiceInfo> HttpBackend::Services(std::optional<std::string_view> room,
                                                     bool with_codes) {
  std::vector<http::ServiceInfo> out;
  for (ServiceView& v : server_->router().ServiceViews(room)) {
    http::ServiceInfo s;
    s.room = with_codes ? std::move(v.room) : commands::RoomId(v.room);
    s.name = std::move(v.name);
    s.calls = static_cast<int64_t>(v.calls);
    s.errors = static_cast<int64_t>(v.errors);
    s.timeouts = static_cast<int64_t>(v.timeouts);
    s.p50_ms = v.p50_ms;
    s.p99_ms = v.p99_ms;
    s.waiting = static_cast<int64_t>(v.waiting);
    s.in_flight = static_cast<int64_t>(v.in_flight);
    for (ServiceView::Worker& w : v.workers) {
      s.workers.push_back({w.node_id, w.worker_id, std::move(w.label), w.concurrency, w.in_flight});
    }
    out.push_back(std::move(s));
  }
  return out;
}

void HttpBackend::WriteClusterMetrics(http::MetricsWriter& w) {
  const ClusterStatus c = ReadClusterStatus(*server_);
  if (!c.enabled) return;
  auto d = [](auto v) { return static_cast<double>(v); };
  w.Gauge("distri_raft_node_id", "This node's Raft id", d(c.node_id));
  w.Gauge("distri_raft_term", "Raft term this node is in", d(c.term));
  w.Gauge("distri_raft_commit_index", "Highest log index this node knows to be committed",
          d(c.commit_index));
  w.Gauge("distri_raft_applied_index", "Highest log index this node has applied",
          d(c.applied_index));
  w.Gauge("distri_raft_leader_id", "Raft id of the leader this node knows (0: none)",
          d(c.leader_id));
  w.Gauge("distri_raft_is_leader", "1 on the leader, 0 elsewhere", c.role == "leader" ? 1 : 0);
  w.Family("distri_raft_role", "gauge", "This node's role: 1 for the current one, 0 otherwise");
  for (std::string_view role : kClusterRoles) {
    w.Sample("distri_raft_role", role == c.role ? 1 : 0, {{"role", role}});
  }
  w.Gauge("distri_raft_voters", "Voting members in the configuration", d(c.voters.size()));
  w.Gauge("distri_raft_learners", "Learners (non-voting members catching up)",
          d(c.learners.size()));
  w.Counter("distri_raft_proposals_total",
            "Entries this node proposed as leader (its own and forwarded ones)", d(c.proposals));
  w.Counter("distri_raft_leader_elections_total", "Times this node became leader",
            d(c.elections));
  w.Counter("distri_raft_snapshots_sent_total", "Snapshots sent to lagging followers",
            d(c.snapshots_sent));
  const cluster::TransportStats& t = *c.transport;
  w.Counter("distri_cluster_frames_sent_total", "Frames queued to peers", d(t.frames_sent));
  w.Counter("distri_cluster_sent_bytes_total", "Payload bytes of the frames queued to peers",
            d(t.bytes_sent));
  w.Counter("distri_cluster_frames_received_total", "Frames received from peers",
            d(t.frames_received));
  w.Counter("distri_cluster_received_bytes_total", "Payload bytes of the frames received",
            d(t.bytes_received));
  w.Counter("distri_cluster_send_refused_total",
            "Frames not queued: no link to the peer or its queue full", d(t.send_refused));
  w.Gauge("distri_cluster_peers_connected",
          "Other members this node has an authenticated link to", d(c.peers_connected));
  w.Gauge("distri_cluster_links_up",
          "Authenticated connections up (a peer may have one each way)", d(t.links_up));
  w.Counter("distri_cluster_links_opened_total", "Links authenticated since start",
            d(t.links_opened));
  w.Counter("distri_cluster_handshake_failures_total",
            "Failed handshakes on the cluster port, both directions (timeouts included)",
            d(t.handshake_failures));
  w.Counter("distri_cluster_connections_refused_total",
            "Inbound cluster connections refused at accept (rate limit, too many)",
            d(t.connections_refused));
  w.Counter("distri_cluster_bad_frames_total", "Links closed for a malformed frame",
            d(t.bad_frames));
  w.Gauge("distri_cluster_queued_bytes", "Output queued to peers, not yet written",
          d(t.queued_bytes));
}

void HttpBackend::WriteMetrics(http::MetricsWriter& w) {
  const ServerStats& s = server_->stats();
  const int64_t now_s = server_->NowMs() / 1000;
  auto d = [](auto v) { return static_cast<double>(v); };
  int64_t uptime = 0, clients = 0;
  for (const StatField& f : server_->SiteStatsFields()) {
    if (f.name == "uptime_s") uptime = std::get<int64_t>(f.value);
    if (f.name == "clients") clients = std::get<int64_t>(f.value);
  }
  w.Gauge("distri_uptime_seconds", "Seconds since the server started", d(uptime));
  w.Gauge("distri_clients", "Connected RESP clients", d(clients));
  w.Gauge("distri_rooms", "Rooms that hold or held data", d(server_->state().rooms().size()));
  w.Gauge("distri_keys", "Keys in every room", d(server_->state().key_count()));
  w.Gauge("distri_mirrors", "Live mirrors (RESP and WebSocket)",
          d(server_->mirrors().mirror_count()));
  w.Gauge("distri_revision", "Revision (log index) of the last applied entry",
          d(server_->state().applied_index()));
  w.Gauge("distri_memory_used_bytes", "Data memory counted against --max-memory",
          d(server_->used_memory()));
  w.Gauge("distri_memory_limit_bytes", "--max-memory (0 = no limit)",
          d(server_->settings().max_memory));
  w.Gauge("distri_mirror_history_bytes",
          "Bytes of change history kept for mirrors resuming FROM a revision",
          d(server_->mirrors().history_bytes()));
  w.Gauge("distri_process_resident_memory_bytes", "Resident memory of the process",
          d(ResidentBytes()));
  w.Gauge("distri_ops_per_second", "Commands in the last complete second",
          d(s.ops.LastSecond(now_s)));
  w.Counter("distri_commands_total", "Commands processed (RESP commands and HTTP reads and writes)",
            d(s.ops.total()));
  w.Counter("distri_reads_total", "Read commands", d(s.reads.total()));
  w.Counter("distri_writes_total", "Write commands", d(s.writes.total()));
  w.Counter("distri_connections_total", "RESP connections accepted", d(s.connections_received));
  w.Counter("distri_rejected_connections_total", "RESP connections refused (--max-clients)",
            d(s.rejected_connections));
  w.Counter("distri_entries_applied_total", "Log entries applied", d(s.entries_applied));
  w.Counter("distri_expired_keys_total", "Keys deleted by active expiry", d(s.expired_keys));
  w.Counter("distri_snapshots_total", "State snapshots written", d(s.snapshots));
  w.Family("distri_errors_total", "counter", "Errors, by kind");
  w.Sample("distri_errors_total", d(s.protocol_errors), {{"kind", "protocol"}});
  w.Sample("distri_errors_total", d(s.log_failures), {{"kind", "log_write"}});
  w.Counter("distri_slow_consumer_disconnects_total",
            "Clients cut off for not reading their output", d(s.slow_consumer_disconnects));
  const AuthGate& gate = server_->auth_gate();
  w.Gauge("distri_unauthenticated_clients", "RESP connections that have not authenticated yet",
          d(gate.unauthenticated()));
  w.Counter("distri_auth_failures_total", "Wrong passwords (RESP AUTH and HTTP)",
            d(gate.auth_failures()));
  w.Counter("distri_auth_refused_total",
            "Password attempts refused unchecked: too many failures from the address",
            d(gate.auth_refused()));
  w.Counter("distri_auth_timeouts_total", "RESP connections closed for not authenticating in time",
            d(gate.timeouts()));
  w.Counter("distri_auth_evictions_total",
            "Unauthenticated RESP connections closed to make room for new ones",
            d(gate.evictions()));
  w.Counter("distri_push_budget_disconnects_total",
            "Of those, cut off because pushed output passed --push-output-budget",
            d(s.push_budget_disconnects));
  w.Gauge("distri_client_output_bytes",
          "Unsent output of RESP and HTTP clients (a shared message once)",
          d(server_->output_bytes()));
  w.Family("distri_command_calls_total", "counter", "RESP commands run, by command");
  const auto& specs = commands::CommandTable::Get().all();
  const auto& calls = server_->command_calls();
  for (size_t i = 0; i < calls.size() && i < specs.size(); i++) {
    if (calls[i] != 0) w.Sample("distri_command_calls_total", d(calls[i]), {{"command", specs[i].name}});
  }
  w.Family("distri_write_duration_seconds", "histogram",
           "RESP writes from proposal to reply: group commit, fsync and apply");
  w.HistogramSamples("distri_write_duration_seconds", server_->write_latency());
  w.Family("distri_log_fsync_duration_seconds", "histogram",
           "fdatasync calls of the log (a cluster node: its Raft write-ahead log)");
  w.HistogramSamples("distri_log_fsync_duration_seconds", server_->fsync_latency());
  WriteClusterMetrics(w);
}

}  // namespace distri::server
