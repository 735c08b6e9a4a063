// See stats_gather.h.

#include "server/stats_gather.h"

#include <algorithm>
#include <bit>
#include <limits>

#include "base/endian.h"
#include "base/byte_reader.h"
#include "base/logging.h"

namespace distri::server {

namespace {

enum Tag : uint8_t { kNull = 0, kInt = 1, kDouble = 2, kText = 3, kBool = 4 };

using Reader = base::ByteReader;

bool DecodeFigure(Reader& r, Figure* f) {
  uint8_t name_len = 0, tag = 0;
  if (!r.U8(&name_len) || name_len == 0 || name_len > kMaxFigureName) return false;
  std::string_view name;
  if (!r.Bytes(name_len, &name) || !r.U8(&tag)) return false;
  f->name.assign(name);
  switch (tag) {
    case kNull:
      f->value = std::monostate{};
      return true;
    case kInt: {
      uint64_t v = 0;
      if (!r.U64(&v)) return false;
      f->value = static_cast<int64_t>(v);
      return true;
    }
    case kDouble: {
      double v = 0;
      if (!r.F64(&v)) return false;
      f->value = v;
      return true;
    }
    case kText: {
      std::string_view text;
      if (!r.Str32(&text) || text.size() > kMaxFigureText) return false;
      f->value = std::string(text);
      return true;
    }
    case kBool: {
      uint8_t b = 0;
      if (!r.U8(&b) || b > 1) return false;
      f->value = b == 1;
      return true;
    }
    default:
      return false;
  }
}

void EncodeFigure(const Figure& f, std::string* out) {
  // Our own figures: names are literals within the bound, text (addresses, versions) short.
  CHECK(!f.name.empty() && f.name.size() <= kMaxFigureName) << f.name;
  out->push_back(static_cast<char>(f.name.size()));
  out->append(f.name);
  if (const int64_t* i = std::get_if<int64_t>(&f.value)) {
    out->push_back(static_cast<char>(kInt));
    base::AppendLe64(out, static_cast<uint64_t>(*i));
  } else if (const double* d = std::get_if<double>(&f.value)) {
    out->push_back(static_cast<char>(kDouble));
    base::AppendLe64(out, std::bit_cast<uint64_t>(*d));
  } else if (const std::string* s = std::get_if<std::string>(&f.value)) {
    out->push_back(static_cast<char>(kText));
    const std::string_view text = std::string_view(*s).substr(0, kMaxFigureText);
    base::AppendLe32(out, static_cast<uint32_t>(text.size()));
    out->append(text);
  } else if (const bool* b = std::get_if<bool>(&f.value)) {
    out->push_back(static_cast<char>(kBool));
    out->push_back(*b ? 1 : 0);
  } else {
    out->push_back(static_cast<char>(kNull));
  }
}

int64_t SaturatingAdd(int64_t a, int64_t b) {
  int64_t sum = 0;
  if (!__builtin_add_overflow(a, b, &sum)) return sum;
  return b > 0 ? std::numeric_limits<int64_t>::max() : std::numeric_limits<int64_t>::min();
}

}  // namespace

// ---------------------------------------------------------------------------
// Frames

std::string EncodeStatsRequest(const StatsRequest& request) {
  std::string out;
  base::AppendLe64(&out, request.id);
  out.push_back(static_cast<char>(request.kind));
  if (request.kind == StatsKind::kRoom) out.append(request.room);
  return out;
}

bool DecodeStatsRequest(std::string_view payload, StatsRequest* out) {
  Reader r(payload);
  uint8_t kind = 0;
  if (!r.U64(&out->id) || !r.U8(&kind)) return false;
  if (kind == static_cast<uint8_t>(StatsKind::kSite)) {
    out->kind = StatsKind::kSite;
    out->room.clear();
    return r.done();
  }
  if (kind != static_cast<uint8_t>(StatsKind::kRoom)) return false;
  if (r.rest().size() > kMaxStatsRoomCode) return false;
  out->kind = StatsKind::kRoom;
  out->room.assign(r.rest());
  return true;
}

std::string EncodeStatsReply(uint64_t id, const Figures& figures) {
  CHECK(figures.size() <= kMaxFigures);
  std::string out;
  base::AppendLe64(&out, id);
  out.push_back(static_cast<char>(figures.size() & 0xff));
  out.push_back(static_cast<char>(figures.size() >> 8));
  for (const Figure& f : figures) EncodeFigure(f, &out);
  return out;
}

bool DecodeStatsReply(std::string_view payload, uint64_t* id, Figures* out) {
  Reader r(payload);
  uint16_t count = 0;
  if (!r.U64(id) || !r.U16(&count) || count > kMaxFigures) return false;
  out->clear();
  out->resize(count);
  for (Figure& f : *out) {
    if (!DecodeFigure(r, &f)) return false;
  }
  return r.done();
}

const FigureValue* FindFigure(const Figures& figures, std::string_view name) {
  for (const Figure& f : figures) {
    if (f.name == name) return &f.value;
  }
  return nullptr;
}

Figures ToFigures(const StatFields& fields) {
  Figures out;
  out.reserve(fields.size());
  for (const StatField& f : fields) {
    Figure g{std::string(f.name), {}};
    std::visit([&](const auto& v) { g.value = v; }, f.value);
    out.push_back(std::move(g));
  }
  return out;
}

// ---------------------------------------------------------------------------
// GatherTable

uint64_t GatherTable::Start(std::span<const uint64_t> peers, int64_t deadline_ms, Done done) {
  if (gathers_.size() >= max_in_flight_) {
    refused_++;
    return 0;
  }
  const uint64_t id = next_id_++;
  Gather& g = gathers_[id];
  g.deadline_ms = deadline_ms;
  g.done = std::move(done);
  for (uint64_t peer : peers) {
    g.waiting.insert(peer);
    g.answers.emplace(peer, std::nullopt);
  }
  deadlines_.emplace(deadline_ms, id);
  if (g.waiting.empty()) ready_.insert(id);
  return id;
}

void GatherTable::GiveUp(uint64_t id, uint64_t peer) {
  auto it = gathers_.find(id);
  if (it == gathers_.end()) return;
  // Completed at the next Expire, not here: GiveUp is called while the gather is started.
  if (it->second.waiting.erase(peer) == 1 && it->second.waiting.empty()) ready_.insert(id);
}

void GatherTable::PeerDown(uint64_t peer) {
  for (auto& [id, g] : gathers_) {
    if (g.waiting.erase(peer) == 1 && g.waiting.empty()) ready_.insert(id);
  }
}

bool GatherTable::OnReply(uint64_t id, uint64_t peer, Figures figures) {
  auto it = gathers_.find(id);
  if (it == gathers_.end() || it->second.waiting.erase(peer) == 0) {
    dropped_replies_++;
    return false;
  }
  it->second.answers[peer] = std::move(figures);
  if (it->second.waiting.empty()) Complete(id);
  return true;
}

void GatherTable::Expire(int64_t now_ms) {
  while (!ready_.empty()) Complete(*ready_.begin());
  while (!deadlines_.empty() && deadlines_.begin()->first <= now_ms) {
    Complete(deadlines_.begin()->second);
  }
}

void GatherTable::ExpireAll() {
  while (!gathers_.empty()) Complete(gathers_.begin()->first);
}

std::optional<int64_t> GatherTable::NextDeadline() const {
  if (!ready_.empty()) return std::numeric_limits<int64_t>::min();
  if (deadlines_.empty()) return std::nullopt;
  return deadlines_.begin()->first;
}

void GatherTable::Complete(uint64_t id) {
  auto it = gathers_.find(id);
  CHECK(it != gathers_.end());
  Gather g = std::move(it->second);
  gathers_.erase(it);
  deadlines_.erase({g.deadline_ms, id});
  ready_.erase(id);
  g.done(std::move(g.answers));
}

// ---------------------------------------------------------------------------
// Combining and writing

StatFields Combine(const StatFields& local, std::span<const NodeReport> nodes,
                   std::span<const std::string_view> summed) {
  StatFields out = local;
  for (StatField& field : out) {
    if (std::find(summed.begin(), summed.end(), field.name) == summed.end()) continue;
    const bool is_double = std::holds_alternative<double>(field.value);
    int64_t isum = 0;
    double dsum = 0;
    for (const NodeReport& node : nodes) {
      if (!node.reachable) continue;
      const FigureValue* v = FindFigure(node.figures, field.name);
      if (v == nullptr) continue;
      if (const int64_t* i = std::get_if<int64_t>(v)) {
        isum = SaturatingAdd(isum, *i);
        dsum += static_cast<double>(*i);
      } else if (const double* d = std::get_if<double>(v)) {
        dsum += *d;
      }
    }
    if (is_double) {
      field.value = dsum;
    } else if (std::holds_alternative<int64_t>(field.value)) {
      field.value = isum;
    }
  }
  return out;
}

void WriteStatFields(const StatFields& fields, protocol::ReplyWriter& reply,
                     size_t extra_pairs) {
  reply.Map(fields.size() + extra_pairs);
  for (const StatField& f : fields) {
    reply.Bulk(f.name);
    if (const int64_t* i = std::get_if<int64_t>(&f.value)) {
      reply.Integer(*i);
    } else if (const double* d = std::get_if<double>(&f.value)) {
      reply.Double(*d);
    } else {
      reply.Bulk(std::get<std::string>(f.value));
    }
  }
}

void WriteFigures(const Figures& figures, protocol::ReplyWriter& reply) {
  reply.Map(figures.size());
  for (const Figure& f : figures) {
    reply.Bulk(f.name);
    if (const int64_t* i = std::get_if<int64_t>(&f.value)) {
      reply.Integer(*i);
    } else if (const double* d = std::get_if<double>(&f.value)) {
      reply.Double(*d);
    } else if (const std::string* s = std::get_if<std::string>(&f.value)) {
      reply.Bulk(*s);
    } else if (const bool* b = std::get_if<bool>(&f.value)) {
      reply.Boolean(*b);
    } else {
      reply.Null();
    }
  }
}

void WriteGathered(const StatFields& combined, std::span<const NodeReport> nodes,
                   protocol::ReplyWriter& reply) {
  WriteStatFields(combined, reply, /*extra_pairs=*/1);
  reply.Bulk("nodes");
  reply.Array(nodes.size());
  for (const NodeReport& node : nodes) WriteFigures(node.figures, reply);
}

}  // namespace distri::server
