// Segment files: the record encoding of the local log and the recovery
// scanner that reads a segment back. The byte layout is specified in
// docs/log_format.md; keep the two in step.
//
//   segment = header (8 bytes: "DSEG", u32 version) then records back to back
//   record  = u32 crc32c | u32 length+flags | u64 index | payload
//
// Callers: LocalLog. AppendRecord runs on the loop thread (Propose);
// MarkWriteStart and EncodeManifest on the writer thread (and in Open);
// ScanSegment and ParseManifest on the loop thread inside LocalLog::Open. All
// functions are pure apart from the visitor callback.

#ifndef DISTRI_LOG_SEGMENT_H_
#define DISTRI_LOG_SEGMENT_H_

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>

#include "distri/status.h"

namespace distri::log {

inline constexpr size_t kSegmentHeaderSize = 8;
inline constexpr size_t kRecordHeaderSize = 16;
// Largest payload of one entry. Bounds the damage a corrupt length can do and
// leaves the top bit of the length word for flags.
inline constexpr uint32_t kMaxEntryBytes = 256u << 20;
// Flag in the length word: this record is the first one of a write that the
// writer thread made durable as a unit (one write + one fdatasync). Recovery
// uses it to tell a torn final write from damage to older data.
inline constexpr uint32_t kWriteStartFlag = 1u << 31;

// "<index as 20 decimal digits><suffix>", e.g. "00000000000000000001.seg".
// Fixed width keeps names sorted by index.
std::string IndexedFileName(uint64_t index, std::string_view suffix);
// Inverse of IndexedFileName; false for any other name.
bool ParseIndexedFileName(std::string_view name, std::string_view suffix, uint64_t* index);

// The 8 bytes every segment file starts with.
std::string_view SegmentHeader();

// log/MANIFEST: names the newest segment, i.e. the one whose header is durable
// and which may receive entries (docs/log_format.md, "The manifest").
inline constexpr size_t kManifestSize = 20;
std::string EncodeManifest(uint64_t newest_segment);
// The newest segment's first index; Corruption naming `path` if the bytes are
// not a manifest.
Result<uint64_t> ParseManifest(std::string_view bytes, const std::string& path);

// Appends the encoded record for (index, payload) to *out, without flags.
// REQUIRES: payload.size() <= kMaxEntryBytes.
void AppendRecord(std::string* out, uint64_t index, std::string_view payload);

// Sets kWriteStartFlag on the record that starts at `record` and recomputes
// its checksum. REQUIRES: `record` points at a record made by AppendRecord.
void MarkWriteStart(char* record);

// One record of an in-memory batch made by AppendRecord (no verification:
// those bytes never left memory).
struct DecodedRecord {
  uint64_t index;
  std::string_view payload;
  size_t size;  // header + payload
};
DecodedRecord DecodeTrustedRecord(std::string_view bytes);

// What ScanSegment found.
struct SegmentScan {
  uint64_t next_index = 0;   // index after the last good record
  uint64_t valid_bytes = 0;  // offset just past the last good record (0 if the header is torn)
  bool torn = false;         // bytes after valid_bytes are a torn tail to truncate
  bool torn_header = false;  // the header itself is missing or incomplete (or all zeros)
  std::string torn_reason;   // when torn: what was wrong, for the WARN line
};

using RecordVisitor = std::function<Status(uint64_t index, std::string_view payload)>;

// Reads the segment `bytes` (the whole file at `path`, whose name says its
// first record has index `first_index`), verifying every record, and calls
// visit(index, payload) for each good one in order. `is_last` says whether
// this is the newest segment, the only one that may end in a torn write.
//
// Returns Corruption naming `path` and the byte offset for a bad record that
// is not a torn tail (rules in docs/log_format.md, "Recovery"), or the first
// non-ok status returned by `visit`.
Result<SegmentScan> ScanSegment(std::string_view bytes, const std::string& path,
                                uint64_t first_index, bool is_last, const RecordVisitor& visit);

}  // namespace distri::log

#endif  // DISTRI_LOG_SEGMENT_H_
