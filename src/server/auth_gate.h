// AuthGate: what a client that has not authenticated may cost the server,
// when --requirepass is set (docs/architecture.md, "Security today").
//
//  * Small requests only: until AUTH succeeds the client's parser takes at
//    most 10 arguments of at most 16 KiB (protocol::kUnauthenticatedLimits);
//    Client switches to the ordinary limits once authenticated.
//  * Small replies only: its unsent output may hold at most
//    kUnauthenticatedOutputLimit bytes (Server::OutputLimitFor), so a peer
//    that pipelines commands without reading is cut off at once instead of
//    queueing NOAUTH replies by the megabyte.
//  * A deadline: a connection that has not authenticated within
//    --auth-timeout of connecting is closed, however it spends the time
//    (idle, or trickling a byte at a time, or never reading its replies:
//    the close does not wait for the output to be read).
//  * RESET takes an authenticated client back to this state, with a fresh
//    deadline (OnDeauthenticated), as Redis returns it to the default user.
//  * A share of the connection slots: unauthenticated connections may hold
//    at most max_clients - --auth-reserved-clients slots. A new connection
//    that finds them taken (or finds every slot taken while some are held by
//    unauthenticated connections) closes the oldest unauthenticated one
//    instead of being refused, so a peer holding idle connections cannot
//    lock out a client that authenticates promptly.
//  * Failed passwords are rate-limited per address (base::AuthLimiter),
//    shared with the HTTP port.
//
// Invariants:
//  1. unauthenticated_ == number of live clients with awaiting_auth set.
//  2. waiting_ holds (id, deadline) in the order clients started waiting
//     (accepted, or RESET), hence deadline order; an entry is live while its
//     client is awaiting_auth with that auth_deadline_ms. Stale entries (the
//     client authenticated, left, or waits again under a later entry) are
//     skipped when they reach the front, and dropped in bulk when they
//     outnumber the live ones (with --auth-timeout 0 nothing reaches the
//     front), so the length stays below 2 * unauthenticated_ + 1025.
//
// Thread-safety: loop thread only. Owned by the Server.

#ifndef DISTRI_SERVER_AUTH_GATE_H_
#define DISTRI_SERVER_AUTH_GATE_H_

#include <uv.h>

#include <cstdint>
#include <deque>
#include <string_view>
#include <utility>

#include "base/auth_limiter.h"
#include "commands/command.h"

namespace distri::server {

class Client;
class Server;

// The hard output limit of a client that has not authenticated: room for
// the replies to a handful of pipelined commands, no more.
inline constexpr uint64_t kUnauthenticatedOutputLimit = 64 * 1024;

class AuthGate {
 public:
  AuthGate(Server* server, uv_loop_t* loop);
  AuthGate(const AuthGate&) = delete;
  AuthGate& operator=(const AuthGate&) = delete;

  // A connection was accepted; `clients` is how many are registered. Returns
  // false (with the refusal written) if it must be closed instead.
  bool Admit(Client* client, size_t clients);
  // The client's AUTH succeeded.
  void OnAuthenticated(Client* client);
  // The authenticated client must authenticate again (RESET): it counts as
  // unauthenticated from now on, with a deadline --auth-timeout from now.
  // REQUIRES: a password is set and !client->awaiting_auth.
  void OnDeauthenticated(Client* client);
  void OnClosed(Client* client);
  // A password attempt from `peer`.
  commands::AuthCheck Check(std::string_view peer, std::string_view password);
  void Close();

  size_t unauthenticated() const { return unauthenticated_; }
  uint64_t timeouts() const { return timeouts_; }
  uint64_t evictions() const { return evictions_; }
  uint64_t auth_failures() const { return failures_; }
  uint64_t auth_refused() const { return limiter_.refused(); }

 private:
  static void OnTimer(uv_timer_t* handle);
  void Sweep();
  // Closes the oldest unauthenticated client; false if there is none.
  bool EvictOldest();
  // Starts the client's wait for AUTH (invariants 1 and 2).
  void StartWaiting(Client* client);
  // Writes `why` as an error, sends what the socket takes now and closes:
  // it does not wait for a peer that may never read.
  void Drop(Client* client, std::string_view why);
  // Whether the waiting_ entry (id, deadline) stands for a client that is
  // still waiting (invariant 2); that client, or nullptr.
  Client* Live(uint64_t id, int64_t deadline) const;

  Server* server_;
  uv_timer_t timer_;
  bool timer_running_ = false;
  base::AuthLimiter limiter_;
  std::deque<std::pair<uint64_t, int64_t>> waiting_;  // invariant 2
  size_t unauthenticated_ = 0;                        // invariant 1
  uint64_t timeouts_ = 0;
  uint64_t evictions_ = 0;
  uint64_t failures_ = 0;
};

}  // namespace distri::server

#endif  // DISTRI_SERVER_AUTH_GATE_H_
