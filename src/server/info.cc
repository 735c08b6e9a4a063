// INFO and CLIENT LIST text: computed on request from live counters.

#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include "base/strings.h"
#include "commands/access.h"
#include "server/client.h"
#include "server/cluster_stats.h"
#include "server/cluster_status.h"
#include "server/server.h"

namespace distri::server {

namespace {

uint64_t ReadRssBytes() {
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return std::stoull(line.substr(6)) * 1024;
  }
  return 0;
}

std::string Human(uint64_t bytes) {
  char buf[32];
  const char* units[] = {"B", "K", "M", "G", "T"};
  double v = static_cast<double>(bytes);
  int u = 0;
  while (v >= 1024 && u < 4) {
    v /= 1024;
    u++;
  }
  std::snprintf(buf, sizeof buf, "%.2f%s", v, units[u]);
  return buf;
}

void Field(std::string* out, std::string_view name, const std::string& value) {
  out->append(name).append(":").append(value).append("\r\n");
}
void Field(std::string* out, std::string_view name, uint64_t value) {
  Field(out, name, std::to_string(value));
}

std::string JoinIds(const std::vector<uint64_t>& ids) {
  std::string out;
  for (uint64_t id : ids) {
    if (!out.empty()) out.push_back(',');
    out.append(std::to_string(id));
  }
  return out;
}

}  // namespace

void Server::AppendInfoSection(std::string_view name, std::string* out) {
  const commands::ServerSettings& s = options_.settings;
  const int64_t now = NowMs();
  if (!out->empty()) out->append("\r\n");
  if (name == "server") {
    out->append("# Server\r\n");
    Field(out, "distri_version", std::string(kVersion));
    Field(out, "redis_version", std::string("7.0.0"));
    Field(out, "redis_mode", std::string("standalone"));
    Field(out, "process_id", static_cast<uint64_t>(getpid()));
    Field(out, "tcp_port", static_cast<uint64_t>(s.port));
    Field(out, "uptime_in_seconds", static_cast<uint64_t>((now - started_ms_) / 1000));
  } else if (name == "clients") {
    out->append("# Clients\r\n");
    Field(out, "connected_clients", clients_.size());
    uint64_t output_bytes = 0;
    for (const auto& [id, c] : clients_) output_bytes += c->conn().pending_output();
    Field(out, "clients_output_bytes", output_bytes);
    Field(out, "maxclients", s.max_clients);
  } else if (name == "memory") {
    out->append("# Memory\r\n");
    const uint64_t used = used_memory();
    Field(out, "used_memory", used);
    Field(out, "mirror_history_bytes", mirrors_->history_bytes());
    Field(out, "used_memory_human", Human(used));
    uint64_t rss = ReadRssBytes();
    Field(out, "used_memory_rss", rss);
    Field(out, "used_memory_rss_human", Human(rss));
    Field(out, "maxmemory", s.max_memory);
    Field(out, "maxmemory_human", Human(s.max_memory));
  } else if (name == "persistence") {
    out->append("# Persistence\r\n");
    Field(out, "loading", uint64_t{0});
    Field(out, "aof_enabled", uint64_t{1});
    Field(out, "fsync", std::string(s.fsync ? "always" : "off"));
    Field(out, "log_last_index", log_->last_index());
    Field(out, "log_bytes_since_snapshot", log_->bytes_since_snapshot());
    Field(out, "snapshots_taken", stats_.snapshots);
    Field(out, "snapshot_in_progress", uint64_t{log_->snapshot_running() ? 1u : 0u});
    Field(out, "snapshot_failures", log_->snapshot_failures());
    Field(out, "latest_fork_usec", log_->last_fork_us());
    Field(out, "log_write_failures", stats_.log_failures);
  } else if (name == "stats") {
    out->append("# Stats\r\n");
    Field(out, "total_connections_received", stats_.connections_received);
    Field(out, "total_commands_processed", stats_.commands_processed);
    Field(out, "rejected_connections", stats_.rejected_connections);
    Field(out, "expired_keys", stats_.expired_keys);
    Field(out, "total_error_replies_protocol", stats_.protocol_errors);
    Field(out, "entries_applied", stats_.entries_applied);
  } else if (name == "commandstats") {
    // Per command since start, as Redis counts: calls that ran, and calls
    // refused before running (arity, NOAUTH, OOM). No timings are kept.
    out->append("# Commandstats\r\n");
    const auto& all = commands::CommandTable::Get().all();
    for (size_t i = 0; i < command_calls_.size() && i < all.size(); i++) {
      if (command_calls_[i] == 0) continue;
      const uint64_t rejected = command_rejected_[i];
      Field(out, std::string("cmdstat_") + all[i].name,
            "calls=" + std::to_string(command_calls_[i] - rejected) +
                ",rejected_calls=" + std::to_string(rejected));
    }
  } else if (name == "cpu") {
    out->append("# CPU\r\n");
    rusage self, children;
    getrusage(RUSAGE_SELF, &self);
    getrusage(RUSAGE_CHILDREN, &children);
    auto secs = [](const timeval& tv) {
      char buf[32];
      std::snprintf(buf, sizeof buf, "%ld.%06ld", static_cast<long>(tv.tv_sec),
                    static_cast<long>(tv.tv_usec));
      return std::string(buf);
    };
    Field(out, "used_cpu_sys", secs(self.ru_stime));
    Field(out, "used_cpu_user", secs(self.ru_utime));
    Field(out, "used_cpu_sys_children", secs(children.ru_stime));
    Field(out, "used_cpu_user_children", secs(children.ru_utime));
  } else if (name == "cluster") {
    // CLUSTER.INFO as INFO text. No "cluster_enabled" field: Redis clients and tools read
    // cluster_enabled:1 as "Redis Cluster" and switch to its slot protocol (CLUSTER SLOTS),
    // which a Distri cluster does not speak; to them every Distri node is a standalone server.
    out->append("# Cluster\r\n");
    const ClusterStatus c = ReadClusterStatus(*this);
    Field(out, "distri_cluster_enabled", uint64_t{c.enabled ? 1u : 0u});
    if (c.enabled) {
      Field(out, "cluster_id", c.cluster_id);
      Field(out, "node_id", c.node_id);
      Field(out, "role", std::string(c.role));
      Field(out, "leader_id", c.leader_id);
      Field(out, "term", c.term);
      Field(out, "commit_index", c.commit_index);
      Field(out, "applied_index", c.applied_index);
      Field(out, "voters", c.voters.size());
      Field(out, "voter_ids", JoinIds(c.voters));
      Field(out, "learners", c.learners.size());
      Field(out, "learner_ids", JoinIds(c.learners));
      if (stats_gatherer_ != nullptr) {  // statistics gathered from every member
        const GatherTable& t = stats_gatherer_->table();
        Field(out, "stats_gathers_in_flight", static_cast<uint64_t>(t.in_flight()));
        Field(out, "stats_gathers_refused", t.refused());
        Field(out, "stats_replies_dropped", t.dropped_replies());
        Field(out, "stats_bad_frames", stats_gatherer_->bad_frames());
      }
    }
  } else if (name == "keyspace") {
    out->append("# Keyspace\r\n");
    // Only the builtin rooms are Redis databases: look up those 16, never
    // walk every room.
    for (int db = 0; db <= 15; db++) {
      std::string code = db == 0 ? std::string(state::kDefaultRoom) : std::to_string(db);
      const state::Room* room = state_.FindRoom(code);
      if (room == nullptr || room->key_count() == 0) continue;
      Field(out, "db" + std::to_string(db),
            "keys=" + std::to_string(room->key_count()) +
                ",expires=" + std::to_string(room->expiring_count()) + ",avg_ttl=0");
    }
  } else if (name == "distri") {
    // The same fields as STATS, as INFO text.
    out->append("# Distri\r\n");
    for (const StatField& f : SiteStatsFields()) {
      if (const int64_t* i = std::get_if<int64_t>(&f.value)) {
        Field(out, f.name, std::to_string(*i));
      } else if (const double* d = std::get_if<double>(&f.value)) {
        char rate[32];
        std::snprintf(rate, sizeof rate, "%.2f", *d);
        Field(out, f.name, std::string(rate));
      } else {
        Field(out, f.name, std::get<std::string>(f.value));
      }
    }
    Field(out, "mirror_history_bytes", mirrors_->history_bytes());
    Field(out, "mirror_history_floor", mirrors_->history_floor());
    Field(out, "data_dir", s.data_dir);
  }
}

// INFO's sections in the order they are written. `in_default`: part of a bare
// INFO (and of "default"); "all" and "everything" are every section.
struct InfoSection {
  const char* name;
  bool in_default;
};
constexpr InfoSection kInfoSections[] = {
    {"server", true}, {"clients", true},       {"memory", true},   {"persistence", true},
    {"stats", true},  {"cpu", true},           {"commandstats", false},
    {"cluster", true}, {"keyspace", true},     {"distri", true},
};

// As Redis 7: any number of section names, case-insensitive, each written once
// in the fixed order above whatever order they were asked in; unknown names
// add nothing.
std::string Server::Info(std::span<const std::string_view> sections) {
  bool want[std::size(kInfoSections)] = {};
  auto mark = [&](bool all) {
    for (size_t i = 0; i < std::size(kInfoSections); i++) {
      want[i] = want[i] || all || kInfoSections[i].in_default;
    }
  };
  if (sections.empty()) mark(false);
  for (std::string_view name : sections) {
    std::string lower;
    name = base::AsciiLower(name, &lower);
    if (name == "default") {
      mark(false);
    } else if (name == "all" || name == "everything") {
      mark(true);
    } else {
      for (size_t i = 0; i < std::size(kInfoSections); i++) {
        if (name == kInfoSections[i].name) want[i] = true;
      }
    }
  }
  std::string out;
  for (size_t i = 0; i < std::size(kInfoSections); i++) {
    if (want[i]) AppendInfoSection(kInfoSections[i].name, &out);
  }
  return out;
}

// ---------------------------------------------------------------------------
// CLIENT LIST

namespace {

// The one place the room= field of CLIENT LIST is rendered: what `viewer` may
// see of the room `client` is in. Admins and the client itself see the code,
// everyone else the room's id (commands/access.h).
std::string RoomFieldValue(const commands::ServerSettings& settings,
                           const commands::Session& viewer, const commands::Session& client) {
  if (viewer.id == client.id || commands::IsAdmin(settings, viewer)) return client.room;
  return commands::RoomId(client.room);
}

bool MatchesType(const commands::ClientListFilter& f, const commands::Session& s) {
  using Type = commands::ClientListFilter::Type;
  switch (f.type) {
    case Type::kAll: return true;
    case Type::kNormal: return s.subscriptions == 0;
    case Type::kPubSub: return s.subscriptions > 0;
    case Type::kNone: return false;
  }
  return false;
}

}  // namespace

// One line with Redis 7.2's fields in its order, so tools (and Redis's own
// tests) that match the line as a whole accept it; fields for features Distri
// lacks hold what Redis shows when they are unused (ssub=0, multi=-1,
// multi-mem=0, redir=-1). Distri's own fields follow.
void Server::AppendClientLine(Client& c, const commands::Session& viewer, std::string* out) {
  const commands::Session& s = c.session();
  const int64_t now = NowMs();
  const MessageRouter::SubCounts subs = router_->SubscriptionsOf(&c);
  net::Connection& conn = c.conn();
  const size_t qbuf = conn.input().readable();
  const size_t qbuf_free = conn.input().capacity() - std::min(conn.input().capacity(), qbuf);
  const size_t omem = conn.pending_output();
  const size_t argv = c.argv_bytes();
  std::string flags;
  if (s.subscriptions > 0) flags += 'P';
  if (s.blocked) flags += 'b';
  if (flags.empty()) flags = "N";
  std::string events;
  if (conn.reading()) events += 'r';
  if (omem > 0) events += 'w';
  auto u = [](uint64_t v) { return std::to_string(v); };
  out->append("id=").append(u(s.id));
  out->append(" addr=").append(s.peer);
  out->append(" laddr=").append(s.local);
  out->append(" fd=").append(std::to_string(conn.fd()));
  out->append(" name=").append(s.name);
  out->append(" age=").append(std::to_string((now - s.created_ms) / 1000));
  out->append(" idle=").append(std::to_string((now - c.last_command_ms()) / 1000));
  out->append(" flags=").append(flags);
  out->append(" db=").append(std::to_string(s.db));
  out->append(" sub=").append(u(subs.channels));
  out->append(" psub=").append(u(subs.patterns));
  out->append(" ssub=0 multi=-1");
  out->append(" qbuf=").append(u(qbuf));
  out->append(" qbuf-free=").append(u(qbuf_free));
  out->append(" argv-mem=").append(u(argv));
  out->append(" multi-mem=0");
  // Read buffer size and peak: the input buffer's size (no peak is tracked).
  out->append(" rbs=").append(u(conn.input().capacity()));
  out->append(" rbp=").append(u(conn.input().capacity()));
  out->append(" obl=0 oll=0");  // one output string per client: no block list
  out->append(" omem=").append(u(omem));
  out->append(" tot-mem=").append(u(sizeof(Client) + conn.input().capacity() + omem + argv));
  out->append(" events=").append(events);
  out->append(" cmd=").append(c.last_command());
  out->append(" user=default redir=-1");
  out->append(" resp=").append(std::to_string(s.protocol));
  out->append(" lib-name=").append(s.lib_name);
  out->append(" lib-ver=").append(s.lib_ver);
  out->append(" room=").append(RoomFieldValue(options_.settings, viewer, s));
  out->append(" pending-writes=").append(u(c.pending_writes()));
  out->append("\n");
}

std::string Server::ClientList(const commands::Session& viewer,
                               const commands::ClientListFilter& filter) {
  std::string out;
  if (filter.by_id) {
    for (uint64_t id : filter.ids) {
      Client* c = FindClient(id);
      if (c != nullptr && MatchesType(filter, c->session())) AppendClientLine(*c, viewer, &out);
    }
    return out;
  }
  // Oldest first, as Redis lists them.
  std::vector<Client*> listed;
  listed.reserve(clients_.size());
  for (const auto& [id, client] : clients_) {
    if (MatchesType(filter, client->session())) listed.push_back(client);
  }
  std::sort(listed.begin(), listed.end(),
            [](Client* a, Client* b) { return a->session().id < b->session().id; });
  for (Client* c : listed) AppendClientLine(*c, viewer, &out);
  return out;
}

}  // namespace distri::server
