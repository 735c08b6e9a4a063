// Pub/sub frames between cluster nodes: encoding and bounds-checked decoding. See
// pubsub_wire.h for the layout.

#include "server/pubsub_wire.h"

#include <algorithm>

#include "base/byte_reader.h"
#include "base/endian.h"

namespace distri::server::pubsub_wire {

namespace {

using Reader = base::ByteReader;

void AppendString(std::string* out, std::string_view s) {
  base::AppendLe32(out, static_cast<uint32_t>(s.size()));
  out->append(s);
}

// The smallest entry: kind, count, two empty strings.
constexpr size_t kMinEntryBytes = 1 + 4 + 4 + 4;

}  // namespace

void AppendHeader(std::string* out, Header header) {
  base::AppendLe64(out, header.epoch);
  base::AppendLe64(out, header.seq);
}

void SetSeq(std::string* frame, uint64_t seq) { base::PutLe64(frame->data() + 8, seq); }

Status DecodeHeader(std::string_view frame, Header* header, std::string_view* body) {
  if (frame.size() < kHeaderBytes) {
    return Status::Corruption("pub/sub frame shorter than its header");
  }
  header->epoch = base::GetLe64(frame.data());
  header->seq = base::GetLe64(frame.data() + 8);
  *body = frame.substr(kHeaderBytes);
  return Status::Ok();
}

InterestWriter::InterestWriter(Header header, bool full) {
  AppendHeader(&frame_, header);
  frame_.push_back(static_cast<char>(full ? kFlagFull : 0));
  base::AppendLe32(&frame_, 0);  // entries, written by Finish
}

void InterestWriter::Add(bool pattern, uint32_t count, std::string_view room,
                         std::string_view name) {
  frame_.push_back(static_cast<char>(pattern ? 1 : 0));
  base::AppendLe32(&frame_, count);
  AppendString(&frame_, room);
  AppendString(&frame_, name);
  entries_++;
}

std::string InterestWriter::Finish() {
  base::PutLe32(frame_.data() + kHeaderBytes + 1, entries_);
  return std::move(frame_);
}

Status DecodeInterest(std::string_view body, Interest* out) {
  Reader r(body);
  uint8_t flags = 0;
  uint32_t n = 0;
  if (!r.U8(&flags) || !r.U32(&n)) return Status::Corruption("interest frame truncated");
  if ((flags & ~kFlagFull) != 0) return Status::Corruption("interest frame: unknown flags");
  // Checked before reserving: a count that could not fit is refused without allocating.
  if (n > r.rest().size() / kMinEntryBytes) {
    return Status::Corruption("interest frame: more entries than bytes");
  }
  out->full = (flags & kFlagFull) != 0;
  out->entries.clear();
  // Reserved up to a bound only: an entry decodes to more than its wire bytes.
  out->entries.reserve(std::min<uint32_t>(n, 4096));
  for (uint32_t i = 0; i < n; ++i) {
    uint8_t kind = 0;
    InterestEntry e;
    if (!r.U8(&kind) || !r.U32(&e.count) || !r.Str32(&e.room) ||
        !r.Str32(&e.name)) {
      return Status::Corruption("interest frame: entry truncated");
    }
    if (kind > 1) return Status::Corruption("interest frame: unknown entry kind");
    e.pattern = kind == 1;
    out->entries.push_back(e);
  }
  if (!r.rest().empty()) return Status::Corruption("interest frame: trailing bytes");
  return Status::Ok();
}

void AppendMessage(std::string* frame, std::string_view room, std::string_view channel,
                   std::string_view message) {
  AppendString(frame, room);
  AppendString(frame, channel);
  AppendString(frame, message);
}

Status DecodeMessages(std::string_view body, std::vector<Message>* out) {
  out->clear();
  if (body.empty()) return Status::Corruption("message frame holds no message");
  Reader r(body);
  while (!r.rest().empty()) {
    Message m;
    if (!r.Str32(&m.room) || !r.Str32(&m.channel) || !r.Str32(&m.payload)) {
      out->clear();
      return Status::Corruption("message frame truncated");
    }
    out->push_back(m);
  }
  return Status::Ok();
}

}  // namespace distri::server::pubsub_wire
