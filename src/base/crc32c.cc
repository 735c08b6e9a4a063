// CRC32C implementations: SSE4.2 instruction when present, slice-by-8 tables
// otherwise. See crc32c.h.
//
// Both work on the "pre/post-inverted" register: the public value is the
// register XOR 0xFFFFFFFF, which is what lets Crc32cExtend chain calls.

#include "base/crc32c.h"

#include <array>
#include <cstring>

#if defined(__x86_64__)
#include <nmmintrin.h>
#endif

namespace distri::base {

namespace {

constexpr uint32_t kPolynomial = 0x82F63B78;  // Castagnoli, bit-reversed

using Tables = std::array<std::array<uint32_t, 256>, 8>;

// tables[0][b] is the CRC register after feeding byte b into a zero register;
// tables[k][b] is the same followed by k zero bytes. Slice-by-8 looks up each
// of 8 input bytes in the table for the number of bytes that follow it.
constexpr Tables MakeTables() {
  Tables t{};
  for (uint32_t i = 0; i < 256; ++i) {
    uint32_t c = i;
    for (int bit = 0; bit < 8; ++bit) c = (c & 1) ? (c >> 1) ^ kPolynomial : c >> 1;
    t[0][i] = c;
  }
  for (size_t k = 1; k < 8; ++k) {
    for (size_t i = 0; i < 256; ++i) {
      t[k][i] = (t[k - 1][i] >> 8) ^ t[0][t[k - 1][i] & 0xff];
    }
  }
  return t;
}

constexpr Tables kTables = MakeTables();

// Little-endian load, independent of the host's byte order and alignment.
inline uint32_t LoadLe32(const uint8_t* p) {
  return uint32_t{p[0]} | uint32_t{p[1]} << 8 | uint32_t{p[2]} << 16 | uint32_t{p[3]} << 24;
}

}  // namespace

namespace crc32c_internal {

uint32_t ExtendPortable(uint32_t crc, const uint8_t* p, size_t n) {
  const Tables& t = kTables;
  uint32_t l = ~crc;
  while (n >= 8) {
    uint32_t lo = LoadLe32(p) ^ l;
    uint32_t hi = LoadLe32(p + 4);
    l = t[7][lo & 0xff] ^ t[6][(lo >> 8) & 0xff] ^ t[5][(lo >> 16) & 0xff] ^ t[4][lo >> 24] ^
        t[3][hi & 0xff] ^ t[2][(hi >> 8) & 0xff] ^ t[1][(hi >> 16) & 0xff] ^ t[0][hi >> 24];
    p += 8;
    n -= 8;
  }
  while (n-- > 0) l = t[0][(l ^ *p++) & 0xff] ^ (l >> 8);
  return ~l;
}

#if defined(__x86_64__)

bool HardwareAvailable() { return __builtin_cpu_supports("sse4.2"); }

// Compiled for SSE4.2 whatever the global -m flags; only called after the
// runtime check above said the instruction exists.
__attribute__((target("sse4.2"))) uint32_t ExtendHardware(uint32_t crc, const uint8_t* p,
                                                          size_t n) {
  uint64_t l = ~crc;
  while (n >= 8) {
    uint64_t v;
    std::memcpy(&v, p, 8);  // x86 is little-endian; unaligned loads are fine
    l = _mm_crc32_u64(l, v);
    p += 8;
    n -= 8;
  }
  uint32_t l32 = static_cast<uint32_t>(l);
  while (n-- > 0) l32 = _mm_crc32_u8(l32, *p++);
  return ~l32;
}

#else

bool HardwareAvailable() { return false; }

uint32_t ExtendHardware(uint32_t crc, const uint8_t* p, size_t n) {
  return ExtendPortable(crc, p, n);
}

#endif

}  // namespace crc32c_internal

uint32_t Crc32cExtend(uint32_t crc, std::string_view data) {
  // Decided once; the initialisation of a function-local static is thread-safe.
  static const bool kUseHardware = crc32c_internal::HardwareAvailable();
  const auto* p = reinterpret_cast<const uint8_t*>(data.data());
  return kUseHardware ? crc32c_internal::ExtendHardware(crc, p, data.size())
                      : crc32c_internal::ExtendPortable(crc, p, data.size());
}

}  // namespace distri::base
