// msg_bench: one messaging load generator for Distri (RESP) and nats-server
// (the NATS text protocol), so both servers get exactly the same load.
//
// Scenarios (--scenario):
//   pub     One publisher, no subscribers, pipelined. Done when the server
//           has taken every message: RESP reads every PUBLISH reply; NATS
//           sends PING after the last PUB and waits for the PONG.
//   fanout  One publisher, --subs subscribers on one subject. Done when every
//           subscriber has every message (counted, sizes checked). The
//           publisher stays at most --window messages ahead of the slowest
//           subscriber, so neither server is pushed into its slow-consumer
//           cut-off; the rate is the sustained one.
//   reqrep  --callers callers and --workers workers. Every caller keeps one
//           request outstanding (closed loop) and records its round trip.
//           NATS: workers SUB in a queue group and PUB the answer to the
//           request's reply subject; callers SUB to their own _INBOX.<id>.*
//           and PUB requests with reply subjects _INBOX.<id>.<seq>.
//           Distri: workers are RESP3 connections with SVC.SERVE (CONCURRENCY
//           defaults to --callers so the server does not queue), answering
//           SVC.REPLY; callers use CALL. --worker-port: the workers connect
//           to another port (another node of a cluster, or another NATS
//           cluster member) than the callers.
//
// Each scenario produces for at most --seconds (or --msgs messages, whichever
// comes first), then waits for the outstanding work; a stall of --stall
// seconds is an error (exit 2). It prints one line of key=value pairs:
// rate (messages delivered, or round trips, per second), counts, latency
// percentiles (reqrep) and the CPU seconds this process used, which matters
// on a small machine where the load generator competes with the server.
//
//   msg_bench --proto nats|resp --port P --scenario pub|fanout|reqrep
//             [--msgs N] [--seconds S] [--size 64] [--subs 1] [--window 3000]
//             [--callers 10] [--workers 2] [--concurrency N] [--stall 15]
//             [--resp-parser value|fast]
//
// Everything runs on one thread (an epoll loop over non-blocking sockets), so
// the load generator never takes more than one core. bench/nats_compare.py
// starts both servers and runs the scenarios side by side.

#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <charconv>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "bench_util.h"
#include "protocol/resp_parser.h"

namespace {

using distri::bench::Connect;
using distri::bench::Die;
using distri::bench::NowNs;
using distri::protocol::ParseResult;
using distri::protocol::Value;

double CpuSeconds() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  return static_cast<double>(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
         static_cast<double>(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

// ---------------------------------------------------------------------------
// Connections
// ---------------------------------------------------------------------------

// One socket with an input buffer the parsers read from and an output buffer
// the encoders append to. Frames here are small (< 4 KiB), so a fixed 1 MiB
// input buffer always has room for a whole one.
struct Conn {
  static constexpr size_t kInCap = 1 << 20;
  static constexpr size_t kReadChunk = 256 << 10;

  int fd = -1;
  int index = 0;  // position among connections of its role
  std::unique_ptr<char[]> in{new char[kInCap]};
  size_t in_start = 0, in_end = 0;
  std::string out;
  size_t out_pos = 0;
  bool epoll_out = false;

  // Counters the adapters and scenarios update.
  uint64_t acks = 0;      // replies to our own commands (PUBLISH, SVC.REPLY, ...), PONGs
  uint64_t messages = 0;  // messages or call replies received
  uint64_t seq = 0;       // NATS caller: next reply-subject suffix
  int64_t sent_at = 0;    // caller: when its outstanding request was sent
  std::string inbox;      // NATS caller: "_INBOX.<id>."

  size_t pending_out() const { return out.size() - out_pos; }
  std::string_view input() const { return {in.get() + in_start, in_end - in_start}; }
};

// Reads what the socket has into c.in. Returns bytes read; 0 if it would
// block (non-blocking sockets); dies on EOF or error.
size_t ReadSome(Conn& c) {
  if (c.in_start == c.in_end) c.in_start = c.in_end = 0;
  if (Conn::kInCap - c.in_end < Conn::kReadChunk) {
    std::memmove(c.in.get(), c.in.get() + c.in_start, c.in_end - c.in_start);
    c.in_end -= c.in_start;
    c.in_start = 0;
  }
  ssize_t n = read(c.fd, c.in.get() + c.in_end, Conn::kInCap - c.in_end);
  if (n > 0) {
    c.in_end += static_cast<size_t>(n);
    return static_cast<size_t>(n);
  }
  if (n < 0 && (errno == EAGAIN || errno == EINTR)) return 0;
  Die(n == 0 ? "server closed a connection" : std::string("read: ") + std::strerror(errno));
}

// Writes as much of c.out as the socket takes. Returns true when all is out.
bool WriteSome(Conn& c) {
  while (c.pending_out() > 0) {
    ssize_t n = write(c.fd, c.out.data() + c.out_pos, c.pending_out());
    if (n < 0) {
      if (errno == EAGAIN) return false;
      if (errno == EINTR) continue;
      Die(std::string("write: ") + std::strerror(errno));
    }
    c.out_pos += static_cast<size_t>(n);
  }
  c.out.clear();
  c.out_pos = 0;
  return true;
}

// ---------------------------------------------------------------------------
// Protocol adapters
// ---------------------------------------------------------------------------

// What the scenarios hear from a parser. Acks only bump Conn::acks.
class Sink {
 public:
  virtual ~Sink() = default;
  // A subscriber's message, or a caller's reply.
  virtual void OnMessage(Conn& c, std::string_view payload) = 0;
  // A worker's request; `token` names it in the answer (NATS reply subject,
  // Distri request id).
  virtual void OnRequest(Conn& c, std::string_view token, std::string_view payload) = 0;
};

class NullSink final : public Sink {
 public:
  void OnMessage(Conn&, std::string_view) override {}
  void OnRequest(Conn&, std::string_view, std::string_view) override {}
};

class Adapter {
 public:
  virtual ~Adapter() = default;
  // Commands run before the measured part. Each call appends to c.out and
  // returns how many acks to wait for (see Await).
  virtual uint64_t Hello(Conn& c) = 0;
  virtual uint64_t Subscribe(Conn& c, std::string_view subject) = 0;
  virtual uint64_t Serve(Conn& c, std::string_view service, int concurrency) = 0;
  virtual uint64_t PrepareCaller(Conn& c) = 0;

  virtual void AppendPublish(std::string* out, std::string_view subject,
                             std::string_view payload) = 0;
  // After a publish burst: what makes the server confirm it has everything,
  // and how many acks a burst of n publishes plus that produces.
  virtual void AppendPublishFlush(std::string* out) = 0;
  virtual uint64_t PublishAcks(uint64_t n) = 0;
  virtual void AppendRequest(Conn& c, std::string_view service, std::string_view payload) = 0;
  virtual void AppendReply(std::string* out, std::string_view token, std::string_view payload) = 0;

  // Parses the complete frames at the front of c.input(), consuming them.
  virtual void Parse(Conn& c, Sink& sink) = 0;
};

// ---- NATS text protocol (https://docs.nats.io, "Client Protocol") ----

class NatsAdapter final : public Adapter {
 public:
  uint64_t Hello(Conn& c) override {
    // The server speaks first (INFO); CONNECT is fine to send right away.
    c.out +=
        "CONNECT {\"verbose\":false,\"pedantic\":false,\"tls_required\":false,"
        "\"name\":\"msg_bench\",\"lang\":\"c++\",\"version\":\"0.1\",\"protocol\":1,"
        "\"echo\":false,\"headers\":false,\"no_responders\":false}\r\nPING\r\n";
    return 1;
  }
  uint64_t Subscribe(Conn& c, std::string_view subject) override {
    c.out.append("SUB ").append(subject).append(" 1\r\nPING\r\n");
    return 1;
  }
  uint64_t Serve(Conn& c, std::string_view service, int) override {
    c.out.append("SUB ").append(service).append(" workers 1\r\nPING\r\n");
    return 1;
  }
  uint64_t PrepareCaller(Conn& c) override {
    c.inbox = "_INBOX.mb" + std::to_string(getpid()) + "x" + std::to_string(c.index) + ".";
    c.out.append("SUB ").append(c.inbox).append("* 1\r\nPING\r\n");
    return 1;
  }
  void AppendPublish(std::string* out, std::string_view subject,
                     std::string_view payload) override {
    out->append("PUB ").append(subject).push_back(' ');
    AppendNumber(out, payload.size());
    out->append("\r\n").append(payload).append("\r\n");
  }
  void AppendPublishFlush(std::string* out) override { out->append("PING\r\n"); }
  uint64_t PublishAcks(uint64_t) override { return 1; }
  void AppendRequest(Conn& c, std::string_view service, std::string_view payload) override {
    c.out.append("PUB ").append(service).push_back(' ');
    c.out.append(c.inbox);
    AppendNumber(&c.out, c.seq++);
    c.out.push_back(' ');
    AppendNumber(&c.out, payload.size());
    c.out.append("\r\n").append(payload).append("\r\n");
  }
  void AppendReply(std::string* out, std::string_view token, std::string_view payload) override {
    AppendPublish(out, token, payload);
  }

  void Parse(Conn& c, Sink& sink) override {
    std::string_view in = c.input();
    size_t pos = 0;
    for (;;) {
      size_t eol = in.find("\r\n", pos);
      if (eol == std::string_view::npos) break;
      std::string_view line = in.substr(pos, eol - pos);
      if (line.starts_with("MSG ")) {
        // MSG <subject> <sid> [reply-to] <#bytes>
        std::string_view tok[5];
        int n = Split(line.substr(4), tok, 5);
        if (n != 3 && n != 4) Die("bad MSG line: " + std::string(line));
        size_t size = 0;
        std::string_view len = tok[n - 1];
        if (std::from_chars(len.data(), len.data() + len.size(), size).ec != std::errc()) {
          Die("bad MSG size: " + std::string(line));
        }
        if (in.size() < eol + 2 + size + 2) break;  // payload not all here yet
        std::string_view payload = in.substr(eol + 2, size);
        pos = eol + 2 + size + 2;
        if (n == 4) {
          sink.OnRequest(c, tok[2], payload);
        } else {
          sink.OnMessage(c, payload);
        }
        continue;
      }
      pos = eol + 2;
      if (line == "PONG") {
        c.acks++;
      } else if (line == "PING") {
        c.out.append("PONG\r\n");
      } else if (line.starts_with("-ERR")) {
        Die("nats-server: " + std::string(line));
      }  // INFO and +OK need nothing
    }
    c.in_start += pos;
  }

 private:
  static void AppendNumber(std::string* out, uint64_t v) {
    char buf[24];
    out->append(buf, std::to_chars(buf, buf + sizeof buf, v).ptr);
  }
  static int Split(std::string_view s, std::string_view* tok, int max) {
    int n = 0;
    size_t i = 0;
    while (i < s.size()) {
      while (i < s.size() && (s[i] == ' ' || s[i] == '\t')) i++;
      if (i == s.size()) break;
      size_t j = i;
      while (j < s.size() && s[j] != ' ' && s[j] != '\t') j++;
      if (n == max) return max + 1;
      tok[n++] = s.substr(i, j - i);
      i = j;
    }
    return n;
  }
};

// ---- RESP3 via distri::protocol (ParseValue, AppendCommand) ----

// Commands are encoded with AppendCommand. Replies are parsed with ParseValue,
// which builds a Value (two passes, one heap string per payload): about four
// times the client CPU per message of the NATS parser above. With --resp-parser
// fast, the four frame shapes on the hot path (an integer, a bulk string, a
// message push and a svc.request push) are instead read in place, and
// anything else still goes through ParseValue; that keeps the load generator
// from being the bottleneck in fan-out, so the comparison is of the servers.
class RespAdapter final : public Adapter {
 public:
  explicit RespAdapter(bool fast) : fast_(fast) {}

  uint64_t Hello(Conn& c) override {
    Command(&c.out, {"HELLO", "3"});
    return 1;
  }
  uint64_t Subscribe(Conn& c, std::string_view subject) override {
    Command(&c.out, {"SUBSCRIBE", subject});
    return 1;
  }
  uint64_t Serve(Conn& c, std::string_view service, int concurrency) override {
    std::string n = std::to_string(concurrency);
    Command(&c.out, {"SVC.SERVE", service, "CONCURRENCY", n});
    return 1;
  }
  uint64_t PrepareCaller(Conn&) override { return 0; }
  void AppendPublish(std::string* out, std::string_view subject,
                     std::string_view payload) override {
    Command(out, {"PUBLISH", subject, payload});
  }
  void AppendPublishFlush(std::string*) override {}  // every PUBLISH is answered
  uint64_t PublishAcks(uint64_t n) override { return n; }
  void AppendRequest(Conn& c, std::string_view service, std::string_view payload) override {
    Command(&c.out, {"CALL", service, payload});
  }
  void AppendReply(std::string* out, std::string_view token, std::string_view payload) override {
    Command(out, {"SVC.REPLY", token, payload});
  }

  void Parse(Conn& c, Sink& sink) override {
    for (;;) {
      if (fast_) {
        Fast f = ParseFast(c, sink);
        if (f == Fast::kDone) continue;
        if (f == Fast::kNeedMore) return;
      }
      size_t consumed = 0;
      ParseResult r = distri::protocol::ParseValue(c.input(), &consumed, &value_, &error_);
      if (r == ParseResult::kNeedMore) return;
      if (r == ParseResult::kError) Die("bad RESP from server: " + error_);
      c.in_start += consumed;
      Dispatch(c, sink);
    }
  }

 private:
  static void Command(std::string* out, std::initializer_list<std::string_view> args) {
    distri::protocol::AppendCommand(out, std::span<const std::string_view>(args.begin(), args.size()));
  }

  void Dispatch(Conn& c, Sink& sink) {
    const Value& v = value_;
    switch (v.type) {
      case Value::Type::kPush:
      case Value::Type::kArray: {
        const auto& e = v.elements;
        std::string_view kind = e.empty() ? std::string_view() : std::string_view(e[0].str);
        if (kind == "message" && e.size() == 3) {
          sink.OnMessage(c, e[2].str);
        } else if (kind == "svc.request" && e.size() == 4) {
          char buf[24];
          std::string_view id(buf, std::to_chars(buf, buf + sizeof buf, e[1].integer).ptr - buf);
          sink.OnRequest(c, id, e[3].str);
        } else if (kind == "subscribe") {
          c.acks++;
        } else {
          Die("unexpected frame: " + distri::protocol::ToDebugString(v));
        }
        return;
      }
      case Value::Type::kBulkString:  // a CALL's answer
        sink.OnMessage(c, v.str);
        return;
      case Value::Type::kError:
      case Value::Type::kBulkError:
        Die("distri: " + v.str);
      default:  // PUBLISH's and SVC.REPLY's integers, +OK, the HELLO map
        c.acks++;
        return;
    }
  }

  // ---- --resp-parser fast ----
  enum class Fast { kDone, kNeedMore, kOther };

  // Reads "<type><decimal>\r\n" at *pos. kOther if it is not that shape.
  static Fast Number(std::string_view in, size_t* pos, char type, int64_t* n) {
    size_t p = *pos;
    if (p >= in.size()) return Fast::kNeedMore;
    if (in[p] != type) return Fast::kOther;
    size_t eol = in.find('\r', p + 1);
    if (eol == std::string_view::npos || eol + 1 >= in.size()) {
      return in.size() - p > 24 ? Fast::kOther : Fast::kNeedMore;
    }
    auto res = std::from_chars(in.data() + p + 1, in.data() + eol, *n);
    if (res.ec != std::errc() || res.ptr != in.data() + eol || in[eol + 1] != '\n') {
      return Fast::kOther;
    }
    *pos = eol + 2;
    return Fast::kDone;
  }
  // Reads "$<len>\r\n<bytes>\r\n" at *pos.
  static Fast Bulk(std::string_view in, size_t* pos, std::string_view* out) {
    size_t p = *pos;
    int64_t len = 0;
    Fast f = Number(in, &p, '$', &len);
    if (f != Fast::kDone) return f;
    if (len < 0) return Fast::kOther;
    size_t n = static_cast<size_t>(len);
    if (in.size() < p + n + 2) return Fast::kNeedMore;
    if (in[p + n] != '\r' || in[p + n + 1] != '\n') return Fast::kOther;
    *out = in.substr(p, n);
    *pos = p + n + 2;
    return Fast::kDone;
  }

  Fast ParseFast(Conn& c, Sink& sink) {
    std::string_view in = c.input();
    if (in.empty()) return Fast::kNeedMore;
    size_t pos = 0;
    int64_t n = 0;
    Fast f = Fast::kOther;
    switch (in[0]) {
      case ':':
        f = Number(in, &pos, ':', &n);
        if (f == Fast::kDone) {
          c.in_start += pos;
          c.acks++;
        }
        return f;
      case '$': {
        std::string_view payload;
        f = Bulk(in, &pos, &payload);
        if (f == Fast::kDone) {
          c.in_start += pos;
          sink.OnMessage(c, payload);
        }
        return f;
      }
      case '>': {
        if ((f = Number(in, &pos, '>', &n)) != Fast::kDone) return f;
        std::string_view kind, a, b;
        if ((f = Bulk(in, &pos, &kind)) != Fast::kDone) return f;
        if (n == 3 && kind == "message") {
          if ((f = Bulk(in, &pos, &a)) != Fast::kDone || (f = Bulk(in, &pos, &b)) != Fast::kDone) {
            return f;
          }
          c.in_start += pos;
          sink.OnMessage(c, b);
          return Fast::kDone;
        }
        if (n == 4 && kind == "svc.request") {
          int64_t id = 0;
          if ((f = Number(in, &pos, ':', &id)) != Fast::kDone) return f;
          if ((f = Bulk(in, &pos, &a)) != Fast::kDone || (f = Bulk(in, &pos, &b)) != Fast::kDone) {
            return f;
          }
          char buf[24];
          std::string_view token(buf, std::to_chars(buf, buf + sizeof buf, id).ptr - buf);
          c.in_start += pos;
          sink.OnRequest(c, token, b);
          return Fast::kDone;
        }
        return Fast::kOther;
      }
      default:
        return Fast::kOther;
    }
  }

  bool fast_;
  Value value_;  // reused, so its element vector keeps its capacity
  std::string error_;
};

// ---------------------------------------------------------------------------
// Event loop
// ---------------------------------------------------------------------------

// Blocks until c has `acks` more acknowledgements than when called, writing
// c.out first. Setup only (the socket is still blocking).
void Await(Adapter& a, Conn& c, uint64_t acks) {
  uint64_t target = c.acks + acks;
  if (!WriteSome(c)) Die("setup write would block");
  NullSink sink;
  while (c.acks < target) {
    ReadSome(c);
    a.Parse(c, sink);
    if (c.pending_out() > 0 && !WriteSome(c)) Die("setup write would block");
  }
}

class Loop {
 public:
  Loop(Adapter* adapter, Sink* sink) : adapter_(adapter), sink_(sink), ep_(epoll_create1(0)) {}
  ~Loop() { close(ep_); }

  void Add(Conn* c) {
    fcntl(c->fd, F_SETFL, fcntl(c->fd, F_GETFL) | O_NONBLOCK);
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.ptr = c;
    if (epoll_ctl(ep_, EPOLL_CTL_ADD, c->fd, &ev) != 0) Die("epoll_ctl");
    conns_.push_back(c);
  }

  // Writes what can be written now; asks for EPOLLOUT if something is left.
  void Flush(Conn* c) {
    bool done = WriteSome(*c);
    if (done == !c->epoll_out) return;
    c->epoll_out = !done;
    epoll_event ev{};
    ev.events = done ? uint32_t{EPOLLIN} : uint32_t{EPOLLIN | EPOLLOUT};
    ev.data.ptr = c;
    epoll_ctl(ep_, EPOLL_CTL_MOD, c->fd, &ev);
  }

  // One round: flushes queued output, waits up to timeout_ms for events,
  // reads and parses (the sink may queue output anywhere), then flushes again.
  void Poll(int timeout_ms) {
    for (Conn* c : conns_) {  // what the caller queued since the last round
      if (c->pending_out() > 0) Flush(c);
    }
    epoll_event events[64];
    int n = epoll_wait(ep_, events, 64, timeout_ms);
    for (int i = 0; i < n; i++) {
      auto* c = static_cast<Conn*>(events[i].data.ptr);
      if (events[i].events & (EPOLLIN | EPOLLERR | EPOLLHUP)) {
        if (ReadSome(*c) > 0) adapter_->Parse(*c, *sink_);
      }
    }
    for (Conn* c : conns_) {
      if (c->pending_out() > 0 || c->epoll_out) Flush(c);
    }
  }

 private:
  Adapter* adapter_;
  Sink* sink_;
  int ep_;
  std::vector<Conn*> conns_;
};

// ---------------------------------------------------------------------------
// Scenarios
// ---------------------------------------------------------------------------

struct Options {
  std::string proto, scenario;
  int port = 0;
  int worker_port = 0;  // reqrep: workers connect here (another cluster node); 0: --port
  uint64_t msgs = 5'000'000;
  double seconds = 3;
  size_t size = 64;
  int subs = 1;
  uint64_t window = 3'000;
  int callers = 10;
  int workers = 2;
  int concurrency = 0;  // 0: --callers
  double stall = 15;
  std::string resp_parser = "value";  // or "fast"
};

// Dies with `what` if `progress` has not changed for opt.stall seconds.
class StallGuard {
 public:
  explicit StallGuard(double seconds) : limit_ns_(static_cast<int64_t>(seconds * 1e9)) {}
  void Check(uint64_t progress, int64_t now, const std::string& what) {
    if (progress != last_ || last_ns_ == 0) {
      last_ = progress;
      last_ns_ = now;
    } else if (now - last_ns_ > limit_ns_) {
      Die("stalled: " + what, 2);
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

class CountingSink final : public Sink {
 public:
  explicit CountingSink(size_t size) : size_(size) {}
  void OnMessage(Conn& c, std::string_view payload) override {
    if (payload.size() != size_) Die("message of " + std::to_string(payload.size()) + " bytes");
    c.messages++;
  }
  void OnRequest(Conn&, std::string_view, std::string_view) override { Die("unexpected request"); }

 private:
  size_t size_;
};

// pub and fanout: one publisher, opt.subs subscribers (0 for pub).
Report RunPublish(Adapter& a, const Options& opt, int subs) {
  const std::string subject = subs == 0 ? "bench.pub" : "bench.fan";
  const std::string payload = Payload(opt.size);
  Conn pub;
  pub.fd = Connect(opt.port);
  Await(a, pub, a.Hello(pub));
  std::vector<std::unique_ptr<Conn>> sub;
  for (int i = 0; i < subs; i++) {
    auto c = std::make_unique<Conn>();
    c->fd = Connect(opt.port);
    c->index = i;
    Await(a, *c, a.Hello(*c));
    Await(a, *c, a.Subscribe(*c, subject));
    sub.push_back(std::move(c));
  }
  pub.acks = 0;

  CountingSink sink(opt.size);
  Loop loop(&a, &sink);
  loop.Add(&pub);
  for (auto& c : sub) loop.Add(c.get());

  // The same batch of encoded messages, appended again and again.
  constexpr uint64_t kBatch = 256;
  std::string batch;
  for (uint64_t i = 0; i < kBatch; i++) a.AppendPublish(&batch, subject, payload);
  const size_t per_msg = batch.size() / kBatch;
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
        if (subs > 0) room = std::min(room, slowest + opt.window - std::min(sent, slowest + opt.window));
        if (room == 0) {
          blocked = true;
          break;
        }
        pub.out.append(batch, 0, room * per_msg);
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
    guard.Check(progress, now,
                "sent " + std::to_string(sent) + ", publisher acks " + std::to_string(pub.acks) +
                    ", slowest subscriber " + std::to_string(slowest));
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
    guard.Check(pub.acks, NowNs(), "publisher acks " + std::to_string(pub.acks));
  }
  Report r;
  r.seconds = secs;
  uint64_t delivered = subs == 0 ? sent : sent * static_cast<uint64_t>(subs);
  r.rate = static_cast<double>(delivered) / secs;
  r.extra = "published=" + std::to_string(sent) + " delivered=" + std::to_string(delivered) +
            " client_cpu_s=" + std::to_string(cpu);
  close(pub.fd);
  for (auto& c : sub) close(c->fd);
  return r;
}

// reqrep: callers with one outstanding request each; workers answer at once.
class RequestSink final : public Sink {
 public:
  RequestSink(Adapter* a, const Options& opt, std::string_view service, std::string_view payload)
      : a_(a), opt_(opt), service_(service), payload_(payload) {}

  void OnMessage(Conn& c, std::string_view reply) override {  // a caller's answer
    int64_t now = NowNs();
    if (reply != payload_) Die("wrong reply payload");
    latencies.push_back(now - c.sent_at);
    c.messages++;
    completed++;
    outstanding--;
    if (!stopping) Send(c, now);
  }
  void OnRequest(Conn& c, std::string_view token, std::string_view payload) override {
    a_->AppendReply(&c.out, token, payload);  // echo
    c.messages++;
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

 private:
  Adapter* a_;
  const Options& opt_;
  std::string service_, payload_;
};

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
    auto c = std::make_unique<Conn>();
    c->fd = Connect(opt.worker_port > 0 ? opt.worker_port : opt.port);
    c->index = i;
    Await(a, *c, a.Hello(*c));
    Await(a, *c, a.Serve(*c, service, concurrency));
    workers.push_back(std::move(c));
  }
  for (int i = 0; i < opt.callers; i++) {
    auto c = std::make_unique<Conn>();
    c->fd = Connect(opt.port);
    c->index = i;
    Await(a, *c, a.Hello(*c));
    Await(a, *c, a.PrepareCaller(*c));
    callers.push_back(std::move(c));
  }

  RequestSink sink(&a, opt, service, payload);
  sink.latencies.reserve(1 << 20);
  Loop loop(&a, &sink);
  for (auto& c : workers) loop.Add(c.get());
  for (auto& c : callers) loop.Add(c.get());

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
    guard.Check(sink.completed, now,
                std::to_string(sink.completed) + " of " + std::to_string(sink.issued) +
                    " calls answered");
  }
  const double cpu = CpuSeconds() - cpu0;

  // Untimed: let the workers read the acks of their last SVC.REPLYs.
  for (int i = 0; i < 3; i++) loop.Poll(10);

  Report r;
  r.seconds = static_cast<double>(end - start) / 1e9;
  r.rate = static_cast<double>(sink.completed) / r.seconds;
  char buf[256];
  std::snprintf(buf, sizeof buf,
                "calls=%llu p50_us=%.1f p90_us=%.1f p99_us=%.1f max_us=%.1f client_cpu_s=%.3f",
                static_cast<unsigned long long>(sink.completed),
                PercentileUs(sink.latencies, 0.50), PercentileUs(sink.latencies, 0.90),
                PercentileUs(sink.latencies, 0.99), PercentileUs(sink.latencies, 1.0), cpu);
  r.extra = buf;
  r.extra += " per_worker=";  // requests each worker answered: the balancing
  for (auto& w : workers) {
    if (w->index > 0) r.extra.push_back(',');
    r.extra.append(std::to_string(w->messages));
  }
  for (auto& c : workers) close(c->fd);
  for (auto& c : callers) close(c->fd);
  return r;
}

[[noreturn]] void Usage() {
  std::fprintf(stderr,
               "usage: msg_bench --proto nats|resp --port P --scenario pub|fanout|reqrep\n"
               "                 [--msgs N] [--seconds S] [--size BYTES] [--subs N] [--window N]\n"
               "                 [--callers N] [--workers N] [--concurrency N] [--stall S]\n"
               "                 [--resp-parser value|fast] [--worker-port P]\n");
  std::exit(64);
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
    else if (flag == "--worker-port") opt.worker_port = std::atoi(v.c_str());
    else if (flag == "--msgs") opt.msgs = std::strtoull(v.c_str(), nullptr, 10);
    else if (flag == "--seconds") opt.seconds = std::atof(v.c_str());
    else if (flag == "--size") opt.size = std::strtoull(v.c_str(), nullptr, 10);
    else if (flag == "--subs") opt.subs = std::atoi(v.c_str());
    else if (flag == "--window") opt.window = std::strtoull(v.c_str(), nullptr, 10);
    else if (flag == "--callers") opt.callers = std::atoi(v.c_str());
    else if (flag == "--workers") opt.workers = std::atoi(v.c_str());
    else if (flag == "--concurrency") opt.concurrency = std::atoi(v.c_str());
    else if (flag == "--stall") opt.stall = std::atof(v.c_str());
    else if (flag == "--resp-parser") opt.resp_parser = v;
    else Usage();
  }
  if (opt.port <= 0 || opt.msgs == 0 || opt.window == 0) Usage();
  std::unique_ptr<Adapter> adapter;
  if (opt.proto == "nats") {
    adapter = std::make_unique<NatsAdapter>();
  } else if (opt.proto == "resp") {
    if (opt.resp_parser != "value" && opt.resp_parser != "fast") Usage();
    adapter = std::make_unique<RespAdapter>(opt.resp_parser == "fast");
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
