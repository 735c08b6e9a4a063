// Little-endian fixed-width integers for on-disk formats (log records,
// snapshot files, the state snapshot). Byte by byte, so they are correct on
// any host and need no alignment.

#ifndef DISTRI_BASE_ENDIAN_H_
#define DISTRI_BASE_ENDIAN_H_

#include <cstdint>
#include <string>

namespace distri::base {

inline void PutLe32(char* p, uint32_t v) {
  for (int i = 0; i < 4; ++i) p[i] = static_cast<char>(v >> (8 * i));
}
inline void PutLe64(char* p, uint64_t v) {
  for (int i = 0; i < 8; ++i) p[i] = static_cast<char>(v >> (8 * i));
}
inline uint32_t GetLe32(const char* p) {
  uint32_t v = 0;
  for (int i = 3; i >= 0; --i) v = v << 8 | static_cast<uint8_t>(p[i]);
  return v;
}
inline uint64_t GetLe64(const char* p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = v << 8 | static_cast<uint8_t>(p[i]);
  return v;
}
inline void AppendLe32(std::string* out, uint32_t v) {
  char b[4];
  PutLe32(b, v);
  out->append(b, 4);
}
inline void AppendLe64(std::string* out, uint64_t v) {
  char b[8];
  PutLe64(b, v);
  out->append(b, 8);
}

}  // namespace distri::base

#endif  // DISTRI_BASE_ENDIAN_H_
