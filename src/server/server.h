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
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "commands/command.h"
#include "log/local_log.h"
#include "state/state_machine.h"

namespace distri::server {

class Client;

struct ServerOptions {
  commands::ServerSettings settings;
  uint64_t snapshot_bytes = 64ull << 20;  // snapshot once this much log is written
  uint64_t segment_bytes = 64ull << 20;
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
  uint64_t used_memory() const override { return used_memory_; }
  Status Propose(commands::Session& session, std::string_view entry,
                 commands::ReplyShape shape) override;
  std::string NewRoomCode() override;
  std::string Info(std::string_view section) override;
  std::string ClientList(const commands::Session* only) override;

  // Called by clients.
  void MarkDirty(Client* client);
  void OnClientClosed(Client* client);
  ServerStats& stats() { return stats_; }
  uv_loop_t* loop() { return &loop_; }

 private:
  struct PendingEntry {
    uint64_t index;
    uint64_t client_id;  // 0: no client waits (expiry entries)
  };

  static void OnConnection(uv_stream_t* server, int status);
  static void OnCheck(uv_check_t* handle);
  static void OnLogWakeup(uv_async_t* handle);
  static void OnExpireTimer(uv_timer_t* handle);
  static void OnSignal(uv_signal_t* handle, int signum);

  void ApplyCommitted();
  void OnCommit(uint64_t index, std::string_view entry);
  void OnLogFailure(uint64_t first_index, const Status& why);
  void ExpireCycle();
  void MaybeSnapshot();
  void FlushClients();
  void AppendInfoSection(std::string_view name, std::string* out);

  ServerOptions options_;
  uv_loop_t loop_;
  uv_tcp_t listener_;
  uv_check_t check_;
  uv_async_t log_async_;
  uv_timer_t expire_timer_;
  uv_signal_t sigint_, sigterm_;
  bool loop_ready_ = false;

  state::StateMachine state_;
  std::unique_ptr<log::LocalLog> log_;
  std::deque<PendingEntry> pending_;  // in index order
  bool expiry_in_flight_ = false;
  uint64_t expiry_index_ = 0;

  std::unordered_map<uint64_t, Client*> clients_;
  std::vector<Client*> dirty_;
  std::vector<Client*> resumable_;
  uint64_t next_client_id_ = 1;
  uint64_t used_memory_ = 0;
  int64_t started_ms_ = 0;
  ServerStats stats_;
};

}  // namespace distri::server

#endif  // DISTRI_SERVER_SERVER_H_
