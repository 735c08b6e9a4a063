// CRC32C (Castagnoli, reflected polynomial 0x82F63B78): the checksum of every
// record and snapshot that Distri writes to disk (see docs/log_format.md).
//
// Callers: the local log (segment records, snapshot trailers) on the loop
// thread and on the log's writer thread. On x86-64 CPUs with SSE4.2 the
// `crc32` instruction does the work (about 8 bytes per cycle); elsewhere a
// slice-by-8 table does (about 1 byte per cycle). The choice is made once, at
// the first call, from a runtime CPU check, so one binary runs everywhere.
//
// Thread-safety: pure functions; the tables are constant.

#ifndef DISTRI_BASE_CRC32C_H_
#define DISTRI_BASE_CRC32C_H_

#include <cstddef>
#include <cstdint>
#include <string_view>

namespace distri::base {

// Returns the CRC32C of `data` extended onto `crc`, the CRC32C of some earlier
// bytes A: Crc32cExtend(Crc32c(A), B) == Crc32c(A + B). Start from 0.
uint32_t Crc32cExtend(uint32_t crc, std::string_view data);

// The CRC32C of `data` ("123456789" -> 0xE3069283).
inline uint32_t Crc32c(std::string_view data) { return Crc32cExtend(0, data); }

// The two implementations behind Crc32cExtend, exposed so that tests can
// check they agree. Not for other callers.
namespace crc32c_internal {
uint32_t ExtendPortable(uint32_t crc, const uint8_t* data, size_t n);
// True when this CPU has the SSE4.2 crc32 instruction.
bool HardwareAvailable();
// REQUIRES: HardwareAvailable().
uint32_t ExtendHardware(uint32_t crc, const uint8_t* data, size_t n);
}  // namespace crc32c_internal

}  // namespace distri::base

#endif  // DISTRI_BASE_CRC32C_H_
