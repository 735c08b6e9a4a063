// mirror_bench: how fast a change reaches live mirrors.
//
// One writer sets keys one at a time (waiting for each reply); M mirror
// connections follow the room with MIRROR. For every change and every mirror
// it records when the write was sent, when its reply (the acknowledgement)
// arrived, and when the push frame arrived at the mirror, then prints p50,
// p99 and max of ack->arrival and send->arrival, and the total deliveries per
// second. A frame that arrives before the writer has read its own ack counts
// as 0 ack->arrival (the server sends both in the same loop iteration).
//
//   mirror_bench --port 7379 [--mirrors 100] [--changes 100000] [--value-size 16] [--window 1]
//
// --window W sends W writes before reading their replies (pipelining), to
// measure fan-out throughput rather than the writer's fsync-bound rate.
//
// Built with -DDISTRI_BENCH=ON; bench/README.md and docs/benchmarks.md say how
// it is run side by side with the server.

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "bench_util.h"
#include "protocol/resp_parser.h"

namespace {

using distri::bench::Connect;
using distri::bench::Die;
using distri::bench::NowNs;
using distri::protocol::ParseResult;
using distri::protocol::Value;

void SendAll(int fd, const std::string& data) {
  size_t off = 0;
  while (off < data.size()) {
    ssize_t n = write(fd, data.data() + off, data.size() - off);
    if (n <= 0) Die("write failed");
    off += static_cast<size_t>(n);
  }
}

std::string Command(std::initializer_list<std::string_view> args) {
  std::string out;
  std::vector<std::string_view> v(args);
  distri::protocol::AppendCommand(&out, v);
  return out;
}

// A connection with a receive buffer, reading whole RESP values.
struct Conn {
  int fd = -1;
  std::string buf;
  size_t pos = 0;
  std::vector<int64_t> arrival;  // per change index
  size_t received = 0;

  // Parses the next value if the buffer holds one.
  bool TryNext(Value* v) {
    size_t consumed = 0;
    std::string err;
    ParseResult r = distri::protocol::ParseValue(std::string_view(buf).substr(pos), &consumed, v, &err);
    if (r == ParseResult::kError) Die("bad reply: " + err);
    if (r == ParseResult::kNeedMore) {
      if (pos > 0) {
        buf.erase(0, pos);
        pos = 0;
      }
      return false;
    }
    pos += consumed;
    return true;
  }
  bool Fill() {
    char tmp[65536];
    ssize_t n = read(fd, tmp, sizeof tmp);
    if (n <= 0) return false;
    buf.append(tmp, static_cast<size_t>(n));
    return true;
  }
  Value Read() {
    Value v;
    while (!TryNext(&v)) {
      if (!Fill()) Die("connection closed");
    }
    return v;
  }
};

double Percentile(std::vector<int64_t>& v, double p) {
  if (v.empty()) return 0;
  size_t i = std::min(v.size() - 1, static_cast<size_t>(p * static_cast<double>(v.size())));
  std::nth_element(v.begin(), v.begin() + static_cast<long>(i), v.end());
  return static_cast<double>(v[i]) / 1e6;  // ms
}

}  // namespace

int main(int argc, char** argv) {
  int port = 7379;
  size_t mirrors = 100, changes = 100000, value_size = 16, window = 1;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string a = argv[i];
    long v = std::atol(argv[i + 1]);
    if (a == "--port") port = static_cast<int>(v);
    else if (a == "--mirrors") mirrors = static_cast<size_t>(v);
    else if (a == "--changes") changes = static_cast<size_t>(v);
    else if (a == "--value-size") value_size = static_cast<size_t>(v);
    else if (a == "--window") window = std::max<size_t>(1, static_cast<size_t>(v));
    else Die("unknown flag " + a);
  }

  // Mirrors: HELLO 3, MIRROR PREFIX mb:, read until "ready".
  std::vector<Conn> conns(mirrors);
  for (Conn& c : conns) {
    c.fd = Connect(port);
    SendAll(c.fd, Command({"HELLO", "3"}) + Command({"MIRROR", "PREFIX", "mb:"}));
    c.Read();  // HELLO map
    Value reply = c.Read();
    if (reply.type != Value::Type::kMap) Die("MIRROR failed: " + reply.str);
    for (;;) {
      Value f = c.Read();
      if (f.type == Value::Type::kPush && f.elements.size() >= 3 && f.elements[2].str == "ready") break;
    }
    c.arrival.assign(changes, 0);
  }

  std::vector<int64_t> sent(changes), acked(changes);
  std::atomic<bool> done{false};
  std::thread reader([&] {
    int ep = epoll_create1(0);
    for (size_t i = 0; i < conns.size(); i++) {
      epoll_event ev{};
      ev.events = EPOLLIN;
      ev.data.u64 = i;
      epoll_ctl(ep, EPOLL_CTL_ADD, conns[i].fd, &ev);
    }
    size_t complete = 0;
    epoll_event events[128];
    while (complete < conns.size()) {
      int n = epoll_wait(ep, events, 128, 1000);
      if (n == 0 && done.load()) {
        std::fprintf(stderr, "mirror_bench: timed out waiting for frames\n");
        break;
      }
      for (int e = 0; e < n; e++) {
        Conn& c = conns[events[e].data.u64];
        if (!c.Fill()) Die("mirror connection closed");
        int64_t now = NowNs();
        Value v;
        while (c.TryNext(&v)) {
          if (v.type != Value::Type::kPush || v.elements.size() < 7 || v.elements[2].str != "set") continue;
          size_t seq = std::strtoull(v.elements[5].str.c_str() + 0, nullptr, 10);
          if (seq < changes && c.arrival[seq] == 0) {
            c.arrival[seq] = now;
            if (++c.received == changes) complete++;
          }
        }
      }
    }
    close(ep);
  });

  int w = Connect(port);
  Conn writer;
  writer.fd = w;
  std::string pad(value_size > 8 ? value_size - 8 : 0, 'x');
  int64_t start = NowNs();
  for (size_t first = 0; first < changes; first += window) {
    size_t last = std::min(changes, first + window);
    std::string batch;
    for (size_t i = first; i < last; i++) {
      std::string key = "mb:" + std::to_string(i % 1000);
      std::string value = std::to_string(i) + "|" + pad;
      batch += Command({"SET", key, value});
    }
    int64_t t = NowNs();
    for (size_t i = first; i < last; i++) sent[i] = t;
    SendAll(w, batch);
    for (size_t i = first; i < last; i++) {
      writer.Read();
      acked[i] = NowNs();
    }
  }
  int64_t writes_done = NowNs();
  done = true;
  reader.join();
  int64_t end = 0;
  std::vector<int64_t> ack_lat, send_lat;
  ack_lat.reserve(changes * mirrors);
  send_lat.reserve(changes * mirrors);
  size_t missing = 0;
  for (Conn& c : conns) {
    for (size_t i = 0; i < changes; i++) {
      if (c.arrival[i] == 0) {
        missing++;
        continue;
      }
      end = std::max(end, c.arrival[i]);
      ack_lat.push_back(std::max<int64_t>(0, c.arrival[i] - acked[i]));
      send_lat.push_back(c.arrival[i] - sent[i]);
    }
  }
  double secs = static_cast<double>(end - start) / 1e9;
  std::printf("mirrors=%zu changes=%zu value_size=%zu window=%zu\n", mirrors, changes, value_size, window);
  std::printf("writes/s (one writer, waiting for each ack): %.0f\n",
              static_cast<double>(changes) / (static_cast<double>(writes_done - start) / 1e9));
  std::printf("deliveries/s: %.0f (%zu deliveries in %.2f s), missing: %zu\n",
              static_cast<double>(ack_lat.size()) / secs, ack_lat.size(), secs, missing);
  std::printf("ack->arrival ms: p50 %.3f p99 %.3f max %.3f\n", Percentile(ack_lat, 0.5),
              Percentile(ack_lat, 0.99), Percentile(ack_lat, 1.0));
  std::printf("send->arrival ms: p50 %.3f p99 %.3f max %.3f\n", Percentile(send_lat, 0.5),
              Percentile(send_lat, 0.99), Percentile(send_lat, 1.0));
  return missing == 0 ? 0 : 1;
}
