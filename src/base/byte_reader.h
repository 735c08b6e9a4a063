// ByteReader: reads little-endian fields off the front of a byte string, checking before
// every read that the bytes are there. The one decoder core of the binary formats that
// arrive from elsewhere: frames from other cluster nodes (pub/sub, services, statistics)
// and the state snapshot. A failed read returns false and takes nothing; the caller turns
// that into a Corruption status.
//
// Lengths and counts are compared with what is left before anything is taken or
// allocated, so an absurd one (4 GiB in a 20-byte frame) is refused, never trusted.
//
// Thread-safety: a value type over a borrowed view; the bytes must outlive the reader.

#ifndef DISTRI_BASE_BYTE_READER_H_
#define DISTRI_BASE_BYTE_READER_H_

#include <cstdint>
#include <cstring>
#include <string_view>

#include "base/endian.h"

namespace distri::base {

class ByteReader {
 public:
  explicit ByteReader(std::string_view in) : in_(in) {}

  bool U8(uint8_t* v) {
    if (in_.empty()) return false;
    *v = static_cast<uint8_t>(in_[0]);
    in_.remove_prefix(1);
    return true;
  }
  bool U16(uint16_t* v) {
    if (in_.size() < 2) return false;
    *v = static_cast<uint16_t>(static_cast<uint8_t>(in_[0]) | static_cast<uint8_t>(in_[1]) << 8);
    in_.remove_prefix(2);
    return true;
  }
  bool U32(uint32_t* v) {
    if (in_.size() < 4) return false;
    *v = GetLe32(in_.data());
    in_.remove_prefix(4);
    return true;
  }
  bool U64(uint64_t* v) {
    if (in_.size() < 8) return false;
    *v = GetLe64(in_.data());
    in_.remove_prefix(8);
    return true;
  }
  // An IEEE double stored as the u64 of its bits.
  bool F64(double* v) {
    uint64_t bits = 0;
    if (!U64(&bits)) return false;
    std::memcpy(v, &bits, sizeof bits);
    return true;
  }
  // The next n bytes, as a view into the input.
  bool Bytes(uint64_t n, std::string_view* out) {
    if (n > in_.size()) return false;
    *out = in_.substr(0, n);
    in_.remove_prefix(n);
    return true;
  }
  // A u32 length, then that many bytes.
  bool Str32(std::string_view* out) {
    uint32_t n = 0;
    std::string_view save = in_;
    if (!U32(&n) || !Bytes(n, out)) {
      in_ = save;
      return false;
    }
    return true;
  }
  // A u64 length, then that many bytes.
  bool Str64(std::string_view* out) {
    uint64_t n = 0;
    std::string_view save = in_;
    if (!U64(&n) || !Bytes(n, out)) {
      in_ = save;
      return false;
    }
    return true;
  }
  // A u32 count of items of at least `min_item_bytes` each (> 0), at most `max`: refused
  // when what is left could not hold that many, before the caller allocates for them.
  bool Count(uint32_t* n, size_t min_item_bytes, size_t max) {
    std::string_view save = in_;
    if (!U32(n) || *n > max || *n > in_.size() / min_item_bytes) {
      in_ = save;
      return false;
    }
    return true;
  }

  std::string_view rest() const { return in_; }
  bool done() const { return in_.empty(); }

 private:
  std::string_view in_;
};

}  // namespace distri::base

#endif  // DISTRI_BASE_BYTE_READER_H_
