// libFuzzer target for the pub/sub frames between cluster nodes (src/server/pubsub_wire.h):
// what a peer sends is never trusted, so every input must decode or be refused without
// reading past its end, and whatever decodes must encode back to the same bytes (the
// format has one encoding per value, so a decoder that skipped or invented a byte shows).
//
// Built by fuzz/CMakeLists.txt when -DDISTRI_FUZZ=ON (clang). An input is <selector byte>
// <frame>: an even selector decodes the frame as an interest frame, an odd one as a
// message frame. Seeds live in fuzz/corpus/pubsub_wire.

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "server/pubsub_wire.h"

namespace wire = distri::server::pubsub_wire;

namespace {

void Check(bool ok, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "pubsub_wire: %s\n", what);
    std::abort();
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const bool message = data[0] & 1;
  std::string_view frame(reinterpret_cast<const char*>(data + 1), size - 1);
  wire::Header header;
  std::string_view body;
  if (!wire::DecodeHeader(frame, &header, &body).ok()) return 0;
  if (message) {
    std::vector<wire::Message> messages;
    if (!wire::DecodeMessages(body, &messages).ok()) {
      Check(messages.empty(), "a refused message frame yielded messages");
      return 0;
    }
    std::string again;
    wire::AppendHeader(&again, header);
    for (const wire::Message& m : messages) {
      wire::AppendMessage(&again, m.room, m.channel, m.payload);
    }
    Check(again == frame, "message frame does not round-trip");
  } else {
    wire::Interest interest;
    if (!wire::DecodeInterest(body, &interest).ok()) return 0;
    wire::InterestWriter w(header, interest.full);
    for (const wire::InterestEntry& e : interest.entries) w.Add(e.pattern, e.count, e.room, e.name);
    Check(w.Finish() == frame, "interest frame does not round-trip");
  }
  return 0;
}
