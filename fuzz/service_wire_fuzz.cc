// libFuzzer target for the service frames nodes exchange (src/server/service_wire.h): what a
// cluster peer sends the MessageRouter (worker tables, requests, results, broadcasts, stats).
//
// Built by fuzz/CMakeLists.txt when -DDISTRI_FUZZ=ON (clang). The first byte of an input picks
// the decoder, the rest is the frame. Besides crashes and sanitizer reports it checks the
// decoders' promise: a frame that decodes re-encodes to exactly its bytes (nothing skipped,
// nothing invented), and the bounds hold. Seeds live in fuzz/corpus/service_wire.

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

#include "server/service_wire.h"

namespace {

namespace w = distri::server::svcwire;

constexpr size_t kMax = 64;

void Check(bool ok, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "service_wire_fuzz: %s\n", what);
    std::abort();
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const std::string_view frame(reinterpret_cast<const char*>(data) + 1, size - 1);
  switch (data[0] % 6) {
    case 0: {
      w::WorkersFrame f;
      if (!w::DecodeWorkers(frame, kMax, &f)) return 0;
      Check(f.records.size() <= kMax, "workers over the bound");
      std::string out = w::BeginWorkers(f.full);
      for (const w::WorkerRecord& r : f.records) w::AppendWorker(&out, r);
      Check(out == frame, "workers do not round-trip");
      break;
    }
    case 1: {
      w::Request r;
      if (w::DecodeRequest(frame, &r)) Check(w::EncodeRequest(r) == frame, "request");
      break;
    }
    case 2: {
      w::Result r;
      if (w::DecodeResult(frame, &r)) Check(w::EncodeResult(r) == frame, "result");
      break;
    }
    case 3: {
      w::Broadcast b;
      if (w::DecodeBroadcast(frame, &b)) Check(w::EncodeBroadcast(b) == frame, "broadcast");
      break;
    }
    case 4: {
      w::BroadcastResult b;
      if (!w::DecodeBroadcastResult(frame, kMax, &b)) return 0;
      Check(b.slots.size() <= kMax, "slots over the bound");
      Check(w::EncodeBroadcastResult(b) == frame, "broadcast result");
      break;
    }
    case 5: {
      w::StatsFrame s;
      if (!w::DecodeStats(frame, kMax, &s)) return 0;
      Check(s.services.size() <= kMax, "stats over the bound");
      Check(w::EncodeStats(s) == frame, "stats");
      break;
    }
  }
  return 0;
}
