// libFuzzer target for the statistics frames between cluster members
// (src/server/stats_gather.h): STATS_REQUEST and STATS_REPLY, what one member
// reads from another's bytes.
//
// Built by fuzz/CMakeLists.txt when -DDISTRI_FUZZ=ON (clang). Bit 0 of an
// input's first byte picks the decoder, the rest is the payload. Besides
// crashes and sanitizer reports it checks that the encoding is canonical: a
// payload that decodes encodes back to the same bytes (so a decoder cannot
// accept what it would never send, such as a truncated figure or bytes left
// over), and that a decoded reply can be summed (Combine) and written as RESP
// without trouble whatever its values. Seeds live in fuzz/corpus/stats_frames.

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "protocol/resp_writer.h"
#include "server/stats_gather.h"

namespace {

void Check(bool ok, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "stats_frames_fuzz: %s\n", what);
    std::abort();
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace distri::server;
  if (size == 0) return 0;
  std::string_view payload(reinterpret_cast<const char*>(data + 1), size - 1);
  if ((data[0] & 1) == 0) {
    StatsRequest request;
    if (!DecodeStatsRequest(payload, &request)) return 0;
    Check(request.room.size() <= kMaxStatsRoomCode, "a room code over the bound");
    Check(EncodeStatsRequest(request) == payload, "a request that does not encode back");
    return 0;
  }
  uint64_t id = 0;
  Figures figures;
  if (!DecodeStatsReply(payload, &id, &figures)) return 0;
  Check(figures.size() <= kMaxFigures, "more figures than the bound");
  Check(EncodeStatsReply(id, figures) == payload, "a reply that does not encode back");
  const std::vector<NodeReport> nodes = {{1, true, figures}, {2, true, figures}};
  const StatFields local = {{"clients", int64_t{0}}, {"ops_per_sec_1m", 0.0}};
  const std::string_view summed[] = {"clients", "ops_per_sec_1m"};
  StatFields combined = Combine(local, nodes, summed);
  Check(combined.size() == local.size(), "Combine changed the field list");
  for (int protocol : {2, 3}) {
    std::string out;
    distri::protocol::ReplyWriter w(&out, protocol);
    WriteGathered(combined, nodes, w);
    Check(!out.empty(), "nothing written");
  }
  return 0;
}
