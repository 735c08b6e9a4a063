// MirrorHub: see mirror.h.

#include "server/mirror.h"

#include <algorithm>

#include "base/logging.h"
#include "server/client.h"
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

}  // namespace

MirrorHub::MirrorHub(Server* server, MirrorOptions options, uint64_t start_revision)
    : server_(server), options_(options), floor_(start_revision) {}

std::string MirrorHub::EncodeControl(std::string_view room, std::string_view what,
                                     uint64_t revision) const {
  std::string frame;
  protocol::ReplyWriter w(&frame, 3);
  w.Push(4);
  w.Bulk("mirror");
  w.Bulk(room);
  w.Bulk(what);
  w.Integer(static_cast<int64_t>(revision));
  return frame;
}

void MirrorHub::OnChange(const state::Change& c) {
  Record r{c.revision, std::string(c.room), std::string(c.key), {}};
  protocol::ReplyWriter w(&r.frame, 3);
  switch (c.kind) {
    case state::Change::Kind::kSet:
      w.Push(7);
      w.Bulk("mirror");
      w.Bulk(c.room);
      w.Bulk("set");
      w.Integer(static_cast<int64_t>(c.revision));
      w.Bulk(c.key);
      w.Bulk(c.value);
      w.Integer(c.expire_at_ms);
      break;
    case state::Change::Kind::kDel:
      w.Push(6);
      w.Bulk("mirror");
      w.Bulk(c.room);
      w.Bulk("del");
      w.Integer(static_cast<int64_t>(c.revision));
      w.Bulk(c.key);
      w.Bulk(c.expired ? "expired" : "del");
      break;
    case state::Change::Kind::kFlush:
      r.frame = EncodeControl(c.room, "flush", c.revision);
      break;
  }
  auto it = by_room_.find(r.room);
  if (it != by_room_.end()) {
    for (auto& m : it->second) {
      if (Matches(*m, r)) Send(*m, r.frame);
    }
  }
  // Keep it for mirrors that resume later; drop the oldest beyond the bounds.
  history_bytes_ += r.frame.size() + r.room.size() + r.key.size() + kRecordOverhead;
  history_.push_back(std::move(r));
  while (!history_.empty() &&
         (history_.size() > options_.history_entries || history_bytes_ > options_.history_bytes)) {
    const Record& old = history_.front();
    history_bytes_ -= old.frame.size() + old.room.size() + old.key.size() + kRecordOverhead;
    floor_ = old.revision;
    history_.pop_front();
  }
}

bool MirrorHub::Matches(const Mirror& m, const Record& r) {
  return r.key.empty() ? true : HasPrefix(r.key, m.prefix);  // flushes concern every prefix
}

void MirrorHub::Send(Mirror& m, std::string_view frame) {
  m.client->conn().output().append(frame);
  server_->MarkDirty(m.client);
  server_->CheckOutputLimit(m.client);
}

void MirrorHub::Start(Client* client, std::string_view room, std::string_view prefix,
                      std::optional<uint64_t> from, protocol::ReplyWriter& reply) {
  Stop(client, room);  // invariant 2
  auto owned = std::make_unique<Mirror>();
  Mirror& m = *owned;
  m.client = client;
  m.room = std::string(room);
  m.prefix = std::string(prefix);
  by_room_[m.room].push_back(std::move(owned));
  mirror_count_++;
  client->mirrors++;

  const uint64_t now_revision = server_->state().applied_index();
  bool resume = from.has_value() && *from >= floor_ && *from <= now_revision;
  reply.Map(3);
  reply.Bulk("room");
  reply.Bulk(room);
  reply.Bulk("revision");
  reply.Integer(static_cast<int64_t>(now_revision));
  reply.Bulk("mode");
  reply.Bulk(resume ? "resume" : "snapshot");
  if (resume) {
    // First record after `from`: history is ordered by revision (invariant 1).
    auto first = std::upper_bound(history_.begin(), history_.end(), *from,
                                  [](uint64_t rev, const Record& r) { return rev < r.revision; });
    for (auto it = first; it != history_.end(); ++it) {
      if (it->room == m.room && Matches(m, *it)) client->conn().output().append(it->frame);
    }
    client->conn().output().append(EncodeControl(room, "ready", now_revision));
  } else {
    client->conn().output().append(EncodeControl(room, "reset", now_revision));
    m.snapshotting = true;
    m.cursor = 0;
    snapshotting_++;
    server_->WakePump();
  }
  server_->MarkDirty(client);
}

void MirrorHub::FinishSnapshot(Mirror& m) {
  m.snapshotting = false;
  snapshotting_--;
  Send(m, EncodeControl(m.room, "ready", server_->state().applied_index()));
}

bool MirrorHub::Pump() {
  if (snapshotting_ == 0) return false;
  size_t budget = kKeysPerPump;
  bool more = false;
  for (auto& [code, mirrors] : by_room_) {
    for (auto& mp : mirrors) {
      Mirror& m = *mp;
      if (!m.snapshotting) continue;
      const state::Room* room = server_->state().FindRoom(m.room);
      std::vector<const state::Item*> items;
      while (m.snapshotting && budget > 0 &&
             m.client->conn().pending_output() < kSnapshotLowWater && !m.client->conn().closing()) {
        if (room == nullptr) {
          FinishSnapshot(m);
          break;
        }
        items.clear();
        m.cursor = room->keys().Scan(m.cursor, kBucketsPerChunk, [&](const state::Item& item) {
          if (HasPrefix(item.key(), m.prefix)) items.push_back(&item);
        });
        for (size_t i = 0; i < items.size(); i += kMaxKeysPerFrame) {
          size_t n = std::min(kMaxKeysPerFrame, items.size() - i);
          std::string& out = m.client->conn().output();
          protocol::ReplyWriter w(&out, 3);
          w.Push(4);
          w.Bulk("mirror");
          w.Bulk(m.room);
          w.Bulk("snapshot");
          w.Array(3 * n);
          for (size_t j = i; j < i + n; j++) {
            w.Bulk(items[j]->key());
            w.Bulk(items[j]->value());
            w.Integer(items[j]->expire_at_ms());
          }
        }
        server_->MarkDirty(m.client);
        budget -= std::min(budget, items.size() + 1);
        if (m.cursor == 0) FinishSnapshot(m);
      }
      if (m.snapshotting && m.client->conn().pending_output() < kSnapshotLowWater) more = true;
    }
  }
  return more;
}

size_t MirrorHub::Stop(Client* client, std::optional<std::string_view> room) {
  size_t stopped = 0;
  for (auto it = by_room_.begin(); it != by_room_.end();) {
    if (room.has_value() && it->first != *room) {
      ++it;
      continue;
    }
    auto& mirrors = it->second;
    for (auto m = mirrors.begin(); m != mirrors.end();) {
      if ((*m)->client == client) {
        if ((*m)->snapshotting) snapshotting_--;
        m = mirrors.erase(m);
        stopped++;
      } else {
        ++m;
      }
    }
    it = mirrors.empty() ? by_room_.erase(it) : std::next(it);
  }
  mirror_count_ -= stopped;
  client->mirrors -= stopped;
  return stopped;
}

void MirrorHub::RemoveClient(Client* client) {
  if (client->mirrors > 0) Stop(client, std::nullopt);
}

size_t MirrorHub::MirrorsInRoom(std::string_view room) const {
  auto it = by_room_.find(std::string(room));
  return it == by_room_.end() ? 0 : it->second.size();
}

}  // namespace distri::server
