// Service frames between nodes: encoders and bounds-checked decoders. See service_wire.h.

#include "server/service_wire.h"

#include <cstring>

#include "base/byte_reader.h"
#include "base/endian.h"

namespace distri::server::svcwire {

namespace {

// Smallest encodings, to refuse a count that the rest of the frame cannot hold
// before reserving anything for it.
constexpr size_t kMinSlot = 4 + 1 + 4;
constexpr size_t kMinCounters = 4 + 4 + 8 * 5 + 4;

void PutU8(std::string* out, uint8_t v) { out->push_back(static_cast<char>(v)); }
void PutU32(std::string* out, uint32_t v) { base::AppendLe32(out, v); }
void PutU64(std::string* out, uint64_t v) { base::AppendLe64(out, v); }
void PutStr(std::string* out, std::string_view s) {
  PutU32(out, static_cast<uint32_t>(s.size()));
  out->append(s);
}
void PutF64(std::string* out, double d) {
  uint64_t bits;
  std::memcpy(&bits, &d, sizeof bits);
  PutU64(out, bits);
}

// The shared bounds-checked reader, plus this format's strings (u32 length) and statuses.
class Reader : public base::ByteReader {
 public:
  using ByteReader::ByteReader;
  bool Str(std::string_view* s) { return Str32(s); }
  bool Str(std::string* s) {
    std::string_view v;
    if (!Str32(&v)) return false;
    s->assign(v);
    return true;
  }
  bool Status(svcwire::Status* s) {
    uint8_t v;
    if (!U8(&v) || v > kMaxStatus) return false;
    *s = static_cast<svcwire::Status>(v);
    return true;
  }
};

}  // namespace

std::string BeginWorkers(TablePart part, uint64_t boot) {
  std::string out;
  PutU8(&out, static_cast<uint8_t>(part));
  PutU64(&out, boot);
  return out;
}

void AppendWorker(std::string* out, const WorkerRecord& r) {
  PutU8(out, static_cast<uint8_t>(r.kind));
  PutU64(out, r.id);
  switch (r.kind) {
    case RecordKind::kUpsert:
      PutU32(out, r.concurrency);
      PutU32(out, r.in_flight);
      PutU32(out, r.yours);
      PutStr(out, r.label);
      PutU32(out, static_cast<uint32_t>(r.services.size()));
      for (const auto& [room, name] : r.services) {
        PutStr(out, room);
        PutStr(out, name);
      }
      break;
    case RecordKind::kLoad:
      PutU32(out, r.in_flight);
      PutU32(out, r.yours);
      break;
    case RecordKind::kGone:
      break;
  }
}

bool DecodeWorkers(std::string_view payload, size_t max_records, WorkersFrame* out) {
  Reader in(payload);
  uint8_t part;
  if (!in.U8(&part) || part > kMaxTablePart || !in.U64(&out->boot)) return false;
  out->part = static_cast<TablePart>(part);
  out->records.clear();
  while (!in.done()) {
    if (out->records.size() >= max_records) return false;
    WorkerRecord r;
    uint8_t kind;
    if (!in.U8(&kind) || !in.U64(&r.id)) return false;
    if (kind == static_cast<uint8_t>(RecordKind::kUpsert)) {
      uint32_t n;
      if (!in.U32(&r.concurrency) || !in.U32(&r.in_flight) || !in.U32(&r.yours) ||
          !in.Str(&r.label) || !in.Count(&n, 8, max_records)) {
        return false;
      }
      r.services.resize(n);
      for (auto& [room, name] : r.services) {
        if (!in.Str(&room) || !in.Str(&name)) return false;
      }
    } else if (kind == static_cast<uint8_t>(RecordKind::kLoad)) {
      if (!in.U32(&r.in_flight) || !in.U32(&r.yours)) return false;
    } else if (kind != static_cast<uint8_t>(RecordKind::kGone)) {
      return false;
    }
    r.kind = static_cast<RecordKind>(kind);
    out->records.push_back(std::move(r));
  }
  return true;
}

std::string EncodeRequest(const Request& r) {
  std::string out;
  PutU64(&out, r.call_id);
  PutU64(&out, r.worker_id);
  PutU64(&out, r.timeout_ms);
  PutStr(&out, r.room);
  PutStr(&out, r.service);
  PutStr(&out, r.payload);
  return out;
}

bool DecodeRequest(std::string_view payload, Request* out) {
  Reader in(payload);
  return in.U64(&out->call_id) && in.U64(&out->worker_id) && in.U64(&out->timeout_ms) &&
         in.Str(&out->room) && in.Str(&out->service) && in.Str(&out->payload) && in.done();
}

std::string EncodeResult(const Result& r) {
  std::string out;
  PutU64(&out, r.call_id);
  PutU64(&out, r.worker_id);
  PutU8(&out, static_cast<uint8_t>(r.status));
  PutU32(&out, r.in_flight);
  PutU32(&out, r.yours);
  PutStr(&out, r.payload);
  return out;
}

bool DecodeResult(std::string_view payload, Result* out) {
  Reader in(payload);
  return in.U64(&out->call_id) && in.U64(&out->worker_id) && in.Status(&out->status) &&
         in.U32(&out->in_flight) && in.U32(&out->yours) && in.Str(&out->payload) && in.done();
}

std::string EncodeBroadcast(const Broadcast& b) {
  std::string out;
  PutU64(&out, b.group);
  PutU64(&out, b.timeout_ms);
  PutStr(&out, b.room);
  PutStr(&out, b.service);
  PutStr(&out, b.payload);
  return out;
}

bool DecodeBroadcast(std::string_view payload, Broadcast* out) {
  Reader in(payload);
  return in.U64(&out->group) && in.U64(&out->timeout_ms) && in.Str(&out->room) &&
         in.Str(&out->service) && in.Str(&out->payload) && in.done();
}

std::string EncodeBroadcastResult(const BroadcastResult& b) {
  std::string out;
  PutU64(&out, b.group);
  PutU32(&out, static_cast<uint32_t>(b.slots.size()));
  for (const BroadcastSlot& s : b.slots) {
    PutStr(&out, s.label);
    PutU8(&out, static_cast<uint8_t>(s.status));
    PutStr(&out, s.payload);
  }
  return out;
}

bool DecodeBroadcastResult(std::string_view payload, size_t max_slots, BroadcastResult* out) {
  Reader in(payload);
  uint32_t n;
  if (!in.U64(&out->group) || !in.Count(&n, kMinSlot, max_slots)) return false;
  out->slots.resize(n);
  for (BroadcastSlot& s : out->slots) {
    if (!in.Str(&s.label) || !in.Status(&s.status) || !in.Str(&s.payload)) return false;
  }
  return in.done();
}

std::string EncodeStats(const StatsFrame& s) {
  std::string out;
  PutU64(&out, s.dropped_replies);
  PutU32(&out, static_cast<uint32_t>(s.services.size()));
  for (const ServiceCounters& c : s.services) {
    PutStr(&out, c.room);
    PutStr(&out, c.name);
    PutU64(&out, c.calls);
    PutU64(&out, c.errors);
    PutU64(&out, c.timeouts);
    PutU64(&out, c.waiting);
    PutU64(&out, c.samples);
    PutU32(&out, static_cast<uint32_t>(c.quantiles.size()));
    for (double q : c.quantiles) PutF64(&out, q);
  }
  return out;
}

bool DecodeStats(std::string_view payload, size_t max_services, StatsFrame* out) {
  Reader in(payload);
  uint32_t n;
  if (!in.U64(&out->dropped_replies) || !in.Count(&n, kMinCounters, max_services)) return false;
  out->services.resize(n);
  for (ServiceCounters& c : out->services) {
    uint32_t k;
    if (!in.Str(&c.room) || !in.Str(&c.name) || !in.U64(&c.calls) || !in.U64(&c.errors) ||
        !in.U64(&c.timeouts) || !in.U64(&c.waiting) || !in.U64(&c.samples) ||
        !in.Count(&k, 8, 1024)) {
      return false;
    }
    c.quantiles.resize(k);
    for (double& q : c.quantiles) {
      if (!in.F64(&q)) return false;
    }
  }
  return in.done();
}

}  // namespace distri::server::svcwire
