// See glob.h.

#include "base/glob.h"

#include <algorithm>
#include <bitset>
#include <memory>

namespace distri::base {

namespace {

constexpr size_t kNpos = std::string_view::npos;
// Segments with `?` or classes up to this long are searched by plain
// comparison at each offset (cost <= 8 per text byte, no set-up).
constexpr size_t kNaiveSegment = 8;

void Add(std::array<uint64_t, 4>& set, uint8_t b) { set[b >> 6] |= uint64_t{1} << (b & 63); }
bool Has(const std::array<uint64_t, 4>& set, uint8_t b) { return (set[b >> 6] >> (b & 63)) & 1; }

}  // namespace

Glob::Glob(std::string_view p, bool nocase) : nocase_(nocase) {
  const size_t n = p.size();
  size_t i = 0;
  uint32_t seg_begin = 0;
  auto close_segment = [&] {
    auto end = static_cast<uint32_t>(elements_.size());
    if (end == seg_begin) return;
    bool literal = std::all_of(elements_.begin() + seg_begin, elements_.end(),
                               [](const Element& e) { return e.kind == Kind::kByte; });
    segments_.push_back({seg_begin, end, literal});
  };
  while (i < n) {
    char pc = p[i];
    if (pc == '*') {
      while (i < n && p[i] == '*') i++;
      close_segment();
      seg_begin = static_cast<uint32_t>(elements_.size());
      if (elements_.empty()) leading_star_ = true;
      any_star_ = true;
      trailing_star_ = i == n;
      continue;
    }
    if (pc == '?') {
      elements_.push_back({Kind::kAny, 0});
      i++;
    } else if (pc == '[') {
      // Members are collected as case-folded values (a text byte t matches
      // when Fold(t) is one), then expanded to the bytes they stand for.
      size_t j = i + 1;
      bool negate = j < n && p[j] == '^';
      if (negate) j++;
      std::bitset<256> folded;
      while (j < n && p[j] != ']') {
        if (p[j] == '\\' && j + 1 < n) {
          folded.set(Fold(static_cast<uint8_t>(p[j + 1])));
          j += 2;
        } else if (j + 2 < n && p[j + 1] == '-' && p[j + 2] != ']') {
          auto lo = static_cast<signed char>(Fold(static_cast<uint8_t>(p[j])));
          auto hi = static_cast<signed char>(Fold(static_cast<uint8_t>(p[j + 2])));
          if (lo > hi) std::swap(lo, hi);
          for (int v = lo; v <= hi; v++) folded.set(static_cast<uint8_t>(v));
          j += 3;
        } else {
          folded.set(Fold(static_cast<uint8_t>(p[j])));
          j++;
        }
      }
      ByteSet set{};
      for (int b = 0; b < 256; b++) {
        if (folded.test(Fold(static_cast<uint8_t>(b))) != negate) Add(set, static_cast<uint8_t>(b));
      }
      elements_.push_back({Kind::kSet, 0, static_cast<uint32_t>(sets_.size())});
      sets_.push_back(set);
      i = j < n ? j + 1 : j;  // an unterminated class ends the pattern
    } else {
      if (pc == '\\' && i + 1 < n) pc = p[++i];
      elements_.push_back({Kind::kByte, Fold(static_cast<uint8_t>(pc))});
      i++;
    }
    trailing_star_ = false;
  }
  close_segment();

  // KMP failure function of each literal segment: kmp_[begin + k] is the
  // length of the longest proper border of the segment's first k + 1 bytes.
  kmp_.assign(elements_.size(), 0);
  for (const Segment& s : segments_) {
    if (!s.literal) continue;
    uint32_t k = 0;
    for (uint32_t q = 1; q < s.end - s.begin; q++) {
      uint8_t c = elements_[s.begin + q].byte;
      while (k > 0 && elements_[s.begin + k].byte != c) k = kmp_[s.begin + k - 1];
      if (elements_[s.begin + k].byte == c) k++;
      kmp_[s.begin + q] = k;
    }
  }
}

size_t Glob::memory_bytes() const {
  return sizeof(*this) + elements_.capacity() * sizeof(Element) +
         sets_.capacity() * sizeof(ByteSet) + segments_.capacity() * sizeof(Segment) +
         kmp_.capacity() * sizeof(uint32_t);
}

bool Glob::ElementMatches(const Element& e, uint8_t c) const {
  switch (e.kind) {
    case Kind::kAny:
      return true;
    case Kind::kByte:
      return Fold(c) == e.byte;
    case Kind::kSet:
      return Has(sets_[e.set], c);
  }
  return false;
}

bool Glob::MatchesAt(const Segment& s, std::string_view text, size_t at) const {
  for (uint32_t k = s.begin; k < s.end; k++) {
    if (!ElementMatches(elements_[k], static_cast<uint8_t>(text[at + k - s.begin]))) return false;
  }
  return true;
}

size_t Glob::Find(const Segment& s, std::string_view text) const {
  const size_t m = s.end - s.begin;
  if (text.size() < m) return kNpos;
  if (s.literal) return FindLiteral(s, text);
  if (m > kNaiveSegment) return FindShiftAnd(s, text);
  for (size_t at = 0; at + m <= text.size(); at++) {
    if (MatchesAt(s, text, at)) return at;
  }
  return kNpos;
}

size_t Glob::FindLiteral(const Segment& s, std::string_view text) const {
  const uint32_t m = s.end - s.begin;
  uint32_t k = 0;  // bytes of the segment matched so far
  for (size_t i = 0; i < text.size(); i++) {
    uint8_t c = Fold(static_cast<uint8_t>(text[i]));
    while (k > 0 && elements_[s.begin + k].byte != c) k = kmp_[s.begin + k - 1];
    if (elements_[s.begin + k].byte == c) k++;
    if (k == m) return i + 1 - m;
  }
  return kNpos;
}

size_t Glob::FindShiftAnd(const Segment& s, std::string_view text) const {
  // Bit q of the state is set when the segment's first q + 1 elements match
  // the text ending at the current byte. The mask of a text byte (which
  // elements accept it) is computed the first time the byte is seen.
  const size_t m = s.end - s.begin;
  const size_t words = (m + 63) / 64;
  std::unique_ptr<uint64_t[]> masks(new uint64_t[256 * words]);
  std::bitset<256> known;
  std::unique_ptr<uint64_t[]> state(new uint64_t[words]());
  const size_t last_word = (m - 1) / 64;
  const uint64_t last_bit = uint64_t{1} << ((m - 1) % 64);
  size_t top = 0;
  for (size_t i = 0; i < text.size(); i++) {
    auto c = static_cast<uint8_t>(text[i]);
    uint64_t* mask = &masks[c * words];
    if (!known.test(c)) {
      known.set(c);
      std::fill(mask, mask + words, 0);
      for (size_t q = 0; q < m; q++) {
        if (ElementMatches(elements_[s.begin + q], c)) mask[q / 64] |= uint64_t{1} << (q % 64);
      }
    }
    // Words above `top` are zero, so only one more can become non-zero:
    // partial matches that die young keep this to a word or two per byte.
    uint64_t carry = 1;  // a match may start at every byte
    const size_t limit = std::min(words - 1, top + 1);
    top = 0;
    for (size_t w = 0; w <= limit; w++) {
      uint64_t next_carry = state[w] >> 63;
      state[w] = ((state[w] << 1) | carry) & mask[w];
      carry = next_carry;
      if (state[w] != 0) top = w;
    }
    if (state[last_word] & last_bit) return i + 1 - m;
  }
  return kNpos;
}

bool Glob::Match(std::string_view text) const {
  if (text.size() < elements_.size()) return false;
  if (segments_.empty()) return any_star_ || text.empty();
  size_t first = 0, last = segments_.size();
  size_t pos = 0, end = text.size();
  if (!leading_star_) {  // the first segment is anchored at the start
    const Segment& s = segments_.front();
    if (!MatchesAt(s, text, 0)) return false;
    pos = s.end - s.begin;
    first = 1;
    if (!any_star_) return pos == text.size();
  }
  if (!trailing_star_ && first < last) {  // the last one at the end
    const Segment& s = segments_.back();
    size_t m = s.end - s.begin;
    if (text.size() - pos < m || !MatchesAt(s, text, text.size() - m)) return false;
    end = text.size() - m;
    last--;
  }
  // The others each at their leftmost place after the previous one: any
  // match could be shifted to this placement, so greedy is exact.
  for (size_t k = first; k < last; k++) {
    const Segment& s = segments_[k];
    size_t at = Find(s, text.substr(pos, end - pos));
    if (at == kNpos) return false;
    pos += at + (s.end - s.begin);
  }
  return true;
}

}  // namespace distri::base
