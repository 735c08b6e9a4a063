// Entry codec: the bytes of one state change in the log.
//
// Every write command becomes one entry. An entry is self-contained: it names
// its room, carries the proposer's wall-clock time (`now_ms`) and every value
// the change needs, already normalised (a relative TTL is turned into an
// absolute time by the proposer), so apply() never reads a clock and every
// replica computes the same result. The layout is in docs/entry_format.md.
//
// Encoding writes straight from string_views and decoding yields views into
// the encoded bytes, so the hot path (SET) copies the value once into the log
// batch and once into the keyspace, and allocates nothing else.
//
// Thread-safety: pure functions; EntryView borrows from the decoded bytes.

#ifndef DISTRI_STATE_ENTRY_H_
#define DISTRI_STATE_ENTRY_H_

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "distri/status.h"

namespace distri::state {

// Operation codes. Values are persisted: never renumber, only append.
enum class Op : uint8_t {
  kSet = 1,          // args: key, value. flags: SetFlag. num: absolute expiry ms (0 = none)
  kDel = 2,          // args: keys...
  kIncrBy = 3,       // args: key. num: delta
  kIncrByFloat = 4,  // args: key, delta as decimal text
  kAppend = 5,       // args: key, suffix
  kExpireAt = 6,     // args: key. num: absolute expiry ms (<= now_ms deletes)
  kPersist = 7,      // args: key
  kRename = 8,       // args: src, dst
  kFlushRoom = 9,    // no args: deletes every key of the room
  kFlushAll = 10,    // no args: deletes every key of every room
  kMSet = 11,        // args: k1, v1, k2, v2, ... flags: kSetNx = MSETNX
  kCas = 12,         // args: key, expected, new (or key, new with kCasMustNotExist)
  kGetDel = 13,      // args: key
  kExpireKeys = 14,  // args: keys; deletes those whose expiry <= now_ms (active expiry)
  kRoomCreate = 15,  // room: the new code. args: name
  kRoomDrop = 16,    // room: the code to drop
  kSetRange = 17,    // args: key, patch. num: offset (>= 0)
  kGetEx = 18,       // args: key. flags: GetExFlag. num: absolute expiry ms (kGetExExpire)
  kCopy = 19,        // args: src, dst [, dst room]. flags: kCopyReplace
  kRenameNx = 20,    // args: src, dst
};

// Flags for kSet / kMSet / kCas.
enum SetFlag : uint32_t {
  kSetNx = 1 << 0,        // only if the key does not exist
  kSetXx = 1 << 1,        // only if the key exists
  kSetKeepTtl = 1 << 2,   // keep the existing expiry
  kSetGet = 1 << 3,       // reply with the old value
  kCasMustNotExist = 1 << 4,
};

// Flags for kGetEx: at most one of them; none reads the value only.
enum GetExFlag : uint32_t {
  kGetExPersist = 1 << 0,     // remove the expiry
  kGetExExpire = 1 << 1,      // expire at `num` (at or before now_ms deletes)
  kGetExNotInteger = 1 << 2,  // the expiry given was not an integer: error if the key exists
  kGetExBadTime = 1 << 3,     // the expiry given was <= 0 or overflowed: error if the key exists
};

// Flags for kCopy.
enum CopyFlag : uint32_t {
  kCopyReplace = 1 << 0,  // overwrite an existing destination
};

// A decoded entry; string_views point into the bytes given to DecodeEntry.
struct EntryView {
  Op op = Op::kSet;
  uint32_t flags = 0;
  int64_t now_ms = 0;
  int64_t num = 0;
  std::string_view room;
  std::vector<std::string_view> args;
};

// Appends the encoding of one entry to *out.
void EncodeEntry(std::string* out, Op op, uint32_t flags, int64_t now_ms, int64_t num,
                 std::string_view room, std::span<const std::string_view> args);

// The room an encoded entry addresses, without decoding the rest (empty if malformed): how
// the server picks the entry's Raft group (replication/groups.h).
std::string_view EntryRoom(std::string_view data);

// Decodes `data` into *out (args reuses its capacity). Corruption on any
// malformed input: truncated fields, unknown op, trailing bytes.
Status DecodeEntry(std::string_view data, EntryView* out);

}  // namespace distri::state

#endif  // DISTRI_STATE_ENTRY_H_
