// Statistics (ROOM.STATS, STATS, CLUSTER.STATS, INFO's Distri section), the
// node id, output buffer limits, and the MIRROR entry points. All values are
// computed on request from counters kept current as commands run; in a
// cluster STATS and ROOM.STATS add up every member's (server/cluster_stats.h).

#include <fcntl.h>
#include <openssl/rand.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <unordered_map>
#include <variant>

#include "base/logging.h"
#include "http/http_connection.h"
#include "server/client.h"
#include "server/cluster_stats.h"
#include "server/server.h"
#include "server/stats_gather.h"

namespace distri::server {


Status Server::LoadNodeId() {
  std::string path = options_.settings.data_dir + "/node_id";
  std::ifstream in(path);
  if (in && std::getline(in, node_id_) && node_id_.size() == 16) return Status::Ok();
  unsigned char raw[8];
  if (RAND_bytes(raw, sizeof raw) != 1) return Status::Internal("RAND_bytes failed");
  char hex[17];
  for (int i = 0; i < 8; i++) std::snprintf(hex + 2 * i, 3, "%02x", raw[i]);
  node_id_.assign(hex, 16);
  std::string tmp = path + ".tmp";
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (fd < 0) return Status::IOError("cannot write " + tmp + ": " + std::strerror(errno));
  std::string line = node_id_ + "\n";
  bool ok = ::write(fd, line.data(), line.size()) == static_cast<ssize_t>(line.size()) && ::fsync(fd) == 0;
  ::close(fd);
  if (!ok || ::rename(tmp.c_str(), path.c_str()) != 0) {
    return Status::IOError("cannot write " + path + ": " + std::strerror(errno));
  }
  return Status::Ok();
}

namespace {

// One entry of room_counters_: the node (next pointer, cached hash, the pair)
// and its bucket slot, before the code's own heap block.
constexpr uint64_t kCountersNodeBytes =
    sizeof(std::pair<const std::string, RoomCounters>) + 2 * sizeof(void*) + sizeof(size_t);

}  // namespace

RoomCounters* Server::CountersFor(std::string_view room) {
  auto it = room_counters_.find(room);
  if (it != room_counters_.end()) return &it->second;
  // A command may name a room that is gone (a client still in a dropped
  // room) or not yet made (POST /api/rooms counts before it applies).
  if (!state_.RoomJoinable(room)) return nullptr;
  it = room_counters_.emplace(std::string(room), RoomCounters{}).first;
  room_counters_bytes_ += kCountersNodeBytes + state::StringHeapBytes(it->first);
  return &it->second;
}

void Server::ForgetCounters(std::string_view room) {
  auto it = room_counters_.find(room);
  if (it == room_counters_.end()) return;
  room_counters_bytes_ -= kCountersNodeBytes + state::StringHeapBytes(it->first);
  room_counters_.erase(it);
}

void Server::CountCall(const commands::CommandSpec* spec, bool ran) {
  const auto& all = commands::CommandTable::Get().all();
  if (command_calls_.empty()) {
    command_calls_.resize(all.size());
    command_rejected_.resize(all.size());
  }
  if (spec == nullptr) return;
  const size_t i = static_cast<size_t>(spec - all.data());
  command_calls_[i]++;
  if (!ran) command_rejected_[i]++;
}

void Server::CountCommand(std::string_view room, uint32_t flags) {
  const int64_t now_s = NowMs() / 1000;
  stats_.commands_processed++;
  stats_.ops.Add(now_s);
  if (flags & commands::kReadOnly) {
    stats_.reads.Add(now_s);
    if (RoomCounters* counters = CountersFor(room)) counters->reads.Add(now_s);
  } else if (flags & commands::kWrite) {
    stats_.writes.Add(now_s);
    if (RoomCounters* counters = CountersFor(room)) counters->writes.Add(now_s);
  }
}

const OutputLimit& Server::OutputLimitFor(const Client* client) const {
  static constexpr OutputLimit kUnauthenticated{kUnauthenticatedOutputLimit, 0, 0};
  if (client->awaiting_auth) return kUnauthenticated;  // see auth_gate.h
  return client->is_push_client() ? options_.push_limit : options_.normal_limit;
}

void Server::CheckOutputLimit(Client* client) {
  net::Connection& conn = client->conn();
  if (conn.closing()) return;
  const bool push = client->is_push_client();
  const OutputLimit& limit = OutputLimitFor(client);
  conn.set_gauge(push ? &push_output_ : &normal_output_);  // its class may have changed
  conn.SyncGauge();
  const uint64_t pending = client->unsent_output();
  const char* why = nullptr;
  if (limit.hard != 0 && pending > limit.hard) {
    why = "over the hard output limit";
  } else if (limit.soft != 0 && pending > limit.soft) {
    int64_t now = NowMs();
    if (client->over_soft_since_ms == 0) {
      client->over_soft_since_ms = now;
    } else if (now - client->over_soft_since_ms > static_cast<int64_t>(limit.soft_seconds) * 1000) {
      why = "over the soft output limit for too long";
    }
  } else {
    client->over_soft_since_ms = 0;
  }
  if (why != nullptr) DisconnectSlowConsumer(client, why);
}

void Server::DisconnectSlowConsumer(Client* client, const char* why) {
  if (client->conn().closing()) return;
  stats_.slow_consumer_disconnects++;
  const commands::Session& s = client->session();
  LOG(WARNING) << "disconnecting slow consumer id=" << s.id << " addr=" << s.peer
               << " room=" << s.room << " mirrors=" << client->mirrors << ": "
               << client->unsent_output() << " bytes unsent, " << why;
  client->conn().Reset();  // frees its queued output at once
}

void Server::SweepSoftLimits() {
  const int64_t now_s = NowMs() / 1000;
  if (now_s == soft_sweep_s_) return;
  soft_sweep_s_ = now_s;
  for (const auto& [id, c] : clients_) {
    if (c->over_soft_since_ms != 0) CheckOutputLimit(c);
  }
}

void Server::CountShared(std::shared_ptr<net::SharedBytes> payload) {
  if (payload == nullptr || payload.use_count() == 1) return;  // nobody queued it
  payload->CountIn(&push_output_);
}

// Once per loop iteration, after FlushClients (Server::OnCheck): clients that
// read fast have taken what they could, so the backlogs left are the slow
// ones. Largest backlogs first: they are the furthest behind.
//
// Victims are chosen against a projected total, not the gauge: cutting a
// client frees its own bytes at once, but a shared payload only when its last
// live holder is cut, so a subscriber is not cut off for bytes that others
// keep alive (cutting them all would free nothing more than cutting the slow
// ones). O(clients log clients + queued chunks), only while over budget.
// WebSocket mirrors (the HTTP port's pushed output, flushed just before) are
// candidates like RESP push clients; they hold no shared payloads.
void Server::EnforcePushBudget() {
  const uint64_t budget = options_.push_output_budget;
  if (budget == 0 || push_output_.bytes <= budget) return;
  struct Backlog {
    size_t bytes;
    net::Connection* conn;
    Client* client;              // a RESP push client, or
    http::HttpConnection* ws;    // a WebSocket session
  };
  std::unordered_map<const net::SharedBytes*, size_t> live_refs;  // queue entries per payload
  std::vector<Backlog> backlog;
  for (const auto& [id, c] : clients_) {
    const net::Connection& conn = c->conn();
    if (conn.closing()) continue;  // out of the gauge already
    conn.ForEachShared([&](const net::SharedBytes* p) { live_refs[p]++; });
    if (c->is_push_client() && c->unsent_output() > 0) {
      backlog.push_back({c->unsent_output(), &c->conn(), c, nullptr});
    }
  }
  if (http_) {
    for (http::HttpConnection* ws : http_->WebSockets()) {
      if (ws->unsent_bytes() > 0) backlog.push_back({ws->unsent_bytes(), &ws->conn(), nullptr, ws});
    }
  }
  std::sort(backlog.begin(), backlog.end(),
            [](const Backlog& a, const Backlog& b) { return a.bytes > b.bytes; });
  uint64_t projected = push_output_.bytes;
  static constexpr const char* kWhy = "pushed output of all clients over --push-output-budget";
  for (const Backlog& b : backlog) {
    if (projected <= budget) break;
    projected -= std::min<uint64_t>(projected, b.conn->counted_output());
    b.conn->ForEachShared([&](const net::SharedBytes* p) {
      if (--live_refs[p] == 0 && p->gauge() == &push_output_) {
        projected -= std::min<uint64_t>(projected, p->size());
      }
    });
    stats_.push_budget_disconnects++;
    if (b.client != nullptr) {
      DisconnectSlowConsumer(b.client, kWhy);
    } else {
      stats_.slow_consumer_disconnects++;  // as DisconnectSlowConsumer counts a RESP client
      b.ws->CutOff(kWhy);
    }
  }
}

void Server::Mirror(commands::Session& session, std::string_view prefix,
                    std::optional<uint64_t> from, protocol::ReplyWriter& reply) {
  auto it = clients_.find(session.id);
  CHECK(it != clients_.end());
  Client* client = it->second;
  client->mirrors -= mirrors_->Stop(client, session.room);  // a new MIRROR replaces the old
  mirrors_->Start(client, session.room, prefix, from, [&](const MirrorStart& start) {
    reply.Map(3);
    reply.Bulk("room");
    reply.Bulk(start.room);
    reply.Bulk("revision");
    reply.Integer(static_cast<int64_t>(start.revision));
    reply.Bulk("mode");
    reply.Bulk(start.resume ? "resume" : "snapshot");
  });
  client->mirrors++;
}

size_t Server::Unmirror(commands::Session& session, std::optional<std::string_view> room) {
  auto it = clients_.find(session.id);
  CHECK(it != clients_.end());
  size_t stopped = mirrors_->Stop(it->second, room);
  it->second->mirrors -= stopped;
  return stopped;
}

std::unordered_map<std::string_view, int64_t> Server::ClientsPerRoom() const {
  std::unordered_map<std::string_view, int64_t> out;
  for (const auto& [id, c] : clients_) out[c->session().room]++;
  return out;
}

StatFields Server::RoomStatsFields(std::string_view code) {
  int64_t clients = 0;
  for (const auto& [id, c] : clients_) clients += c->session().room == code;
  return RoomStatsFields(code, clients);
}

StatFields Server::RoomStatsFields(std::string_view code, int64_t clients) {
  const int64_t now_s = NowMs() / 1000;
  const state::Room* room = state_.FindRoom(code);
  // Looked up, not made: listing rooms must not give each one counters.
  static const RoomCounters kNone;
  auto found = room_counters_.find(code);
  const RoomCounters& counters = found == room_counters_.end() ? kNone : found->second;
  auto u = [](uint64_t v) { return static_cast<int64_t>(v); };
  return {
      {"code", std::string(code)},
      {"name", room ? room->name() : std::string(code)},
      {"clients", clients},
      {"mirrors", u(mirrors_->MirrorsInRoom(code))},
      {"subscriptions", u(router_->SubscriptionsInRoom(code))},
      {"services", u(router_->ServicesInRoom(code))},
      {"keys", u(room ? room->key_count() : 0)},
      {"memory_bytes", u(room ? room->memory_bytes() : 0)},
      {"reads", u(counters.reads.total())},
      {"writes", u(counters.writes.total())},
      {"reads_per_sec_1s", u(counters.reads.LastSecond(now_s))},
      {"writes_per_sec_1s", u(counters.writes.LastSecond(now_s))},
      {"reads_per_sec_1m", counters.reads.LastMinute(now_s)},
      {"writes_per_sec_1m", counters.writes.LastMinute(now_s)},
      {"created_at_ms", room ? room->created_at_ms() : int64_t{0}},
      {"last_write_ms", room ? room->last_write_ms() : int64_t{0}},
      {"revision", u(room ? room->last_write_revision() : 0)},
  };
}

StatFields Server::SiteStatsFields() {
  const int64_t now_ms = NowMs();
  const int64_t now_s = now_ms / 1000;
  auto u = [](uint64_t v) { return static_cast<int64_t>(v); };
  return {
      {"version", std::string(kVersion)},
      {"node_id", node_id_},
      {"uptime_s", (now_ms - started_ms_) / 1000},
      {"rooms", u(state_.rooms().size())},
      {"clients", u(clients_.size())},
      {"mirrors", u(mirrors_->mirror_count())},
      {"keys", u(state_.key_count())},
      {"memory_bytes", u(used_memory())},
      {"ops_per_sec_1s", u(stats_.ops.LastSecond(now_s))},
      {"ops_per_sec_1m", stats_.ops.LastMinute(now_s)},
      {"commands_total", u(stats_.ops.total())},
      {"reads_total", u(stats_.reads.total())},
      {"writes_total", u(stats_.writes.total())},
      {"revision", u(state_.applied_index())},
      {"connections_total", u(stats_.connections_received)},
      {"slow_consumer_disconnects", u(stats_.slow_consumer_disconnects)},
      {"service_records", u(router_->service_records())},
      // Pub/sub between nodes (docs/messaging.md, "Across the cluster"); 0 on one node.
      {"pubsub_node_messages_sent", u(router_->pubsub_route_stats().messages_sent)},
      {"pubsub_node_messages_received", u(router_->pubsub_route_stats().messages_received)},
      {"pubsub_node_messages_dropped", u(router_->pubsub_route_stats().messages_dropped)},
      {"pubsub_node_frames_lost", u(router_->pubsub_route_stats().frames_lost)},
      {"push_budget_disconnects", u(stats_.push_budget_disconnects)},
      {"output_bytes", u(output_bytes())},
  };
}

// ---------------------------------------------------------------------------
// Statistics of the whole cluster (server/cluster_stats.h)

bool Server::GatherStats(StatsKind kind, std::string_view room, StatsDone done) {
  if (stats_gatherer_ == nullptr) {
    std::vector<NodeReport> nodes;
    nodes.push_back({0, true, NodeFigures(*this, kind, room)});
    done(std::move(nodes));
    return true;
  }
  return stats_gatherer_->Gather(kind, room, std::move(done));
}

void Server::AnswerBlocked(uint64_t client_id,
                           const std::function<void(protocol::ReplyWriter&)>& write) {
  Client* c = FindClient(client_id);
  if (c == nullptr || c->conn().closing()) return;  // nobody to answer
  commands::Session& s = c->session();
  protocol::ReplyWriter reply(&c->conn().output(), s.protocol);
  reply.set_limit(c->ReplyLimit(c->conn().output()));
  write(reply);
  s.blocked = false;
  if (reply.overflowed()) {  // as in Client::ProcessInput
    DisconnectSlowConsumer(c, "a reply would pass the output limit");
    return;
  }
  MarkDirty(c);
  Resume(c);
}

void Server::AnswerStats(commands::Session& session, protocol::ReplyWriter& reply,
                         StatsKind kind, std::string_view room, GatheredWrite write) {
  if (stats_gatherer_ == nullptr) {  // a single node: at once
    (void)GatherStats(kind, room, [&](std::vector<NodeReport> nodes) { write(nodes, reply); });
    return;
  }
  const uint64_t client_id = session.id;
  const bool started = stats_gatherer_->Gather(
      kind, room, [this, client_id, write = std::move(write)](std::vector<NodeReport> nodes) {
        AnswerBlocked(client_id, [&](protocol::ReplyWriter& r) { write(nodes, r); });
      });
  if (!started) {
    reply.Error("TRYAGAIN too many statistics requests in flight on this node; retry");
    return;
  }
  session.blocked = true;  // AnswerBlocked writes the reply
}

void Server::RoomStats(commands::Session& session, std::string_view code,
                       protocol::ReplyWriter& reply) {
  std::string room(code);
  AnswerStats(session, reply, StatsKind::kRoom, room,
              [this, room](const std::vector<NodeReport>& nodes, protocol::ReplyWriter& r) {
                // The room's clients are counted on every node: this node's own are summed in.
                WriteGathered(Combine(RoomStatsFields(room, 0), nodes, kSummedRoomFields), nodes,
                              r);
              });
}

void Server::SiteStats(commands::Session& session, protocol::ReplyWriter& reply) {
  AnswerStats(session, reply, StatsKind::kSite, {},
              [this](const std::vector<NodeReport>& nodes, protocol::ReplyWriter& r) {
                WriteGathered(Combine(SiteStatsFields(), nodes, kSummedSiteFields), nodes, r);
              });
}

void Server::ClusterStats(commands::Session& session, protocol::ReplyWriter& reply) {
  AnswerStats(session, reply, StatsKind::kSite, {},
              [](const std::vector<NodeReport>& nodes, protocol::ReplyWriter& r) {
                r.Array(nodes.size());
                for (const NodeReport& node : nodes) WriteFigures(node.figures, r);
              });
}

}  // namespace distri::server
