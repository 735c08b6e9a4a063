// PubsubRoutes: interest tables, sequencing and forwarding of pub/sub between cluster nodes.
// See pubsub_routes.h; the frames are in pubsub_wire.h.

#include "server/pubsub_routes.h"

#include <algorithm>

#include "base/logging.h"
#include "server/cluster.h"
#include "server/pubsub_wire.h"

namespace distri::server {

namespace wire = pubsub_wire;

namespace {

// ClusterNode as PubsubLinks.
class ClusterLinks final : public PubsubLinks {
 public:
  explicit ClusterLinks(ClusterNode* node) : node_(node) {}
  bool Send(uint64_t peer, uint8_t type, std::string_view frame) override {
    return node_->SendToPeer(peer, type, frame);
  }
  std::vector<uint64_t> Linked() const override { return node_->LinkedMembers(); }
  uint64_t QueuedBytes(uint64_t peer) const override { return node_->QueuedBytesTo(peer); }

 private:
  ClusterNode* node_;
};

}  // namespace

PubsubRoutes::PubsubRoutes(uv_loop_t* loop, PubsubLinks* links, uint64_t epoch, Limits limits,
                           DeliverFn deliver, ForEachLocalFn for_each_local)
    : loop_(loop),
      links_(links),
      epoch_(epoch),
      limits_(limits),
      deliver_(std::move(deliver)),
      for_each_local_(std::move(for_each_local)) {
  uv_idle_init(loop_, &idle_);
  idle_.data = this;
  uv_timer_init(loop_, &timer_);
  timer_.data = this;
  uv_timer_start(&timer_, OnTimer, kTickMs, kTickMs);
  // Housekeeping only: the heartbeat must not keep a stopping loop alive.
  uv_unref(reinterpret_cast<uv_handle_t*>(&timer_));
}

PubsubRoutes::~PubsubRoutes() = default;

std::unique_ptr<PubsubLinks> PubsubRoutes::LinksOf(ClusterNode* node) {
  return std::make_unique<ClusterLinks>(node);
}

void PubsubRoutes::AttachTo(ClusterNode* node) {
  for (uint8_t type : {wire::kInterest, wire::kMessage, wire::kResync, wire::kHeartbeat}) {
    node->SetPeerFrameHandler(type, [this, type](uint64_t peer, std::string_view payload) {
      OnFrame(peer, type, payload);
    });
  }
  node->AddPeerLinkHandler([this](uint64_t peer, bool up) { OnLink(peer, up); });
}

void PubsubRoutes::Close() {
  if (!open_) return;
  open_ = false;
  for (uv_handle_t* h : {reinterpret_cast<uv_handle_t*>(&idle_),
                         reinterpret_cast<uv_handle_t*>(&timer_)}) {
    if (!uv_is_closing(h)) uv_close(h, nullptr);
  }
}

// ---------------------------------------------------------------------------
// Sending

bool PubsubRoutes::SendFrame(uint64_t peer, Peer& p, uint8_t type, std::string* frame) {
  wire::SetSeq(frame, p.next_seq);
  if (!links_->Send(peer, type, *frame)) return false;
  p.next_seq++;
  return true;
}

void PubsubRoutes::LocalChanged(std::string_view room, bool pattern, std::string_view name,
                                uint32_t count) {
  pending_[PendingKey{std::string(room), pattern, std::string(name)}] = count;
  ScheduleFlush();
}

// At the start of the next iteration (an active idle handle also keeps the loop from
// blocking in poll meanwhile): one frame for a SUBSCRIBE of many channels, or for every
// subscription of a client that went away, or for the messages of a pipelined burst.
void PubsubRoutes::ScheduleFlush() {
  if (open_ && !idle_active_) {
    uv_idle_start(&idle_, OnIdle);
    idle_active_ = true;
  }
}

void PubsubRoutes::FlushBatch(uint64_t peer, Peer& p) {
  if (p.batch.empty()) return;
  if (SendFrame(peer, p, wire::kMessage, &p.batch)) {
    stats_.messages_sent += p.batch_messages;
  } else {
    stats_.messages_dropped += p.batch_messages;
  }
  if (p.batch.capacity() > 2 * kBatchBytes) {
    std::string().swap(p.batch);  // a large message went alone: do not keep its buffer
  } else {
    p.batch.clear();
  }
  p.batch_messages = 0;
}

void PubsubRoutes::OnIdle(uv_idle_t* idle) {
  auto* self = static_cast<PubsubRoutes*>(idle->data);
  uv_idle_stop(idle);
  self->idle_active_ = false;
  self->Flush();
}

void PubsubRoutes::Flush() {
  if (batches_open_) {
    batches_open_ = false;
    for (auto& [id, p] : peers_) FlushBatch(id, p);
  }
  FlushInterest();
}

void PubsubRoutes::FlushInterest() {
  if (pending_.empty()) return;
  std::map<PendingKey, uint32_t> pending;
  pending.swap(pending_);
  // Encoded once (split at kInterestFrameBytes); each peer gets the frames with its seqs.
  std::vector<std::string> frames;
  std::optional<wire::InterestWriter> w;
  for (const auto& [key, count] : pending) {
    if (!w) w.emplace(wire::Header{epoch_, 0}, /*full=*/false);
    w->Add(key.pattern, count, key.room, key.name);
    if (w->size() >= kInterestFrameBytes) {
      frames.push_back(w->Finish());
      w.reset();
    }
  }
  if (w) frames.push_back(w->Finish());
  for (uint64_t id : links_->Linked()) {
    Peer& p = peers_[id];
    if (p.needs_full) continue;  // the next Tick sends the whole picture
    for (std::string& frame : frames) {
      if (!SendFrame(id, p, wire::kInterest, &frame)) {
        p.needs_full = true;  // a lost delta would leave it wrong for good
        break;
      }
      stats_.interest_sent++;
    }
  }
}

void PubsubRoutes::SendFull(uint64_t peer) {
  Peer& p = peers_[peer];
  p.needs_full = false;
  // Split into a full frame then deltas; a refused one makes the next Tick start over.
  std::optional<wire::InterestWriter> w;
  w.emplace(wire::Header{epoch_, 0}, /*full=*/true);
  bool failed = false;
  auto send = [&] {
    std::string frame = w->Finish();
    w.reset();
    if (failed) return;
    if (!SendFrame(peer, p, wire::kInterest, &frame)) {
      failed = true;
      return;
    }
    stats_.interest_sent++;
  };
  for_each_local_([&](std::string_view room, bool pattern, std::string_view name,
                      uint32_t count) {
    if (failed) return;  // the link is full: the next Tick starts over, nothing to encode
    if (!w) w.emplace(wire::Header{epoch_, 0}, /*full=*/false);
    w->Add(pattern, count, room, name);
    if (w->size() >= kInterestFrameBytes) send();
  });
  if (w && !failed) send();
  if (failed) p.needs_full = true;
}

uint64_t PubsubRoutes::Matching(const RemoteRoom& room, std::string_view channel) const {
  uint64_t n = 0;
  if (auto it = room.channels.find(channel); it != room.channels.end()) n += it->second;
  for (const auto& [pattern, sub] : room.patterns) {
    if (sub.glob.Match(channel)) n += sub.count;
  }
  return n;
}

int64_t PubsubRoutes::Forward(std::string_view room, std::string_view channel,
                              std::string_view message) {
  int64_t receivers = 0;
  const size_t record = wire::kMessageOverhead + room.size() + channel.size() + message.size();
  for (auto& [id, p] : peers_) {
    if (!p.known) continue;
    auto rit = p.rooms.find(room);
    if (rit == p.rooms.end()) continue;
    const uint64_t n = Matching(rit->second, channel);
    if (n == 0) continue;
    // Raft shares the link: pub/sub stops short of filling it (the transport would refuse
    // at max_queued_bytes, Raft messages included).
    if (links_->QueuedBytes(id) + p.batch.size() > kMaxPeerBacklog) {
      stats_.messages_dropped++;
      uint64_t suppressed = 0;
      if (drop_log_.Allow(NowMs(), &suppressed)) {
        LOG(WARNING) << "pubsub: link to node " << id << " has over " << (kMaxPeerBacklog >> 20)
                     << " MiB unsent; messages to it are dropped"
                     << base::SuppressedNote(suppressed);
      }
      continue;
    }
    // Order: what is batched goes first; a large message then goes alone.
    if (!p.batch.empty() && p.batch.size() + record > kBatchBytes) FlushBatch(id, p);
    if (p.batch.empty()) wire::AppendHeader(&p.batch, {epoch_, 0});
    wire::AppendMessage(&p.batch, room, channel, message);
    p.batch_messages++;
    receivers += static_cast<int64_t>(n);
    if (p.batch.size() >= kBatchBytes) {
      FlushBatch(id, p);
    } else {
      batches_open_ = true;
      ScheduleFlush();
    }
  }
  return receivers;
}

void PubsubRoutes::Tick() {
  std::vector<uint64_t> linked = links_->Linked();
  const int64_t now = NowMs();
  for (uint64_t id : linked) {
    Peer& p = peers_[id];
    if (p.needs_full) SendFull(id);
    // A frame every tick: a frame lost at the tail of a broken link shows up as a gap.
    std::string frame;
    wire::AppendHeader(&frame, {epoch_, 0});
    (void)SendFrame(id, p, wire::kHeartbeat, &frame);
    // A resync request that got no full report (lost too): ask again.
    if (p.known && !p.synced && now - p.resync_asked_ms >= static_cast<int64_t>(kTickMs)) {
      std::string ask;
      wire::AppendHeader(&ask, {epoch_, 0});
      if (SendFrame(id, p, wire::kResync, &ask)) {
        p.resync_asked_ms = now;
        stats_.resyncs_asked++;
      }
    }
  }
}

void PubsubRoutes::OnTimer(uv_timer_t* timer) { static_cast<PubsubRoutes*>(timer->data)->Tick(); }

// ---------------------------------------------------------------------------
// Receiving

void PubsubRoutes::BadFrame(uint64_t peer, std::string_view what) {
  stats_.bad_frames++;
  uint64_t suppressed = 0;
  if (bad_frame_log_.Allow(NowMs(), &suppressed)) {
    LOG(WARNING) << "pubsub: ignored a frame from node " << peer << ": " << what
                 << base::SuppressedNote(suppressed);
  }
}

void PubsubRoutes::Forget(Peer& p) {
  // A batch for a link that went down would be refused; one for a link that came up again
  // was meant for the peer's previous report of its interest. Either way it is dropped.
  stats_.messages_dropped += p.batch_messages;
  p.batch.clear();
  p.batch_messages = 0;
  stats_.remote_entries -= p.entries;
  p.rooms.clear();
  p.entries = 0;
  p.entry_bytes = 0;
  p.known = false;
  p.synced = false;
  p.resync_asked_ms = -1;
}

void PubsubRoutes::OnLink(uint64_t peer, bool up) {
  Peer& p = peers_[peer];
  // Either way what we knew of its subscriptions is over: down, it is gone (its
  // subscribers are unreachable); up, a new report follows from its side.
  Forget(p);
  if (up) SendFull(peer);
}

void PubsubRoutes::OnFrame(uint64_t peer, uint8_t type, std::string_view frame) {
  wire::Header h;
  std::string_view body;
  if (Status st = wire::DecodeHeader(frame, &h, &body); !st.ok()) {
    return BadFrame(peer, st.message());
  }
  Peer& p = peers_[peer];
  if (!p.known || p.epoch != h.epoch) {
    // The first frame since the link came up, or from a restarted peer: what it says is
    // the baseline; its subscriptions are known once a full report arrives.
    Forget(p);
    p.known = true;
    p.epoch = h.epoch;
  } else if (h.seq <= p.last_seq) {
    stats_.frames_stale++;  // a later frame already came on another link
    return;
  } else if (h.seq > p.last_seq + 1) {
    stats_.frames_lost += h.seq - p.last_seq - 1;
    p.synced = false;  // interest deltas may be among the lost
    p.resync_asked_ms = -1;
  }
  p.last_seq = h.seq;
  switch (type) {
    case wire::kInterest:
      ApplyInterest(peer, p, body);
      break;
    case wire::kMessage:
      Deliver(peer, body);
      break;
    case wire::kResync:
      SendFull(peer);
      break;
    case wire::kHeartbeat:
      break;
    default:
      return BadFrame(peer, "unknown frame type");
  }
  if (!p.synced && p.resync_asked_ms < 0) {
    std::string ask;
    wire::AppendHeader(&ask, {epoch_, 0});
    if (SendFrame(peer, p, wire::kResync, &ask)) stats_.resyncs_asked++;
    p.resync_asked_ms = NowMs();  // Tick asks again a second later if nothing came
  }
}

void PubsubRoutes::ApplyInterest(uint64_t peer, Peer& p, std::string_view body) {
  wire::Interest in;
  if (Status st = wire::DecodeInterest(body, &in); !st.ok()) {
    p.synced = false;  // what it meant to say is lost: ask for the whole picture
    p.resync_asked_ms = -1;
    return BadFrame(peer, st.message());
  }
  stats_.interest_received++;
  if (in.full) {
    stats_.remote_entries -= p.entries;
    p.rooms.clear();
    p.entries = 0;
    p.entry_bytes = 0;
    p.synced = true;
  }
  for (const wire::InterestEntry& e : in.entries) {
    auto rit = p.rooms.find(e.room);
    if (e.count == 0) {
      if (rit == p.rooms.end()) continue;
      size_t erased = e.pattern ? rit->second.patterns.erase(std::string(e.name))
                                : rit->second.channels.erase(std::string(e.name));
      p.entries -= erased;
      p.entry_bytes -= erased * (e.room.size() + e.name.size());
      stats_.remote_entries -= erased;
      if (rit->second.channels.empty() && rit->second.patterns.empty()) p.rooms.erase(rit);
      continue;
    }
    if (e.pattern && limits_.max_pattern_bytes != 0 && e.name.size() > limits_.max_pattern_bytes) {
      BadFrame(peer, "a pattern longer than --max-pattern-bytes");
      continue;
    }
    if (rit == p.rooms.end()) rit = p.rooms.try_emplace(std::string(e.room)).first;
    RemoteRoom& room = rit->second;
    const bool exists = e.pattern ? room.patterns.contains(e.name) : room.channels.contains(e.name);
    const size_t bytes = e.room.size() + e.name.size();
    if (!exists && (p.entries >= kMaxRemoteEntries || p.entry_bytes + bytes > kMaxRemoteBytes)) {
      BadFrame(peer, "over " + std::to_string(kMaxRemoteEntries) + " subscriptions or " +
                         std::to_string(kMaxRemoteBytes >> 20) + " MiB of names");
      if (room.channels.empty() && room.patterns.empty()) p.rooms.erase(rit);
      continue;
    }
    if (e.pattern) {
      room.patterns.try_emplace(std::string(e.name), e.name).first->second.count = e.count;
    } else {
      room.channels[std::string(e.name)] = e.count;
    }
    if (!exists) {
      p.entries++;
      p.entry_bytes += bytes;
      stats_.remote_entries++;
    }
  }
}

void PubsubRoutes::Deliver(uint64_t peer, std::string_view body) {
  std::vector<wire::Message> messages;
  if (Status st = wire::DecodeMessages(body, &messages); !st.ok()) {
    return BadFrame(peer, st.message());
  }
  for (const wire::Message& m : messages) {
    if (limits_.max_message_bytes != 0 && (m.payload.size() > limits_.max_message_bytes ||
                                           m.channel.size() > limits_.max_message_bytes)) {
      // A peer with a larger --max-bulk: this node's clients could not have published it.
      BadFrame(peer, "a message over --max-bulk");
      continue;
    }
    stats_.messages_received++;
    deliver_(m.room, m.channel, m.payload);
  }
}

// ---------------------------------------------------------------------------
// PUBSUB over the interest of every peer

void PubsubRoutes::RemoteChannels(std::string_view room, const base::Glob* glob,
                                  std::set<std::string>* out) const {
  for (const auto& [id, p] : peers_) {
    auto rit = p.rooms.find(room);
    if (rit == p.rooms.end()) continue;
    for (const auto& [name, count] : rit->second.channels) {
      if (glob == nullptr || glob->Match(name)) out->insert(name);
    }
  }
}

int64_t PubsubRoutes::RemoteNumSub(std::string_view room, std::string_view channel) const {
  int64_t n = 0;
  for (const auto& [id, p] : peers_) {
    auto rit = p.rooms.find(room);
    if (rit == p.rooms.end()) continue;
    if (auto it = rit->second.channels.find(channel); it != rit->second.channels.end()) {
      n += it->second;
    }
  }
  return n;
}

void PubsubRoutes::RemotePatterns(std::string_view room, std::set<std::string>* out) const {
  for (const auto& [id, p] : peers_) {
    auto rit = p.rooms.find(room);
    if (rit == p.rooms.end()) continue;
    for (const auto& [name, sub] : rit->second.patterns) out->insert(name);
  }
}

}  // namespace distri::server
