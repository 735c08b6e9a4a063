// Client: one connected client — its session, parser, and the ordering rules
// that keep replies in request order while writes wait for the log.
//
// Ordering (invariants):
//  1. Replies go out in the order the commands arrived.
//  2. A command that is not a write runs only when no earlier write of this
//     client is still waiting to apply, so a client always reads its own
//     writes. Writes keep flowing (pipelined SETs share one group commit).
//  3. A write command that answers at once (a syntax error) while earlier
//     writes wait has its reply parked behind the last waiting write.
//  4. ROOM.NEW is a barrier: nothing after it runs until it applies, because
//     it changes the room every later command addresses.
//  4b. In a cluster (unless CLIENT READMODE local) a read runs only under a
//     read point asked for after it arrived: the client asks the server for a
//     ReadIndex and waits until this node has applied up to it; every read
//     that was buffered when it asked may then run (read_budget_ counts those
//     bytes), so a pipeline of reads costs one round, not one per read.
//
// Backpressure:
//  5. Unsent replies never stop this client's commands or reads: a client may
//     write its whole pipeline before it reads a reply (redis-py's pipeline
//     does), and pausing then would deadlock both sides. Memory is bounded
//     instead by the output limit of the client's class (--output-limit,
//     default 256 MiB hard; --push-output-limit for push clients), enforced
//     while a reply is built (ReplyWriter::set_limit), so one command cannot
//     build a reply past it: a client that passes it is reset, logged and
//     counted. Unsent output also counts in used memory (--max-memory).
//     Replies parked behind pending writes (invariant 3) are unsent output
//     too: counted in trailing_bytes_, the limit and the output gauge.
//  6. The socket is not read while a large backlog (kIdleInputKeep) of whole
//     commands waits for this client's own pending writes, a ROOM.NEW or a
//     blocking call: each of those finishes without this client reading.
//
// Thread-safety: loop thread only. Owned by the Server; deletes itself when
// its connection has closed.

#ifndef DISTRI_SERVER_CLIENT_H_
#define DISTRI_SERVER_CLIENT_H_

#include <cstdint>
#include <deque>
#include <string>
#include <vector>

#include "commands/command.h"
#include "net/connection.h"
#include "protocol/resp_parser.h"
#include "server/mirror.h"

namespace distri::server {

class Server;

class Client final : public net::Connection::Handler, public MirrorSink {
 public:
  Client(Server* server, uint64_t id);
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  net::Connection& conn() { return conn_; }
  commands::Session& session() { return session_; }

  // Parses and runs as many buffered commands as the ordering rules allow.
  void ProcessInput();
  // A write this client proposed (its proposal id; server.h PendingEntry).
  void AddPendingWrite(uint64_t proposal, commands::ReplyShape shape);
  bool HasPendingWrite(uint64_t proposal) const;
  // The oldest pending write's proposal id. REQUIRES: pending_writes() > 0.
  uint64_t front_pending_write() const { return pending_.front().index; }
  // Linearizable reads (cluster): the read point this client asked for is applied, so the
  // reads it had received by then may run; or none could be had (`error`, e.g. no quorum).
  void GrantRead();
  void FailRead(std::string error);
  // The oldest pending write applied (or failed): write its reply.
  // Returns true if the client may now run more buffered commands.
  bool CompletePendingWrite(const state::ApplyResult& result);
  size_t pending_writes() const { return pending_.size(); }
  // Unsent output: the connection's queue and the replies parked behind
  // pending writes. What the output limits are checked against.
  size_t unsent_output() const { return conn_.pending_output() + trailing_bytes_; }
  int64_t last_command_ms() const { return last_command_ms_; }
  std::string_view last_command() const { return last_command_; }
  // Bytes of the arguments of the command running now (0 between commands).
  size_t argv_bytes() const;
  bool dirty = false;
  size_t mirrors = 0;             // live mirrors this client holds
  bool serving = false;           // has been a service worker
  bool awaiting_auth = false;     // counted by the AuthGate until AUTH succeeds
  int64_t auth_deadline_ms = 0;   // while awaiting_auth: when the AuthGate closes it
  // Clients fed by the server's initiative (mirrors, subscriptions, requests)
  // fall under the push output limit.
  bool is_push_client() const { return mirrors > 0 || session_.subscriptions > 0 || serving; }
  int64_t over_soft_since_ms = 0; // when unsent output first passed the soft limit

  // The most bytes `out` may hold before this client passes its hard output
  // limit (SIZE_MAX: no limit). `out` is conn_.output() or deferred_out_.
  size_t ReplyLimit(const std::string& out);

  // net::Connection::Handler
  void OnData() override;
  void OnPeerClosed(bool eof) override;
  void OnClosed() override;
  void OnDrained() override;

  // MirrorSink: events become RESP3 push frames on this connection.
  void Deliver(const MirrorEvent& event) override;
  size_t unsent_bytes() const override { return conn_.pending_output(); }
  bool sink_closed() const override { return conn_.closing(); }

 private:
  struct PendingWrite {
    uint64_t index;
    commands::ReplyShape shape;
    std::string trailing;  // replies of later commands that must follow this one
    uint64_t proposed_ns;  // uv_hrtime() at proposal, for the write latency histogram
  };

  // `bytes` more (or fewer) replies are parked in pending_'s `trailing`.
  void CountParked(ptrdiff_t bytes);

  void ProtocolError(const std::string& message);
  void NoteCommand(const commands::CommandSpec* spec);
  Server* server_;
  net::Connection conn_;
  commands::Session session_;
  protocol::RequestParser parser_;
  std::vector<std::string_view> args_;
  std::string scratch_;
  std::string deferred_out_;  // replies written while writes are pending
  std::deque<PendingWrite> pending_;
  size_t trailing_bytes_ = 0; // sum of pending_[i].trailing.size()
  size_t need_bytes_ = 0;     // parser's hint: don't re-parse before this much input
  bool barrier_ = false;      // a ROOM.NEW is pending
  bool read_waiting_ = false; // waiting for a read point (Server::RequestReadBarrier)
  size_t read_asked_bytes_ = 0;  // input buffered when the read point was asked for
  size_t read_budget_ = 0;    // input bytes (from the front) whose reads the point covers
  std::string read_error_;    // the next read gets this error instead of running
  bool in_process_ = false;
  bool peer_closed_ = false;  // EOF seen: finish what was sent, then close
  int64_t last_command_ms_ = 0;
  std::string last_command_;
};

}  // namespace distri::server

#endif  // DISTRI_SERVER_CLIENT_H_
