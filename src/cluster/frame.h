// The frames of a cluster link, after the handshake (handshake.h): the wire
// format and the MAC that authenticates each frame with the link's session
// key. No I/O; the transport (transport.h) encodes and checks with these, and
// tests use them to play a peer by hand.
//
//   frame: length u32 | type u8 | payload [length] | tag [16]
//   tag:   HMAC-SHA256(session key, direction u8 | sequence u64 | type u8 | length u32 | payload),
//          first 16 bytes
//
// Integers are little-endian. `direction` is 1 for frames the initiator
// sends, 2 for frames the responder sends (so a frame cannot be reflected
// back to its sender); `sequence` counts the frames of one direction of one
// link from 0 and is not sent: both sides know it, so a frame replayed,
// dropped, reordered or injected inside a link fails its tag. The session key
// is unique to the link, so frames from another link fail too. Format and
// rationale: docs/replication.md, "Cluster links".
//
// Thread-safety: a FrameMac is used by one thread (its link's loop).

#ifndef DISTRI_CLUSTER_FRAME_H_
#define DISTRI_CLUSTER_FRAME_H_

#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string_view>

#include "cluster/handshake.h"
#include "distri/status.h"

namespace distri::cluster {

// length u32 | type u8.
inline constexpr size_t kFrameHeaderBytes = 5;
// The truncated HMAC-SHA256 after the payload. 128 bits: a forger's chance
// per attempt is 2^-128, and a wrong tag closes the link.
inline constexpr size_t kFrameTagBytes = 16;
// The largest payload the format can express.
inline constexpr uint64_t kMaxFramePayload = UINT32_MAX - kFrameHeaderBytes - kFrameTagBytes;

enum class Direction : uint8_t {
  kFromInitiator = 1,
  kFromResponder = 2,
};

// Writes the 5-byte header of a frame of `payload_bytes` bytes.
// REQUIRES: payload_bytes <= kMaxFramePayload.
void EncodeFrameHeader(uint8_t type, uint32_t payload_bytes, char* out);

// The payload length and type in a header. REQUIRES: 5 readable bytes.
struct FrameHeader {
  uint32_t payload_bytes;
  uint8_t type;
};
FrameHeader DecodeFrameHeader(const char* header);

// HMAC-SHA256 keyed with one link's session key. The key schedule is done
// once (one EVP_MAC_CTX per link, re-initialised per frame with the same
// key), so a frame costs one MAC, not a setup.
class FrameMac {
 public:
  using Tag = std::array<uint8_t, kFrameTagBytes>;

  // Fails only if OpenSSL cannot provide HMAC-SHA256.
  static Result<std::unique_ptr<FrameMac>> Create(const std::array<uint8_t, kMacBytes>& key);
  ~FrameMac();
  FrameMac(const FrameMac&) = delete;
  FrameMac& operator=(const FrameMac&) = delete;

  // The tag of frame number `sequence` sent in `direction`.
  Status Compute(Direction direction, uint64_t sequence, uint8_t type, std::string_view payload,
                 Tag* tag);
  // Whether `tag` (16 bytes) is that tag; compared in constant time.
  bool Verify(Direction direction, uint64_t sequence, uint8_t type, std::string_view payload,
              const char* tag);

 private:
  FrameMac() = default;
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace distri::cluster

#endif  // DISTRI_CLUSTER_FRAME_H_
