// Glob: Redis-style glob patterns (KEYS, SCAN MATCH, PSUBSCRIBE, PUBSUB
// CHANNELS, CONFIG GET), compiled once and matched with a bounded cost.
//
// Syntax, byte-wise as in Redis: `*` any run of bytes, `?` one byte, `[abc]`
// one of, `[^abc]` none of, `[a-z]` a range (ends in either order, compared
// as signed chars as Redis does on x86), `\x` the byte x (also inside a
// class); an unterminated class ends the pattern; a `\` at the end is itself.
// With `nocase`, ASCII letters match either case.
//
// Cost. The pattern is compiled to a list of one-byte elements split by `*`
// into segments. Matching places the segments left to right, each at its
// leftmost occurrence after the previous one (greedy placement is exact for
// fixed-length segments), so no byte of the text is revisited once a segment
// is committed and nothing is ever exponential. Finding one segment in a text
// of n bytes costs O(n + m) for a segment of m literal bytes (KMP), and
// O(n * ceil(m / 64) + 256 * m) for one with `?` or classes (bit-parallel
// Shift-And). A text shorter than the pattern's fixed bytes is rejected in
// O(1). Compiling costs O(256 * |pattern|) at worst and keeps about 8 bytes
// per element plus 32 per class; callers cap the pattern length
// (--max-pattern-bytes) to bound both.
//
// Thread-safety: a compiled Glob is immutable; Match may run concurrently.

#ifndef DISTRI_BASE_GLOB_H_
#define DISTRI_BASE_GLOB_H_

#include <array>
#include <cstddef>
#include <cstdint>
#include <string_view>
#include <vector>

namespace distri::base {

class Glob {
 public:
  explicit Glob(std::string_view pattern, bool nocase = false);

  bool Match(std::string_view text) const;
  // Bytes any match needs (elements that are not `*`).
  size_t min_length() const { return elements_.size(); }
  size_t memory_bytes() const;

 private:
  using ByteSet = std::array<uint64_t, 4>;
  enum class Kind : uint8_t { kAny, kByte, kSet };
  struct Element {
    Kind kind;
    uint8_t byte;      // kByte: the byte (case-folded with nocase)
    uint32_t set = 0;  // kSet: index in sets_
  };
  // Elements [begin, end) between two stars (or an end of the pattern).
  struct Segment {
    uint32_t begin, end;
    bool literal;  // only kByte elements: searched with KMP over kmp_[begin, end)
  };

  bool ElementMatches(const Element& e, uint8_t c) const;
  bool MatchesAt(const Segment& s, std::string_view text, size_t at) const;
  // Leftmost start of `s` in `text`, or npos.
  size_t Find(const Segment& s, std::string_view text) const;
  size_t FindLiteral(const Segment& s, std::string_view text) const;
  size_t FindShiftAnd(const Segment& s, std::string_view text) const;
  uint8_t Fold(uint8_t c) const { return nocase_ && c >= 'A' && c <= 'Z' ? c + 32 : c; }

  bool nocase_;
  bool leading_star_ = false, trailing_star_ = false, any_star_ = false;
  std::vector<Element> elements_;
  std::vector<ByteSet> sets_;
  std::vector<Segment> segments_;
  std::vector<uint32_t> kmp_;  // failure function of each literal segment, by element index
};

}  // namespace distri::base

#endif  // DISTRI_BASE_GLOB_H_
