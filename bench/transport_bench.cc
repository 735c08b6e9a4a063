// transport_bench: throughput and round-trip time of the cluster transport
// (src/cluster/transport.h) between two nodes over loopback TCP, each node a
// Transport on its own libuv loop in its own thread (as two processes would
// be, minus the process boundary). Authenticated frames, real sockets.
//
//   transport_bench [seconds per case, default 2]
//
// Streams: node 1 keeps up to 8 MiB queued to node 2 and counts what node 2
// receives in the time. Ping-pong: one frame in flight, node 2 echoes it.
// Results: docs/benchmarks.md.

#include <uv.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "cluster/handshake.h"
#include "cluster/transport.h"

namespace {

using distri::cluster::ClusterSecret;
using distri::cluster::Transport;
using distri::cluster::TransportHandler;
using distri::cluster::TransportOptions;
using Clock = std::chrono::steady_clock;

constexpr uint64_t kQueueTarget = 8 << 20;

struct Node : TransportHandler {
  uv_loop_t loop;
  std::unique_ptr<Transport> transport;
  std::atomic<bool> up{false};
  std::atomic<uint64_t> frames{0};
  std::atomic<uint64_t> bytes{0};
  bool echo = false;
  uint64_t other = 0;
  std::function<void()> on_frame;
  void OnLinkUp(uint64_t, uint64_t) override { up = true; }
  void OnLinkDown(uint64_t) override { up = false; }
  void OnFrame(uint64_t peer, uint8_t type, std::string_view payload) override {
    frames.fetch_add(1, std::memory_order_relaxed);
    bytes.fetch_add(payload.size(), std::memory_order_relaxed);
    if (echo) transport->Send(peer, type, payload);
    if (on_frame) on_frame();
  }
};

TransportOptions Options(uint64_t id, std::shared_ptr<const ClusterSecret> secret) {
  TransportOptions options;
  options.node_id = id;
  options.cluster_id = 1;
  options.secret = std::move(secret);
  return options;
}

// Runs `node`'s loop in a thread until `stop` is sent, calling `step` (if
// any) every millisecond to generate load.
void RunLoop(Node* node, uv_async_t* stop, std::function<void()> step) {
  uv_timer_t timer;
  uv_timer_init(&node->loop, &timer);
  timer.data = &step;
  if (step) {
    uv_timer_start(&timer, [](uv_timer_t* t) { (*static_cast<std::function<void()>*>(t->data))(); },
                   1, 1);
  }
  uv_run(&node->loop, UV_RUN_DEFAULT);
  node->transport->Close();
  uv_close(reinterpret_cast<uv_handle_t*>(&timer), nullptr);
  uv_close(reinterpret_cast<uv_handle_t*>(stop), nullptr);
  uv_run(&node->loop, UV_RUN_DEFAULT);
}

// An async handle on `loop` that stops it.
void InitStop(uv_loop_t* loop, uv_async_t* stop) {
  uv_async_init(loop, stop, [](uv_async_t* h) { uv_stop(h->loop); });
}

void Stream(const std::shared_ptr<const ClusterSecret>& secret, size_t payload_bytes,
            double seconds) {
  Node a, b;
  uv_loop_init(&a.loop);
  uv_loop_init(&b.loop);
  b.transport = std::make_unique<Transport>(&b.loop, Options(2, secret), &b);
  if (!b.transport->Listen().ok()) std::abort();
  a.transport = std::make_unique<Transport>(&a.loop, Options(1, secret), &a);
  a.transport->SetPeer(2, "127.0.0.1:" + std::to_string(b.transport->port()));
  uv_async_t stop_a, stop_b;
  InitStop(&a.loop, &stop_a);
  InitStop(&b.loop, &stop_b);
  const std::string payload(payload_bytes, 'x');
  std::thread tb(RunLoop, &b, &stop_b, nullptr);
  uint64_t sent = 0;
  std::thread ta(RunLoop, &a, &stop_a, [&] {
    if (!a.up) return;
    while (a.transport->QueuedBytes(2) < kQueueTarget && a.transport->Send(2, 1, payload)) sent++;
  });
  while (!a.up) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  const uint64_t start_frames = b.frames.load();
  const auto start = Clock::now();
  std::this_thread::sleep_for(std::chrono::duration<double>(seconds));  // the measured span
  const uint64_t frames = b.frames.load() - start_frames;
  const double elapsed = std::chrono::duration<double>(Clock::now() - start).count();
  uv_async_send(&stop_a);
  uv_async_send(&stop_b);
  ta.join();
  tb.join();
  uv_loop_close(&a.loop);
  uv_loop_close(&b.loop);
  std::printf("stream  payload %8zu B: %10.0f frames/s %9.1f MB/s (payload)\n", payload_bytes,
              frames / elapsed, frames * payload_bytes / elapsed / 1e6);
}

void PingPong(const std::shared_ptr<const ClusterSecret>& secret, size_t payload_bytes,
              double seconds) {
  Node a, b;
  uv_loop_init(&a.loop);
  uv_loop_init(&b.loop);
  b.echo = true;
  b.transport = std::make_unique<Transport>(&b.loop, Options(2, secret), &b);
  if (!b.transport->Listen().ok()) std::abort();
  a.transport = std::make_unique<Transport>(&a.loop, Options(1, secret), &a);
  a.transport->SetPeer(2, "127.0.0.1:" + std::to_string(b.transport->port()));
  const std::string payload(payload_bytes, 'x');
  std::vector<double> rtts;
  auto sent_at = Clock::now();
  bool started = false;
  a.on_frame = [&] {
    const auto now = Clock::now();
    rtts.push_back(std::chrono::duration<double, std::micro>(now - sent_at).count());
    sent_at = now;
    a.transport->Send(2, 1, payload);
  };
  uv_async_t stop_a, stop_b;
  InitStop(&a.loop, &stop_a);
  InitStop(&b.loop, &stop_b);
  std::thread tb(RunLoop, &b, &stop_b, nullptr);
  std::thread ta(RunLoop, &a, &stop_a, [&] {
    if (!started && a.up && a.transport->Connected(2)) {
      started = true;
      sent_at = Clock::now();
      a.transport->Send(2, 1, payload);
    }
  });
  std::this_thread::sleep_for(std::chrono::duration<double>(seconds));
  uv_async_send(&stop_a);
  uv_async_send(&stop_b);
  ta.join();
  tb.join();
  uv_loop_close(&a.loop);
  uv_loop_close(&b.loop);
  std::sort(rtts.begin(), rtts.end());
  if (rtts.empty()) return;
  std::printf("pingpong payload %7zu B: %zu round trips, rtt p50 %.1f us p99 %.1f us\n",
              payload_bytes, rtts.size(), rtts[rtts.size() / 2], rtts[rtts.size() * 99 / 100]);
}

}  // namespace

int main(int argc, char** argv) {
  const double seconds = argc > 1 ? std::atof(argv[1]) : 2.0;
  auto secret = std::move(ClusterSecret::FromBytes(std::string(48, 'k'))).value();
  for (size_t size : {100, 1024, 64 << 10, 1 << 20}) Stream(secret, size, seconds);
  for (size_t size : {100, 4096}) PingPong(secret, size, seconds);
  return 0;
}
