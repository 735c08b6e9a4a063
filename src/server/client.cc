// Client command processing; see client.h for the ordering invariants.

#include "server/client.h"

#include "base/logging.h"
#include "server/server.h"

namespace distri::server {

namespace {
constexpr size_t kIdleInputKeep = 1 << 20;

protocol::RequestLimits LimitsFor(const commands::ServerSettings& s, bool authenticated) {
  if (!authenticated) return protocol::kUnauthenticatedLimits;  // see auth_gate.h
  protocol::RequestLimits limits;
  if (s.max_bulk != 0) limits.max_bulk_len = s.max_bulk;
  return limits;
}
}  // namespace

Client::Client(Server* server, uint64_t id)
    : server_(server),
      conn_(server->loop(), this),
      parser_(LimitsFor(server->settings(), server->settings().requirepass.empty())) {
  session_.id = id;
  session_.created_ms = server->NowMs();
  session_.authenticated = server->settings().requirepass.empty();
  conn_.set_gauge(&server->normal_output());
}

void Client::OnData() {
  if (conn_.input().readable() < need_bytes_) return;
  ProcessInput();
}

void Client::OnPeerClosed(bool eof) {
  if (!eof) {
    // A reset: replies owed to this client are dropped; its writes still
    // apply (they may already be durable).
    conn_.Close();
    return;
  }
  // A half-close: the peer sent everything it will send and may still read.
  // Run the complete commands it sent, reply, then close.
  peer_closed_ = true;
  ProcessInput();
}

void Client::OnClosed() {
  server_->OnClientClosed(this);
  delete this;
}

void Client::OnDrained() {
  over_soft_since_ms = 0;
  if (mirrors > 0) server_->WakePump();
}

void Client::Deliver(const MirrorEvent& event) {
  AppendMirrorFrame(event, &conn_.output());
  server_->MarkDirty(this);
  server_->CheckOutputLimit(this);
}

void Client::ProtocolError(const std::string& message) {
  server_->stats().protocol_errors++;
  std::string& out = pending_.empty() ? conn_.output() : pending_.back().trailing;
  const size_t before = out.size();
  protocol::ReplyWriter w(&out, session_.protocol);
  w.Error(message.rfind("Protocol error", 0) == 0 ? "ERR " + message
                                                  : "ERR Protocol error: " + message);
  if (!pending_.empty()) CountParked(static_cast<ptrdiff_t>(out.size() - before));
  LOG(DEBUG) << "client " << session_.id << " protocol error: " << message;
  if (awaiting_auth) {
    // Not after the peer has read everything: an unauthenticated peer that
    // never reads would keep its slot (see AuthGate::Drop). It has no
    // pending writes (it may not write).
    conn_.Flush();
    conn_.Close();
  } else if (pending_.empty()) {
    conn_.CloseAfterFlush();
  } else {
    conn_.PauseReading();  // closes once the pending replies are out
  }
  need_bytes_ = SIZE_MAX;
}

void Client::ProcessInput() {
  if (in_process_ || conn_.closing()) return;
  in_process_ = true;
  net::Buffer& in = conn_.input();
  const commands::CommandTable& table = commands::CommandTable::Get();
  bool waiting = false;  // a complete command waits for this client's pending writes
  while (!in.empty() && !barrier_ && !read_waiting_ && !session_.blocked &&
         !session_.close_after_reply &&
         need_bytes_ != SIZE_MAX && !conn_.closing()) {
    size_t consumed = 0;
    protocol::ParseResult r = parser_.Parse(in.view(), &consumed, &args_);
    if (r == protocol::ParseResult::kNeedMore) {
      need_bytes_ = parser_.needed_hint();
      break;
    }
    if (r == protocol::ParseResult::kError) {
      ProtocolError(parser_.error());
      break;
    }
    need_bytes_ = 0;
    if (args_.empty()) {
      in.Consume(consumed);
      continue;
    }
    const commands::CommandSpec* spec = table.Find(args_[0]);
    bool is_write = spec != nullptr && (spec->flags & commands::kWrite);
    if (!pending_.empty() && !is_write) {  // invariant 2: wait for our writes
      waiting = true;
      break;
    }
    // Invariant 4b: in a cluster a read runs only under a read point asked for after it
    // arrived (ReadIndex), unless the connection chose local reads.
    if (!is_write && spec != nullptr && (spec->flags & commands::kReadOnly) &&
        read_budget_ == 0 && server_->NeedsReadPoint(session_)) {
      if (!read_error_.empty()) {
        protocol::ReplyWriter(&conn_.output(), session_.protocol).Error(read_error_);
        read_error_.clear();
        in.Consume(consumed);
        server_->MarkDirty(this);
        continue;
      }
      read_waiting_ = true;
      read_asked_bytes_ = in.readable();
      server_->RequestReadBarrier(this);
      waiting = true;
      break;
    }

    size_t writes_before = pending_.size();
    std::string& out = pending_.empty() ? conn_.output() : deferred_out_;
    protocol::ReplyWriter writer(&out, session_.protocol);
    writer.set_limit(ReplyLimit(out));
    commands::Call call{*server_, session_, args_, writer, scratch_};
    last_command_ms_ = server_->NowMs();
    NoteCommand(spec);
    const bool ran = commands::Dispatch(spec, call);
    if (awaiting_auth == session_.authenticated) {  // AUTH or HELLO succeeded, or RESET
      if (session_.authenticated) {
        server_->auth_gate().OnAuthenticated(this);
      } else {
        server_->auth_gate().OnDeauthenticated(this);
      }
      parser_.set_limits(LimitsFor(server_->settings(), session_.authenticated));
    }
    server_->CountCommand(session_.room, spec ? spec->flags : 0);
    server_->CountCall(spec, ran);
    in.Consume(consumed);  // args_ pointed into the input until here
    read_budget_ = read_budget_ > consumed ? read_budget_ - consumed : 0;

    if (writer.overflowed()) {  // stopped building a reply past the output limit
      deferred_out_.clear();
      server_->DisconnectSlowConsumer(this, "a reply would pass the output limit");
      break;
    }
    if (!deferred_out_.empty()) {  // invariant 3: park it behind the last earlier write
      CHECK(writes_before > 0);
      pending_[writes_before - 1].trailing.append(deferred_out_);
      CountParked(static_cast<ptrdiff_t>(deferred_out_.size()));
      deferred_out_.clear();
      server_->MarkDirty(this);  // so the output limit and gauge see it this iteration
    }
    if (pending_.empty()) server_->MarkDirty(this);
  }
  if ((session_.close_after_reply || peer_closed_) && pending_.empty() && !barrier_ &&
      !read_waiting_ && !session_.blocked) {
    conn_.CloseAfterFlush();
  } else if (!peer_closed_ && need_bytes_ != SIZE_MAX) {
    // Read more only if it can be used now: not while a large backlog of
    // whole commands waits for this client's own writes, a ROOM.NEW or a
    // blocking call (a partial command always needs more). Each of those ends
    // without this client reading, so pausing cannot deadlock; unsent replies
    // never pause reading (a client may write its whole pipeline before it
    // reads, see client.h). A small backlog keeps reading on, which saves
    // pausing and resuming the socket around every blocking call.
    bool backlog = (waiting || barrier_ || read_waiting_ || session_.blocked) &&
                   in.readable() > kIdleInputKeep;
    if (backlog) {
      conn_.PauseReading();
    } else {
      conn_.ResumeReading();
    }
  }
  in.ShrinkIfIdle(kIdleInputKeep);
  in_process_ = false;
}

// CLIENT LIST's cmd=: the name, and for commands with subcommands the
// subcommand too, as Redis 7 shows them ("client|list"). Only a plausible
// subcommand name is kept, so the field stays one short token.
void Client::NoteCommand(const commands::CommandSpec* spec) {
  last_command_.assign(spec ? spec->name : "unknown");
  if (spec == nullptr || !(spec->flags & commands::kSubcommands) || args_.size() < 2) return;
  std::string_view sub = args_[1];
  if (sub.empty() || sub.size() > 16) return;
  std::string label = "|";
  for (char c : sub) {
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '-')) return;
    label.push_back(static_cast<char>(c | 0x20));  // ASCII letters to lower case; '-' stays
  }
  last_command_.append(label);
}

size_t Client::argv_bytes() const {
  if (!in_process_) return 0;
  size_t n = 0;
  for (std::string_view a : args_) n += a.size();
  return n;
}

size_t Client::ReplyLimit(const std::string& out) {
  const uint64_t hard = server_->OutputLimitFor(this).hard;
  if (hard == 0) return SIZE_MAX;
  // What is queued or parked besides `out` counts against the same limit.
  const size_t elsewhere = unsent_output() - (&out == &conn_.output() ? out.size() : 0);
  return hard > elsewhere ? hard - elsewhere : 0;
}

void Client::CountParked(ptrdiff_t bytes) {
  trailing_bytes_ = static_cast<size_t>(static_cast<ptrdiff_t>(trailing_bytes_) + bytes);
  conn_.set_parked(trailing_bytes_);
}

bool Client::HasPendingWrite(uint64_t proposal) const {
  for (const PendingWrite& p : pending_) {
    if (p.index == proposal) return true;
  }
  return false;
}

void Client::GrantRead() {
  if (!read_waiting_) return;
  read_waiting_ = false;
  read_budget_ = read_asked_bytes_;
}

void Client::FailRead(std::string error) {
  if (!read_waiting_) return;
  read_waiting_ = false;
  read_error_ = std::move(error);
}

void Client::AddPendingWrite(uint64_t index, commands::ReplyShape shape) {
  pending_.push_back({index, shape, {}, uv_hrtime()});
  if (shape == commands::ReplyShape::kJoinRoom) barrier_ = true;  // invariant 4
}

bool Client::CompletePendingWrite(const state::ApplyResult& result) {
  CHECK(!pending_.empty());
  PendingWrite& p = pending_.front();
  protocol::ReplyWriter w(&conn_.output(), session_.protocol);
  commands::WriteApplyResult(result, p.shape, w);
  if (p.shape == commands::ReplyShape::kJoinRoom) {
    if (result.kind == state::ApplyResult::Kind::kBulk) session_.room = result.text;
    barrier_ = false;
  }
  conn_.output().append(p.trailing);  // queued now, no longer parked
  CountParked(-static_cast<ptrdiff_t>(p.trailing.size()));
  server_->write_latency().Observe(static_cast<double>(uv_hrtime() - p.proposed_ns) / 1e9);
  pending_.pop_front();
  server_->MarkDirty(this);
  if (!pending_.empty()) return false;
  if (need_bytes_ == SIZE_MAX || session_.close_after_reply) {
    conn_.CloseAfterFlush();  // a protocol error or QUIT was waiting on these replies
    return false;
  }
  return true;  // run buffered commands, and read again if reading was paused
}

}  // namespace distri::server
