// The command table: every command as data, and the context handlers run in.
//
// A command is a row: name, arity (Redis convention: N exact, -N at least N,
// counting the name), flags, key positions, handler and a one-line summary
// (COMMAND and docs/protocol.md are generated from the same rows). Families
// live in one *_commands.cc each and register their rows in command_table.cc.
//
// A handler parses its arguments and then either answers from the state
// (reads) or encodes one entry and proposes it (writes); a write's reply is
// written later, when the entry is applied (see server/). Handlers never block.
//
// Thread-safety: the table is immutable after start-up; handlers run on the
// loop thread.

#ifndef DISTRI_COMMANDS_COMMAND_H_
#define DISTRI_COMMANDS_COMMAND_H_

#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "commands/messaging.h"
#include "protocol/resp_writer.h"
#include "state/entry.h"
#include "state/state_machine.h"

namespace distri::commands {

enum CommandFlag : uint32_t {
  kWrite = 1 << 0,     // proposes an entry
  kReadOnly = 1 << 1,  // reads the state
  kAdmin = 1 << 2,     // site-wide administration
  kNoAuth = 1 << 3,    // allowed before AUTH
  kDenyOom = 1 << 4,   // refused while memory is over --max-memory
  kFast = 1 << 5,      // O(1) or O(log n)
  kPubSubOk = 1 << 6,  // allowed on a RESP2 connection in subscribed mode
  kSubcommands = 1 << 7,  // args[1] names a subcommand (CLIENT LIST shows cmd=client|list)
};

// Per-connection state commands may read and change.
struct Session {
  uint64_t id = 0;
  std::string name;
  std::string room{state::kDefaultRoom};
  std::string peer;          // "ip:port"
  std::string local;         // "ip:port" of the server side (CLIENT LIST laddr)
  int protocol = 2;          // RESP version
  int db = 0;                // the SELECT index, kept for CLIENT LIST
  bool authenticated = false;
  bool close_after_reply = false;  // QUIT
  int64_t created_ms = 0;
  std::string lib_name;       // CLIENT SETINFO LIB-NAME
  std::string lib_ver;        // CLIENT SETINFO LIB-VER
  uint32_t subscriptions = 0;  // channels + patterns (RESP2 subscribed mode when > 0)
  bool blocked = false;        // waiting for a CALL's reply: runs no other command
  // CLIENT READMODE local: reads are answered from this node's state at once and may be
  // stale; linearizable (the default) waits for a ReadIndex read point in a cluster.
  bool local_reads = false;
};

// What a reply to a proposed entry needs beyond the ApplyResult.
enum class ReplyShape : uint8_t {
  kAsIs,      // write the ApplyResult as it is
  kOkToInt,   // OK -> :1, nil -> :0 (SETNX)
  kJoinRoom,  // bulk code: also switch the session into that room (ROOM.NEW)
};

struct ServerSettings {
  uint64_t max_memory = 0;  // 0 = unlimited
  uint64_t max_rooms = 0;   // rooms ROOM.NEW may make; 0 = unlimited
  uint64_t max_clients = 0;
  uint64_t max_bulk = 0;
  uint64_t max_pattern_bytes = 8 << 10;   // longest glob pattern; 0 = no limit
  std::string requirepass;  // empty = no password
  std::string bind;
  int port = 0;
  int http_port = 0;
  std::string data_dir;
  bool fsync = true;
  // No password, bound to loopback and --trust-loopback yes: every client is
  // an admin (commands/access.h). Set by the server.
  bool open_admin = false;
  bool trust_loopback = true;
  int64_t auth_timeout_ms = 10000;  // an unauthenticated connection closes after this
  uint32_t auth_fail_limit = 10;    // failed passwords per second per address (0 = no limit)
  uint64_t auth_reserved_clients = 16;  // of max_clients, slots unauthenticated ones can't hold
};

// What a password check found.
enum class AuthCheck : uint8_t {
  kOk,
  kWrong,
  kLimited,  // too many failures from this address: not checked at all
};

// Which clients CLIENT LIST shows (its TYPE and ID filters).
struct ClientListFilter {
  enum class Type : uint8_t {
    kAll,
    kNormal,  // not subscribed to anything
    kPubSub,  // subscribed to a channel or pattern
    kNone,    // MASTER / REPLICA / SLAVE: there are none
  };
  Type type = Type::kAll;
  bool by_id = false;
  std::vector<uint64_t> ids;  // with by_id: these, in this order (unknown ones skipped)
};

class Context;

// The cluster as CLUSTER.* commands see it (server/cluster.h implements it).
class ClusterControl {
 public:
  virtual ~ClusterControl() = default;
  virtual void Info(protocol::ReplyWriter& reply) = 0;
  virtual void Nodes(protocol::ReplyWriter& reply) = 0;
  // Membership and leadership changes; the leader proposes them (a follower passes them on).
  virtual Status Remove(uint64_t id) = 0;
  virtual Status Leave() = 0;
  virtual Status Transfer(uint64_t id) = 0;
  virtual Status Join(std::string_view address) = 0;
};

// One slice of a long read; returns true when done, having written the
// reply (see Context::RunInSteps).
using Step = std::function<bool(Context& ctx, protocol::ReplyWriter& reply)>;

// The server as handlers see it.
class Context {
 public:
  virtual ~Context() = default;
  virtual const state::StateMachine& state() const = 0;
  virtual int64_t NowMs() const = 0;
  virtual const ServerSettings& settings() const = 0;
  // Memory counted against --max-memory: the state, writes in flight and
  // server-side buffers. O(1): Dispatch asks for every write.
  virtual uint64_t used_memory() const = 0;
  // Proposes `entry` (already encoded). The reply is written to the session's
  // connection when the entry applies, shaped by `shape`. An error means the
  // entry was not accepted (e.g. too large) and no reply will follow.
  virtual Status Propose(Session& session, std::string_view entry, ReplyShape shape) = 0;
  // The cluster, or nullptr on a node without one.
  virtual ClusterControl* cluster() { return nullptr; }
  // Checks a password against --requirepass, counting failures per address
  // (the session's peer). REQUIRES: a password is configured.
  virtual AuthCheck CheckPassword(const Session& session, std::string_view password) = 0;
  // A fresh unguessable room code (>= 96 bits from the OS CSPRNG).
  virtual std::string NewRoomCode() = 0;
  // INFO text for the named sections, case-insensitive (none = "default";
  // "all" and "everything" add the sections the default leaves out).
  virtual std::string Info(std::span<const std::string_view> sections) = 0;
  // CLIENT LIST lines (CLIENT INFO: filter by the caller's id), as seen by
  // `viewer`, one per client, each ending in "\n".
  virtual std::string ClientList(const Session& viewer, const ClientListFilter& filter) = 0;
  // MIRROR: writes the reply and starts pushing the room's changes.
  // REQUIRES: session.protocol == 3.
  virtual void Mirror(Session& session, std::string_view prefix, std::optional<uint64_t> from,
                      protocol::ReplyWriter& reply) = 0;
  // UNMIRROR: how many mirrors stopped.
  virtual size_t Unmirror(Session& session, std::optional<std::string_view> room) = 0;
  // ROOM.STATS, STATS and CLUSTER.STATS replies (see docs/protocol.md). In a cluster they
  // gather every member's figures: the session is blocked (as during a CALL) and the reply
  // written once all have answered or about a second has passed; on a single node at once.
  // REQUIRES: !session.blocked; for ClusterStats, cluster() != nullptr.
  virtual void RoomStats(Session& session, std::string_view code,
                         protocol::ReplyWriter& reply) = 0;
  virtual void SiteStats(Session& session, protocol::ReplyWriter& reply) = 0;
  virtual void ClusterStats(Session& session, protocol::ReplyWriter& reply) = 0;
  virtual Messaging& messaging() = 0;
  // A read too long for one loop iteration (KEYS over a big room): `step`
  // runs once per loop iteration, other clients being served in between,
  // until it returns true with the reply written. The session is blocked
  // meanwhile (as during a CALL); the handler writes no reply itself.
  // REQUIRES: !session.blocked.
  virtual void RunInSteps(Session& session, Step step) = 0;
};

struct Call {
  Context& ctx;
  Session& session;
  std::span<const std::string_view> args;  // args[0] is the command name
  protocol::ReplyWriter& reply;
  std::string& scratch;  // reusable buffer for encoding entries

  // Encodes and proposes one entry for the session's room (or `room`);
  // replies with the error at once if the log refuses it.
  void Propose(state::Op op, uint32_t flags, int64_t num, std::span<const std::string_view> op_args,
               ReplyShape shape = ReplyShape::kAsIs);
  void ProposeIn(std::string_view room, state::Op op, uint32_t flags, int64_t num,
                 std::span<const std::string_view> op_args, ReplyShape shape);
};

using Handler = void (*)(Call& call);

struct CommandSpec {
  const char* name;  // lower case
  int arity;
  uint32_t flags;
  int first_key, last_key, key_step;
  Handler handler;
  const char* summary;
};

class CommandTable {
 public:
  // The process-wide table, built on first use.
  static const CommandTable& Get();
  // Case-insensitive lookup; nullptr if unknown.
  const CommandSpec* Find(std::string_view name) const;
  const std::vector<CommandSpec>& all() const { return specs_; }

 private:
  CommandTable();
  std::vector<CommandSpec> specs_;
  std::unordered_map<std::string_view, const CommandSpec*> index_;  // lower-case name
};

// Runs one command: arity, auth and memory checks, then the handler. Returns
// whether the handler ran (false: refused with an error reply, as Redis
// counts in rejected_calls). REQUIRES: args non-empty. `spec` is
// CommandTable::Find(args[0]) (may be null).
bool Dispatch(const CommandSpec* spec, Call& call);

// Whether a write adding `adding` bytes must be refused with OOM: when used
// memory plus those bytes would pass --max-memory (0 = no limit).
bool OverMemoryLimit(const ServerSettings& settings, uint64_t used, uint64_t adding);
inline constexpr char kOomMessage[] = "command not allowed when used memory > 'maxmemory'.";
// For a write that grows the state by about `adding` bytes: true if that
// fits under --max-memory; else writes the OOM error and returns false.
// Dispatch calls it with a write's argument bytes; commands whose growth is
// not their arguments (SETRANGE's offset, COPY's value) call it again with it.
bool MemoryAllows(Call& call, uint64_t adding);

// Writes an applied entry's result as a reply.
void WriteApplyResult(const state::ApplyResult& result, ReplyShape shape, protocol::ReplyWriter& w);

// Families register their rows here (one *_commands.cc each).
void AddConnectionCommands(std::vector<CommandSpec>* out);
void AddStringCommands(std::vector<CommandSpec>* out);
void AddKeyCommands(std::vector<CommandSpec>* out);
void AddRoomCommands(std::vector<CommandSpec>* out);
void AddMirrorCommands(std::vector<CommandSpec>* out);
void AddClusterCommands(std::vector<CommandSpec>* out);
void AddMessagingCommands(std::vector<CommandSpec>* out);

// Shared argument helpers; each writes the Redis error and returns false.
bool ArgInt64(Call& call, std::string_view arg, int64_t* out);
void WrongArity(Call& call);
void SyntaxError(Call& call);
// Glob patterns (KEYS, SCAN MATCH, PSUBSCRIBE, PUBSUB CHANNELS, CONFIG GET)
// longer than --max-pattern-bytes are refused: matching cost and a compiled
// pattern's memory grow with the length (base/glob.h).
bool PatternOk(Call& call, std::string_view pattern);
// For "COMMAND [code]": the named room (args[1]) or the session's; false (with
// the error written) on too many arguments or an unknown room.
bool TargetRoom(Call& call, std::string_view* code);

}  // namespace distri::commands

#endif  // DISTRI_COMMANDS_COMMAND_H_
