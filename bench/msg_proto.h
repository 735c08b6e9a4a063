// The connection layer of msg_bench: a socket with its buffers (Conn), the
// two protocol adapters (the NATS text protocol and RESP3) behind one
// interface (Adapter), what a parser reports to a scenario (Sink), and the
// single-threaded epoll loop that drives every connection (Loop).
//
// msg_bench.cc holds the scenarios; they see a server only through an
// Adapter, so nats-server and Distri get the same pattern of work. Everything
// here runs on msg_bench's one thread.

#ifndef DISTRI_BENCH_MSG_PROTO_H_
#define DISTRI_BENCH_MSG_PROTO_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace distri::bench {

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
  int port = 0;   // the server port it is connected to (for reports)
  std::unique_ptr<char[]> in{new char[kInCap]};
  size_t in_start = 0, in_end = 0;
  std::string out;
  size_t out_pos = 0;
  bool epoll_out = false;

  // Counters the adapters and scenarios update.
  uint64_t acks = 0;      // replies to our own commands (PUBLISH, SVC.REPLY, ...), PONGs
  uint64_t messages = 0;  // messages or call replies received (probes excluded)
  uint64_t probes = 0;    // readiness probes received (see msg_bench.cc, "Readiness")
  uint64_t seq = 0;       // NATS caller: next reply-subject suffix
  int64_t sent_at = 0;    // caller: when its outstanding request was sent
  bool probe_outstanding = false;
  std::string inbox;       // NATS caller: "_INBOX.<id>."
  std::string last_error;  // caller: the last error reply (a probe's NOWORKER, ...)

  size_t pending_out() const { return out.size() - out_pos; }
  std::string_view input() const { return {in.get() + in_start, in_end - in_start}; }
};

// Reads what the socket has into c.in. Returns bytes read; 0 if it would
// block (non-blocking sockets); dies on EOF or error.
size_t ReadSome(Conn& c);

// Writes as much of c.out as the socket takes. Returns true when all is out.
bool WriteSome(Conn& c);

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
  // An error reply (RESP only: a CALL's NOWORKER, TIMEOUT, ...). Fatal unless
  // the scenario expects it.
  virtual void OnError(Conn& c, std::string_view error);
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
  // Acks one publish produces by itself (RESP: its reply; NATS: none).
  virtual uint64_t AcksPerPublish() = 0;
  // A request; timeout_ms > 0 bounds it in the server where the protocol can
  // (Distri's CALL ... TIMEOUT answers NOWORKER when no worker is known).
  virtual void AppendRequest(Conn& c, std::string_view service, std::string_view payload,
                             int64_t timeout_ms = 0) = 0;
  virtual void AppendReply(std::string* out, std::string_view token, std::string_view payload) = 0;
  // True when a request nobody serves is dropped without an answer (NATS
  // without no-responders), so a probe must be resent on a timer.
  virtual bool DropsUnservedRequests() = 0;

  // Parses the complete frames at the front of c.input(), consuming them.
  virtual void Parse(Conn& c, Sink& sink) = 0;
};

std::unique_ptr<Adapter> MakeNatsAdapter();
// fast: read the hot frames in place instead of through ParseValue.
std::unique_ptr<Adapter> MakeRespAdapter(bool fast);

// ---------------------------------------------------------------------------
// Event loop
// ---------------------------------------------------------------------------

// Blocks until c has `acks` more acknowledgements than when called, writing
// c.out first. Setup only (the socket is still blocking).
void Await(Adapter& a, Conn& c, uint64_t acks);

class Loop {
 public:
  Loop(Adapter* adapter, Sink* sink);
  ~Loop();
  Loop(const Loop&) = delete;
  Loop& operator=(const Loop&) = delete;

  // Makes c non-blocking and watches it.
  void Add(Conn* c);

  // Writes what can be written now; asks for EPOLLOUT if something is left.
  void Flush(Conn* c);

  // One round: flushes queued output, waits up to timeout_ms for events,
  // reads and parses (the sink may queue output anywhere), then flushes again.
  void Poll(int timeout_ms);

 private:
  Adapter* adapter_;
  Sink* sink_;
  int ep_;
  std::vector<Conn*> conns_;
};

}  // namespace distri::bench

#endif  // DISTRI_BENCH_MSG_PROTO_H_
