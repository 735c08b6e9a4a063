// The distri command line: `distri serve` runs a node. Client subcommands
// (get/set/watch/...) join later; every flag is described by --help.

#include <cstdio>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

#include "base/logging.h"
#include "base/strings.h"
#include "distri/version.h"
#include "server/server.h"

namespace {

constexpr char kUsage[] =
    "distri 0.1.0 - a lightweight distributed coordination service\n"
    "\n"
    "Usage:\n"
    "  distri serve [flags]    run a node (single node; data under ./distri-data)\n"
    "  distri --help           this text\n"
    "  distri --version        print the version\n"
    "";

constexpr char kServeUsage[] =
    "Usage: distri serve [flags]\n"
    "\n"
    "Flags (each also accepted as --flag=value):\n"
    "  --port N             client port, RESP2/RESP3 (default 7379)\n"
    "  --http-port N        HTTP/dashboard port (default: --port + 1, i.e. 7380)\n"
    "  --bind ADDR          address to listen on (default 127.0.0.1)\n"
    "  --data DIR           data directory: log and snapshots (default ./distri-data)\n"
    "  --fsync always|off   always: acknowledge a write only after fsync (default);\n"
    "                       off: acknowledge after write(2), survives a crash of distri\n"
    "                       but not of the machine\n"
    "  --max-memory BYTES   refuse with OOM a write that would take the data past this\n"
    "                       (keys, rooms, writes in flight, mirror history, unsent\n"
    "                       output; 0 = no limit; suffixes k, m, g accepted, e.g. 512m);\n"
    "                       deletes always pass\n"
    "  --max-rooms N        rooms ROOM.NEW and POST /api/rooms may create (default\n"
    "                       1000000; 0 = no limit); past it they get a LIMIT error\n"
    "  --max-clients N      refuse connections beyond N (default 10000; 0 = no limit)\n"
    "  --max-bulk BYTES     largest single argument accepted (default 512m)\n"
    "  --requirepass PASS   require AUTH with this password (RESP) and\n"
    "                       'Authorization: Bearer PASS' (HTTP, all but /healthz)\n"
    "  --trust-loopback yes|no\n"
    "                       without a password on a loopback address, every client is\n"
    "                       an admin and sees room codes in listings (default yes);\n"
    "                       say no when a proxy on this host forwards others' traffic\n"
    "  --auth-timeout SECONDS\n"
    "                       with a password: close a connection that has not\n"
    "                       authenticated this long after connecting (default 10)\n"
    "  --auth-fail-limit N  wrong passwords per second from one address before further\n"
    "                       attempts are refused (default 10; 0 = no limit)\n"
    "  --auth-reserved-clients N\n"
    "                       of --max-clients, slots that unauthenticated connections\n"
    "                       may not take (default 16)\n"
    "  --http-max-connections N\n"
    "                       HTTP connections (default 1024; 16 more are kept for\n"
    "                       /healthz and /readyz only)\n"
    "  --http-idle-timeout SECONDS\n"
    "                       close idle keep-alive HTTP connections (default 60)\n"
    "  --http-request-timeout SECONDS\n"
    "                       a whole HTTP request must arrive within this (default 30)\n"
    "  --http-body-memory BYTES\n"
    "                       request bodies being received, all connections together\n"
    "                       (default 128m; beyond it requests get 503)\n"
    "  --max-pattern-bytes N\n"
    "                       longest glob pattern accepted by KEYS, SCAN MATCH, PSUBSCRIBE,\n"
    "                       PUBSUB CHANNELS and CONFIG GET (default 8k; 0 = no limit)\n"
    "  --snapshot-bytes N   snapshot the state after this much log (default 64m)\n"
    "  --mirror-history-entries N\n"
    "                       changes kept for mirrors resuming FROM a revision (default 100000)\n"
    "  --mirror-history-bytes N\n"
    "                       bytes of such changes kept (default 64m)\n"
    "  --push-output-limit HARD,SOFT,SECONDS\n"
    "                       disconnect a mirror whose unsent output passes HARD bytes, or\n"
    "                       stays above SOFT for SECONDS (default 32m,8m,60; 0 disables)\n"
    "  --output-limit HARD,SOFT,SECONDS\n"
    "                       the same for ordinary clients' unsent replies (default\n"
    "                       256m,0,0); checked while a reply is built, so one command\n"
    "                       cannot build a reply past HARD; HARD also bounds an HTTP\n"
    "                       connection's unsent responses\n"
    "  --push-output-budget BYTES\n"
    "                       unsent pushed output (mirrors, messages, requests) of all\n"
    "                       clients together, WebSocket mirrors included; over it the\n"
    "                       largest backlogs are cut off\n"
    "                       (default 256m; 0 = no budget)\n"
    "  --log-level LEVEL    debug, info, warning or error (default info)\n"
    "  --help               this text\n"
    "Cluster (docs/replication.md):\n"
    "  --cluster-secret-file PATH\n"
    "                       the cluster secret (mode 0600, >= 32 bytes; never given on\n"
    "                       the command line). With it the node is a Raft cluster member\n"
    "                       and opens the cluster port; without it the node runs alone\n"
    "  --cluster-port N     node-to-node port (default: --port + 2, i.e. 7381)\n"
    "  --join HOST:PORT[,HOST:PORT...]\n"
    "                       cluster addresses of any members: a new node joins their\n"
    "                       cluster, retrying until one answers. Without it a new node\n"
    "                       founds a cluster of one. A restarted node rejoins from its\n"
    "                       data directory and needs no --join\n"
    "  --advertise HOST:PORT\n"
    "                       the cluster address other nodes dial to reach this one\n"
    "                       (default bind:cluster-port)\n"
    "  --raft-tick-ms N     Raft's clock tick in milliseconds (default 100)\n"
    "  --raft-election-ticks N\n"
    "                       election timeout in ticks, randomised in [N, 2N) (default 10:\n"
    "                       1-2 s with the default tick)\n"
    "  --raft-heartbeat-ticks N\n"
    "                       leader heartbeat interval in ticks (default 2: 200 ms)\n"
    "  --cluster-request-timeout MS\n"
    "                       a write or linearizable read with no answer by then gets\n"
    "                       UNKNOWN (a write: it may or may not apply) or TRYAGAIN (a\n"
    "                       read) (default 5000)\n";

bool ParseBytes(std::string_view s, uint64_t* out) {
  uint64_t mult = 1;
  if (!s.empty()) {
    std::string lower;
    std::string_view l = distri::base::AsciiLower(s, &lower);
    for (auto [suffix, m] : {std::pair{"kb", 1ull << 10}, {"mb", 1ull << 20}, {"gb", 1ull << 30},
                             {"k", 1ull << 10}, {"m", 1ull << 20}, {"g", 1ull << 30}}) {
      if (l.ends_with(suffix)) {
        s.remove_suffix(std::strlen(suffix));
        mult = m;
        break;
      }
    }
  }
  uint64_t v;
  if (!distri::base::ParseUint64(s, &v) || (v != 0 && mult > UINT64_MAX / v)) return false;
  *out = v * mult;
  return true;
}

// "32mb,8mb,60" -> OutputLimit.
bool ParseOutputLimit(std::string_view s, distri::server::OutputLimit* out) {
  size_t a = s.find(','), b = a == std::string_view::npos ? a : s.find(',', a + 1);
  if (b == std::string_view::npos) return false;
  return ParseBytes(s.substr(0, a), &out->hard) && ParseBytes(s.substr(a + 1, b - a - 1), &out->soft) &&
         distri::base::ParseUint64(s.substr(b + 1), &out->soft_seconds);
}

int Fail(const std::string& message) {
  std::fprintf(stderr, "distri serve: %s\nRun 'distri serve --help' for usage.\n", message.c_str());
  return 2;
}

int Serve(const std::vector<std::string_view>& args) {
  distri::server::ServerOptions options;
  distri::commands::ServerSettings& s = options.settings;
  s.port = 7379;
  s.http_port = 7380;
  s.bind = "127.0.0.1";
  s.data_dir = "./distri-data";
  s.max_clients = 10000;
  s.max_bulk = 512ull << 20;
  s.max_rooms = 1000000;
  // The HTTP and cluster ports follow --port (+1, +2) unless given, so nodes on one
  // machine need only distinct --port values (7379, 7479, 7579: 7380/7381, 7480/7481, ...).
  bool port_given = false, http_port_given = false, cluster_port_given = false;
  for (size_t i = 0; i < args.size(); i++) {
    std::string_view arg = args[i];
    if (arg == "--help" || arg == "-h") {
      std::fputs(kServeUsage, stdout);
      return 0;
    }
    if (!arg.starts_with("--")) return Fail("unexpected argument '" + std::string(arg) + "'");
    std::string_view name = arg.substr(2), value;
    if (size_t eq = name.find('='); eq != std::string_view::npos) {
      value = name.substr(eq + 1);
      name = name.substr(0, eq);
    } else {
      if (i + 1 >= args.size()) return Fail("flag --" + std::string(name) + " needs a value");
      value = args[++i];
    }
    uint64_t n = 0;
    auto number = [&](uint64_t max) { return distri::base::ParseUint64(value, &n) && n <= max; };
    if (name == "port" || name == "http-port") {
      if (!number(65535)) return Fail("--" + std::string(name) + " must be a port number (0-65535)");
      (name == "port" ? s.port : s.http_port) = static_cast<int>(n);
      (name == "port" ? port_given : http_port_given) = true;
    } else if (name == "bind") {
      s.bind = std::string(value);
    } else if (name == "data") {
      if (value.empty()) return Fail("--data must not be empty");
      s.data_dir = std::string(value);
    } else if (name == "fsync") {
      if (value != "always" && value != "off") return Fail("--fsync must be 'always' or 'off'");
      s.fsync = value == "always";
    } else if (name == "max-memory") {
      if (!ParseBytes(value, &s.max_memory)) return Fail("--max-memory must be a byte count");
    } else if (name == "max-rooms") {
      if (!number(UINT32_MAX)) return Fail("--max-rooms must be a number (0 = no limit)");
      s.max_rooms = n;
    } else if (name == "max-clients") {
      if (!number(UINT32_MAX)) return Fail("--max-clients must be a number");
      s.max_clients = n;
    } else if (name == "max-bulk") {
      if (!ParseBytes(value, &s.max_bulk) || s.max_bulk == 0 || s.max_bulk > (1ull << 32)) {
        return Fail("--max-bulk must be a byte count between 1 and 4g");
      }
    } else if (name == "max-pattern-bytes") {
      if (!ParseBytes(value, &s.max_pattern_bytes)) {
        return Fail("--max-pattern-bytes must be a byte count");
      }
    } else if (name == "requirepass") {
      s.requirepass = std::string(value);
    } else if (name == "trust-loopback") {
      if (value != "yes" && value != "no") return Fail("--trust-loopback must be 'yes' or 'no'");
      s.trust_loopback = value == "yes";
    } else if (name == "auth-timeout") {
      if (!number(86400) || n == 0) return Fail("--auth-timeout must be 1 to 86400 seconds");
      s.auth_timeout_ms = static_cast<int64_t>(n) * 1000;
    } else if (name == "auth-fail-limit") {
      if (!number(UINT32_MAX)) return Fail("--auth-fail-limit must be a number");
      s.auth_fail_limit = static_cast<uint32_t>(n);
    } else if (name == "auth-reserved-clients") {
      if (!number(UINT32_MAX)) return Fail("--auth-reserved-clients must be a number");
      s.auth_reserved_clients = n;
    } else if (name == "http-max-connections") {
      if (!number(UINT32_MAX) || n == 0) {
        return Fail("--http-max-connections must be a positive number");
      }
      options.http.max_connections = n;
    } else if (name == "http-idle-timeout" || name == "http-request-timeout") {
      if (!number(86400) || n == 0) {
        return Fail("--" + std::string(name) + " must be 1 to 86400 seconds");
      }
      int64_t& ms = name == "http-idle-timeout" ? options.http.idle_timeout_ms
                                                : options.http.request_timeout_ms;
      ms = static_cast<int64_t>(n) * 1000;
    } else if (name == "http-body-memory") {
      if (!ParseBytes(value, &n) || n == 0) {
        return Fail("--http-body-memory must be a positive byte count");
      }
      options.http.max_body_bytes_in_flight = n;
    } else if (name == "snapshot-bytes") {
      if (!ParseBytes(value, &options.snapshot_bytes) || options.snapshot_bytes == 0) {
        return Fail("--snapshot-bytes must be a positive byte count");
      }
    } else if (name == "mirror-history-entries") {
      if (!number(UINT32_MAX) || n == 0) return Fail("--mirror-history-entries must be a positive number");
      options.mirror.history_entries = n;
    } else if (name == "mirror-history-bytes") {
      if (!ParseBytes(value, &n) || n == 0) return Fail("--mirror-history-bytes must be a positive byte count");
      options.mirror.history_bytes = n;
    } else if (name == "push-output-limit" || name == "output-limit") {
      auto* limit = name == "output-limit" ? &options.normal_limit : &options.push_limit;
      if (!ParseOutputLimit(value, limit)) return Fail("--" + std::string(name) + " must be HARD,SOFT,SECONDS");
    } else if (name == "push-output-budget") {
      if (!ParseBytes(value, &options.push_output_budget)) {
        return Fail("--push-output-budget must be a byte count");
      }
    } else if (name == "cluster-secret-file") {
      if (value.empty()) return Fail("--cluster-secret-file must not be empty");
      options.cluster.secret_file = std::string(value);
    } else if (name == "cluster-port") {
      if (!number(65535)) return Fail("--cluster-port must be a port number (0-65535)");
      options.cluster.port = static_cast<int>(n);
      cluster_port_given = true;
    } else if (name == "join") {
      for (std::string_view rest = value; !rest.empty();) {
        size_t comma = rest.find(',');
        std::string_view one = rest.substr(0, comma);
        if (one.empty() || one.find(':') == std::string_view::npos) {
          return Fail("--join takes HOST:PORT[,HOST:PORT...]");
        }
        options.cluster.join.emplace_back(one);
        rest = comma == std::string_view::npos ? std::string_view() : rest.substr(comma + 1);
      }
      if (options.cluster.join.empty()) return Fail("--join takes HOST:PORT[,HOST:PORT...]");
    } else if (name == "advertise") {
      if (value.find(':') == std::string_view::npos) return Fail("--advertise takes HOST:PORT");
      options.cluster.advertise = std::string(value);
    } else if (name == "raft-tick-ms") {
      if (!number(10000) || n == 0) return Fail("--raft-tick-ms must be 1-10000");
      options.cluster.tick_ms = n;
    } else if (name == "raft-election-ticks") {
      if (!number(1000) || n < 2) return Fail("--raft-election-ticks must be 2-1000");
      options.cluster.election_ticks = static_cast<uint32_t>(n);
    } else if (name == "raft-heartbeat-ticks") {
      if (!number(1000) || n == 0) return Fail("--raft-heartbeat-ticks must be 1-1000");
      options.cluster.heartbeat_ticks = static_cast<uint32_t>(n);
    } else if (name == "cluster-request-timeout") {
      if (!number(3600000) || n == 0) return Fail("--cluster-request-timeout must be 1-3600000 ms");
      options.cluster.request_timeout_ms = n;
    } else if (name == "log-level") {
      using distri::base::LogLevel;
      if (value == "debug") distri::base::SetMinLogLevel(LogLevel::kDebug);
      else if (value == "info") distri::base::SetMinLogLevel(LogLevel::kInfo);
      else if (value == "warning") distri::base::SetMinLogLevel(LogLevel::kWarning);
      else if (value == "error") distri::base::SetMinLogLevel(LogLevel::kError);
      else return Fail("--log-level must be debug, info, warning or error");
    } else {
      return Fail("unknown flag --" + std::string(name));
    }
  }
  if (port_given && s.port != 0) {
    if (!http_port_given) s.http_port = s.port + 1 <= 65535 ? s.port + 1 : 0;
    if (!cluster_port_given) options.cluster.port = s.port + 2 <= 65535 ? s.port + 2 : 0;
  }
  if (options.cluster.heartbeat_ticks >= options.cluster.election_ticks) {
    return Fail("--raft-heartbeat-ticks must be less than --raft-election-ticks");
  }
  if (!options.cluster.enabled() && !options.cluster.join.empty()) {
    return Fail("--join needs --cluster-secret-file (only nodes holding the secret may join)");
  }
  distri::server::Server server(std::move(options));
  distri::Status st = server.Start();
  if (!st.ok()) {
    LOG(ERROR) << "cannot start: " << st.ToString();
    return 1;
  }
  server.Run();
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string_view> args(argv + 1, argv + argc);
  if (args.empty() || args[0] == "--help" || args[0] == "-h" || args[0] == "help") {
    std::FILE* out = args.empty() ? stderr : stdout;
    std::fputs(kUsage, out);
    std::fputs("\n", out);
    std::fputs(kServeUsage, out);
    return args.empty() ? 2 : 0;
  }
  if (args[0] == "--version" || args[0] == "version") {
    std::printf("distri %s\n", distri::kVersion);
    return 0;
  }
  if (args[0] == "serve") return Serve({args.begin() + 1, args.end()});
  std::fprintf(stderr, "distri: unknown command '%s'\n\n%s", argv[1], kUsage);
  return 2;
}
