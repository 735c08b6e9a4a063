// MirrorHub: see mirror.h.

#include "server/mirror.h"

#include <algorithm>

#include "base/logging.h"
#include "protocol/resp_writer.h"
#include "server/server.h"

namespace distri::server {

namespace {

constexpr size_t kRecordOverhead = 96;            // bookkeeping bytes per history record
constexpr size_t kSnapshotLowWater = 256 * 1024;  // stream while less than this is unsent
constexpr size_t kBucketsPerChunk = 256;
constexpr size_t kMaxKeysPerFrame = 1000;
constexpr size_t kKeysPerPump = 20000;            // per Pump() over all mirrors: keeps the loop responsive

bool HasPrefix(std::string_view s, std::string_view prefix) {
  return s.size() >= prefix.size() && s.compare(0, prefix.size(), prefix) == 0;
}

size_t RecordBytes(const std::string& room, const std::string& key, const std::string& value) {
  return room.size() + key.size() + value.size() + kRecordOverhead;
}

}  // namespace

void AppendMirrorFrame(const MirrorEvent& e, std::string* out) {
  protocol::ReplyWriter w(out, 3);
  auto head = [&](size_t n, std::string_view what) {
    w.Push(n);
    w.Bulk("mirror");
    w.Bulk(e.room);
    w.Bulk(what);
  };
  switch (e.kind) {
    case MirrorEvent::Kind::kReset:
    case MirrorEvent::Kind::kReady:
    case MirrorEvent::Kind::kFlush:
      head(4, e.kind == MirrorEvent::Kind::kReset ? "reset"
              : e.kind == MirrorEvent::Kind::kReady ? "ready" : "flush");
      w.Integer(static_cast<int64_t>(e.revision));
      break;
    case MirrorEvent::Kind::kSnapshot:
      head(4, "snapshot");
      w.Array(3 * e.items.size());
      for (const state::Item* item : e.items) {
        w.Bulk(item->key());
        w.Bulk(item->value());
        w.Integer(item->expire_at_ms());
      }
      break;
    case MirrorEvent::Kind::kSet:
      head(7, "set");
      w.Integer(static_cast<int64_t>(e.revision));
      w.Bulk(e.key);
      w.Bulk(e.value);
      w.Integer(e.expire_at_ms);
      break;
    case MirrorEvent::Kind::kDel:
      head(6, "del");
      w.Integer(static_cast<int64_t>(e.revision));
      w.Bulk(e.key);
      w.Bulk(e.expired ? "expired" : "del");
      break;
  }
}

MirrorHub::MirrorHub(Server* server, MirrorOptions options, uint64_t start_revision)
    : server_(server), options_(options), floor_(start_revision) {
  // Once, at start: every room is retained (and idle) for kRetainIdleMs.
  const int64_t now = server_->NowMs();
  for (const auto& [code, room] : server_->state().rooms()) {
    Retention& r = retained_.emplace(code, Retention{start_revision, 0}).first->second;
    MarkIdle(code, r, now);
  }
}

void MirrorHub::MarkIdle(std::string_view room, Retention& retention, int64_t now_ms) {
  retention.idle_since_ms = std::max<int64_t>(now_ms, 1);  // 0 means "mirrored"
  if (retention.queued) return;  // its entry is earlier: PruneRetained looks again then
  retention.queued = true;
  idle_queue_.emplace_back(retention.idle_since_ms, std::string(room));
}

void MirrorHub::PruneRetained(int64_t now_ms) {
  // Stop at the first entry still within its time: later entries are (about)
  // later, and one pruned a little late only keeps its history a little longer.
  while (!idle_queue_.empty() && now_ms - idle_queue_.front().first > kRetainIdleMs) {
    std::string room = std::move(idle_queue_.front().second);
    idle_queue_.pop_front();
    auto it = retained_.find(room);
    if (it == retained_.end()) continue;
    Retention& r = it->second;
    r.queued = false;
    if (r.idle_since_ms == 0) continue;  // mirrored again: Stop queues it when it leaves
    if (now_ms - r.idle_since_ms > kRetainIdleMs) {
      retained_.erase(it);
    } else {
      // Mirrored and left again since it was queued: look again later.
      r.queued = true;
      idle_queue_.emplace_back(r.idle_since_ms, std::move(room));
    }
  }
}

MirrorEvent MirrorHub::EventOf(const Record& r) {
  MirrorEvent e{};
  e.kind = r.kind == state::Change::Kind::kSet   ? MirrorEvent::Kind::kSet
           : r.kind == state::Change::Kind::kDel ? MirrorEvent::Kind::kDel
                                                 : MirrorEvent::Kind::kFlush;
  e.revision = r.revision;
  e.room = r.room;
  e.key = r.key;
  e.value = r.value;
  e.expire_at_ms = r.expire_at_ms;
  e.expired = r.expired;
  return e;
}

bool MirrorHub::Matches(const Mirror& m, std::string_view key, state::Change::Kind kind) {
  return kind == state::Change::Kind::kFlush || HasPrefix(key, m.prefix);  // flushes concern every prefix
}

void MirrorHub::OnChange(const state::Change& c) {
  auto retained = retained_.find(c.room);
  if (retained == retained_.end()) {
    if (!options_.retain_all_rooms) return;  // never mirrored: no mirror, no history
    // History for this room starts with this change: FROM any later point resumes.
    retained = retained_.emplace(std::string(c.room), Retention{c.revision - 1, 0}).first;
    MarkIdle(c.room, retained->second, server_->NowMs());
  }
  Record r{c.revision, c.kind, c.expired, c.expire_at_ms, std::string(c.room), std::string(c.key),
           std::string(c.value)};
  auto it = by_room_.find(r.room);
  if (it != by_room_.end()) {
    MirrorEvent e = EventOf(r);
    for (auto& m : it->second) {
      if (Matches(*m, r.key, r.kind)) m->sink->Deliver(e);
    }
  }
  // Keep it for mirrors that resume later; drop the oldest beyond the bounds.
  history_bytes_ += RecordBytes(r.room, r.key, r.value);
  history_.push_back(std::move(r));
  while (!history_.empty() &&
         (history_.size() > options_.history_entries || history_bytes_ > options_.history_bytes)) {
    const Record& old = history_.front();
    history_bytes_ -= RecordBytes(old.room, old.key, old.value);
    floor_ = old.revision;
    history_.pop_front();
  }
}

void MirrorHub::Start(MirrorSink* sink, std::string_view room, std::string_view prefix,
                      std::optional<uint64_t> from,
                      const std::function<void(const MirrorStart&)>& reply) {
  Stop(sink, room);  // invariant 2
  auto owned = std::make_unique<Mirror>();
  Mirror& m = *owned;
  m.sink = sink;
  m.room = std::string(room);
  m.prefix = std::string(prefix);
  by_room_[m.room].push_back(std::move(owned));
  mirror_count_++;

  const uint64_t now_revision = server_->state().applied_index();
  Retention& retained = retained_.try_emplace(m.room, Retention{now_revision, 0}).first->second;
  retained.idle_since_ms = 0;
  uint64_t floor = std::max(floor_, retained.floor);
  bool resume = from.has_value() && *from >= floor && *from <= now_revision;
  reply(MirrorStart{m.room, now_revision, resume});
  MirrorEvent control{};
  control.room = m.room;
  control.revision = now_revision;
  if (resume) {
    // First record after `from`: history is ordered by revision (invariant 1).
    auto first = std::upper_bound(history_.begin(), history_.end(), *from,
                                  [](uint64_t rev, const Record& r) { return rev < r.revision; });
    for (auto it = first; it != history_.end(); ++it) {
      if (it->room == m.room && Matches(m, it->key, it->kind)) sink->Deliver(EventOf(*it));
    }
    control.kind = MirrorEvent::Kind::kReady;
    sink->Deliver(control);
  } else {
    control.kind = MirrorEvent::Kind::kReset;
    sink->Deliver(control);
    m.snapshotting = true;
    m.cursor = 0;
    snapshotting_++;
    server_->WakePump();
  }
}

void MirrorHub::Rebase(uint64_t revision) {
  history_.clear();
  history_bytes_ = 0;
  floor_ = revision;
  for (auto& [room, retention] : retained_) retention.floor = revision;
  for (auto& [code, mirrors] : by_room_) {
    for (auto& mp : mirrors) {
      Mirror& m = *mp;
      MirrorEvent control{};
      control.kind = MirrorEvent::Kind::kReset;
      control.room = m.room;
      control.revision = revision;
      m.sink->Deliver(control);
      if (!m.snapshotting) snapshotting_++;
      m.snapshotting = true;
      m.cursor = 0;
    }
  }
  if (snapshotting_ > 0) server_->WakePump();
}

void MirrorHub::FinishSnapshot(Mirror& m) {
  m.snapshotting = false;
  snapshotting_--;
  MirrorEvent e{};
  e.kind = MirrorEvent::Kind::kReady;
  e.room = m.room;
  e.revision = server_->state().applied_index();
  m.sink->Deliver(e);
}

bool MirrorHub::Pump() {
  if (snapshotting_ == 0) return false;
  size_t budget = kKeysPerPump;
  bool more = false;
  std::vector<const state::Item*> items;
  for (auto& [code, mirrors] : by_room_) {
    for (auto& mp : mirrors) {
      Mirror& m = *mp;
      if (!m.snapshotting) continue;
      const state::Room* room = server_->state().FindRoom(m.room);
      while (m.snapshotting && budget > 0 && m.sink->unsent_bytes() < kSnapshotLowWater &&
             !m.sink->sink_closed()) {
        if (room == nullptr) {
          FinishSnapshot(m);
          break;
        }
        items.clear();
        m.cursor = room->keys().Scan(m.cursor, kBucketsPerChunk, [&](const state::Item& item) {
          if (HasPrefix(item.key(), m.prefix)) items.push_back(&item);
        });
        for (size_t i = 0; i < items.size(); i += kMaxKeysPerFrame) {
          MirrorEvent e{};
          e.kind = MirrorEvent::Kind::kSnapshot;
          e.room = m.room;
          e.items = std::span<const state::Item* const>(items).subspan(
              i, std::min(kMaxKeysPerFrame, items.size() - i));
          m.sink->Deliver(e);
        }
        budget -= std::min(budget, items.size() + 1);
        if (m.cursor == 0) FinishSnapshot(m);
      }
      if (m.snapshotting && m.sink->unsent_bytes() < kSnapshotLowWater) more = true;
    }
  }
  return more;
}

size_t MirrorHub::Stop(MirrorSink* sink, std::optional<std::string_view> room) {
  size_t stopped = 0;
  for (auto it = by_room_.begin(); it != by_room_.end();) {
    if (room.has_value() && it->first != *room) {
      ++it;
      continue;
    }
    auto& mirrors = it->second;
    for (auto m = mirrors.begin(); m != mirrors.end();) {
      if ((*m)->sink == sink) {
        if ((*m)->snapshotting) snapshotting_--;
        m = mirrors.erase(m);
        stopped++;
      } else {
        ++m;
      }
    }
    if (mirrors.empty()) {
      if (auto r = retained_.find(it->first); r != retained_.end()) {
        MarkIdle(it->first, r->second, server_->NowMs());
      }
      it = by_room_.erase(it);
    } else {
      ++it;
    }
  }
  mirror_count_ -= stopped;
  return stopped;
}

size_t MirrorHub::MirrorsInRoom(std::string_view room) const {
  auto it = by_room_.find(room);
  return it == by_room_.end() ? 0 : it->second.size();
}

}  // namespace distri::server
