// Encoding and replay of a node's durable Raft state; see raft_wal.h.

#include "replication/raft_wal.h"

#include <algorithm>

#include "base/endian.h"
#include "log/snapshot_file.h"

namespace distri::replication {

namespace {

constexpr uint8_t kRecordKind = 1;
constexpr uint8_t kHasHardState = 1;
constexpr uint8_t kHasSnapshot = 2;
constexpr std::string_view kCheckpointMagic = "DRCP";
constexpr std::string_view kPayloadMagic = "DRSP";
constexpr std::string_view kRefMagic = "DRSR";
constexpr uint8_t kVersion = 1;

void AppendIds(std::string* out, const std::vector<uint64_t>& ids) {
  base::AppendLe32(out, static_cast<uint32_t>(ids.size()));
  for (uint64_t id : ids) base::AppendLe64(out, id);
}

void AppendHardState(std::string* out, const HardState& hs) {
  base::AppendLe64(out, hs.term);
  base::AppendLe64(out, hs.vote);
  base::AppendLe64(out, hs.commit);
}

void AppendEntry(std::string* out, uint64_t index, uint64_t term, EntryType type,
                 std::string_view context, std::string_view data) {
  base::AppendLe64(out, index);
  base::AppendLe64(out, term);
  out->push_back(static_cast<char>(type));
  base::AppendLe32(out, static_cast<uint32_t>(context.size()));
  out->append(context);
  base::AppendLe32(out, static_cast<uint32_t>(data.size()));
  out->append(data);
}

// Reads fields off the front of a byte string; any overrun makes ok() false for good.
class Reader {
 public:
  explicit Reader(std::string_view bytes) : rest_(bytes) {}
  bool ok() const { return ok_; }
  bool done() const { return rest_.empty(); }
  std::string_view rest() const { return rest_; }
  uint8_t U8() { return Take(1).empty() ? 0 : static_cast<uint8_t>(last_[0]); }
  uint16_t U16() {
    std::string_view b = Take(2);
    return b.empty() ? 0 : static_cast<uint16_t>(static_cast<uint8_t>(b[0]) |
                                                 static_cast<uint8_t>(b[1]) << 8);
  }
  uint32_t U32() {
    std::string_view b = Take(4);
    return b.empty() ? 0 : base::GetLe32(b.data());
  }
  uint64_t U64() {
    std::string_view b = Take(8);
    return b.empty() ? 0 : base::GetLe64(b.data());
  }
  std::string_view Bytes(uint64_t n) { return Take(n); }
  std::vector<uint64_t> Ids() {
    std::vector<uint64_t> ids;
    uint32_t n = U32();
    if (!ok_ || n > rest_.size() / 8) {
      ok_ = false;
      return ids;
    }
    for (uint32_t i = 0; i < n; i++) ids.push_back(U64());
    return ids;
  }
  HardState Hard() {
    HardState hs;
    hs.term = U64();
    hs.vote = U64();
    hs.commit = U64();
    return hs;
  }
  bool Entry(StoredEntry* e) {
    e->index = U64();
    e->term = U64();
    uint8_t type = U8();
    if (type > static_cast<uint8_t>(EntryType::kConfChangeV2)) ok_ = false;
    e->type = static_cast<EntryType>(type);
    e->context = std::string(Bytes(U32()));
    e->data = std::string(Bytes(U32()));
    return ok_;
  }

 private:
  std::string_view Take(uint64_t n) {
    if (!ok_ || n > rest_.size()) {
      ok_ = false;
      last_ = {};
      return {};
    }
    last_ = rest_.substr(0, n);
    rest_.remove_prefix(n);
    return n == 0 ? std::string_view("", 0) : last_;
  }

  std::string_view rest_;
  std::string_view last_;
  bool ok_ = true;
};

// An entry at index i replaces i and everything after it; the log stays contiguous.
Status AppendReplacing(std::vector<StoredEntry>* log, uint64_t snapshot_index,
                       StoredEntry entry) {
  if (entry.index <= snapshot_index) return Status::Ok();  // covered by the snapshot
  const uint64_t next = log->empty() ? snapshot_index + 1 : log->back().index + 1;
  if (entry.index > next) {
    return Status::Corruption("raft log record leaves a gap: entry " +
                              std::to_string(entry.index) + " after " + std::to_string(next - 1));
  }
  if (!log->empty() && entry.index <= log->back().index) {
    // Raft's own rule: the same index and term is the same entry (a record older than a
    // checkpoint that already holds it); only a different term replaces it and what follows.
    StoredEntry& existing = (*log)[entry.index - log->front().index];
    if (existing.term == entry.term) return Status::Ok();
    log->resize(entry.index - log->front().index);
  }
  log->push_back(std::move(entry));
  return Status::Ok();
}

}  // namespace

void EncodeRecord(std::string* out, const std::optional<HardState>& hard_state,
                  const SnapshotMeta* snapshot, std::string_view snapshot_data,
                  const std::vector<RaftEntry>& entries) {
  out->push_back(static_cast<char>(kRecordKind));
  out->push_back(static_cast<char>((hard_state ? kHasHardState : 0) |
                                   (snapshot ? kHasSnapshot : 0)));
  if (hard_state) AppendHardState(out, *hard_state);
  if (snapshot) {
    base::AppendLe64(out, snapshot->index);
    base::AppendLe64(out, snapshot->term);
    AppendIds(out, snapshot->voters);
    AppendIds(out, snapshot->learners);
    base::AppendLe64(out, snapshot_data.size());
    out->append(snapshot_data);
  }
  base::AppendLe32(out, static_cast<uint32_t>(entries.size()));
  for (const RaftEntry& e : entries) AppendEntry(out, e.index, e.term, e.type, e.context, e.data);
}

Status RaftDurableState::ApplyRecord(std::string_view record) {
  Reader r(record);
  if (r.U8() != kRecordKind) return Status::Corruption("raft log record of an unknown kind");
  const uint8_t flags = r.U8();
  if (flags & kHasHardState) {
    // Never backwards: a record older than the checkpoint it is replayed over (one that was
    // not yet durable when the checkpoint was taken) may carry an older hard state.
    HardState hs = r.Hard();
    if (!has_hard_state || hs.term > hard_state.term) {
      hard_state = hs;
    } else if (hs.term == hard_state.term) {
      if (hard_state.vote == 0) hard_state.vote = hs.vote;
      hard_state.commit = std::max(hard_state.commit, hs.commit);
    }
    has_hard_state = true;
  }
  if (flags & kHasSnapshot) {
    SnapshotMeta meta;
    meta.index = r.U64();
    meta.term = r.U64();
    meta.voters = r.Ids();
    meta.learners = r.Ids();
    std::string_view data = r.Bytes(r.U64());
    if (!r.ok()) return Status::Corruption("truncated snapshot in a raft log record");
    snapshot = std::move(meta);
    snapshot_data.assign(data);
    snapshot_from_record = true;
    // Entries the snapshot covers are gone; a later one may still follow it.
    std::erase_if(entries, [&](const StoredEntry& e) { return e.index <= snapshot.index; });
    if (!entries.empty() && entries.front().index != snapshot.index + 1) entries.clear();
  }
  const uint32_t count = r.U32();
  for (uint32_t i = 0; i < count && r.ok(); i++) {
    StoredEntry e;
    if (!r.Entry(&e)) break;
    DISTRI_RETURN_IF_ERROR(AppendReplacing(&entries, snapshot.index, std::move(e)));
  }
  if (!r.ok() || !r.done()) return Status::Corruption("malformed raft log record");
  return Status::Ok();
}

std::string EncodeCheckpointHeader(const HardState& hard_state, const SnapshotMeta& meta,
                                   const std::vector<StoredEntry>& tail) {
  std::string out(kCheckpointMagic);
  out.push_back(static_cast<char>(kVersion));
  AppendHardState(&out, hard_state);
  base::AppendLe64(&out, meta.index);
  base::AppendLe64(&out, meta.term);
  AppendIds(&out, meta.voters);
  AppendIds(&out, meta.learners);
  base::AppendLe32(&out, static_cast<uint32_t>(tail.size()));
  for (const StoredEntry& e : tail) AppendEntry(&out, e.index, e.term, e.type, e.context, e.data);
  return out;
}

Status RaftDurableState::ApplyCheckpoint(std::string_view checkpoint,
                                         std::string_view* payload) {
  Reader r(checkpoint);
  if (r.Bytes(4) != kCheckpointMagic || r.U8() != kVersion) {
    return Status::Corruption("not a raft checkpoint (bad magic or version)");
  }
  hard_state = r.Hard();
  has_hard_state = true;
  snapshot.index = r.U64();
  snapshot.term = r.U64();
  snapshot.voters = r.Ids();
  snapshot.learners = r.Ids();
  snapshot_data.clear();
  snapshot_from_record = false;
  entries.clear();
  const uint32_t count = r.U32();
  for (uint32_t i = 0; i < count && r.ok(); i++) {
    StoredEntry e;
    if (!r.Entry(&e)) break;
    DISTRI_RETURN_IF_ERROR(AppendReplacing(&entries, snapshot.index, std::move(e)));
  }
  if (!r.ok()) return Status::Corruption("malformed raft checkpoint");
  *payload = r.rest();
  return Status::Ok();
}

std::string EncodePayloadHeader(const MemberAddresses& members, uint64_t state_index) {
  std::string out(kPayloadMagic);
  out.push_back(static_cast<char>(kVersion));
  base::AppendLe32(&out, static_cast<uint32_t>(members.size()));
  for (const auto& [id, address] : members) {
    base::AppendLe64(&out, id);
    const size_t n = std::min<size_t>(address.size(), UINT16_MAX);
    out.push_back(static_cast<char>(n & 0xff));
    out.push_back(static_cast<char>(n >> 8));
    out.append(address, 0, n);
  }
  base::AppendLe64(&out, state_index);
  return out;
}

Result<DecodedPayload> DecodePayload(std::string_view bytes) {
  Reader r(bytes);
  if (r.Bytes(4) != kPayloadMagic || r.U8() != kVersion) {
    return Status::Corruption("not a Distri snapshot payload (bad magic or version)");
  }
  DecodedPayload out;
  const uint32_t n = r.U32();
  for (uint32_t i = 0; i < n && r.ok(); i++) {
    uint64_t id = r.U64();
    std::string_view address = r.Bytes(r.U16());
    out.members[id] = std::string(address);
  }
  out.state_index = r.U64();
  if (!r.ok()) return Status::Corruption("truncated snapshot payload");
  out.state = r.rest();
  return out;
}

std::string EncodeSnapshotRef(uint64_t checkpoint, uint64_t size) {
  std::string out(kRefMagic);
  out.push_back(static_cast<char>(kVersion));
  base::AppendLe64(&out, checkpoint);
  base::AppendLe64(&out, size);
  return out;
}

bool DecodeSnapshotRef(std::string_view data, uint64_t* checkpoint, uint64_t* size) {
  Reader r(data);
  if (r.Bytes(4) != kRefMagic || r.U8() != kVersion) return false;
  *checkpoint = r.U64();
  *size = r.U64();
  return r.ok() && r.done();
}

Result<std::string_view> CheckpointFilePayload(std::string_view file, const std::string& path,
                                               uint64_t id) {
  auto contents = log::ParseSnapshotFile(file, path, id);
  if (!contents.ok()) return contents.status();
  RaftDurableState scratch;
  std::string_view payload;
  DISTRI_RETURN_IF_ERROR(scratch.ApplyCheckpoint(contents.value().payload, &payload));
  return payload;
}

}  // namespace distri::replication
