// libFuzzer target for the cluster link handshake (src/cluster/handshake.h),
// the first code that reads bytes from a stranger on the cluster port.
//
// Built by fuzz/CMakeLists.txt when -DDISTRI_FUZZ=ON (clang). The first byte
// of an input picks the chunk size (1..64) the rest is fed in; the rest goes
// to a fresh responder and to an initiator that has sent its HELLO. Besides
// crashes and sanitizer reports it checks the handshake's promises: nothing is
// consumed past the input, a failed handshake stays failed and consumes
// nothing, and no input authenticates (that would need the secret's HMAC over
// a fresh nonce), so neither side is ever done and peer() stays empty.
// Seeds live in fuzz/corpus/handshake.

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

#include "cluster/handshake.h"

namespace {

void Check(bool ok, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "handshake_fuzz: %s\n", what);
    std::abort();
  }
}

void Drive(distri::cluster::Role role, std::string_view input, size_t chunk,
           const std::shared_ptr<const distri::cluster::ClusterSecret>& secret) {
  distri::cluster::Handshake hs(distri::cluster::HandshakeConfig{role, secret, 42, 7});
  std::string out;
  Check(hs.Start(&out).ok(), "Start failed");
  std::string buffered;
  for (size_t pos = 0; pos < input.size(); pos += chunk) {
    buffered.append(input.substr(pos, chunk));
    size_t consumed = 0;
    const bool was_failed = hs.failed();
    distri::Status status = hs.Feed(buffered, &consumed, &out);
    Check(consumed <= buffered.size(), "consumed more than the input");
    Check(status.ok() != hs.failed(), "status and state disagree");
    if (was_failed) Check(consumed == 0 && !status.ok(), "a failed handshake consumed bytes");
    buffered.erase(0, consumed);
    Check(buffered.size() < distri::cluster::kMaxHandshakeMessage || hs.failed(),
          "an unauthenticated peer made the handshake buffer unboundedly");
    Check(!hs.done() && !hs.peer() && !hs.session_key(), "arbitrary bytes authenticated");
    if (hs.failed()) break;
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const auto secret =
      distri::cluster::ClusterSecret::FromBytes("fuzz secret fuzz secret fuzz secret!").value();
  if (size == 0) return 0;
  const size_t chunk = 1 + data[0] % 64;
  std::string_view input(reinterpret_cast<const char*>(data + 1), size - 1);
  Drive(distri::cluster::Role::kResponder, input, chunk, secret);
  Drive(distri::cluster::Role::kInitiator, input, chunk, secret);
  return 0;
}
