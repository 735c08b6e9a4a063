// Connection I/O on libuv; see connection.h.

#include "net/connection.h"

#include <arpa/inet.h>

#include <algorithm>

#include "base/logging.h"

namespace distri::net {

namespace {

constexpr size_t kReadChunk = 64 * 1024;


// Buffers per write call: fewer than IOV_MAX, enough that a queue of large
// chunks goes out in one system call.
constexpr size_t kMaxBufs = 64;
// uv_buf_t lengths are unsigned int: hand the socket at most this per buffer.
constexpr size_t kMaxBufLen = size_t{1} << 30;
// Smaller open buffers are copied onto the last sealed chunk, not moved, so
// a backed-up connection does not collect one tiny chunk per loop iteration.
constexpr size_t kCoalesceBelow = 4096;

uv_buf_t BufOf(std::string_view v) {
  return uv_buf_init(const_cast<char*>(v.data()),
                     static_cast<unsigned>(std::min(v.size(), kMaxBufLen)));
}

}  // namespace

std::string FormatAddress(const sockaddr_storage& addr) {
  char host[INET6_ADDRSTRLEN] = "?";
  int port = 0;
  if (addr.ss_family == AF_INET) {
    const auto* a = reinterpret_cast<const sockaddr_in*>(&addr);
    uv_ip4_name(a, host, sizeof host);
    port = ntohs(a->sin_port);
  } else if (addr.ss_family == AF_INET6) {
    const auto* a = reinterpret_cast<const sockaddr_in6*>(&addr);
    uv_ip6_name(a, host, sizeof host);
    port = ntohs(a->sin6_port);
  }
  return std::string(host) + ":" + std::to_string(port);
}

Connection::Connection(uv_loop_t* loop, Handler* handler) : handler_(handler) {
  uv_tcp_init(loop, &tcp_);
  tcp_.data = this;
  write_req_.data = this;
}

Connection::~Connection() {
  if (gauge_ != nullptr) gauge_->bytes -= counted_;
}

int Connection::Accept(uv_stream_t* server) {
  int rc = uv_accept(server, reinterpret_cast<uv_stream_t*>(&tcp_));
  if (rc != 0) return rc;
  uv_tcp_nodelay(&tcp_, 1);
  ResumeReading();
  return 0;
}

std::string Connection::PeerAddress() const {
  sockaddr_storage addr;
  int len = sizeof addr;
  if (uv_tcp_getpeername(&tcp_, reinterpret_cast<sockaddr*>(&addr), &len) != 0) return "?";
  return FormatAddress(addr);
}

std::string Connection::LocalAddress() const {
  sockaddr_storage addr;
  int len = sizeof addr;
  if (uv_tcp_getsockname(&tcp_, reinterpret_cast<sockaddr*>(&addr), &len) != 0) return "?";
  return FormatAddress(addr);
}

int Connection::fd() const {
  uv_os_fd_t fd;
  int rc = uv_fileno(reinterpret_cast<const uv_handle_t*>(&tcp_), &fd);
  return rc == 0 ? static_cast<int>(fd) : -1;
}

void Connection::AllocCb(uv_handle_t* h, size_t, uv_buf_t* buf) {
  auto* self = static_cast<Connection*>(h->data);
  buf->base = self->input_.Reserve(kReadChunk);
  buf->len = kReadChunk;
}

void Connection::ReadCb(uv_stream_t* s, ssize_t nread, const uv_buf_t*) {
  auto* self = static_cast<Connection*>(s->data);
  if (nread > 0) {
    self->input_.Commit(static_cast<size_t>(nread));
    self->handler_->OnData();
  } else if (nread < 0) {
    self->PauseReading();
    self->handler_->OnPeerClosed(nread == UV_EOF);
  }
}

void Connection::set_gauge(OutputGauge* gauge) {
  if (closing_) gauge = nullptr;
  if (gauge == gauge_) return;
  if (gauge_ != nullptr) gauge_->bytes -= counted_;
  counted_ = 0;
  gauge_ = gauge;
  SyncGauge();
}

void Connection::SyncGauge() {
  if (gauge_ == nullptr) return;
  const size_t owned = output_.size() + queued_owned_ + parked_;
  gauge_->bytes = gauge_->bytes - counted_ + owned;
  counted_ = owned;
}

void Connection::set_parked(size_t bytes) {
  parked_ = bytes;
  SyncGauge();
}

void Connection::Seal() {
  if (output_.empty()) return;
  queued_bytes_ += output_.size();
  queued_owned_ += output_.size();
  if (output_.size() < kCoalesceBelow && queue_.size() > in_flight_chunks_ &&
      !queue_.back().shared) {
    queue_.back().owned.append(output_);  // not referred to by a write in progress
    output_.clear();
    return;
  }
  queue_.push_back(Chunk{std::move(output_), nullptr, 0});
  output_.clear();  // a moved-from string is valid but unspecified
}

void Connection::AppendShared(std::shared_ptr<const SharedBytes> bytes) {
  if (bytes == nullptr || bytes->size() == 0 || closing_) return;
  Seal();
  queued_bytes_ += bytes->size();
  queue_.push_back(Chunk{{}, std::move(bytes), 0});
}

void Connection::ConsumeQueued(size_t n) {
  while (n > 0) {
    Chunk& c = queue_.front();
    const size_t left = c.view().size();
    const size_t take = std::min(n, left);
    queued_bytes_ -= take;
    if (!c.shared) queued_owned_ -= take;
    n -= take;
    if (take == left) {
      queue_.pop_front();
    } else {
      c.offset += take;
    }
  }
}

unsigned Connection::GatherQueue(uv_buf_t* bufs, size_t* total) const {
  unsigned count = 0;
  *total = 0;
  for (const Chunk& c : queue_) {
    if (count == kMaxBufs) break;
    bufs[count] = BufOf(c.view());
    *total += bufs[count++].len;
    if (c.view().size() > kMaxBufLen) break;  // the rest of it must go first
  }
  return count;
}

int Connection::TryWriteQueue() {
  while (!queue_.empty()) {
    uv_buf_t bufs[kMaxBufs];
    size_t total = 0;
    const unsigned count = GatherQueue(bufs, &total);
    int n = uv_try_write(reinterpret_cast<uv_stream_t*>(&tcp_), bufs, count);
    if (n == UV_EAGAIN) return 0;
    if (n < 0) return n;
    ConsumeQueued(static_cast<size_t>(n));
    if (static_cast<size_t>(n) < total) return 0;  // the socket is full
  }
  return 0;
}

int Connection::StartWrite() {
  uv_buf_t bufs[kMaxBufs];
  size_t total = 0;
  const unsigned count = GatherQueue(bufs, &total);
  writing_ = true;
  in_flight_chunks_ = count;
  in_flight_bytes_ = total;
  int rc = uv_write(&write_req_, reinterpret_cast<uv_stream_t*>(&tcp_), bufs, count, WriteCb);
  if (rc != 0) {
    writing_ = false;
    in_flight_chunks_ = 0;
    in_flight_bytes_ = 0;
  }
  return rc;
}

bool Connection::Drained() {
  if (close_after_flush_) {
    Close();
    return false;
  }
  handler_->OnDrained();
  return !closing_;
}

bool Connection::Flush() {
  if (closing_) return false;
  if (writing_) return true;  // WriteCb carries on
  if (queue_.empty()) {
    if (output_.empty()) {
      if (close_after_flush_) Close();
      return !closing_;
    }
    // The hot path: one contiguous buffer, usually taken whole.
    uv_buf_t buf = BufOf(output_);
    int n = uv_try_write(reinterpret_cast<uv_stream_t*>(&tcp_), &buf, 1);
    if (n == UV_EAGAIN) n = 0;
    if (n < 0) {
      Close();
      return false;
    }
    if (static_cast<size_t>(n) == output_.size()) {
      output_.clear();
      if (output_.capacity() > (1 << 20)) std::string().swap(output_);
      SyncGauge();
      return Drained();
    }
    Seal();  // keeps the bytes where they are: no copy of the rest
    ConsumeQueued(static_cast<size_t>(n));
  } else {
    Seal();
    if (TryWriteQueue() < 0) {
      Close();
      return false;
    }
    if (queue_.empty()) {
      SyncGauge();
      return Drained();
    }
  }
  // The socket took part of it: hand the rest to libuv and wait.
  if (StartWrite() != 0) {
    Close();
    return false;
  }
  SyncGauge();
  return true;
}

void Connection::WriteCb(uv_write_t* req, int status) {
  auto* self = static_cast<Connection*>(req->data);
  self->writing_ = false;
  const size_t written = self->in_flight_bytes_;
  self->in_flight_chunks_ = 0;
  self->in_flight_bytes_ = 0;
  if (status < 0) {
    self->Close();  // also frees the queue, now that no write refers to it
    self->DiscardOutput();
    return;
  }
  self->ConsumeQueued(written);
  if (self->queue_.empty() && self->output_.empty()) {
    self->SyncGauge();
    self->Drained();
    return;
  }
  self->Flush();
}

void Connection::DiscardOutput() {
  std::string().swap(output_);
  const size_t keep = writing_ ? in_flight_chunks_ : 0;  // an uv_write still reads these
  while (queue_.size() > keep) {
    const Chunk& c = queue_.back();
    const size_t left = c.view().size();
    queued_bytes_ -= left;
    if (!c.shared) queued_owned_ -= left;
    queue_.pop_back();
  }
  SyncGauge();
}

void Connection::PauseReading() {
  if (reading_ && !closing_) {
    uv_read_stop(reinterpret_cast<uv_stream_t*>(&tcp_));
    reading_ = false;
  }
}

void Connection::ResumeReading() {
  if (!reading_ && !closing_) {
    uv_read_start(reinterpret_cast<uv_stream_t*>(&tcp_), AllocCb, ReadCb);
    reading_ = true;
  }
}

void Connection::CloseAfterFlush() {
  close_after_flush_ = true;
  PauseReading();
  Flush();
}

void Connection::Close() {
  if (closing_) return;
  closing_ = true;
  reading_ = false;
  DiscardOutput();
  set_gauge(nullptr);  // see the file comment in connection.h
  uv_close(reinterpret_cast<uv_handle_t*>(&tcp_), CloseCb);
}

void Connection::Reset() {
  if (closing_) return;
  closing_ = true;
  reading_ = false;
  DiscardOutput();  // free it now, not when libuv gets round to closing
  set_gauge(nullptr);
  if (uv_tcp_close_reset(&tcp_, CloseCb) != 0) {
    uv_close(reinterpret_cast<uv_handle_t*>(&tcp_), CloseCb);
  }
}

void Connection::CloseCb(uv_handle_t* h) {
  auto* self = static_cast<Connection*>(h->data);
  self->handler_->OnClosed();
}

}  // namespace distri::net
