// The frames pub/sub sends between cluster nodes (ClusterNode frame types 16-19), and their
// encoding. Pure: no I/O, no state; pubsub_routes.cc sends and receives them, and
// pubsub_wire_test.cc checks that every truncated or absurd frame is refused, not read past.
//
// Every frame starts with the same 16 bytes (little endian):
//
//   epoch u64   the sender's incarnation (random at start): a restarted node starts over
//   seq   u64   1, 2, 3... per destination, over every frame type, in send order
//
// then, by type (see docs/messaging.md, "Across the cluster"):
//
//   kInterest   flags u8 (bit 0: full, replaces all the receiver knows of the sender)
//               n u32, then n entries of:
//                 kind u8 (0 channel, 1 pattern) | count u32 (local subscribers; 0: none)
//                 room_len u32 | room | name_len u32 | name
//   kMessage    one or more messages, each:
//                 room_len u32 | room | channel_len u32 | channel | len u32 | message
//               (the messages published to one peer in one loop iteration: one frame,
//               one MAC, one sequence number for all of them)
//   kResync     nothing: "send me your full interest" (the receiver saw a gap)
//   kHeartbeat  nothing: sent every second, so a gap at the tail is seen too
//
// Counts are absolute (not increments), so applying an entry twice changes nothing.

#ifndef DISTRI_SERVER_PUBSUB_WIRE_H_
#define DISTRI_SERVER_PUBSUB_WIRE_H_

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "distri/status.h"

namespace distri::server::pubsub_wire {

// In the range ClusterNode gives pub/sub (16-23).
enum FrameType : uint8_t {
  kInterest = 16,
  kMessage = 17,
  kResync = 18,
  kHeartbeat = 19,
};

constexpr size_t kHeaderBytes = 16;
constexpr uint8_t kFlagFull = 1;

struct Header {
  uint64_t epoch = 0;
  uint64_t seq = 0;
};

struct InterestEntry {
  bool pattern = false;
  uint32_t count = 0;
  std::string_view room, name;
};

struct Interest {
  bool full = false;
  std::vector<InterestEntry> entries;  // views into the frame
};

struct Message {
  std::string_view room, channel, payload;  // views into the frame
};

// Appends the header; SetSeq overwrites the seq of an encoded frame (one encoding, many
// destinations). REQUIRES (SetSeq): frame->size() >= kHeaderBytes.
void AppendHeader(std::string* out, Header header);
void SetSeq(std::string* frame, uint64_t seq);

// Splits a frame into its header and body. Corruption if shorter than the header.
Status DecodeHeader(std::string_view frame, Header* header, std::string_view* body);

// Builds an interest frame: Begin (header and flags, count 0), Add per entry, then
// Finish (writes the count). Size() says how large it has grown (to split big ones).
class InterestWriter {
 public:
  InterestWriter(Header header, bool full);
  void Add(bool pattern, uint32_t count, std::string_view room, std::string_view name);
  size_t entries() const { return entries_; }
  size_t size() const { return frame_.size(); }
  // The frame; the writer is spent.
  std::string Finish();

 private:
  std::string frame_;
  uint32_t entries_ = 0;
};

// Parses an interest body (after the header). Corruption on any truncation, a length past
// the end, more entries than could fit, an unknown kind, or trailing bytes.
Status DecodeInterest(std::string_view body, Interest* out);

// A message frame is AppendHeader, then AppendMessage once per message.
constexpr size_t kMessageOverhead = 12;  // the three lengths
void AppendMessage(std::string* frame, std::string_view room, std::string_view channel,
                   std::string_view message);
// Every message of a message body, or Corruption (then none: a frame is taken whole or not
// at all) if one is truncated or the body holds none.
Status DecodeMessages(std::string_view body, std::vector<Message>* out);

}  // namespace distri::server::pubsub_wire

#endif  // DISTRI_SERVER_PUBSUB_WIRE_H_
