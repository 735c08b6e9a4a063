// The cluster transport on libuv; see transport.h. Wire format: frame.h and
// docs/replication.md, "Cluster links".
//
// A Link is one TCP connection. Its life: connecting (outbound only) ->
// handshake -> up -> closing. Invariants:
//  1. A link is in links_ exactly while it is not closing; a closing link has
//     called uv_close and is deleted by the close callback, which touches
//     nothing but the link (so the Transport may be gone by then).
//  2. A link is in up_[peer] exactly while it is up and not closing.
//  3. peers_[id].link / dials_[address].link point to the outbound link
//     working for them (any state before closing), or are null while waiting
//     to retry at next_attempt_ms.
//  4. While in the handshake, at most kMaxHandshakeMessage bytes of the peer
//     are buffered (hs_buf); reads are asked for no more than fits.
//  5. queued == the sum of the sizes of `out`; the first `in_flight` chunks
//     belong to the uv_write in progress and are not touched until it ends.

#include "cluster/transport.h"

#include "net/connection.h"

#include <arpa/inet.h>
#include <openssl/crypto.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <deque>

#include "base/logging.h"
#include "cluster/frame.h"

namespace distri::cluster {

namespace {

// Reads of frames ask for this much room at a time (more for a frame that
// is bigger and already announced by its header).
constexpr size_t kReadChunk = 64 * 1024;
// A read buffer bigger than this is freed once drained (after a big frame).
constexpr size_t kShrinkAbove = 1 << 20;
// Payloads from this size get a queue chunk of their own, allocated to size
// (copied once); smaller frames are appended to a shared batch chunk.
constexpr size_t kOwnChunkFrom = 16 * 1024;
// A batch chunk is not grown past this; a new one is started.
constexpr size_t kBatchBytes = 64 * 1024;
// Buffers per uv_write.
constexpr size_t kMaxBufs = 64;
// uv_buf_t lengths are unsigned int; keep every chunk well below.
constexpr uint64_t kMaxFrameBytesLimit = 1ull << 30;

constexpr size_t kFrameOverhead = kFrameHeaderBytes + kFrameTagBytes;

template <typename T>
void CloseAndDelete(T* handle) {
  uv_close(reinterpret_cast<uv_handle_t*>(handle),
           [](uv_handle_t* h) { delete reinterpret_cast<T*>(h); });
}

}  // namespace

// ---------------------------------------------------------------------------
// Link

class Transport::Link {
 public:
  enum class State : uint8_t { kConnecting, kHandshake, kUp };

  Link(Transport* owner, Role role, std::string address)
      : owner(owner), role(role), address(std::move(address)) {
    tcp.data = this;
    connect_req.data = this;
    write_req.data = this;
  }
  ~Link() { std::free(rbuf); }
  Link(const Link&) = delete;
  Link& operator=(const Link&) = delete;

  Direction send_direction() const {
    return role == Role::kInitiator ? Direction::kFromInitiator : Direction::kFromResponder;
  }
  Direction receive_direction() const {
    return role == Role::kInitiator ? Direction::kFromResponder : Direction::kFromInitiator;
  }
  // A name for log lines.
  std::string Describe() const {
    std::string s = role == Role::kInitiator ? "cluster link to " : "cluster link from ";
    s += address;
    const uint64_t node = peer != 0 ? peer : expected_peer;
    if (node != 0) s += " (node " + std::to_string(node) + ")";
    return s;
  }

  // Makes the read buffer hold at least `want` bytes after compacting.
  void Reserve(size_t want, TransportStats* stats) {
    if (rpos > 0) {
      std::memmove(rbuf, rbuf + rpos, rlen - rpos);
      rlen -= rpos;
      rpos = 0;
    }
    if (rcap >= want) return;
    char* grown = static_cast<char*>(std::realloc(rbuf, want));
    if (grown == nullptr) throw std::bad_alloc();
    stats->read_buffer_bytes += want - rcap;
    stats->max_read_buffer_bytes = std::max<uint64_t>(stats->max_read_buffer_bytes, want);
    rbuf = grown;
    rcap = want;
  }
  void FreeReadBuffer(TransportStats* stats) {
    stats->read_buffer_bytes -= rcap;
    std::free(rbuf);
    rbuf = nullptr;
    rcap = rpos = rlen = 0;
  }

  // The chunk to append `extra` bytes of small frames to.
  std::string& Tail(size_t extra) {
    if (out.size() > in_flight && tail_open && out.back().size() + extra <= kBatchBytes) {
      return out.back();
    }
    out.emplace_back();
    out.back().reserve(std::max(extra, size_t{4096}));
    tail_open = true;
    return out.back();
  }

  uv_tcp_t tcp;
  uv_connect_t connect_req;
  uv_write_t write_req;
  Transport* const owner;  // used only while not closing (invariant 1)
  const Role role;
  std::string address;       // dialled, or the peer's (inbound)
  uint64_t expected_peer = 0;  // outbound for SetPeer: the node id it must be
  uint64_t owner_peer = 0;     // the peers_ entry it works for (0: none)
  std::string dial_address;    // the dials_ entry it works for (empty: none)
  State state = State::kConnecting;
  bool closing = false;
  bool inbound_handshaking = false;  // counted in inbound_handshaking_
  int64_t deadline_ms = 0;     // of the handshake
  std::unique_ptr<Handshake> handshake;
  char hs_buf[kMaxHandshakeMessage];
  size_t hs_len = 0;
  uint64_t peer = 0;           // once up
  uint64_t cluster = 0;
  std::unique_ptr<FrameMac> mac;
  uint64_t send_seq = 0;
  uint64_t recv_seq = 0;
  // Read buffer: bytes [rpos, rlen) of rbuf are unparsed.
  char* rbuf = nullptr;
  size_t rcap = 0, rpos = 0, rlen = 0;
  // Output queue (invariant 5).
  std::deque<std::string> out;
  size_t in_flight = 0;
  uint64_t queued = 0;
  bool tail_open = false;
  bool writing = false;
};

// ---------------------------------------------------------------------------
// Construction, listening, closing

Transport::Transport(uv_loop_t* loop, TransportOptions options, TransportHandler* handler)
    : loop_(loop),
      options_(std::move(options)),
      handler_(handler),
      limiter_(options_.handshake_failures_per_sec),
      jitter_state_(options_.node_id * 0x9e3779b97f4a7c15ull ^ uv_hrtime()) {
  CHECK(options_.node_id != 0) << "cluster transport needs a node id";
  CHECK(options_.secret != nullptr) << "cluster transport needs the cluster secret";
  CHECK(options_.max_frame_bytes <= kMaxFrameBytesLimit) << "max_frame_bytes over 1 GiB";
  if (jitter_state_ == 0) jitter_state_ = 1;
  timer_ = new uv_timer_t;
  uv_timer_init(loop_, timer_);
  timer_->data = this;
  idle_ = new uv_idle_t;
  uv_idle_init(loop_, idle_);
  idle_->data = this;
}

Transport::~Transport() { Close(); }

bool Transport::ParseAddress(std::string_view address, sockaddr_storage* out) {
  const size_t colon = address.rfind(':');
  if (colon == std::string_view::npos || colon + 1 == address.size()) return false;
  std::string_view host = address.substr(0, colon);
  const std::string_view port_text = address.substr(colon + 1);
  if (port_text.size() > 5) return false;
  int port = 0;
  for (char c : port_text) {
    if (c < '0' || c > '9') return false;
    port = port * 10 + (c - '0');
  }
  if (port < 1 || port > 65535) return false;
  std::memset(out, 0, sizeof *out);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    const std::string ip(host.substr(1, host.size() - 2));
    return uv_ip6_addr(ip.c_str(), port, reinterpret_cast<sockaddr_in6*>(out)) == 0;
  }
  const std::string ip(host);
  if (uv_ip4_addr(ip.c_str(), port, reinterpret_cast<sockaddr_in*>(out)) == 0) return true;
  return uv_ip6_addr(ip.c_str(), port, reinterpret_cast<sockaddr_in6*>(out)) == 0;
}

Status Transport::Listen() {
  if (closed_) return Status::Internal("cluster transport is closed");
  if (listener_ != nullptr) return Status::Internal("cluster transport listens already");
  std::string where = options_.bind.find(':') != std::string::npos
                          ? "[" + options_.bind + "]:" + std::to_string(options_.port)
                          : options_.bind + ":" + std::to_string(options_.port);
  sockaddr_storage addr;
  if (!ParseAddress(where, &addr) && options_.port != 0) {
    return Status::InvalidArgument("cluster port " + where + ": not a numeric IP address");
  }
  if (options_.port == 0) {  // ParseAddress refuses port 0
    std::memset(&addr, 0, sizeof addr);
    if (uv_ip4_addr(options_.bind.c_str(), 0, reinterpret_cast<sockaddr_in*>(&addr)) != 0 &&
        uv_ip6_addr(options_.bind.c_str(), 0, reinterpret_cast<sockaddr_in6*>(&addr)) != 0) {
      return Status::InvalidArgument("cluster port " + where + ": not a numeric IP address");
    }
  }
  listener_ = new uv_tcp_t;
  uv_tcp_init(loop_, listener_);
  listener_->data = this;
  int rc = uv_tcp_bind(listener_, reinterpret_cast<const sockaddr*>(&addr), 0);
  if (rc == 0) rc = uv_listen(reinterpret_cast<uv_stream_t*>(listener_), 128, OnConnection);
  if (rc != 0) {
    CloseAndDelete(listener_);
    listener_ = nullptr;
    return Status::IOError("cluster port " + where + ": " + uv_strerror(rc));
  }
  sockaddr_storage bound;
  int len = sizeof bound;
  uv_tcp_getsockname(listener_, reinterpret_cast<sockaddr*>(&bound), &len);
  port_ = ntohs(bound.ss_family == AF_INET6 ? reinterpret_cast<sockaddr_in6*>(&bound)->sin6_port
                                             : reinterpret_cast<sockaddr_in*>(&bound)->sin_port);
  return Status::Ok();
}

void Transport::Close() {
  if (closed_) return;
  closed_ = true;
  if (listener_ != nullptr) CloseAndDelete(listener_);
  listener_ = nullptr;
  uv_timer_stop(timer_);
  CloseAndDelete(timer_);
  timer_ = nullptr;
  uv_idle_stop(idle_);
  CloseAndDelete(idle_);
  idle_ = nullptr;
  peers_.clear();
  dials_.clear();
  const std::vector<Link*> links(links_.begin(), links_.end());
  for (Link* link : links) CloseLink(link, /*notify=*/false);
  up_.clear();
}

int64_t Transport::Now() const { return static_cast<int64_t>(uv_now(loop_)); }

void Transport::LogFailure(base::LogLimiter* limiter, const std::string& line) {
  uint64_t suppressed = 0;
  if (limiter->Allow(Now(), &suppressed)) {
    LOG(WARNING) << line << base::SuppressedNote(suppressed);
  }
}

// ---------------------------------------------------------------------------
// Peers and dialling

void Transport::SetPeer(uint64_t id, std::string address) {
  if (closed_ || id == options_.node_id) return;
  auto [it, inserted] = peers_.try_emplace(id);
  Peer& peer = it->second;
  if (!inserted && peer.address == address) return;
  Link* old = peer.link;
  peer = Peer{std::move(address)};
  Connect(&peer.link, peer.address, id, id, "", &peer.next_attempt_ms, &peer.backoff_ms);
  if (old != nullptr) {
    old->owner_peer = 0;
    CloseLink(old, /*notify=*/true);
  }
}

void Transport::RemovePeer(uint64_t id) {
  auto it = peers_.find(id);
  if (it != peers_.end()) {
    Link* outbound = it->second.link;
    peers_.erase(it);
    if (outbound != nullptr) {
      outbound->owner_peer = 0;
      CloseLink(outbound, /*notify=*/false);
    }
  }
  auto up = up_.find(id);
  if (up != up_.end()) {
    const std::vector<Link*> links = up->second;
    for (Link* link : links) CloseLink(link, /*notify=*/false);
  }
  last_contact_.erase(id);
  Rearm();
}

void Transport::Dial(std::string address) {
  if (closed_ || dials_.contains(address)) return;
  Dialing& dial = dials_[address];
  Connect(&dial.link, address, 0, 0, address, &dial.next_attempt_ms, &dial.backoff_ms);
}

void Transport::CancelDial(std::string_view address) {
  auto it = dials_.find(std::string(address));
  if (it == dials_.end()) return;
  Link* link = it->second.link;
  dials_.erase(it);
  if (link != nullptr) {
    link->dial_address.clear();
    CloseLink(link, /*notify=*/false);
  }
  Rearm();
}

void Transport::ScheduleRetry(int64_t* next_attempt_ms, uint64_t* backoff_ms) {
  *backoff_ms = *backoff_ms == 0 ? options_.reconnect_min_ms
                                 : std::min(*backoff_ms * 2, options_.reconnect_max_ms);
  *backoff_ms = std::max<uint64_t>(*backoff_ms, 1);  // never a busy redial loop
  // Jitter in [backoff/2, backoff], so that nodes restarted together do not
  // redial in lockstep.
  jitter_state_ ^= jitter_state_ << 13;
  jitter_state_ ^= jitter_state_ >> 7;
  jitter_state_ ^= jitter_state_ << 17;
  const uint64_t half = *backoff_ms / 2;
  *next_attempt_ms = Now() + static_cast<int64_t>(half + jitter_state_ % (*backoff_ms - half + 1));
}

void Transport::Connect(Link** slot, const std::string& address, uint64_t expected_peer,
                        uint64_t owner_peer, const std::string& dial_address,
                        int64_t* next_attempt_ms, uint64_t* backoff_ms) {
  sockaddr_storage addr;
  if (!ParseAddress(address, &addr)) {
    LogFailure(&outbound_log_, "cluster: cannot dial \"" + address +
                                   "\": not a numeric host:port (e.g. 10.0.0.2:7381)");
    *backoff_ms = options_.reconnect_max_ms;
    ScheduleRetry(next_attempt_ms, backoff_ms);
    Rearm();
    return;
  }
  auto* link = new Link(this, Role::kInitiator, address);
  link->expected_peer = expected_peer;
  link->owner_peer = owner_peer;
  link->dial_address = dial_address;
  link->deadline_ms = Now() + static_cast<int64_t>(options_.handshake_timeout_ms);
  uv_tcp_init(loop_, &link->tcp);
  links_.insert(link);
  stats_.handshaking++;
  *slot = link;
  // Outbound links leave from the node's own address when it has one (not a wildcard): on
  // a multi-homed host peers see the address they expect, and a test proxy can tell nodes
  // that share a host apart by source address.
  sockaddr_storage local;
  if (options_.bind != "0.0.0.0" && options_.bind != "::" &&
      (uv_ip4_addr(options_.bind.c_str(), 0, reinterpret_cast<sockaddr_in*>(&local)) == 0 ||
       uv_ip6_addr(options_.bind.c_str(), 0, reinterpret_cast<sockaddr_in6*>(&local)) == 0)) {
    (void)uv_tcp_bind(&link->tcp, reinterpret_cast<const sockaddr*>(&local), 0);
  }
  const int rc = uv_tcp_connect(&link->connect_req, &link->tcp,
                                reinterpret_cast<const sockaddr*>(&addr), OnConnect);
  if (rc != 0) {
    FailHandshake(link, Status::IOError(uv_strerror(rc)), /*timeout=*/false);
    return;
  }
  Rearm();
}

void Transport::OnConnect(uv_connect_t* req, int status) {
  auto* link = static_cast<Link*>(req->data);
  if (link->closing) return;  // cancelled by uv_close
  Transport* self = link->owner;
  if (status != 0) {
    self->FailHandshake(link, Status::IOError(uv_strerror(status)), /*timeout=*/false);
    return;
  }
  self->StartHandshake(link);
}

// ---------------------------------------------------------------------------
// Accepting

void Transport::OnConnection(uv_stream_t* server, int status) {
  auto* self = static_cast<Transport*>(server->data);
  if (status != 0) {
    self->LogFailure(&self->refused_log_,
                     std::string("cluster port: accept failed: ") + uv_strerror(status));
    return;
  }
  self->Accept();
}

void Transport::Accept() {
  auto* link = new Link(this, Role::kResponder, "?");
  uv_tcp_init(loop_, &link->tcp);
  links_.insert(link);
  stats_.handshaking++;
  if (uv_accept(reinterpret_cast<uv_stream_t*>(listener_),
                reinterpret_cast<uv_stream_t*>(&link->tcp)) != 0) {
    CloseLink(link, /*notify=*/false);
    return;
  }
  sockaddr_storage addr;
  int len = sizeof addr;
  if (uv_tcp_getpeername(&link->tcp, reinterpret_cast<sockaddr*>(&addr), &len) == 0) {
    link->address = net::FormatAddress(addr);
  }
  // Refusals cost nothing but the accept: no handshake state, no read.
  const char* refusal = nullptr;
  if (options_.cluster_id == 0) {
    refusal = "this node is not a member of a cluster yet";
  } else if (inbound_handshaking_ >= options_.max_handshaking) {
    refusal = "too many connections in their handshake";
  } else if (!limiter_.Allowed(link->address, Now())) {
    limiter_.CountRefused();
    refusal = "too many failed handshakes from this address";
  }
  if (refusal != nullptr) {
    stats_.connections_refused++;
    LogFailure(&refused_log_, "cluster port: refused a connection from " + link->address + ": " +
                                  refusal);
    CloseLink(link, /*notify=*/false);
    return;
  }
  link->inbound_handshaking = true;
  inbound_handshaking_++;
  link->deadline_ms = Now() + static_cast<int64_t>(options_.handshake_timeout_ms);
  StartHandshake(link);
  Rearm();
}

// ---------------------------------------------------------------------------
// The handshake

void Transport::StartHandshake(Link* link) {
  link->state = Link::State::kHandshake;
  uv_tcp_nodelay(&link->tcp, 1);
  link->handshake = std::make_unique<Handshake>(HandshakeConfig{
      link->role, options_.secret, options_.cluster_id, options_.node_id});
  std::string out;
  Status status = link->handshake->Start(&out);
  if (!status.ok()) {
    FailHandshake(link, status, /*timeout=*/false);
    return;
  }
  const int rc = uv_read_start(reinterpret_cast<uv_stream_t*>(&link->tcp), OnAlloc, OnRead);
  if (rc != 0) {
    FailHandshake(link, Status::IOError(uv_strerror(rc)), /*timeout=*/false);
    return;
  }
  if (!out.empty()) EnqueueRaw(link, out);
}

void Transport::FailHandshake(Link* link, const Status& status, bool timeout) {
  stats_.handshake_failures++;
  if (timeout) stats_.handshake_timeouts++;
  if (link->role == Role::kResponder) {
    limiter_.RecordFailure(link->address, Now());
    LogFailure(&inbound_log_, "cluster port: handshake from " + link->address + " failed: " +
                                  status.message());
  } else {
    LogFailure(&outbound_log_, link->Describe() + ": " + status.message());
  }
  CloseLink(link, /*notify=*/false);
}

void Transport::FeedHandshake(Link* link) {
  size_t consumed = 0;
  std::string out;
  Status status =
      link->handshake->Feed(std::string_view(link->hs_buf, link->hs_len), &consumed, &out);
  if (!out.empty()) EnqueueRaw(link, out);
  if (!status.ok()) {
    FailHandshake(link, status, /*timeout=*/false);
    return;
  }
  std::memmove(link->hs_buf, link->hs_buf + consumed, link->hs_len - consumed);
  link->hs_len -= consumed;
  if (!link->handshake->done()) {
    // A partial message is shorter than the largest one, so there is room.
    if (link->hs_len >= kMaxHandshakeMessage) {
      FailHandshake(link, Status::Internal("handshake buffer full"), /*timeout=*/false);
    }
    return;
  }
  // What followed the last handshake message is the start of the frames.
  if (link->hs_len > 0) {
    link->Reserve(std::max(kReadChunk, link->hs_len), &stats_);
    std::memcpy(link->rbuf, link->hs_buf, link->hs_len);
    link->rlen = link->hs_len;
    link->hs_len = 0;
  }
  LinkUp(link);
  if (link->closing) return;
  ParseFrames(link);
}

void Transport::LinkUp(Link* link) {
  const PeerIdentity peer = *link->handshake->peer();
  std::array<uint8_t, kMacBytes> key = *link->handshake->session_key();
  Result<std::unique_ptr<FrameMac>> mac = FrameMac::Create(key);
  OPENSSL_cleanse(key.data(), key.size());
  if (!mac.ok()) {
    FailHandshake(link, mac.status(), /*timeout=*/false);
    return;
  }
  if (link->expected_peer != 0 && peer.node_id != link->expected_peer) {
    stats_.peer_id_mismatches++;
    FailHandshake(link,
                  Status::InvalidArgument("the node there is node " +
                                          std::to_string(peer.node_id) + ", not node " +
                                          std::to_string(link->expected_peer) +
                                          " (a stale address?)"),
                  /*timeout=*/false);
    return;
  }
  link->handshake.reset();  // wipes the session key and nonce
  link->mac = std::move(mac).value();
  link->state = Link::State::kUp;
  link->peer = peer.node_id;
  link->cluster = peer.cluster_id;
  if (link->inbound_handshaking) {
    link->inbound_handshaking = false;
    inbound_handshaking_--;
  }
  stats_.handshaking--;
  stats_.links_up++;
  stats_.links_opened++;
  up_[peer.node_id].push_back(link);
  last_contact_[peer.node_id] = Now();
  if (link->owner_peer != 0) {
    auto it = peers_.find(link->owner_peer);
    if (it != peers_.end()) it->second.backoff_ms = 0;
  }
  if (!link->dial_address.empty()) {
    dials_.erase(link->dial_address);  // done: the link lives on, not redialled
    link->dial_address.clear();
  }
  Rearm();
  handler_->OnLinkUp(peer.node_id, peer.cluster_id);
}

// ---------------------------------------------------------------------------
// Reading

void Transport::OnAlloc(uv_handle_t* handle, size_t, uv_buf_t* buf) {
  auto* link = static_cast<Link*>(handle->data);
  *buf = uv_buf_init(nullptr, 0);
  if (link->closing) return;
  if (link->state != Link::State::kUp) {
    // Invariant 4: never more than the largest handshake message.
    *buf = uv_buf_init(link->hs_buf + link->hs_len,
                       static_cast<unsigned>(kMaxHandshakeMessage - link->hs_len));
    return;
  }
  size_t want = link->rlen - link->rpos + kReadChunk;
  if (link->rlen - link->rpos >= kFrameHeaderBytes) {
    // Checked against max_frame_bytes by ParseFrames already.
    const FrameHeader header = DecodeFrameHeader(link->rbuf + link->rpos);
    const size_t frame = kFrameOverhead + header.payload_bytes;
    if (frame > kReadChunk) want = frame;  // exactly this frame: the bound
  }
  link->Reserve(want, &link->owner->stats_);
  *buf = uv_buf_init(link->rbuf + link->rlen, static_cast<unsigned>(link->rcap - link->rlen));
}

void Transport::OnRead(uv_stream_t* stream, ssize_t nread, const uv_buf_t*) {
  auto* link = static_cast<Link*>(stream->data);
  if (link->closing || nread == 0) return;
  Transport* self = link->owner;
  if (nread < 0) {
    const std::string why = nread == UV_EOF ? "closed by the peer" : uv_strerror(nread);
    if (link->state != Link::State::kUp) {
      self->FailHandshake(link, Status::IOError("during the handshake: " + why), false);
    } else {
      self->LogFailure(&self->frame_log_, link->Describe() + ": " + why);
      self->CloseLink(link, /*notify=*/true);
    }
    return;
  }
  if (link->state != Link::State::kUp) {
    link->hs_len += static_cast<size_t>(nread);
    self->FeedHandshake(link);
    return;
  }
  link->rlen += static_cast<size_t>(nread);
  self->ParseFrames(link);
}

void Transport::BadFrame(Link* link, const std::string& why) {
  stats_.bad_frames++;
  LogFailure(&frame_log_, link->Describe() + ": " + why + "; closing the link");
  CloseLink(link, /*notify=*/true);
}

void Transport::ParseFrames(Link* link) {
  while (link->rlen - link->rpos >= kFrameHeaderBytes) {
    const char* start = link->rbuf + link->rpos;
    const FrameHeader header = DecodeFrameHeader(start);
    if (header.payload_bytes > options_.max_frame_bytes) {
      BadFrame(link, "frame of " + std::to_string(header.payload_bytes) +
                         " bytes is over the limit of " +
                         std::to_string(options_.max_frame_bytes));
      return;
    }
    const size_t frame = kFrameOverhead + header.payload_bytes;
    if (link->rlen - link->rpos < frame) break;
    const std::string_view payload(start + kFrameHeaderBytes, header.payload_bytes);
    if (!link->mac->Verify(link->receive_direction(), link->recv_seq, header.type, payload,
                           start + kFrameHeaderBytes + header.payload_bytes)) {
      BadFrame(link, "frame " + std::to_string(link->recv_seq) +
                         " has a wrong tag (corrupted, replayed, reordered or injected)");
      return;
    }
    link->recv_seq++;
    link->rpos += frame;  // the bytes stay valid until the next read
    stats_.frames_received++;
    stats_.bytes_received += header.payload_bytes;
    last_contact_[link->peer] = Now();
    handler_->OnFrame(link->peer, header.type, payload);
    if (link->closing) return;
  }
  if (link->rpos == link->rlen) {
    link->rpos = link->rlen = 0;
    if (link->rcap > kShrinkAbove) link->FreeReadBuffer(&stats_);
  }
}

// ---------------------------------------------------------------------------
// Writing

bool Transport::Send(uint64_t peer, uint8_t type, std::string_view payload) {
  auto it = up_.find(peer);
  if (closed_ || it == up_.end() || it->second.empty() ||
      payload.size() > options_.max_frame_bytes) {
    stats_.send_refused++;
    return false;
  }
  Link* link = it->second.front();
  for (Link* candidate : it->second) {
    if (candidate->role == Role::kInitiator) {
      link = candidate;
      break;
    }
  }
  const size_t frame = kFrameOverhead + payload.size();
  if (link->queued > 0 && link->queued + frame > options_.max_queued_bytes) {
    stats_.send_refused++;
    return false;
  }
  char header[kFrameHeaderBytes];
  EncodeFrameHeader(type, static_cast<uint32_t>(payload.size()), header);
  FrameMac::Tag tag;
  Status status = link->mac->Compute(link->send_direction(), link->send_seq, type, payload, &tag);
  if (!status.ok()) {
    LogFailure(&frame_log_, link->Describe() + ": " + status.message());
    // Not OnLinkDown from inside Send: the caller may be walking state the handler frees.
    // The idle callback tells it, if no other link to the peer is up by then.
    const uint64_t lost = link->peer;
    CloseLink(link, /*notify=*/false);
    if (!up_.contains(lost)) {
      down_pending_.push_back(lost);
      ScheduleFlush();
    }
    stats_.send_refused++;
    return false;
  }
  link->send_seq++;
  std::string* chunk;
  if (payload.size() >= kOwnChunkFrom) {
    link->out.emplace_back();
    chunk = &link->out.back();
    chunk->reserve(frame);  // the one copy of a big payload
    link->tail_open = false;
  } else {
    chunk = &link->Tail(frame);
  }
  chunk->append(header, sizeof header);
  chunk->append(payload);
  chunk->append(reinterpret_cast<const char*>(tag.data()), tag.size());
  link->queued += frame;
  stats_.queued_bytes += frame;
  stats_.frames_sent++;
  stats_.bytes_sent += payload.size();
  ScheduleFlush();
  return true;
}

void Transport::EnqueueRaw(Link* link, std::string_view bytes) {
  link->Tail(bytes.size()).append(bytes);
  link->queued += bytes.size();
  stats_.queued_bytes += bytes.size();
  ScheduleFlush();
}

void Transport::ScheduleFlush() {
  if (idle_ != nullptr && !uv_is_active(reinterpret_cast<uv_handle_t*>(idle_))) {
    uv_idle_start(idle_, OnIdle);
  }
}

void Transport::OnIdle(uv_idle_t* idle) {
  auto* self = static_cast<Transport*>(idle->data);
  uv_idle_stop(idle);
  std::vector<uint64_t> down = std::move(self->down_pending_);
  self->down_pending_.clear();
  for (uint64_t peer : down) {
    if (!self->up_.contains(peer)) self->handler_->OnLinkDown(peer);
  }
  std::vector<Link*> links;
  for (Link* link : self->links_) {
    if (!link->writing && !link->out.empty() && link->state != Link::State::kConnecting) {
      links.push_back(link);
    }
  }
  for (Link* link : links) {
    if (!link->closing) self->Flush(link);
  }
}

void Transport::Flush(Link* link) {
  if (link->writing || link->closing || link->out.empty()) return;
  uv_buf_t bufs[kMaxBufs];
  size_t n = 0;
  for (; n < kMaxBufs && n < link->out.size(); ++n) {
    bufs[n] = uv_buf_init(link->out[n].data(), static_cast<unsigned>(link->out[n].size()));
  }
  link->in_flight = n;
  link->writing = true;
  stats_.writes++;
  const int rc = uv_write(&link->write_req, reinterpret_cast<uv_stream_t*>(&link->tcp), bufs,
                          static_cast<unsigned>(n), OnWrite);
  if (rc != 0) {
    link->writing = false;
    link->in_flight = 0;
    LogFailure(&frame_log_, link->Describe() + ": write: " + uv_strerror(rc));
    CloseLink(link, /*notify=*/true);
  }
}

void Transport::OnWrite(uv_write_t* req, int status) {
  auto* link = static_cast<Link*>(req->data);
  link->writing = false;
  if (link->closing) return;  // cancelled; the chunks go with the link
  Transport* self = link->owner;
  if (status != 0) {
    self->LogFailure(&self->frame_log_, link->Describe() + ": write: " + uv_strerror(status));
    if (link->state == Link::State::kUp) {
      self->CloseLink(link, /*notify=*/true);
    } else {
      self->FailHandshake(link, Status::IOError(uv_strerror(status)), false);
    }
    return;
  }
  for (size_t i = 0; i < link->in_flight; ++i) {
    link->queued -= link->out.front().size();
    self->stats_.queued_bytes -= link->out.front().size();
    link->out.pop_front();
  }
  link->in_flight = 0;
  // What was queued meanwhile goes out now, in one write.
  self->Flush(link);
}

// ---------------------------------------------------------------------------
// Closing links

void Transport::CloseLink(Link* link, bool notify) {
  if (link->closing) return;
  link->closing = true;
  links_.erase(link);
  bool last = false;
  if (link->state == Link::State::kUp) {
    stats_.links_up--;
    auto it = up_.find(link->peer);
    if (it != up_.end()) {
      std::erase(it->second, link);
      if (it->second.empty()) {
        up_.erase(it);
        last = true;
      }
    }
  } else {
    stats_.handshaking--;
    if (link->inbound_handshaking) inbound_handshaking_--;
  }
  if (link->owner_peer != 0) {
    auto it = peers_.find(link->owner_peer);
    if (it != peers_.end() && it->second.link == link) {
      it->second.link = nullptr;
      ScheduleRetry(&it->second.next_attempt_ms, &it->second.backoff_ms);
    }
  }
  if (!link->dial_address.empty()) {
    auto it = dials_.find(link->dial_address);
    if (it != dials_.end() && it->second.link == link) {
      it->second.link = nullptr;
      ScheduleRetry(&it->second.next_attempt_ms, &it->second.backoff_ms);
    }
  }
  stats_.queued_bytes -= link->queued;
  link->queued = 0;
  stats_.read_buffer_bytes -= link->rcap;
  link->handshake.reset();
  uv_close(reinterpret_cast<uv_handle_t*>(&link->tcp),
           [](uv_handle_t* h) { delete static_cast<Link*>(h->data); });
  Rearm();
  if (notify && last) handler_->OnLinkDown(link->peer);
}

// ---------------------------------------------------------------------------
// Timers: handshake deadlines and reconnects, on one uv timer

void Transport::Rearm() {
  if (closed_) return;
  int64_t earliest = INT64_MAX;
  for (const Link* link : links_) {
    if (link->state != Link::State::kUp) earliest = std::min(earliest, link->deadline_ms);
  }
  for (const auto& [id, peer] : peers_) {
    if (peer.link == nullptr) earliest = std::min(earliest, peer.next_attempt_ms);
  }
  for (const auto& [address, dial] : dials_) {
    if (dial.link == nullptr) earliest = std::min(earliest, dial.next_attempt_ms);
  }
  if (earliest == INT64_MAX) {
    uv_timer_stop(timer_);
    return;
  }
  const int64_t delay = std::max<int64_t>(0, earliest - Now());
  uv_timer_start(timer_, OnTimer, static_cast<uint64_t>(delay), 0);
}

void Transport::OnTimer(uv_timer_t* timer) { static_cast<Transport*>(timer->data)->RunTimers(); }

void Transport::RunTimers() {
  const int64_t now = Now();
  std::vector<Link*> expired;
  for (Link* link : links_) {
    if (link->state != Link::State::kUp && link->deadline_ms <= now) expired.push_back(link);
  }
  for (Link* link : expired) {
    if (link->closing) continue;
    FailHandshake(link,
                  Status::IOError("handshake not completed within " +
                                  std::to_string(options_.handshake_timeout_ms) + " ms"),
                  /*timeout=*/true);
  }
  std::vector<uint64_t> redial_peers;
  for (auto& [id, peer] : peers_) {
    if (peer.link == nullptr && peer.next_attempt_ms <= now) redial_peers.push_back(id);
  }
  for (uint64_t id : redial_peers) {
    auto it = peers_.find(id);
    if (it == peers_.end() || it->second.link != nullptr) continue;
    Peer& peer = it->second;
    Connect(&peer.link, peer.address, id, id, "", &peer.next_attempt_ms, &peer.backoff_ms);
  }
  std::vector<std::string> redial;
  for (auto& [address, dial] : dials_) {
    if (dial.link == nullptr && dial.next_attempt_ms <= now) redial.push_back(address);
  }
  for (const std::string& address : redial) {
    auto it = dials_.find(address);
    if (it == dials_.end() || it->second.link != nullptr) continue;
    Dialing& dial = it->second;
    Connect(&dial.link, address, 0, 0, address, &dial.next_attempt_ms, &dial.backoff_ms);
  }
  Rearm();
}

// ---------------------------------------------------------------------------
// Queries

bool Transport::Connected(uint64_t peer) const { return up_.contains(peer); }

int64_t Transport::LastContactMs(uint64_t peer) const {
  auto it = last_contact_.find(peer);
  return it == last_contact_.end() ? -1 : it->second;
}

uint64_t Transport::QueuedBytes(uint64_t peer) const {
  uint64_t total = 0;
  for (const Link* link : links_) {
    if ((link->state == Link::State::kUp && link->peer == peer) || link->owner_peer == peer) {
      total += link->queued;
    }
  }
  return total;
}

std::vector<uint64_t> Transport::ConnectedPeers() const {
  std::vector<uint64_t> peers;
  for (const auto& [id, links] : up_) peers.push_back(id);
  std::sort(peers.begin(), peers.end());
  return peers;
}

}  // namespace distri::cluster
