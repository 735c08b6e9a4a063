// Connection and server family: PING, ECHO, HELLO, AUTH, CLIENT, SELECT,
// QUIT, COMMAND, INFO, CONFIG. None of these touch the log.

#include <ctime>
#include <string>

#include "base/glob.h"
#include "base/strings.h"
#include "commands/access.h"
#include "commands/command.h"
#include "distri/version.h"

namespace distri::commands {

namespace {

void Ping(Call& call) {
  if (call.args.size() > 2) {
    WrongArity(call);
  } else if (call.session.subscriptions > 0 && call.session.protocol == 2) {
    // Subscribed mode in RESP2 answers like a message would arrive.
    call.reply.Array(2);
    call.reply.Bulk("pong");
    call.reply.Bulk(call.args.size() == 2 ? call.args[1] : std::string_view());
  } else if (call.args.size() == 2) {
    call.reply.Bulk(call.args[1]);
  } else {
    call.reply.Simple("PONG");
  }
}

void Echo(Call& call) { call.reply.Bulk(call.args[1]); }

// AUTH [username] password. Only the "default" user exists; without
// --requirepass it accepts any password when named (as Redis's "nopass"
// default user does), and the one-argument form is an error as in Redis.
bool CheckAuth(Call& call, std::string_view user, std::string_view password, bool named) {
  if (call.ctx.settings().requirepass.empty()) {
    if (named && user == "default") return true;
    call.reply.Error(
        "ERR AUTH <password> called without any password configured for the default user. "
        "Are you sure your configuration is correct?");
    return false;
  }
  // The server compares in constant time and counts failures per address;
  // an address over its limit is refused unchecked, and the connection
  // closes so a guesser must reconnect (and wait) to go on.
  AuthCheck check = call.ctx.CheckPassword(call.session, user == "default" ? password : "");
  if (check == AuthCheck::kLimited) {
    call.reply.Error("NOAUTH too many failed AUTH attempts from this address; retry in a second");
    call.session.close_after_reply = true;
    return false;
  }
  if (user != "default" || check != AuthCheck::kOk) {
    call.reply.Error("WRONGPASS invalid username-password pair or user is disabled.");
    return false;
  }
  call.session.authenticated = true;
  return true;
}

void Auth(Call& call) {
  if (call.args.size() > 3) {
    SyntaxError(call);
    return;
  }
  bool named = call.args.size() == 3;
  std::string_view user = named ? call.args[1] : "default";
  if (CheckAuth(call, user, call.args.back(), named)) call.reply.Ok();
}

// HELLO [protover [AUTH user pass] [SETNAME name]]
void Hello(Call& call) {
  int proto = call.session.protocol;
  size_t i = 1;
  if (call.args.size() > 1) {
    int64_t v;
    if (!base::ParseInt64(call.args[1], &v)) {
      call.reply.Error("ERR Protocol version is not an integer or out of range");
      return;
    }
    if (v != 2 && v != 3) {
      call.reply.Error("NOPROTO unsupported protocol version");
      return;
    }
    proto = static_cast<int>(v);
    i = 2;
  }
  // Every option parses before AUTH is tried, as in Redis: a HELLO that
  // fails with a syntax error must leave the connection as it was.
  std::string_view setname, user, password;
  bool has_setname = false, has_auth = false;
  for (; i < call.args.size(); i++) {
    if (base::EqualsIgnoreCase(call.args[i], "auth") && i + 2 < call.args.size()) {
      user = call.args[i + 1];
      password = call.args[i + 2];
      has_auth = true;
      i += 2;
    } else if (base::EqualsIgnoreCase(call.args[i], "setname") && i + 1 < call.args.size()) {
      setname = call.args[++i];
      has_setname = true;
    } else {
      SyntaxError(call);
      return;
    }
  }
  if (has_auth && !CheckAuth(call, user, password, true)) return;
  if (!call.ctx.settings().requirepass.empty() && !call.session.authenticated) {
    call.reply.Error("NOAUTH HELLO must be called with the client already authenticated, "
                     "otherwise the HELLO <proto> AUTH <user> <pass> option can be used to "
                     "authenticate the client and select the RESP protocol version at the same time");
    return;
  }
  if (has_setname) call.session.name = std::string(setname);
  call.session.protocol = proto;
  call.reply.set_protocol(proto);
  call.reply.Map(7);
  call.reply.Bulk("server");
  call.reply.Bulk("distri");
  call.reply.Bulk("version");
  call.reply.Bulk(kVersion);
  call.reply.Bulk("proto");
  call.reply.Integer(proto);
  call.reply.Bulk("id");
  call.reply.Integer(static_cast<int64_t>(call.session.id));
  call.reply.Bulk("mode");
  call.reply.Bulk("standalone");
  call.reply.Bulk("role");
  call.reply.Bulk("master");
  call.reply.Bulk("modules");
  call.reply.Array(0);
}

// CLIENT SETINFO value check, as Redis: printable ASCII without spaces, so a
// CLIENT LIST line still splits on spaces into fields.
bool ClientAttrOk(std::string_view value) {
  for (char c : value) {
    if (c < '!' || c > '~') return false;
  }
  return true;
}

// CLIENT LIST [TYPE NORMAL|MASTER|REPLICA|SLAVE|PUBSUB] [ID id [id ...]], one
// filter at a time as in Redis 7.0; anything else is a syntax error.
bool ParseClientListFilter(Call& call, ClientListFilter* filter) {
  const size_t n = call.args.size();
  if (n == 2) return true;
  if (n == 4 && base::EqualsIgnoreCase(call.args[2], "type")) {
    std::string_view t = call.args[3];
    if (base::EqualsIgnoreCase(t, "normal")) {
      filter->type = ClientListFilter::Type::kNormal;
    } else if (base::EqualsIgnoreCase(t, "pubsub")) {
      filter->type = ClientListFilter::Type::kPubSub;
    } else if (base::EqualsIgnoreCase(t, "master") || base::EqualsIgnoreCase(t, "replica") ||
               base::EqualsIgnoreCase(t, "slave")) {
      filter->type = ClientListFilter::Type::kNone;
    } else {
      call.reply.Error("ERR Unknown client type '" + std::string(t.substr(0, 64)) + "'");
      return false;
    }
    return true;
  }
  if (n > 3 && base::EqualsIgnoreCase(call.args[2], "id")) {
    filter->by_id = true;
    for (size_t i = 3; i < n; i++) {
      int64_t id;
      if (!base::ParseInt64(call.args[i], &id)) {
        call.reply.Error("ERR Invalid client ID");
        return false;
      }
      if (id > 0) filter->ids.push_back(static_cast<uint64_t>(id));  // ids start at 1
    }
    return true;
  }
  SyntaxError(call);
  return false;
}

void Client(Call& call) {
  std::string lower;
  std::string_view sub = base::AsciiLower(call.args[1], &lower);
  const size_t n = call.args.size();
  // Redis 7's arity per subcommand: N exact, -N at least N (with the name).
  struct Sub {
    std::string_view name;
    int arity;
  };
  static constexpr Sub kSubs[] = {{"id", 2},      {"getname", 2}, {"setname", 3}, {"setinfo", 4},
                                  {"list", -2},   {"info", 2},    {"help", 2},
                                  {"readmode", -2}};
  const Sub* found = nullptr;
  for (const Sub& s : kSubs) {
    if (s.name == sub) found = &s;
  }
  if (found == nullptr) {
    call.reply.Error("ERR unknown subcommand '" + std::string(call.args[1].substr(0, 64)) +
                     "'. Try CLIENT HELP.");
    return;
  }
  const int argc = static_cast<int>(n);
  if (found->arity > 0 ? argc != found->arity : argc < -found->arity) {
    call.reply.Error("ERR wrong number of arguments for 'client|" + std::string(sub) + "' command");
    return;
  }
  if (sub == "id") {
    call.reply.Integer(static_cast<int64_t>(call.session.id));
  } else if (sub == "getname") {
    if (call.session.name.empty()) {
      call.reply.Null();
    } else {
      call.reply.Bulk(call.session.name);
    }
  } else if (sub == "setname") {
    if (!ClientAttrOk(call.args[2])) {
      call.reply.Error("ERR Client names cannot contain spaces, newlines or special characters.");
      return;
    }
    call.session.name = std::string(call.args[2]);
    call.reply.Ok();
  } else if (sub == "setinfo") {
    // CLIENT SETINFO LIB-NAME|LIB-VER value ("" clears), as Redis 7.2.
    std::string_view attr = call.args[2], value = call.args[3];
    std::string* dest = nullptr;
    if (base::EqualsIgnoreCase(attr, "lib-name")) {
      dest = &call.session.lib_name;
    } else if (base::EqualsIgnoreCase(attr, "lib-ver")) {
      dest = &call.session.lib_ver;
    } else {
      call.reply.Error("ERR Unrecognized option '" + std::string(attr.substr(0, 64)) + "'");
      return;
    }
    if (!ClientAttrOk(value)) {
      call.reply.Error("ERR " + std::string(attr) +
                       " cannot contain spaces, newlines or special characters.");
      return;
    }
    *dest = std::string(value);
    call.reply.Ok();
  } else if (sub == "list") {
    ClientListFilter filter;
    if (ParseClientListFilter(call, &filter)) {
      call.reply.Verbatim("txt", call.ctx.ClientList(call.session, filter));
    }
  } else if (sub == "readmode") {
    // CLIENT READMODE [local|linearizable]: in a cluster, linearizable reads (the default)
    // wait for a ReadIndex read point; local reads answer from this node at once, maybe
    // stale. Without a cluster both are the same.
    if (n == 2) {
      call.reply.Bulk(call.session.local_reads ? "local" : "linearizable");
    } else if (n == 3 && base::EqualsIgnoreCase(call.args[2], "local")) {
      call.session.local_reads = true;
      call.reply.Ok();
    } else if (n == 3 && base::EqualsIgnoreCase(call.args[2], "linearizable")) {
      call.session.local_reads = false;
      call.reply.Ok();
    } else {
      call.reply.Error("ERR CLIENT READMODE takes local or linearizable");
    }
  } else if (sub == "info") {
    ClientListFilter filter;
    filter.by_id = true;
    filter.ids.push_back(call.session.id);
    call.reply.Verbatim("txt", call.ctx.ClientList(call.session, filter));
  } else {
    const char* lines[] = {"CLIENT ID", "CLIENT GETNAME", "CLIENT SETNAME <name>",
                           "CLIENT SETINFO <LIB-NAME|LIB-VER> <value>",
                           "CLIENT LIST [TYPE NORMAL|MASTER|REPLICA|PUBSUB] [ID <id> [<id> ...]]",
                           "CLIENT INFO", "CLIENT READMODE [LOCAL|LINEARIZABLE]"};
    call.reply.Array(std::size(lines));
    for (const char* l : lines) call.reply.Simple(l);
  }
}

// SELECT 0 is the "default" room (where every connection starts); 1..15 are
// the rooms named "1".."15". Room codes are the real namespace: see ROOM.JOIN.
void Select(Call& call) {
  int64_t db;
  if (!base::ParseInt64(call.args[1], &db)) {
    call.reply.Error("ERR value is not an integer or out of range");
    return;
  }
  if (db < 0 || db > 15) {
    call.reply.Error("ERR DB index is out of range");
    return;
  }
  call.session.db = static_cast<int>(db);
  call.session.room = db == 0 ? std::string(state::kDefaultRoom) : std::to_string(db);
  call.reply.Ok();
}

void Quit(Call& call) {
  call.session.close_after_reply = true;
  call.reply.Ok();
}

void WriteFlags(Call& call, uint32_t flags) {
  std::vector<const char*> names;
  if (flags & kWrite) names.push_back("write");
  if (flags & kReadOnly) names.push_back("readonly");
  if (flags & kAdmin) names.push_back("admin");
  if (flags & kNoAuth) names.push_back("no_auth");
  if (flags & kDenyOom) names.push_back("denyoom");
  if (flags & kFast) names.push_back("fast");
  call.reply.Set(names.size());
  for (const char* n : names) call.reply.Simple(n);
}

void WriteCommandInfo(Call& call, const CommandSpec& spec) {
  call.reply.Array(10);
  call.reply.Bulk(spec.name);
  call.reply.Integer(spec.arity);
  WriteFlags(call, spec.flags);
  call.reply.Integer(spec.first_key);
  call.reply.Integer(spec.last_key);
  call.reply.Integer(spec.key_step);
  call.reply.Set(0);    // ACL categories
  call.reply.Set(0);    // tips
  call.reply.Array(0);  // key specs
  call.reply.Array(0);  // subcommands
}

// COMMAND [COUNT | INFO name... | DOCS [name...] | LIST]
void Command(Call& call) {
  const CommandTable& table = CommandTable::Get();
  if (call.args.size() == 1) {
    call.reply.Array(table.all().size());
    for (const CommandSpec& spec : table.all()) WriteCommandInfo(call, spec);
    return;
  }
  std::string lower;
  std::string_view sub = base::AsciiLower(call.args[1], &lower);
  if (sub == "count" && call.args.size() == 2) {
    call.reply.Integer(static_cast<int64_t>(table.all().size()));
  } else if (sub == "list" && call.args.size() == 2) {
    call.reply.Array(table.all().size());
    for (const CommandSpec& spec : table.all()) call.reply.Bulk(spec.name);
  } else if (sub == "info") {
    call.reply.Array(call.args.size() - 2);
    for (size_t i = 2; i < call.args.size(); i++) {
      const CommandSpec* spec = table.Find(call.args[i]);
      if (spec == nullptr) {
        call.reply.NullArray();
      } else {
        WriteCommandInfo(call, *spec);
      }
    }
  } else if (sub == "docs") {
    std::vector<const CommandSpec*> specs;
    if (call.args.size() == 2) {
      for (const CommandSpec& spec : table.all()) specs.push_back(&spec);
    } else {
      for (size_t i = 2; i < call.args.size(); i++) {
        if (const CommandSpec* spec = table.Find(call.args[i])) specs.push_back(spec);
      }
    }
    call.reply.Map(specs.size());
    for (const CommandSpec* spec : specs) {
      call.reply.Bulk(spec->name);
      call.reply.Map(2);
      call.reply.Bulk("summary");
      call.reply.Bulk(spec->summary);
      call.reply.Bulk("group");
      call.reply.Bulk("distri");
    }
  } else {
    call.reply.Error("ERR unknown subcommand '" + std::string(call.args[1].substr(0, 64)) +
                     "'. Try COMMAND HELP.");
  }
}

// INFO [section ...]
void Info(Call& call) { call.reply.Verbatim("txt", call.ctx.Info(call.args.subspan(1))); }

// TIME: the server's clock as [seconds, microseconds], both bulk strings.
void Time(Call& call) {
  timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  call.reply.Array(2);
  call.reply.Bulk(std::to_string(ts.tv_sec));
  call.reply.Bulk(std::to_string(ts.tv_nsec / 1000));
}

// CONFIG GET pattern: read-only view of the settings a Redis tool may ask for.
void Config(Call& call) {
  std::string lower;
  std::string_view sub = base::AsciiLower(call.args[1], &lower);
  if (sub == "resetstat" && call.args.size() == 2) {
    call.reply.Ok();
    return;
  }
  if (sub != "get" || call.args.size() < 3) {
    call.reply.Error("ERR CONFIG " + std::string(call.args[1].substr(0, 32)) +
                     " is not supported; settings are command-line flags of distri serve");
    return;
  }
  const ServerSettings& s = call.ctx.settings();
  const std::pair<std::string, std::string> params[] = {
      {"maxmemory", std::to_string(s.max_memory)},
      {"maxclients", std::to_string(s.max_clients)},
      {"proto-max-bulk-len", std::to_string(s.max_bulk)},
      {"port", std::to_string(s.port)},
      {"bind", s.bind},
      {"dir", s.data_dir},
      {"appendonly", "yes"},
      {"appendfsync", s.fsync ? "always" : "no"},
      {"save", ""},
      {"databases", "16"},
  };
  // Each pattern compiled once, and capped like every glob (base/glob.h).
  std::vector<base::Glob> globs;
  for (size_t i = 2; i < call.args.size(); i++) {
    if (!PatternOk(call, call.args[i])) return;
    globs.emplace_back(call.args[i], /*nocase=*/true);
  }
  std::vector<const std::pair<std::string, std::string>*> found;
  for (const auto& p : params) {
    for (const base::Glob& glob : globs) {
      if (glob.Match(p.first)) {
        found.push_back(&p);
        break;
      }
    }
  }
  call.reply.Map(found.size());
  for (const auto* p : found) {
    call.reply.Bulk(p->first);
    call.reply.Bulk(p->second);
  }
}

}  // namespace

void AddConnectionCommands(std::vector<CommandSpec>* out) {
  out->insert(out->end(), {
    {"ping", -1, kFast | kPubSubOk, 0, 0, 0, Ping, "Check the connection"},
    {"echo", 2, kFast, 0, 0, 0, Echo, "Return the argument"},
    {"auth", -2, kNoAuth | kFast, 0, 0, 0, Auth, "Authenticate the connection"},
    {"hello", -1, kNoAuth | kFast, 0, 0, 0, Hello, "Choose RESP2/RESP3, authenticate, name"},
    {"client", -2, kSubcommands, 0, 0, 0, Client, "Connection introspection and naming"},
    {"select", 2, kFast, 0, 0, 0, Select, "Switch to room 'default' (0) or '1'..'15'"},
    {"quit", -1, kNoAuth | kFast | kPubSubOk, 0, 0, 0, Quit, "Close the connection"},
    {"command", -1, kSubcommands, 0, 0, 0, Command, "Describe the commands"},
    {"info", -1, 0, 0, 0, 0, Info, "Server information and statistics"},
    {"time", 1, kFast, 0, 0, 0, Time, "The server's time: seconds and microseconds"},
    {"config", -2, kAdmin | kSubcommands, 0, 0, 0, Config, "Read server settings (CONFIG GET)"},
  });
}

}  // namespace distri::commands
