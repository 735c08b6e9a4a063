// FileSystem: every file operation the local log performs, behind one small
// interface (in the spirit of LevelDB's Env) so that tests can inject faults —
// a full disk, a failing write — without a real full disk.
//
// Callers: LocalLog and its helpers (segment.h, snapshot_file.h), from the
// loop thread during Open() and SaveSnapshot(), and from the log's writer and
// snapshot threads afterwards. DefaultFileSystem() is the POSIX
// implementation; tests wrap it (see local_log_test_util.h).
//
// Thread-safety: implementations must allow concurrent calls on distinct
// objects from distinct threads. A WritableFile or ReadOnlyFile is used by
// one thread at a time.

#ifndef DISTRI_LOG_FILE_SYSTEM_H_
#define DISTRI_LOG_FILE_SYSTEM_H_

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "distri/status.h"

namespace distri::log {

// A whole file, read-only, as one contiguous view (mmap in the POSIX
// implementation). The view is valid while this object lives, provided no one
// truncates the file meanwhile.
class ReadOnlyFile {
 public:
  virtual ~ReadOnlyFile() = default;
  virtual std::string_view data() const = 0;
};

// A file written at explicit offsets (pwrite). Closed by the destructor; the
// log never relies on close() for durability, it calls Sync() first.
class WritableFile {
 public:
  virtual ~WritableFile() = default;

  // Writes every piece, back to back, starting at `offset`. On error some
  // prefix of the bytes may have been written; the caller truncates it away.
  virtual Status WriteAt(uint64_t offset, std::span<const std::string_view> pieces) = 0;
  Status WriteAt(uint64_t offset, std::string_view data) {
    return WriteAt(offset, std::span<const std::string_view>(&data, 1));
  }
  // fdatasync: the data written so far (and the file size) is durable.
  virtual Status Sync() = 0;
  // Sets the file size (ftruncate).
  virtual Status Truncate(uint64_t size) = 0;
};

class FileSystem {
 public:
  virtual ~FileSystem() = default;

  // Creates the directory; ok if it already exists.
  virtual Status CreateDir(const std::string& path) = 0;
  // Names of the entries of a directory, without "." and "..".
  virtual Result<std::vector<std::string>> ListDir(const std::string& path) = 0;
  // Opens (creating if missing) a file for writing; `truncate` empties it.
  virtual Result<std::unique_ptr<WritableFile>> OpenWritable(const std::string& path,
                                                             bool truncate) = 0;
  virtual Result<std::unique_ptr<ReadOnlyFile>> OpenReadOnly(const std::string& path) = 0;
  // Atomically replaces `to` with `from` (rename(2)).
  virtual Status Rename(const std::string& from, const std::string& to) = 0;
  virtual Status Unlink(const std::string& path) = 0;
  // fsync of a directory: makes creations, renames and unlinks in it durable.
  virtual Status SyncDir(const std::string& path) = 0;
};

// The POSIX file system. Stateless; lives for the whole process.
FileSystem* DefaultFileSystem();

// "<what> <path>: <strerror(err)>" as an IOError.
Status PosixError(std::string_view what, const std::string& path, int err);

}  // namespace distri::log

#endif  // DISTRI_LOG_FILE_SYSTEM_H_
