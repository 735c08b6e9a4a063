// Connection I/O on libuv; see connection.h.

#include "net/connection.h"

#include <arpa/inet.h>

#include "base/logging.h"

namespace distri::net {

namespace {

constexpr size_t kReadChunk = 64 * 1024;

// "ip:port" of a socket address, "?" when unknown.
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

}  // namespace

Connection::Connection(uv_loop_t* loop, Handler* handler) : handler_(handler) {
  uv_tcp_init(loop, &tcp_);
  tcp_.data = this;
  write_req_.data = this;
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

bool Connection::Flush() {
  if (closing_) return false;
  if (writing_ || output_.empty()) {
    if (!writing_ && close_after_flush_) Close();
    return !closing_;
  }
  uv_buf_t buf = uv_buf_init(output_.data(), static_cast<unsigned>(output_.size()));
  int n = uv_try_write(reinterpret_cast<uv_stream_t*>(&tcp_), &buf, 1);
  if (n == UV_EAGAIN) n = 0;
  if (n < 0) {
    Close();
    return false;
  }
  if (static_cast<size_t>(n) == output_.size()) {
    output_.clear();
    if (output_.capacity() > (1 << 20)) std::string().swap(output_);
    if (close_after_flush_) {
      Close();
      return false;
    }
    handler_->OnDrained();
    return !closing_;
  }
  // The socket took part of it: hand the rest to libuv and wait.
  in_flight_.assign(output_, n, std::string::npos);
  output_.clear();
  writing_ = true;
  buf = uv_buf_init(in_flight_.data(), static_cast<unsigned>(in_flight_.size()));
  int rc = uv_write(&write_req_, reinterpret_cast<uv_stream_t*>(&tcp_), &buf, 1, WriteCb);
  if (rc != 0) {
    writing_ = false;
    Close();
    return false;
  }
  return true;
}

void Connection::WriteCb(uv_write_t* req, int status) {
  auto* self = static_cast<Connection*>(req->data);
  self->writing_ = false;
  self->in_flight_.clear();
  if (status < 0) {
    self->Close();
    return;
  }
  if (self->output_.empty()) {
    if (self->close_after_flush_) {
      self->Close();
    } else {
      self->handler_->OnDrained();
    }
    return;
  }
  self->Flush();
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
  uv_close(reinterpret_cast<uv_handle_t*>(&tcp_), CloseCb);
}

void Connection::Reset() {
  if (closing_) return;
  closing_ = true;
  reading_ = false;
  if (uv_tcp_close_reset(&tcp_, CloseCb) != 0) {
    uv_close(reinterpret_cast<uv_handle_t*>(&tcp_), CloseCb);
  }
}

void Connection::CloseCb(uv_handle_t* h) {
  auto* self = static_cast<Connection*>(h->data);
  self->handler_->OnClosed();
}

}  // namespace distri::net
