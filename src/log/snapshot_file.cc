// Snapshot file writer and parser; see snapshot_file.h and docs/log_format.md.

#include "log/snapshot_file.h"

#include "base/crc32c.h"
#include "base/endian.h"

namespace distri::log {

namespace {

constexpr char kMagic[8] = {'D', 'S', 'T', 'R', 'S', 'N', 'A', 'P'};
constexpr uint32_t kSnapshotVersion = 1;

using base::AppendLe32;
using base::AppendLe64;
using base::GetLe32;
using base::GetLe64;

}  // namespace

Result<std::unique_ptr<SnapshotFileWriter>> SnapshotFileWriter::Create(FileSystem* fs,
                                                                       const std::string& path,
                                                                       uint64_t index) {
  auto file = fs->OpenWritable(path, /*truncate=*/true);
  if (!file.ok()) return file.status();
  std::unique_ptr<SnapshotFileWriter> w(new SnapshotFileWriter(std::move(file).value()));
  w->buffer_.reserve(kBufferBytes);
  w->buffer_.append(kMagic, sizeof kMagic);
  AppendLe32(&w->buffer_, kSnapshotVersion);
  AppendLe32(&w->buffer_, 0);
  AppendLe64(&w->buffer_, index);
  w->crc_ = base::Crc32c(w->buffer_);
  return w;
}

Status SnapshotFileWriter::Append(std::string_view bytes) {
  crc_ = base::Crc32cExtend(crc_, bytes);
  payload_bytes_ += bytes.size();
  if (buffer_.size() + bytes.size() <= kBufferBytes) {
    buffer_.append(bytes);
    return Status::Ok();
  }
  // Too big to buffer: write what is buffered and this piece in one call.
  std::string_view pieces[2] = {buffer_, bytes};
  DISTRI_RETURN_IF_ERROR(file_->WriteAt(file_offset_, pieces));
  file_offset_ += buffer_.size() + bytes.size();
  buffer_.clear();
  return Status::Ok();
}

Status SnapshotFileWriter::FlushBuffer() {
  if (buffer_.empty()) return Status::Ok();
  DISTRI_RETURN_IF_ERROR(file_->WriteAt(file_offset_, buffer_));
  file_offset_ += buffer_.size();
  buffer_.clear();
  return Status::Ok();
}

Status SnapshotFileWriter::Finish() {
  std::string length;
  AppendLe64(&length, payload_bytes_);
  const uint32_t crc = base::Crc32cExtend(crc_, length);
  buffer_ += length;
  AppendLe32(&buffer_, crc);
  return FlushBuffer();
}

Result<SnapshotContents> ParseSnapshotFile(std::string_view bytes, const std::string& path,
                                           uint64_t index_from_name) {
  auto corrupt = [&](std::string_view what) {
    std::string msg = path + ": ";
    msg += what;
    return Status::Corruption(msg);
  };
  if (bytes.size() < kSnapshotHeaderSize + kSnapshotTrailerSize) {
    return corrupt("snapshot file too short");
  }
  if (bytes.substr(0, sizeof kMagic) != std::string_view(kMagic, sizeof kMagic)) {
    return corrupt("not a snapshot file (bad magic)");
  }
  const uint32_t version = GetLe32(bytes.data() + 8);
  if (version != kSnapshotVersion) {
    return corrupt("unsupported snapshot version " + std::to_string(version));
  }
  const uint64_t index = GetLe64(bytes.data() + 16);
  const char* trailer = bytes.data() + bytes.size() - kSnapshotTrailerSize;
  const uint64_t payload_length = GetLe64(trailer);
  if (payload_length != bytes.size() - kSnapshotHeaderSize - kSnapshotTrailerSize) {
    return corrupt("snapshot length mismatch (truncated or extended file)");
  }
  if (GetLe32(trailer + 8) != base::Crc32c(bytes.substr(0, bytes.size() - 4))) {
    return corrupt("bad snapshot checksum");
  }
  if (index != index_from_name) {
    return corrupt("snapshot index " + std::to_string(index) + " does not match its file name");
  }
  return SnapshotContents{index, bytes.substr(kSnapshotHeaderSize, payload_length)};
}

}  // namespace distri::log
