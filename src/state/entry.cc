// Entry encoding: varints for lengths and numbers (zigzag for signed ones).
// See entry.h and docs/entry_format.md.

#include "state/entry.h"

namespace distri::state {

namespace {

constexpr uint8_t kMaxOp = static_cast<uint8_t>(Op::kRenameNx);

void PutVarint(std::string* out, uint64_t v) {
  char buf[10];
  int n = 0;
  while (v >= 0x80) {
    buf[n++] = static_cast<char>(v | 0x80);
    v >>= 7;
  }
  buf[n++] = static_cast<char>(v);
  out->append(buf, n);
}

uint64_t ZigZag(int64_t v) { return (static_cast<uint64_t>(v) << 1) ^ static_cast<uint64_t>(v >> 63); }
int64_t UnZigZag(uint64_t v) { return static_cast<int64_t>(v >> 1) ^ -static_cast<int64_t>(v & 1); }

bool GetVarint(std::string_view* in, uint64_t* v) {
  uint64_t result = 0;
  for (int shift = 0; shift <= 63 && !in->empty(); shift += 7) {
    uint8_t byte = static_cast<uint8_t>((*in)[0]);
    in->remove_prefix(1);
    if (shift == 63 && byte > 1) return false;
    result |= static_cast<uint64_t>(byte & 0x7f) << shift;
    if (!(byte & 0x80)) {
      *v = result;
      return true;
    }
  }
  return false;
}

bool GetBytes(std::string_view* in, std::string_view* out) {
  uint64_t len;
  if (!GetVarint(in, &len) || len > in->size()) return false;
  *out = in->substr(0, len);
  in->remove_prefix(len);
  return true;
}

// Every entry Apply() sees has the arguments its op needs, so a malformed
// entry is refused here rather than tripping a CHECK there.
bool ArgsFitOp(const EntryView& e) {
  size_t n = e.args.size();
  switch (e.op) {
    case Op::kSet:
    case Op::kIncrByFloat:
    case Op::kAppend:
    case Op::kRename:
    case Op::kRenameNx:
      return n == 2;
    case Op::kSetRange:
      return n == 2 && e.num >= 0;
    case Op::kCopy:
      return n == 2 || n == 3;
    case Op::kIncrBy:
    case Op::kExpireAt:
    case Op::kPersist:
    case Op::kGetDel:
      return n == 1;
    case Op::kGetEx:
      return n == 1 && (e.flags & (e.flags - 1)) == 0 && e.flags <= kGetExBadTime;  // one flag
    case Op::kDel:
    case Op::kExpireKeys:
      return n >= 1;
    case Op::kMSet:
      return n >= 2 && n % 2 == 0;
    case Op::kCas:
      return (e.flags & kCasMustNotExist) ? n == 2 : n == 3;
    case Op::kFlushRoom:
    case Op::kFlushAll:
    case Op::kRoomDrop:
      return n == 0;
    case Op::kRoomCreate:
      return n <= 1;
  }
  return false;
}

}  // namespace

void EncodeEntry(std::string* out, Op op, uint32_t flags, int64_t now_ms, int64_t num,
                 std::string_view room, std::span<const std::string_view> args) {
  out->push_back(static_cast<char>(op));
  PutVarint(out, flags);
  PutVarint(out, ZigZag(now_ms));
  PutVarint(out, ZigZag(num));
  PutVarint(out, room.size());
  out->append(room);
  PutVarint(out, args.size());
  for (std::string_view a : args) {
    PutVarint(out, a.size());
    out->append(a);
  }
}

Status DecodeEntry(std::string_view data, EntryView* out) {
  auto bad = [](const char* what) { return Status::Corruption(std::string("bad entry: ") + what); };
  if (data.empty()) return bad("empty");
  uint8_t op = static_cast<uint8_t>(data[0]);
  if (op == 0 || op > kMaxOp) return bad("unknown op");
  data.remove_prefix(1);
  out->op = static_cast<Op>(op);
  uint64_t flags, now, num, argc;
  if (!GetVarint(&data, &flags) || flags > UINT32_MAX) return bad("flags");
  if (!GetVarint(&data, &now) || !GetVarint(&data, &num)) return bad("numbers");
  out->flags = static_cast<uint32_t>(flags);
  out->now_ms = UnZigZag(now);
  out->num = UnZigZag(num);
  if (!GetBytes(&data, &out->room)) return bad("room");
  if (!GetVarint(&data, &argc) || argc > data.size()) return bad("argc");
  out->args.clear();
  for (uint64_t i = 0; i < argc; i++) {
    std::string_view a;
    if (!GetBytes(&data, &a)) return bad("arg");
    out->args.push_back(a);
  }
  if (!data.empty()) return bad("trailing bytes");
  if (!ArgsFitOp(*out)) return bad("wrong argument count for op");
  return Status::Ok();
}

std::string_view EntryRoom(std::string_view data) {
  if (data.empty()) return {};
  data.remove_prefix(1);
  uint64_t skip;
  std::string_view room;
  if (!GetVarint(&data, &skip) || !GetVarint(&data, &skip) || !GetVarint(&data, &skip) ||
      !GetBytes(&data, &room)) {
    return {};
  }
  return room;
}

}  // namespace distri::state
