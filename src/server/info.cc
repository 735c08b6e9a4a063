// INFO and CLIENT LIST text: computed on request from live counters.

#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <string>

#include "server/client.h"
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
    Field(out, "log_write_failures", stats_.log_failures);
  } else if (name == "stats") {
    out->append("# Stats\r\n");
    Field(out, "total_connections_received", stats_.connections_received);
    Field(out, "total_commands_processed", stats_.commands_processed);
    Field(out, "rejected_connections", stats_.rejected_connections);
    Field(out, "expired_keys", stats_.expired_keys);
    Field(out, "total_error_replies_protocol", stats_.protocol_errors);
    Field(out, "entries_applied", stats_.entries_applied);
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

std::string Server::Info(std::string_view section) {
  static const char* kAll[] = {"server", "clients", "memory", "persistence", "stats", "keyspace", "distri"};
  std::string out;
  if (section.empty() || section == "default" || section == "all" || section == "everything") {
    for (const char* s : kAll) AppendInfoSection(s, &out);
  } else {
    AppendInfoSection(section, &out);
  }
  return out;
}

std::string Server::ClientList(const commands::Session* only) {
  std::string out;
  const int64_t now = NowMs();
  for (const auto& [id, client] : clients_) {
    const commands::Session& s = client->session();
    if (only != nullptr && only->id != id) continue;
    out += "id=" + std::to_string(id) + " addr=" + s.peer + " name=" + s.name +
           " age=" + std::to_string((now - s.created_ms) / 1000) +
           " idle=" + std::to_string((now - client->last_command_ms()) / 1000) +
           " db=" + std::to_string(s.db) + " room=" + s.room +
           " resp=" + std::to_string(s.protocol) +
           " qbuf=" + std::to_string(client->conn().input().readable()) +
           " omem=" + std::to_string(client->conn().pending_output()) +
           " pending-writes=" + std::to_string(client->pending_writes()) +
           " cmd=" + std::string(client->last_command()) + " lib-name=" + s.lib_name + "\n";
  }
  return out;
}

}  // namespace distri::server
