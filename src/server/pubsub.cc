// MessageRouter, pub/sub half: SUBSCRIBE/PSUBSCRIBE/UNSUBSCRIBE/PUNSUBSCRIBE,
// PUBLISH and PUBSUB, scoped to rooms. See messaging.h. In a cluster the
// changes of local interest go to PubsubRoutes, PUBLISH forwards through it,
// and PUBSUB adds what the other nodes reported.

#include <openssl/rand.h>

#include <algorithm>
#include <memory>
#include <optional>
#include <set>

#include "base/logging.h"
#include "base/strings.h"
#include "server/client.h"
#include "server/cluster.h"
#include "server/messaging.h"
#include "server/server.h"

namespace distri::server {

namespace {

uint32_t SubscriptionCount(const commands::Session& s) { return s.subscriptions; }

// Messages this large are shared by their subscribers' output queues instead
// of copied into each (net::SharedBytes); below it a copy is cheaper.
constexpr size_t kSharedMessageMin = 16 * 1024;

}  // namespace

bool MessageRouter::AddSub(Client* c, const std::string& room, std::string_view name, bool pattern) {
  ClientSubs& mine = client_subs_[c];
  auto& set = pattern ? mine.patterns : mine.channels;
  if (!set.emplace(room, std::string(name)).second) return false;
  RoomSubs& rs = rooms_[room];
  size_t now;
  if (pattern) {
    auto& clients = rs.patterns.try_emplace(std::string(name), name).first->second.clients;
    clients.push_back(c);
    now = clients.size();
  } else {
    auto& clients = rs.channels[std::string(name)];
    clients.push_back(c);
    now = clients.size();
  }
  if (routes_) routes_->LocalChanged(room, pattern, name, static_cast<uint32_t>(now));
  c->session().subscriptions++;
  return true;
}

bool MessageRouter::RemoveSub(Client* c, const std::string& room, std::string_view name, bool pattern) {
  auto cs = client_subs_.find(c);
  if (cs == client_subs_.end()) return false;
  auto& set = pattern ? cs->second.patterns : cs->second.channels;
  if (set.erase({room, std::string(name)}) == 0) return false;
  RoomSubs& rs = rooms_[room];
  size_t left = 0;
  if (pattern) {
    auto it = rs.patterns.find(name);
    if (it != rs.patterns.end()) {
      std::erase(it->second.clients, c);
      left = it->second.clients.size();
      if (left == 0) rs.patterns.erase(it);
    }
  } else {
    auto it = rs.channels.find(std::string(name));
    if (it != rs.channels.end()) {
      std::erase(it->second, c);
      left = it->second.size();
      if (left == 0) rs.channels.erase(it);
    }
  }
  if (routes_) routes_->LocalChanged(room, pattern, name, static_cast<uint32_t>(left));
  if (rs.channels.empty() && rs.patterns.empty()) rooms_.erase(room);
  if (cs->second.channels.empty() && cs->second.patterns.empty()) client_subs_.erase(cs);
  c->session().subscriptions--;
  return true;
}

void MessageRouter::WriteConfirm(protocol::ReplyWriter& reply, std::string_view kind,
                                 std::string_view name, bool nil_name,
                                 const commands::Session& session) {
  reply.Push(3);  // an array in RESP2, a push frame in RESP3
  reply.Bulk(kind);
  if (nil_name) {
    reply.Null();
  } else {
    reply.Bulk(name);
  }
  reply.Integer(SubscriptionCount(session));
}

void MessageRouter::Subscribe(commands::Session& session, std::span<const std::string_view> names,
                              bool pattern, protocol::ReplyWriter& reply) {
  Client* c = server_->FindClient(session.id);
  for (std::string_view name : names) {
    AddSub(c, session.room, name, pattern);
    WriteConfirm(reply, pattern ? "psubscribe" : "subscribe", name, false, session);
  }
  // Queued to the other nodes before the confirmation leaves (it is written to the socket
  // after this handler returns): see PubsubRoutes::FlushInterest.
  if (routes_) routes_->FlushInterest();
}

void MessageRouter::Unsubscribe(commands::Session& session, std::span<const std::string_view> names,
                                bool pattern, protocol::ReplyWriter& reply) {
  Client* c = server_->FindClient(session.id);
  std::string_view kind = pattern ? "punsubscribe" : "unsubscribe";
  if (!names.empty()) {
    for (std::string_view name : names) {
      RemoveSub(c, session.room, name, pattern);
      WriteConfirm(reply, kind, name, false, session);
    }
    return;
  }
  // No names: every subscription of that kind, in every room.
  std::vector<std::pair<std::string, std::string>> all;
  if (auto cs = client_subs_.find(c); cs != client_subs_.end()) {
    const auto& set = pattern ? cs->second.patterns : cs->second.channels;
    all.assign(set.begin(), set.end());
  }
  if (all.empty()) {
    WriteConfirm(reply, kind, {}, true, session);
    return;
  }
  for (const auto& [room, name] : all) {
    RemoveSub(c, room, name, pattern);
    WriteConfirm(reply, kind, name, false, session);
  }
}

// Local subscribers first, then one frame to each node with matching interest
// (its subscribers are counted from its last report: PUBLISH's reply is
// cluster-wide, see docs/messaging.md).
int64_t MessageRouter::Publish(std::string_view room, std::string_view channel,
                               std::string_view message) {
  int64_t receivers = DeliverLocal(room, channel, message);
  if (routes_) receivers += routes_->Forward(room, channel, message);
  return receivers;
}

int64_t MessageRouter::DeliverLocal(std::string_view room, std::string_view channel,
                                    std::string_view message) {
  auto rit = rooms_.find(room);
  if (rit == rooms_.end()) return 0;
  RoomSubs& rs = rit->second;
  int64_t receivers = 0;
  // A large message is stored once and every subscriber's output queue
  // refers to it; a frame then is its head, the shared payload and CRLF.
  const bool share = message.size() >= kSharedMessageMin;
  std::shared_ptr<net::SharedBytes> payload;
  // Encoded at most once per protocol version.
  std::string frames[2];
  auto frame_for = [&](int protocol, std::string_view pattern) -> const std::string& {
    std::string& f = frames[protocol == 3];
    f.clear();
    protocol::ReplyWriter w(&f, protocol);
    w.Push(pattern.empty() ? 3 : 4);
    w.Bulk(pattern.empty() ? "message" : "pmessage");
    if (!pattern.empty()) w.Bulk(pattern);
    w.Bulk(channel);
    if (share) {
      w.BulkHeader(message.size());
    } else {
      w.Bulk(message);
    }
    return f;
  };
  auto send = [&](Client* c, const std::string& frame) {
    c->conn().output().append(frame);
    if (share) {
      if (payload == nullptr) payload = std::make_shared<net::SharedBytes>(std::string(message));
      c->conn().AppendShared(payload);
      c->conn().output().append("\r\n");
    }
    server_->MarkDirty(c);
    server_->CheckOutputLimit(c);
    receivers++;
  };
  if (auto it = rs.channels.find(channel); it != rs.channels.end()) {
    std::string encoded[2];
    for (Client* c : it->second) {
      int p = c->session().protocol;
      std::string& e = encoded[p == 3];
      if (e.empty()) e = frame_for(p, {});
      send(c, e);
    }
  }
  for (const auto& [pattern, subs] : rs.patterns) {
    if (!subs.glob.Match(channel)) continue;
    for (Client* c : subs.clients) send(c, frame_for(c->session().protocol, pattern));
  }
  server_->CountShared(std::move(payload));
  return receivers;
}

std::vector<std::string> MessageRouter::Channels(std::string_view room,
                                                 std::optional<std::string_view> pattern) {
  std::set<std::string> names;
  std::optional<base::Glob> glob;
  if (pattern) glob.emplace(*pattern);
  if (auto rit = rooms_.find(room); rit != rooms_.end()) {
    for (const auto& [name, subs] : rit->second.channels) {
      if (!glob || glob->Match(name)) names.insert(name);
    }
  }
  // With a subscriber on any node (PubsubRoutes' tables), as a user of one
  // system expects; Redis Cluster would answer for the node alone.
  if (routes_) routes_->RemoteChannels(room, glob ? &*glob : nullptr, &names);
  return std::vector<std::string>(names.begin(), names.end());
}

int64_t MessageRouter::NumSub(std::string_view room, std::string_view channel) {
  int64_t n = routes_ ? routes_->RemoteNumSub(room, channel) : 0;
  auto rit = rooms_.find(room);
  if (rit == rooms_.end()) return n;
  auto it = rit->second.channels.find(channel);
  return n + (it == rit->second.channels.end() ? 0 : static_cast<int64_t>(it->second.size()));
}

// Unique patterns in the room, whoever subscribed to them (Redis counts
// unique patterns across all clients, not subscriptions), on every node.
int64_t MessageRouter::NumPat(std::string_view room) {
  auto rit = rooms_.find(room);
  if (!routes_) {
    return rit == rooms_.end() ? 0 : static_cast<int64_t>(rit->second.patterns.size());
  }
  std::set<std::string> patterns;
  routes_->RemotePatterns(room, &patterns);
  if (rit != rooms_.end()) {
    for (const auto& [pattern, subs] : rit->second.patterns) patterns.insert(pattern);
  }
  return static_cast<int64_t>(patterns.size());
}

void MessageRouter::ConnectCluster(ClusterNode* node) {
  CHECK(routes_ == nullptr);
  // A new epoch per start: the peers drop what they knew of this node's last run.
  uint64_t epoch = 0;
  while (epoch == 0) {
    CHECK(RAND_bytes(reinterpret_cast<unsigned char*>(&epoch), sizeof epoch) == 1);
  }
  const commands::ServerSettings& s = server_->settings();
  PubsubRoutes::Limits limits{.max_message_bytes = s.max_bulk,
                              .max_pattern_bytes = s.max_pattern_bytes};
  route_links_ = PubsubRoutes::LinksOf(node);
  routes_ = std::make_unique<PubsubRoutes>(
      loop_, route_links_.get(), epoch, limits,
      [this](std::string_view room, std::string_view channel, std::string_view message) {
        DeliverLocal(room, channel, message);
      },
      [this](const PubsubRoutes::LocalVisitor& fn) {
        for (const auto& [room, rs] : rooms_) {
          for (const auto& [name, clients] : rs.channels) {
            fn(room, false, name, static_cast<uint32_t>(clients.size()));
          }
          for (const auto& [name, subs] : rs.patterns) {
            fn(room, true, name, static_cast<uint32_t>(subs.clients.size()));
          }
        }
      });
  routes_->AttachTo(node);
}

size_t MessageRouter::SubscriptionsInRoom(std::string_view room) const {
  auto rit = rooms_.find(room);
  if (rit == rooms_.end()) return 0;
  size_t n = 0;
  for (const auto& [name, subs] : rit->second.patterns) n += subs.clients.size();
  for (const auto& [name, subs] : rit->second.channels) n += subs.size();
  return n;
}

MessageRouter::SubCounts MessageRouter::SubscriptionsOf(Client* c) const {
  auto it = client_subs_.find(c);
  if (it == client_subs_.end()) return {};
  return {it->second.channels.size(), it->second.patterns.size()};
}

}  // namespace distri::server
