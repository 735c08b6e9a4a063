// msg_bench's connection layer: socket I/O, the NATS and RESP3 adapters,
// and the epoll loop. See msg_proto.h.

#include "msg_proto.h"

#include <fcntl.h>
#include <sys/epoll.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstring>
#include <initializer_list>
#include <span>

#include "bench_util.h"
#include "protocol/resp_parser.h"

namespace distri::bench {

using distri::protocol::ParseResult;
using distri::protocol::Value;

// ---------------------------------------------------------------------------
// Connections
// ---------------------------------------------------------------------------

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

void Sink::OnError(Conn& c, std::string_view error) {
  Die("error reply on connection " + std::to_string(c.index) + " (port " +
      std::to_string(c.port) + "): " + std::string(error), 3);
}

// ---------------------------------------------------------------------------
// Protocol adapters
// ---------------------------------------------------------------------------

namespace {

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
  uint64_t AcksPerPublish() override { return 0; }
  bool DropsUnservedRequests() override { return true; }
  void AppendRequest(Conn& c, std::string_view service, std::string_view payload,
                     int64_t) override {
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
  uint64_t AcksPerPublish() override { return 1; }
  bool DropsUnservedRequests() override { return false; }
  void AppendRequest(Conn& c, std::string_view service, std::string_view payload,
                     int64_t timeout_ms) override {
    if (timeout_ms <= 0) {
      Command(&c.out, {"CALL", service, payload});
    } else {
      std::string ms = std::to_string(timeout_ms);
      Command(&c.out, {"CALL", service, payload, "TIMEOUT", ms});
    }
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
    distri::protocol::AppendCommand(out,
                                    std::span<const std::string_view>(args.begin(), args.size()));
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
        sink.OnError(c, v.str);
        return;
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

}  // namespace

std::unique_ptr<Adapter> MakeNatsAdapter() { return std::make_unique<NatsAdapter>(); }
std::unique_ptr<Adapter> MakeRespAdapter(bool fast) { return std::make_unique<RespAdapter>(fast); }

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

Loop::Loop(Adapter* adapter, Sink* sink)
    : adapter_(adapter), sink_(sink), ep_(epoll_create1(0)) {
  if (ep_ < 0) Die("epoll_create1 failed");
}

Loop::~Loop() { close(ep_); }

void Loop::Add(Conn* c) {
  fcntl(c->fd, F_SETFL, fcntl(c->fd, F_GETFL) | O_NONBLOCK);
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.ptr = c;
  if (epoll_ctl(ep_, EPOLL_CTL_ADD, c->fd, &ev) != 0) Die("epoll_ctl");
  conns_.push_back(c);
}

void Loop::Flush(Conn* c) {
  bool done = WriteSome(*c);
  if (done == !c->epoll_out) return;
  c->epoll_out = !done;
  epoll_event ev{};
  ev.events = done ? uint32_t{EPOLLIN} : uint32_t{EPOLLIN | EPOLLOUT};
  ev.data.ptr = c;
  epoll_ctl(ep_, EPOLL_CTL_MOD, c->fd, &ev);
}

void Loop::Poll(int timeout_ms) {
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

}  // namespace distri::bench
