// msg_bench: one messaging load generator for Distri (RESP) and nats-server
// (the NATS text protocol), so both servers get exactly the same load.
//
// Scenarios (--scenario):
//   pub     One publisher, no subscribers, pipelined. Done when the server
//           has taken every message: RESP reads every PUBLISH reply; NATS
//           sends PING after the last PUB and waits for the PONG.
//   fanout  One publisher, --subs subscribers on one subject. Done when every
//           subscriber has every message. Each message carries its sequence
//           number (the first 10 bytes of the payload), and every subscriber
//           checks that it gets each one once and in order: a lost, repeated
//           or reordered message ends the run as a failure (exit 3), not as a
//           rate. The publisher stays at most --window messages ahead of the
//           slowest subscriber, so neither server is pushed into its
//           slow-consumer cut-off; the rate is the sustained one.
//   reqrep  --callers callers and --workers workers. Every caller keeps one
//           request outstanding (closed loop) and records its round trip.
//           NATS: workers SUB in a queue group and PUB the answer to the
//           request's reply subject; callers SUB to their own _INBOX.<id>.*
//           and PUB requests with reply subjects _INBOX.<id>.<seq>.
//           Distri: workers are RESP3 connections with SVC.SERVE (CONCURRENCY
//           defaults to --callers so the server does not queue), answering
//           SVC.REPLY; callers use CALL.
//
// Addresses per role (a cluster): the publisher and the callers connect to
// --pub-port, the subscribers and the workers to --sub-ports, round robin
// (subscriber i to the (i mod n)-th port). Both default to --port.
// --worker-port P is --sub-ports P (its older name, for request/reply).
//
// Readiness: in a cluster, a subscription or a worker made on one server is
// known to the others a moment later. Before measuring, the publisher sends
// probe messages (payload starting with '#') until every subscriber has had
// one, and every caller sends probe requests (Distri: CALL ... TIMEOUT, which
// answers NOWORKER when no worker is known yet) until it gets an answer.
// Probes are not counted. When that does not happen within --ready-timeout
// seconds, the run fails (exit 3) naming the connections that got nothing.
//
// Each scenario produces for at most --seconds (or --msgs messages, whichever
// comes first), then waits for the outstanding work; a stall of --stall
// seconds is an error (exit 2). It prints one line of key=value pairs:
// rate (messages delivered, or round trips, per second), counts, latency
// percentiles (reqrep) and the CPU seconds this process used, which matters
// on a small machine where the load generator competes with the server.
//
//   msg_bench --proto nats|resp --port P --scenario pub|fanout|reqrep
//             [--pub-port P] [--sub-ports P1,P2,...]
//             [--msgs N] [--seconds S] [--size 64] [--subs 1] [--window 3000]
//             [--callers 10] [--workers 2] [--concurrency N] [--stall 15]
//             [--ready-timeout 10] [--resp-parser value|fast]
//
// Everything runs on one thread (an epoll loop over non-blocking sockets), so
// the load generator never takes more than one core. bench/nats_compare.py
// starts both servers (one process each, or three-node clusters with
// --nodes 3) and runs the scenarios side by side. The connections and the
// protocol adapters are in msg_proto.h.

#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "bench_util.h"
#include "msg_proto.h"

namespace {

using distri::bench::Adapter;
using distri::bench::Await;
using distri::bench::Conn;
using distri::bench::Connect;
using distri::bench::Die;
using distri::bench::Loop;
using distri::bench::NowNs;
using distri::bench::Sink;

// Failures of what the servers delivered (as opposed to a stall, exit 2, or a
// usage error): lost, repeated or reordered messages, no readiness in time.
constexpr int kExitIncorrect = 3;
// Probe payloads start with this; measured ones with decimal digits.
constexpr char kProbeMark = '#';
// The sequence number at the start of a fan-out payload: zero-padded decimal.
constexpr size_t kSeqDigits = 10;

double CpuSeconds() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  return static_cast<double>(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
         static_cast<double>(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

// ---------------------------------------------------------------------------
// Scenarios
// ---------------------------------------------------------------------------

struct Options {
  std::string proto, scenario;
  int port = 0;
  int pub_port = 0;            // publisher and callers; 0: --port
  std::vector<int> sub_ports;  // subscribers and workers, round robin; empty: --port
  uint64_t msgs = 5'000'000;
  double seconds = 3;
  size_t size = 64;
  int subs = 1;
  uint64_t window = 3'000;
  int callers = 10;
  int workers = 2;
  int concurrency = 0;  // 0: --callers
  double stall = 15;
  double ready_timeout = 10;
  std::string resp_parser = "value";  // or "fast"

  int SubPort(int i) const { return sub_ports[static_cast<size_t>(i) % sub_ports.size()]; }
};

// Dies with what() if `progress` has not changed for opt.stall seconds. what
// is called only then, so a detailed description costs nothing per round.
class StallGuard {
 public:
  explicit StallGuard(double seconds) : limit_ns_(static_cast<int64_t>(seconds * 1e9)) {}
  template <typename Describe>
  void Check(uint64_t progress, int64_t now, const Describe& what) {
    if (progress != last_ || last_ns_ == 0) {
      last_ = progress;
      last_ns_ = now;
    } else if (now - last_ns_ > limit_ns_) {
      Die("stalled: " + what(), 2);
    }
  }

 private:
  int64_t limit_ns_;
  uint64_t last_ = 0;
  int64_t last_ns_ = 0;
};

struct Report {
  double seconds = 0;
  double rate = 0;
  std::string extra;
};

std::string Payload(size_t size) {
  std::string p(size, 'x');
  for (size_t i = 0; i < size; i++) p[i] = static_cast<char>('a' + i % 26);
  return p;
}

// A connection of one role: connected, greeted, blocking until Loop::Add.
std::unique_ptr<Conn> Open(Adapter& a, int port, int index) {
  auto c = std::make_unique<Conn>();
  c->fd = Connect(port);
  c->port = port;
  c->index = index;
  Await(a, *c, a.Hello(*c));
  return c;
}

std::string Counts(const std::vector<std::unique_ptr<Conn>>& conns, uint64_t Conn::*field) {
  std::string out;
  for (const auto& c : conns) {
    if (!out.empty()) out.push_back(',');
    out += std::to_string((*c).*field);
  }
  return out;
}

// Connections that have none of `field`, by port: "1, 4, 7 (port 7479); 2, 5 (port 7579)".
std::string Without(const std::vector<std::unique_ptr<Conn>>& conns, uint64_t Conn::*field) {
  std::vector<std::pair<int, std::string>> by_port;
  for (const auto& c : conns) {
    if ((*c).*field != 0) continue;
    auto it = std::find_if(by_port.begin(), by_port.end(),
                           [&](const auto& p) { return p.first == c->port; });
    if (it == by_port.end()) it = by_port.insert(by_port.end(), {c->port, ""});
    if (!it->second.empty()) it->second += ", ";
    it->second += std::to_string(c->index);
  }
  std::string out;
  for (const auto& [port, list] : by_port) {
    if (!out.empty()) out += "; ";
    out += list + " (port " + std::to_string(port) + ")";
  }
  return out;
}

std::string SecondsText(double s) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%g s", s);
  return buf;
}

void WriteSeq(char* at, uint64_t seq) {
  for (size_t i = kSeqDigits; i-- > 0; seq /= 10) at[i] = static_cast<char>('0' + seq % 10);
}

// Fan-out subscribers: every message once, in order (its sequence number is
// the count received so far), of the right size.
class FanoutSink final : public Sink {
 public:
  explicit FanoutSink(size_t size) : size_(size) {}
  void OnMessage(Conn& c, std::string_view payload) override {
    if (payload.size() != size_) {
      Fail(c, "a message of " + std::to_string(payload.size()) + " bytes");
    }
    if (payload[0] == kProbeMark) {
      c.probes++;
      return;
    }
    uint64_t seq = 0;
    auto r = std::from_chars(payload.data(), payload.data() + kSeqDigits, seq);
    if (r.ec != std::errc() || r.ptr != payload.data() + kSeqDigits) {
      Fail(c, "a message without a sequence number");
    }
    if (seq != c.messages) {
      Fail(c, "message #" + std::to_string(seq) + " where #" + std::to_string(c.messages) +
                  " was due (" + (seq > c.messages ? "lost" : "repeated or reordered") + ")");
    }
    c.messages++;
  }
  void OnRequest(Conn& c, std::string_view, std::string_view) override {
    Fail(c, "a request");
  }

 private:
  [[noreturn]] static void Fail(const Conn& c, const std::string& what) {
    Die("incorrect delivery: subscriber " + std::to_string(c.index) + " (port " +
            std::to_string(c.port) + ") got " + what,
        kExitIncorrect);
  }
  size_t size_;
};

// Readiness for fan-out: a probe every 50 ms until every subscriber has had
// one, then until the publisher has every probe's ack (RESP), so the measured
// part starts with nothing of the probes pending but deliveries.
void AwaitSubscribers(Adapter& a, Loop& loop, Conn& pub, const std::string& subject,
                      const std::vector<std::unique_ptr<Conn>>& subs, const Options& opt) {
  std::string probe = Payload(opt.size);
  probe[0] = kProbeMark;
  const int64_t start = NowNs();
  const int64_t deadline = start + static_cast<int64_t>(opt.ready_timeout * 1e9);
  uint64_t probes = 0;
  int64_t last_probe = 0;
  for (;;) {
    int64_t now = NowNs();
    bool all = std::all_of(subs.begin(), subs.end(), [](auto& c) { return c->probes > 0; });
    if (all && pub.acks >= probes * a.AcksPerPublish()) break;
    if (now > deadline) {
      std::string who = Without(subs, &Conn::probes);
      Die("not ready after " + SecondsText(opt.ready_timeout) + ": " +
              (who.empty() ? "the publisher has " + std::to_string(pub.acks) + " of " +
                                 std::to_string(probes) + " probe acks"
                           : "subscribers " + who + " received none of " +
                                 std::to_string(probes) + " probe messages published on port " +
                                 std::to_string(pub.port)),
          kExitIncorrect);
    }
    if (!all && now - last_probe > 50'000'000) {
      a.AppendPublish(&pub.out, subject, probe);
      probes++;
      last_probe = now;
    }
    loop.Poll(10);
  }
  pub.acks = 0;
}

// pub and fanout: one publisher, opt.subs subscribers (0 for pub).
Report RunPublish(Adapter& a, const Options& opt, int subs) {
  const std::string subject = subs == 0 ? "bench.pub" : "bench.fan";
  const std::string payload = Payload(opt.size);
  std::unique_ptr<Conn> pub_conn = Open(a, opt.pub_port, 0);
  Conn& pub = *pub_conn;
  std::vector<std::unique_ptr<Conn>> sub;
  for (int i = 0; i < subs; i++) {
    sub.push_back(Open(a, opt.SubPort(i), i));
    Await(a, *sub.back(), a.Subscribe(*sub.back(), subject));
  }
  pub.acks = 0;

  FanoutSink sink(opt.size);
  Loop loop(&a, &sink);
  loop.Add(&pub);
  for (auto& c : sub) loop.Add(c.get());
  const int64_t ready0 = NowNs();
  if (subs > 0) AwaitSubscribers(a, loop, pub, subject, sub, opt);
  const double ready_ms = static_cast<double>(NowNs() - ready0) / 1e6;

  // The same batch of encoded messages, appended again and again; each
  // copy's sequence number is written in place (at seq_at in a message).
  constexpr uint64_t kBatch = 256;
  std::string batch;
  for (uint64_t i = 0; i < kBatch; i++) a.AppendPublish(&batch, subject, payload);
  const size_t per_msg = batch.size() / kBatch;
  const size_t seq_at = batch.find(payload);
  const bool numbered = subs > 0;
  constexpr size_t kHighWater = 256 << 10;

  const double cpu0 = CpuSeconds();
  const int64_t start = NowNs();
  const int64_t stop_producing = start + static_cast<int64_t>(opt.seconds * 1e9);
  uint64_t sent = 0;
  bool producing = true, flushed = false;
  int64_t delivered_at = 0;
  StallGuard guard(opt.stall);
  for (;;) {
    uint64_t slowest = sent;
    for (auto& c : sub) slowest = std::min(slowest, c->messages);
    bool blocked = false;
    if (producing) {
      while (pub.pending_out() < kHighWater) {
        uint64_t room = std::min(opt.msgs - sent, kBatch);
        if (subs > 0) {
          const uint64_t limit = slowest + opt.window;  // the window's far end
          room = std::min(room, limit - std::min(sent, limit));
        }
        if (room == 0) {
          blocked = true;
          break;
        }
        const size_t base = pub.out.size();
        pub.out.append(batch, 0, room * per_msg);
        if (numbered) {
          for (uint64_t k = 0; k < room; k++) {
            WriteSeq(&pub.out[base + k * per_msg + seq_at], sent + k);
          }
        }
        sent += room;
      }
      loop.Flush(&pub);
      if (sent >= opt.msgs || NowNs() >= stop_producing) producing = false;
    }
    if (!producing && !flushed) {
      a.AppendPublishFlush(&pub.out);
      loop.Flush(&pub);
      flushed = true;
    }
    int64_t now = NowNs();
    if (!producing) {
      bool all = slowest >= sent;
      if (all && delivered_at == 0 && subs > 0) delivered_at = now;
      bool acked = subs > 0 || pub.acks >= a.PublishAcks(sent);
      if (all && acked) {
        if (delivered_at == 0) delivered_at = now;
        break;
      }
    }
    uint64_t progress = pub.acks + sent;
    for (auto& c : sub) progress += c->messages;
    guard.Check(progress, now, [&] {
      return "sent " + std::to_string(sent) + ", publisher acks " + std::to_string(pub.acks) +
             ", received per subscriber " + Counts(sub, &Conn::messages);
    });
    // Poll without sleeping while there is more to produce and room for it.
    bool can_produce = producing && !blocked && pub.pending_out() < kHighWater;
    loop.Poll(can_produce ? 0 : 100);
  }
  const double cpu = CpuSeconds() - cpu0;
  const double secs = static_cast<double>(delivered_at - start) / 1e9;

  // Untimed (fan-out): read the publisher's remaining acks, so the server is
  // idle before the next run.
  while (pub.acks < a.PublishAcks(sent)) {
    loop.Poll(100);
    guard.Check(pub.acks, NowNs(), [&] { return "publisher acks " + std::to_string(pub.acks); });
  }
  Report r;
  r.seconds = secs;
  uint64_t delivered = 0;
  for (auto& c : sub) delivered += c->messages;
  if (subs == 0) delivered = sent;
  r.rate = static_cast<double>(delivered) / secs;
  char buf[64];
  std::snprintf(buf, sizeof buf, " ready_ms=%.1f client_cpu_s=%.3f", ready_ms, cpu);
  r.extra = "published=" + std::to_string(sent) + " delivered=" + std::to_string(delivered) + buf;
  if (subs > 0) r.extra += " per_sub=" + Counts(sub, &Conn::messages);
  close(pub.fd);
  for (auto& c : sub) close(c->fd);
  return r;
}

// reqrep: callers with one outstanding request each; workers answer at once.
// Probe answers (see "Readiness") only mark their caller ready.
class RequestSink final : public Sink {
 public:
  RequestSink(Adapter* a, const Options& opt, std::string_view service, std::string_view payload)
      : a_(a), opt_(opt), service_(service), payload_(payload) {}

  void OnMessage(Conn& c, std::string_view reply) override {  // a caller's answer
    int64_t now = NowNs();
    if (!reply.empty() && reply[0] == kProbeMark) {
      c.probes++;
      c.probe_outstanding = false;
      return;
    }
    if (reply != payload_) {
      Die("incorrect reply on caller " + std::to_string(c.index) + ": not the request's payload",
          kExitIncorrect);
    }
    latencies.push_back(now - c.sent_at);
    c.messages++;
    completed++;
    outstanding--;
    if (!stopping) Send(c, now);
  }
  void OnRequest(Conn& c, std::string_view token, std::string_view payload) override {
    a_->AppendReply(&c.out, token, payload);  // echo
    if (payload.empty() || payload[0] != kProbeMark) c.messages++;
  }
  void OnError(Conn& c, std::string_view error) override {
    if (!probing) Sink::OnError(c, error);
    c.last_error = error;
    c.probe_outstanding = false;
  }

  void Send(Conn& c, int64_t now) {
    c.sent_at = now;
    a_->AppendRequest(c, service_, payload_);
    issued++;
    outstanding++;
    if (issued >= opt_.msgs) stopping = true;
  }

  std::vector<int64_t> latencies;
  uint64_t completed = 0, issued = 0, outstanding = 0;
  bool stopping = false;
  bool probing = false;

 private:
  Adapter* a_;
  const Options& opt_;
  std::string service_, payload_;
};

// Readiness for request/reply: each caller sends a probe request (Distri:
// bounded by the server, answered or NOWORKER within kProbeMs; NATS: resent
// when unanswered after kProbeMs, as an unserved request is dropped) until it
// gets an answer.
void AwaitWorkers(Adapter& a, Loop& loop, RequestSink& sink, const std::string& service,
                  const std::vector<std::unique_ptr<Conn>>& callers, const Options& opt) {
  constexpr int64_t kProbeMs = 500;
  std::string probe = Payload(opt.size);
  probe[0] = kProbeMark;
  const int64_t deadline = NowNs() + static_cast<int64_t>(opt.ready_timeout * 1e9);
  sink.probing = true;
  uint64_t probes = 0;
  for (;;) {
    int64_t now = NowNs();
    bool all = true;
    for (auto& c : callers) {
      if (c->probes > 0) continue;
      all = false;
      bool lost = a.DropsUnservedRequests() && now - c->sent_at > (kProbeMs + 100) * 1'000'000;
      if (!c->probe_outstanding || lost) {
        a.AppendRequest(*c, service, probe, kProbeMs);
        c->probe_outstanding = true;
        c->sent_at = now;
        probes++;
      }
    }
    // RESP: a ready caller may still wait for nothing: its probe was answered.
    if (all) break;
    if (now > deadline) {
      std::string last;
      for (auto& c : callers) {
        if (!c->last_error.empty()) last = "; last error: " + c->last_error;
      }
      Die("not ready after " + SecondsText(opt.ready_timeout) + ": callers " +
              Without(callers, &Conn::probes) + " got no answer to " + std::to_string(probes) +
              " probe requests" + last,
          kExitIncorrect);
    }
    loop.Poll(10);
  }
  sink.probing = false;
}

double PercentileUs(std::vector<int64_t>& v, double p) {
  if (v.empty()) return 0;
  size_t i = std::min(v.size() - 1, static_cast<size_t>(p * static_cast<double>(v.size())));
  std::nth_element(v.begin(), v.begin() + static_cast<long>(i), v.end());
  return static_cast<double>(v[i]) / 1e3;
}

Report RunRequestReply(Adapter& a, const Options& opt) {
  const std::string service = "bench.svc";
  const std::string payload = Payload(opt.size);
  const int concurrency = opt.concurrency > 0 ? opt.concurrency : opt.callers;
  std::vector<std::unique_ptr<Conn>> workers, callers;
  for (int i = 0; i < opt.workers; i++) {
    workers.push_back(Open(a, opt.SubPort(i), i));
    Await(a, *workers.back(), a.Serve(*workers.back(), service, concurrency));
  }
  for (int i = 0; i < opt.callers; i++) {
    callers.push_back(Open(a, opt.pub_port, i));
    Await(a, *callers.back(), a.PrepareCaller(*callers.back()));
  }

  RequestSink sink(&a, opt, service, payload);
  sink.latencies.reserve(1 << 20);
  Loop loop(&a, &sink);
  for (auto& c : workers) loop.Add(c.get());
  for (auto& c : callers) loop.Add(c.get());
  const int64_t ready0 = NowNs();
  AwaitWorkers(a, loop, sink, service, callers, opt);
  const double ready_ms = static_cast<double>(NowNs() - ready0) / 1e6;

  const double cpu0 = CpuSeconds();
  const int64_t start = NowNs();
  const int64_t stop_at = start + static_cast<int64_t>(opt.seconds * 1e9);
  for (auto& c : callers) {
    if (!sink.stopping) sink.Send(*c, start);
  }
  StallGuard guard(opt.stall);
  int64_t end = start;
  for (;;) {
    loop.Poll(100);
    int64_t now = NowNs();
    if (now >= stop_at) sink.stopping = true;
    if (sink.stopping && sink.outstanding == 0) {
      end = now;
      break;
    }
    guard.Check(sink.completed, now, [&] {
      return std::to_string(sink.completed) + " of " + std::to_string(sink.issued) +
             " calls answered; requests per worker " + Counts(workers, &Conn::messages);
    });
  }
  const double cpu = CpuSeconds() - cpu0;

  // Untimed: let the workers read the acks of their last SVC.REPLYs.
  for (int i = 0; i < 3; i++) loop.Poll(10);

  Report r;
  r.seconds = static_cast<double>(end - start) / 1e9;
  r.rate = static_cast<double>(sink.completed) / r.seconds;
  char buf[256];
  std::snprintf(buf, sizeof buf,
                "calls=%llu p50_us=%.1f p90_us=%.1f p99_us=%.1f max_us=%.1f ready_ms=%.1f "
                "client_cpu_s=%.3f",
                static_cast<unsigned long long>(sink.completed),
                PercentileUs(sink.latencies, 0.50), PercentileUs(sink.latencies, 0.90),
                PercentileUs(sink.latencies, 0.99), PercentileUs(sink.latencies, 1.0), ready_ms,
                cpu);
  r.extra = buf;
  // Requests each worker answered: the balancing.
  r.extra += " per_worker=" + Counts(workers, &Conn::messages);
  for (auto& c : workers) close(c->fd);
  for (auto& c : callers) close(c->fd);
  return r;
}

[[noreturn]] void Usage() {
  std::fprintf(stderr,
               "usage: msg_bench --proto nats|resp --port P --scenario pub|fanout|reqrep\n"
               "                 [--pub-port P] [--sub-ports P1,P2,...]\n"
               "                 [--msgs N] [--seconds S] [--size BYTES] [--subs N] [--window N]\n"
               "                 [--callers N] [--workers N] [--concurrency N] [--stall S]\n"
               "                 [--ready-timeout S] [--resp-parser value|fast]\n");
  std::exit(64);
}

// "7379,7479": ports in 1..65535, at least one.
std::vector<int> ParsePorts(std::string_view s) {
  std::vector<int> out;
  while (!s.empty()) {
    size_t comma = s.find(',');
    std::string_view one = s.substr(0, comma);
    int port = 0;
    auto r = std::from_chars(one.data(), one.data() + one.size(), port);
    if (r.ec != std::errc() || r.ptr != one.data() + one.size() || port < 1 || port > 65535) {
      Usage();
    }
    out.push_back(port);
    if (comma == std::string_view::npos) break;
    s.remove_prefix(comma + 1);
  }
  if (out.empty()) Usage();
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  Options opt;
  for (int i = 1; i < argc; i += 2) {
    std::string flag = argv[i];
    if (i + 1 >= argc) Usage();
    std::string v = argv[i + 1];
    if (flag == "--proto") opt.proto = v;
    else if (flag == "--scenario") opt.scenario = v;
    else if (flag == "--port") opt.port = std::atoi(v.c_str());
    else if (flag == "--pub-port") opt.pub_port = std::atoi(v.c_str());
    else if (flag == "--sub-ports") opt.sub_ports = ParsePorts(v);
    else if (flag == "--worker-port") opt.sub_ports = ParsePorts(v);  // one port: as before
    else if (flag == "--msgs") opt.msgs = std::strtoull(v.c_str(), nullptr, 10);
    else if (flag == "--seconds") opt.seconds = std::atof(v.c_str());
    else if (flag == "--size") opt.size = std::strtoull(v.c_str(), nullptr, 10);
    else if (flag == "--subs") opt.subs = std::atoi(v.c_str());
    else if (flag == "--window") opt.window = std::strtoull(v.c_str(), nullptr, 10);
    else if (flag == "--callers") opt.callers = std::atoi(v.c_str());
    else if (flag == "--workers") opt.workers = std::atoi(v.c_str());
    else if (flag == "--concurrency") opt.concurrency = std::atoi(v.c_str());
    else if (flag == "--stall") opt.stall = std::atof(v.c_str());
    else if (flag == "--ready-timeout") opt.ready_timeout = std::atof(v.c_str());
    else if (flag == "--resp-parser") opt.resp_parser = v;
    else Usage();
  }
  if (opt.pub_port <= 0) opt.pub_port = opt.port;
  if (opt.sub_ports.empty() && opt.port > 0) opt.sub_ports.push_back(opt.port);
  if (opt.pub_port <= 0 || opt.pub_port > 65535 || opt.sub_ports.empty() || opt.msgs == 0 ||
      opt.window == 0 || opt.ready_timeout <= 0) {
    Usage();
  }
  // Fan-out payloads carry a sequence number; probes are told apart by their
  // first byte.
  if (opt.size < (opt.scenario == "fanout" ? kSeqDigits : 1)) Usage();
  std::unique_ptr<Adapter> adapter;
  if (opt.proto == "nats") {
    adapter = distri::bench::MakeNatsAdapter();
  } else if (opt.proto == "resp") {
    if (opt.resp_parser != "value" && opt.resp_parser != "fast") Usage();
    adapter = distri::bench::MakeRespAdapter(opt.resp_parser == "fast");
  } else {
    Usage();
  }
  signal(SIGPIPE, SIG_IGN);

  Report r;
  std::string shape;
  if (opt.scenario == "pub") {
    r = RunPublish(*adapter, opt, 0);
  } else if (opt.scenario == "fanout") {
    if (opt.subs < 1) Usage();
    r = RunPublish(*adapter, opt, opt.subs);
    shape = " subs=" + std::to_string(opt.subs);
  } else if (opt.scenario == "reqrep") {
    if (opt.callers < 1 || opt.workers < 1) Usage();
    r = RunRequestReply(*adapter, opt);
    shape = " callers=" + std::to_string(opt.callers) + " workers=" + std::to_string(opt.workers);
  } else {
    Usage();
  }
  std::printf("proto=%s scenario=%s%s size=%zu rate=%.0f seconds=%.3f %s\n", opt.proto.c_str(),
              opt.scenario.c_str(), shape.c_str(), opt.size, r.rate, r.seconds, r.extra.c_str());
  return 0;
}
