// Snapshot files: the writer that streams a state snapshot to disk and the
// parser that verifies one on recovery. Byte layout in docs/log_format.md:
//
//   header  (24 bytes): "DSTRSNAP" | u32 version | u32 reserved (0) | u64 index
//   payload (the bytes the state machine produced)
//   trailer (12 bytes): u64 payload length | u32 crc32c of everything before it
//
// Callers: the snapshot child that LocalLog::SaveSnapshot forks writes (so
// the writer must take no lock: see LocalLog::RunSnapshotChild); LocalLog::Open
// (loop thread) parses. The writer is used by one thread at a time.

#ifndef DISTRI_LOG_SNAPSHOT_FILE_H_
#define DISTRI_LOG_SNAPSHOT_FILE_H_

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "distri/status.h"
#include "log/file_system.h"

namespace distri::log {

inline constexpr size_t kSnapshotHeaderSize = 24;
inline constexpr size_t kSnapshotTrailerSize = 12;

// Streams one snapshot file through a write buffer. Nothing is synced: the
// caller hands the file (ReleaseFile) to the thread that fsyncs and renames.
class SnapshotFileWriter {
 public:
  // Creates (or empties) `path` and buffers the header for `index`.
  static Result<std::unique_ptr<SnapshotFileWriter>> Create(FileSystem* fs,
                                                            const std::string& path,
                                                            uint64_t index);

  SnapshotFileWriter(const SnapshotFileWriter&) = delete;
  SnapshotFileWriter& operator=(const SnapshotFileWriter&) = delete;

  // Appends payload bytes.
  Status Append(std::string_view bytes);
  // Writes the trailer and everything still buffered.
  Status Finish();
  // REQUIRES: Finish() returned ok.
  std::unique_ptr<WritableFile> ReleaseFile() { return std::move(file_); }

 private:
  explicit SnapshotFileWriter(std::unique_ptr<WritableFile> file) : file_(std::move(file)) {}
  Status FlushBuffer();

  static constexpr size_t kBufferBytes = 1 << 20;

  std::unique_ptr<WritableFile> file_;
  std::string buffer_;
  uint64_t file_offset_ = 0;   // bytes written to the file so far
  uint64_t payload_bytes_ = 0;
  uint32_t crc_ = 0;           // over every byte appended to buffer_ so far
};

struct SnapshotContents {
  uint64_t index;
  std::string_view payload;  // points into the bytes given to ParseSnapshotFile
};

// Verifies a whole snapshot file (magic, version, the index against the one in
// its name, length, checksum). Corruption names `path`.
Result<SnapshotContents> ParseSnapshotFile(std::string_view bytes, const std::string& path,
                                           uint64_t index_from_name);

}  // namespace distri::log

#endif  // DISTRI_LOG_SNAPSHOT_FILE_H_
