// Unit tests for Connection's output queue (connection.h), run by CTest.
//
// A real loopback TCP pair: the server side is a Connection on a libuv loop,
// the peer a plain blocking socket that reads only when the test says so, so
// the queue fills, is written in several buffers, and drains in order. Checks
// that shared payloads are not copied, that the gauge follows the owned bytes,
// that Reset frees queued output at once and leaves the gauge, and that
// parked bytes count.

#include "net/connection.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <memory>
#include <string>

namespace distri::net {
namespace {

class Recorder : public Connection::Handler {
 public:
  void OnData() override {}
  void OnPeerClosed(bool) override {}
  void OnClosed() override { closed = true; }
  void OnDrained() override { drained++; }
  bool closed = false;
  int drained = 0;
};

class ConnectionTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_EQ(uv_loop_init(&loop_), 0);
    uv_tcp_init(&loop_, &listener_);
    listener_.data = this;
    sockaddr_in addr;
    uv_ip4_addr("127.0.0.1", 0, &addr);
    ASSERT_EQ(uv_tcp_bind(&listener_, reinterpret_cast<sockaddr*>(&addr), 0), 0);
    ASSERT_EQ(uv_listen(reinterpret_cast<uv_stream_t*>(&listener_), 4,
                        [](uv_stream_t* s, int status) {
                          auto* self = static_cast<ConnectionTest*>(s->data);
                          ASSERT_EQ(status, 0);
                          self->conn_ = std::make_unique<Connection>(&self->loop_, &self->handler_);
                          ASSERT_EQ(self->conn_->Accept(s), 0);
                        }),
              0);
    int len = sizeof addr;
    uv_tcp_getsockname(&listener_, reinterpret_cast<sockaddr*>(&addr), &len);
    peer_ = ::socket(AF_INET, SOCK_STREAM, 0);
    int small = 4096;  // the kernel holds little: the queue has to fill
    ::setsockopt(peer_, SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
    ASSERT_EQ(::connect(peer_, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
    while (conn_ == nullptr) uv_run(&loop_, UV_RUN_ONCE);
    conn_->set_gauge(&gauge_);
  }

  void TearDown() override {
    if (!conn_->closing()) conn_->Close();
    uv_close(reinterpret_cast<uv_handle_t*>(&listener_), nullptr);
    while (!handler_.closed) uv_run(&loop_, UV_RUN_ONCE);
    uv_run(&loop_, UV_RUN_NOWAIT);
    conn_.reset();
    EXPECT_EQ(gauge_.bytes, 0u);
    ::close(peer_);
    EXPECT_EQ(uv_loop_close(&loop_), 0);
  }

  // Reads exactly n bytes at the peer, turning the loop so writes go on.
  std::string ReadAtPeer(size_t n) {
    std::string got;
    char buf[65536];
    while (got.size() < n) {
      uv_run(&loop_, UV_RUN_NOWAIT);
      ssize_t r = ::recv(peer_, buf, std::min(sizeof buf, n - got.size()), MSG_DONTWAIT);
      if (r > 0) got.append(buf, static_cast<size_t>(r));
      if (r == 0) break;
    }
    return got;
  }

  uv_loop_t loop_;
  uv_tcp_t listener_;
  Recorder handler_;
  std::unique_ptr<Connection> conn_;
  OutputGauge gauge_;
  int peer_ = -1;
};

TEST_F(ConnectionTest, SmallRepliesGoOutAtOnce) {
  conn_->output() = "+OK\r\n";
  EXPECT_EQ(gauge_.bytes, 0u);  // counted when flushed, not on every append
  ASSERT_TRUE(conn_->Flush());
  EXPECT_EQ(conn_->pending_output(), 0u);
  EXPECT_EQ(handler_.drained, 1);
  EXPECT_EQ(ReadAtPeer(5), "+OK\r\n");
}

TEST_F(ConnectionTest, SharedPayloadQueuedInOrderWithoutACopy) {
  OutputGauge shared_gauge;
  auto payload = std::make_shared<SharedBytes>(std::string(8 << 20, 'p'));
  payload->CountIn(&shared_gauge);
  const std::string small(100000, 's');
  conn_->output() = "head";
  conn_->AppendShared(payload);
  conn_->output() += "mid";
  conn_->AppendShared(payload);
  conn_->output() += small;
  ASSERT_TRUE(conn_->Flush());
  const size_t total = 4 + 2 * payload->size() + 3 + small.size();
  EXPECT_GT(conn_->pending_output(), 0u);  // the peer does not read yet
  EXPECT_LE(conn_->pending_output(), total);
  // Only what the connection owns is in its gauge; the payload counts once.
  EXPECT_LE(gauge_.bytes, 4 + 3 + small.size());
  EXPECT_EQ(shared_gauge.bytes, payload->size());
  conn_->output() += "tail";  // appended while a write is in progress
  std::string got = ReadAtPeer(total + 4);
  EXPECT_EQ(got, "head" + std::string(payload->view()) + "mid" + std::string(payload->view()) +
                     small + "tail");
  uv_run(&loop_, UV_RUN_NOWAIT);
  conn_->Flush();
  EXPECT_EQ(conn_->pending_output(), 0u);
  EXPECT_EQ(gauge_.bytes, 0u);
  EXPECT_EQ(payload.use_count(), 1);  // the queue let go of it
  payload.reset();
  EXPECT_EQ(shared_gauge.bytes, 0u);
}

TEST_F(ConnectionTest, ResetFreesQueuedOutputAtOnce) {
  conn_->output() = std::string(16 << 20, 'x');
  ASSERT_TRUE(conn_->Flush());
  ASSERT_GT(gauge_.bytes, 0u);
  auto payload = std::make_shared<SharedBytes>(std::string(1 << 20, 'p'));
  conn_->AppendShared(payload);
  conn_->Reset();
  EXPECT_EQ(payload.use_count(), 1);  // dropped from the queue at once
  // What a write in progress still refers to is freed when libuv cancels it,
  // but is out of the gauge at once: the server must not cut off more
  // clients for bytes that are already on their way out.
  EXPECT_EQ(gauge_.bytes, 0u);
  conn_->set_gauge(&gauge_);  // a closing connection cannot be counted again
  conn_->SyncGauge();
  EXPECT_EQ(gauge_.bytes, 0u);
  while (!handler_.closed) uv_run(&loop_, UV_RUN_ONCE);
  EXPECT_EQ(gauge_.bytes, 0u);
}

TEST_F(ConnectionTest, ParkedBytesCountInTheGauge) {
  conn_->set_parked(1000);
  EXPECT_EQ(gauge_.bytes, 1000u);
  conn_->output() = "+OK\r\n";
  conn_->SyncGauge();
  EXPECT_EQ(gauge_.bytes, 1005u);
  ASSERT_TRUE(conn_->Flush());
  EXPECT_EQ(ReadAtPeer(5), "+OK\r\n");
  EXPECT_EQ(gauge_.bytes, 1000u);  // written; the parked bytes are still held
  conn_->set_parked(0);
  EXPECT_EQ(gauge_.bytes, 0u);
}

}  // namespace
}  // namespace distri::net
