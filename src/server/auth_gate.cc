// Limits on unauthenticated clients; see auth_gate.h.

#include "server/auth_gate.h"

#include "base/logging.h"
#include "commands/access.h"
#include "server/client.h"
#include "server/server.h"

namespace distri::server {

namespace {
constexpr uint64_t kSweepIntervalMs = 100;
}  // namespace

AuthGate::AuthGate(Server* server, uv_loop_t* loop)
    : server_(server), limiter_(server->settings().auth_fail_limit) {
  uv_timer_init(loop, &timer_);
  timer_.data = this;
}

void AuthGate::Close() {
  uv_timer_stop(&timer_);
  if (!uv_is_closing(reinterpret_cast<uv_handle_t*>(&timer_))) {
    uv_close(reinterpret_cast<uv_handle_t*>(&timer_), nullptr);
  }
}

bool AuthGate::Admit(Client* client, size_t clients) {
  const commands::ServerSettings& s = server_->settings();
  const uint64_t max = s.max_clients;
  bool full = max != 0 && clients >= max;
  if (!s.requirepass.empty()) {
    const uint64_t unauth_cap =
        max == 0 ? UINT64_MAX : max - std::min(s.auth_reserved_clients, max - 1);
    if ((full || unauthenticated_ >= unauth_cap) && EvictOldest()) full = false;
  }
  if (full) {
    client->conn().output() = "-ERR max number of clients reached\r\n";
    return false;
  }
  if (!s.requirepass.empty()) StartWaiting(client);
  return true;
}

void AuthGate::StartWaiting(Client* client) {
  const commands::ServerSettings& s = server_->settings();
  client->awaiting_auth = true;
  client->auth_deadline_ms = server_->NowMs() + s.auth_timeout_ms;
  unauthenticated_++;
  // Entries of clients that authenticated or left stay until they reach the
  // front; without a timeout nothing pops them, so drop them here once they
  // outnumber the live ones (amortised O(1), order kept).
  if (waiting_.size() > 2 * unauthenticated_ + 1024) {
    std::erase_if(waiting_, [&](const auto& w) { return Live(w.first, w.second) == nullptr; });
  }
  waiting_.emplace_back(client->session().id, client->auth_deadline_ms);
  if (!timer_running_ && s.auth_timeout_ms > 0) {
    uv_timer_start(&timer_, OnTimer, kSweepIntervalMs, kSweepIntervalMs);
    timer_running_ = true;
  }
}

void AuthGate::OnDeauthenticated(Client* client) {
  CHECK(!server_->settings().requirepass.empty() && !client->awaiting_auth);
  StartWaiting(client);
}

void AuthGate::OnAuthenticated(Client* client) {
  if (!client->awaiting_auth) return;
  client->awaiting_auth = false;
  unauthenticated_--;
}

void AuthGate::OnClosed(Client* client) { OnAuthenticated(client); }

commands::AuthCheck AuthGate::Check(std::string_view peer, std::string_view password) {
  const int64_t now = server_->NowMs();
  if (!limiter_.Allowed(peer, now)) {
    limiter_.CountRefused();
    return commands::AuthCheck::kLimited;
  }
  if (commands::PasswordEquals(password, server_->settings().requirepass)) {
    return commands::AuthCheck::kOk;
  }
  failures_++;
  limiter_.RecordFailure(peer, now);
  return commands::AuthCheck::kWrong;
}

Client* AuthGate::Live(uint64_t id, int64_t deadline) const {
  Client* c = server_->FindClient(id);
  if (c == nullptr || !c->awaiting_auth || c->auth_deadline_ms != deadline ||
      c->conn().closing()) {
    return nullptr;
  }
  return c;
}

void AuthGate::Drop(Client* client, std::string_view why) {
  OnAuthenticated(client);  // no longer counts as waiting
  // Close now, not after the peer has read everything: a peer that never
  // reads would otherwise keep its slot and its queued output for ever (and,
  // no longer waiting, could not be evicted). The error reaches a peer that
  // reads; Close() discards what the socket did not take.
  net::Connection& conn = client->conn();
  conn.output().append("-ERR ").append(why).append("\r\n");
  conn.Flush();
  conn.Close();
}

bool AuthGate::EvictOldest() {
  while (!waiting_.empty()) {
    auto [id, deadline] = waiting_.front();
    Client* c = Live(id, deadline);
    waiting_.pop_front();
    if (c == nullptr) continue;
    evictions_++;
    LOG(DEBUG) << "closing unauthenticated client " << c->session().id << " to make room";
    Drop(c, "too many unauthenticated connections; this one was the oldest");
    return true;
  }
  return false;
}

void AuthGate::OnTimer(uv_timer_t* handle) { static_cast<AuthGate*>(handle->data)->Sweep(); }

void AuthGate::Sweep() {
  const int64_t now = server_->NowMs();
  while (!waiting_.empty()) {
    auto [id, deadline] = waiting_.front();
    if (Client* c = Live(id, deadline); c != nullptr) {
      if (deadline > now) break;  // invariant 2: the rest are later
      timeouts_++;
      Drop(c, "authentication timeout");
    }
    waiting_.pop_front();
  }
  if (waiting_.empty()) {
    uv_timer_stop(&timer_);
    timer_running_ = false;
  }
}

}  // namespace distri::server
