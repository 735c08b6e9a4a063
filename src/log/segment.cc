// Segment record encoding and the recovery scanner; see segment.h and
// docs/log_format.md.
//
// The scanner's one hard question is "is this bad record a torn final write
// (expected after a crash; truncate it) or damage to data that was already
// durable (refuse to start)?". The answer used here: in the newest segment, a
// bad record is a torn tail unless a valid record carrying kWriteStartFlag
// follows it. The writer only starts a new write after the previous one was
// fdatasync'ed, so a later write start proves the bad bytes had been durable.
// Valid records after the bad one but in the same write are what a crash
// leaves when the pages of one write reach the disk out of order.

#include "log/segment.h"

#include <charconv>
#include <cstdio>
#include <cstring>

#include "base/crc32c.h"
#include "base/endian.h"

namespace distri::log {

namespace {

constexpr uint32_t kSegmentVersion = 1;
constexpr char kSegmentHeader[kSegmentHeaderSize] = {'D', 'S', 'E', 'G', kSegmentVersion, 0, 0, 0};
constexpr uint32_t kLengthMask = ~kWriteStartFlag;
constexpr uint32_t kManifestVersion = 1;
constexpr std::string_view kManifestMagic = "DMAN";

using base::GetLe32;
using base::GetLe64;
using base::PutLe32;
using base::PutLe64;

// The checksum covers everything after the crc field: length word, index and
// payload, which are contiguous.
uint32_t RecordCrc(const char* record, uint32_t payload_length) {
  return base::Crc32c(std::string_view(record + 4, kRecordHeaderSize - 4 + payload_length));
}

enum class Check { kOk, kIncomplete, kBadLength, kBadChecksum };

struct Parsed {
  Check check;
  uint32_t length = 0;  // payload length (flags stripped)
  uint64_t index = 0;
  bool write_start = false;
};

// Parses and verifies the record at `offset` (< bytes.size()).
Parsed ParseAt(std::string_view bytes, size_t offset) {
  Parsed r{Check::kIncomplete};
  size_t left = bytes.size() - offset;
  if (left < kRecordHeaderSize) return r;
  const char* p = bytes.data() + offset;
  uint32_t word = GetLe32(p + 4);
  r.length = word & kLengthMask;
  r.write_start = (word & kWriteStartFlag) != 0;
  r.index = GetLe64(p + 8);
  if (r.length > kMaxEntryBytes) {
    r.check = Check::kBadLength;
  } else if (left - kRecordHeaderSize < r.length) {
    r.check = Check::kIncomplete;
  } else if (GetLe32(p) != RecordCrc(p, r.length)) {
    r.check = Check::kBadChecksum;
  } else {
    r.check = Check::kOk;
  }
  return r;
}

// True when a valid record with kWriteStartFlag starts anywhere after
// `offset`, with an index that could follow `expected` (the index the bad
// record at `offset` should have had). The index window is checked before the
// checksum so that a scan over garbage costs one load per byte.
bool WriteStartFollows(std::string_view bytes, size_t offset, uint64_t expected) {
  const uint64_t max_records = (bytes.size() - offset) / kRecordHeaderSize + 1;
  for (size_t p = offset + 1; p + kRecordHeaderSize <= bytes.size(); ++p) {
    uint64_t index = GetLe64(bytes.data() + p + 8);
    if (index < expected || index - expected > max_records) continue;
    if ((GetLe32(bytes.data() + p + 4) & kWriteStartFlag) == 0) continue;
    Parsed r = ParseAt(bytes, p);
    if (r.check == Check::kOk) return true;
  }
  return false;
}

const char* Describe(Check c) {
  switch (c) {
    case Check::kOk: return "ok";
    case Check::kIncomplete: return "incomplete record";
    case Check::kBadLength: return "bad record length";
    case Check::kBadChecksum: return "bad record checksum";
  }
  return "?";
}

Status CorruptionAt(const std::string& path, uint64_t offset, std::string_view what) {
  std::string msg = path + ": offset " + std::to_string(offset) + ": ";
  msg += what;
  return Status::Corruption(msg);
}

bool AllZero(std::string_view bytes) {
  for (char c : bytes) {
    if (c != 0) return false;
  }
  return true;
}

}  // namespace

std::string IndexedFileName(uint64_t index, std::string_view suffix) {
  char digits[21];
  std::snprintf(digits, sizeof digits, "%020llu", static_cast<unsigned long long>(index));
  std::string name(digits, 20);
  name += suffix;
  return name;
}

bool ParseIndexedFileName(std::string_view name, std::string_view suffix, uint64_t* index) {
  if (name.size() != 20 + suffix.size() || name.substr(20) != suffix) return false;
  for (size_t i = 0; i < 20; ++i) {
    if (name[i] < '0' || name[i] > '9') return false;
  }
  auto [end, ec] = std::from_chars(name.data(), name.data() + 20, *index);
  return ec == std::errc() && end == name.data() + 20;
}

std::string_view SegmentHeader() { return std::string_view(kSegmentHeader, kSegmentHeaderSize); }

std::string EncodeManifest(uint64_t newest_segment) {
  std::string out(kManifestSize, '\0');
  std::memcpy(out.data(), kManifestMagic.data(), kManifestMagic.size());
  PutLe32(out.data() + 4, kManifestVersion);
  PutLe64(out.data() + 8, newest_segment);
  PutLe32(out.data() + 16, base::Crc32c(std::string_view(out.data(), 16)));
  return out;
}

Result<uint64_t> ParseManifest(std::string_view bytes, const std::string& path) {
  if (bytes.size() != kManifestSize || bytes.substr(0, 4) != kManifestMagic ||
      GetLe32(bytes.data() + 4) != kManifestVersion ||
      GetLe32(bytes.data() + 16) != base::Crc32c(bytes.substr(0, 16))) {
    return Status::Corruption(path + ": not a valid log manifest (" +
                              std::to_string(bytes.size()) + " bytes)");
  }
  return GetLe64(bytes.data() + 8);
}

void AppendRecord(std::string* out, uint64_t index, std::string_view payload) {
  const size_t start = out->size();
  out->resize(start + kRecordHeaderSize);
  out->append(payload);
  char* p = out->data() + start;
  const auto length = static_cast<uint32_t>(payload.size());
  PutLe32(p + 4, length);
  PutLe64(p + 8, index);
  PutLe32(p, RecordCrc(p, length));
}

void MarkWriteStart(char* record) {
  uint32_t word = GetLe32(record + 4) | kWriteStartFlag;
  PutLe32(record + 4, word);
  PutLe32(record, RecordCrc(record, word & kLengthMask));
}

DecodedRecord DecodeTrustedRecord(std::string_view bytes) {
  const uint32_t length = GetLe32(bytes.data() + 4) & kLengthMask;
  return DecodedRecord{GetLe64(bytes.data() + 8), bytes.substr(kRecordHeaderSize, length),
                       kRecordHeaderSize + length};
}

Result<SegmentScan> ScanSegment(std::string_view bytes, const std::string& path,
                                uint64_t first_index, bool is_last, const RecordVisitor& visit) {
  SegmentScan scan;
  scan.next_index = first_index;

  // The header. Only the newest segment can have a torn one: the writer makes
  // a new segment's header durable before writing any record to it.
  std::string_view header = bytes.substr(0, kSegmentHeaderSize);
  if (header != SegmentHeader()) {
    bool torn_header = header.size() < kSegmentHeaderSize
                           ? SegmentHeader().substr(0, header.size()) == header || AllZero(header)
                           : AllZero(bytes);
    if (is_last && torn_header) {
      scan.torn = !bytes.empty();
      scan.torn_header = true;
      scan.torn_reason = header.size() == kSegmentHeaderSize ? "zero-filled segment"
                                                              : "incomplete segment header";
      return scan;
    }
    return CorruptionAt(path, 0, "bad segment header");
  }

  size_t offset = kSegmentHeaderSize;
  while (offset < bytes.size()) {
    Parsed r = ParseAt(bytes, offset);
    if (r.check == Check::kOk) {
      if (r.index != scan.next_index) {
        return CorruptionAt(path, offset,
                            "index gap: expected entry " + std::to_string(scan.next_index) +
                                ", found " + std::to_string(r.index));
      }
      DISTRI_RETURN_IF_ERROR(visit(r.index, bytes.substr(offset + kRecordHeaderSize, r.length)));
      offset += kRecordHeaderSize + r.length;
      ++scan.next_index;
      continue;
    }
    std::string what = std::string(Describe(r.check)) + " (entry " +
                       std::to_string(scan.next_index) + ")";
    if (!is_last) return CorruptionAt(path, offset, what + " in a sealed segment");
    if (WriteStartFollows(bytes, offset, scan.next_index)) {
      return CorruptionAt(path, offset, what + " followed by later durable records");
    }
    scan.torn = true;
    scan.torn_reason = AllZero(bytes.substr(offset)) ? "zero-filled tail" : what;
    break;
  }
  scan.valid_bytes = offset;
  return scan;
}

}  // namespace distri::log
