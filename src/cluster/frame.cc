// Frames of a cluster link (see frame.h and docs/replication.md, "Cluster
// links").

#include "cluster/frame.h"

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/params.h>

#include "base/endian.h"

namespace distri::cluster {

void EncodeFrameHeader(uint8_t type, uint32_t payload_bytes, char* out) {
  base::PutLe32(out, payload_bytes);
  out[4] = static_cast<char>(type);
}

FrameHeader DecodeFrameHeader(const char* header) {
  return FrameHeader{base::GetLe32(header), static_cast<uint8_t>(header[4])};
}

struct FrameMac::Impl {
  EVP_MAC* mac = nullptr;
  EVP_MAC_CTX* ctx = nullptr;
  ~Impl() {
    EVP_MAC_CTX_free(ctx);
    EVP_MAC_free(mac);
  }
};

Result<std::unique_ptr<FrameMac>> FrameMac::Create(const std::array<uint8_t, kMacBytes>& key) {
  std::unique_ptr<FrameMac> self(new FrameMac());
  self->impl_ = std::make_unique<Impl>();
  Impl& impl = *self->impl_;
  impl.mac = EVP_MAC_fetch(nullptr, "HMAC", nullptr);
  if (impl.mac == nullptr) return Status::Internal("OpenSSL has no HMAC");
  impl.ctx = EVP_MAC_CTX_new(impl.mac);
  if (impl.ctx == nullptr) return Status::Internal("EVP_MAC_CTX_new failed");
  char digest[] = "SHA256";
  OSSL_PARAM params[] = {
      OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest, 0),
      OSSL_PARAM_construct_end(),
  };
  // The key is set once here; each frame re-initialises with a null key,
  // which keeps it (and HMAC's precomputed inner and outer pads).
  if (EVP_MAC_init(impl.ctx, key.data(), key.size(), params) != 1) {
    return Status::Internal("EVP_MAC_init(HMAC-SHA256) failed");
  }
  return self;
}

FrameMac::~FrameMac() = default;

Status FrameMac::Compute(Direction direction, uint64_t sequence, uint8_t type,
                         std::string_view payload, Tag* tag) {
  // direction u8 | sequence u64 | type u8 | length u32: fixed-size fields
  // before the payload, so the input is unambiguous.
  unsigned char prefix[1 + 8 + 1 + 4];
  prefix[0] = static_cast<unsigned char>(direction);
  base::PutLe64(reinterpret_cast<char*>(prefix + 1), sequence);
  prefix[9] = type;
  base::PutLe32(reinterpret_cast<char*>(prefix + 10), static_cast<uint32_t>(payload.size()));
  unsigned char full[kMacBytes];
  size_t full_len = 0;
  EVP_MAC_CTX* ctx = impl_->ctx;
  if (EVP_MAC_init(ctx, nullptr, 0, nullptr) != 1 ||
      EVP_MAC_update(ctx, prefix, sizeof prefix) != 1 ||
      EVP_MAC_update(ctx, reinterpret_cast<const unsigned char*>(payload.data()),
                     payload.size()) != 1 ||
      EVP_MAC_final(ctx, full, &full_len, sizeof full) != 1 || full_len != kMacBytes) {
    return Status::Internal("HMAC-SHA256 of a cluster frame failed");
  }
  std::copy(full, full + kFrameTagBytes, tag->begin());
  return Status::Ok();
}

bool FrameMac::Verify(Direction direction, uint64_t sequence, uint8_t type,
                      std::string_view payload, const char* tag) {
  Tag expected;
  if (!Compute(direction, sequence, type, payload, &expected).ok()) return false;
  return CRYPTO_memcmp(expected.data(), tag, kFrameTagBytes) == 0;
}

}  // namespace distri::cluster
