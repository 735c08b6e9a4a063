// libFuzzer target for base::Glob (src/base/glob.h), the matcher behind KEYS,
// SCAN MATCH, PSUBSCRIBE and PUBSUB CHANNELS.
//
// Built by fuzz/CMakeLists.txt when -DDISTRI_FUZZ=ON (clang). An input is
// <flags byte> <pattern> '\0' <text>; bit 0 of the flags byte is nocase. The
// compiled pattern must agree with the reference matcher
// (src/base/glob_reference.h) on the text, and on every prefix of it, so
// both the anchored and the floating segment searches are checked. Inputs
// are cut to 256 bytes each side to keep the quadratic reference quick.
// Seeds live in fuzz/corpus/glob.

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string_view>

#include "base/glob.h"
#include "base/glob_reference.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const bool nocase = data[0] & 1;
  std::string_view rest(reinterpret_cast<const char*>(data + 1), size - 1);
  size_t split = rest.find('\0');
  std::string_view pattern = rest.substr(0, split), text;
  if (split != std::string_view::npos) text = rest.substr(split + 1);
  pattern = pattern.substr(0, 256);
  text = text.substr(0, 256);
  distri::base::Glob glob(pattern, nocase);
  for (size_t len = 0; len <= text.size(); len++) {
    std::string_view t = text.substr(0, len);
    bool got = glob.Match(t);
    if (got != distri::base::ReferenceGlobMatch(pattern, t, nocase)) {
      std::fprintf(stderr, "glob mismatch: pattern %zu bytes, text %zu bytes, nocase %d: got %d\n",
                   pattern.size(), t.size(), nocase, got);
      std::abort();
    }
  }
  return 0;
}
