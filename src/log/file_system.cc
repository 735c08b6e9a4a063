// The POSIX FileSystem: open/pwritev/fdatasync/ftruncate/rename/unlink and
// mmap for reading. See file_system.h.
//
// Every call retries on EINTR; every failure becomes an IOError naming the
// operation, the path and strerror, which is what an operator needs to see.

#include "log/file_system.h"

#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

namespace distri::log {

Status PosixError(std::string_view what, const std::string& path, int err) {
  std::string msg(what);
  msg += ' ';
  msg += path;
  msg += ": ";
  msg += std::strerror(err);
  return Status::IOError(msg);
}

namespace {

class PosixReadOnlyFile final : public ReadOnlyFile {
 public:
  PosixReadOnlyFile(void* base, size_t size) : base_(base), size_(size) {}
  ~PosixReadOnlyFile() override {
    if (base_ != nullptr) ::munmap(base_, size_);
  }
  std::string_view data() const override {
    if (base_ == nullptr) return {};
    return std::string_view(static_cast<const char*>(base_), size_);
  }

 private:
  void* base_;  // nullptr for an empty file: mmap of length 0 is an error
  size_t size_;
};

class PosixWritableFile final : public WritableFile {
 public:
  PosixWritableFile(int fd, std::string path) : fd_(fd), path_(std::move(path)) {}
  ~PosixWritableFile() override { ::close(fd_); }

  Status WriteAt(uint64_t offset, std::span<const std::string_view> pieces) override {
    // pwritev may write less than asked (or take at most IOV_MAX pieces), so
    // keep a cursor over the pieces and the bytes already written.
    std::vector<iovec> iov;
    iov.reserve(std::min<size_t>(pieces.size(), IOV_MAX));
    size_t piece = 0;
    size_t skip = 0;  // bytes of pieces[piece] already written
    while (piece < pieces.size()) {
      iov.clear();
      for (size_t i = piece; i < pieces.size() && iov.size() < IOV_MAX; ++i) {
        std::string_view p = i == piece ? pieces[i].substr(skip) : pieces[i];
        if (!p.empty()) iov.push_back({const_cast<char*>(p.data()), p.size()});
      }
      if (iov.empty()) break;
      ssize_t n = ::pwritev(fd_, iov.data(), static_cast<int>(iov.size()),
                            static_cast<off_t>(offset));
      if (n < 0) {
        if (errno == EINTR) continue;
        return PosixError("write", path_, errno);
      }
      if (n == 0) return Status::IOError("write " + path_ + ": wrote 0 bytes");
      offset += static_cast<uint64_t>(n);
      size_t left = static_cast<size_t>(n);
      while (piece < pieces.size() && left >= pieces[piece].size() - skip) {
        left -= pieces[piece].size() - skip;
        skip = 0;
        ++piece;
      }
      skip += left;
    }
    return Status::Ok();
  }

  Status Sync() override {
    while (::fdatasync(fd_) != 0) {
      if (errno != EINTR) return PosixError("fdatasync", path_, errno);
    }
    return Status::Ok();
  }

  Status Truncate(uint64_t size) override {
    while (::ftruncate(fd_, static_cast<off_t>(size)) != 0) {
      if (errno != EINTR) return PosixError("truncate", path_, errno);
    }
    return Status::Ok();
  }

 private:
  const int fd_;
  const std::string path_;
};

class PosixFileSystem final : public FileSystem {
 public:
  Status CreateDir(const std::string& path) override {
    if (::mkdir(path.c_str(), 0755) == 0 || errno == EEXIST) {
      struct stat st;
      if (::stat(path.c_str(), &st) != 0) return PosixError("stat", path, errno);
      if (!S_ISDIR(st.st_mode)) return Status::IOError(path + " exists and is not a directory");
      return Status::Ok();
    }
    return PosixError("mkdir", path, errno);
  }

  Result<std::vector<std::string>> ListDir(const std::string& path) override {
    DIR* dir = ::opendir(path.c_str());
    if (dir == nullptr) return PosixError("opendir", path, errno);
    std::vector<std::string> names;
    errno = 0;
    while (struct dirent* e = ::readdir(dir)) {
      std::string_view name = e->d_name;
      if (name != "." && name != "..") names.emplace_back(name);
    }
    int err = errno;
    ::closedir(dir);
    if (err != 0) return PosixError("readdir", path, err);
    return names;
  }

  Result<std::unique_ptr<WritableFile>> OpenWritable(const std::string& path,
                                                     bool truncate) override {
    int flags = O_WRONLY | O_CREAT | O_CLOEXEC | (truncate ? O_TRUNC : 0);
    int fd;
    do {
      fd = ::open(path.c_str(), flags, 0644);
    } while (fd < 0 && errno == EINTR);
    if (fd < 0) return PosixError("open", path, errno);
    return std::unique_ptr<WritableFile>(std::make_unique<PosixWritableFile>(fd, path));
  }

  Result<std::unique_ptr<ReadOnlyFile>> OpenReadOnly(const std::string& path) override {
    int fd;
    do {
      fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    } while (fd < 0 && errno == EINTR);
    if (fd < 0) return PosixError("open", path, errno);
    struct stat st;
    if (::fstat(fd, &st) != 0) {
      int err = errno;
      ::close(fd);
      return PosixError("stat", path, err);
    }
    size_t size = static_cast<size_t>(st.st_size);
    void* base = nullptr;
    if (size > 0) {
      base = ::mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd, 0);
      if (base == MAP_FAILED) {
        int err = errno;
        ::close(fd);
        return PosixError("mmap", path, err);
      }
    }
    ::close(fd);  // the mapping keeps the file alive
    return std::unique_ptr<ReadOnlyFile>(std::make_unique<PosixReadOnlyFile>(base, size));
  }

  Status Rename(const std::string& from, const std::string& to) override {
    if (::rename(from.c_str(), to.c_str()) != 0) return PosixError("rename", from, errno);
    return Status::Ok();
  }

  Status Unlink(const std::string& path) override {
    if (::unlink(path.c_str()) != 0) return PosixError("unlink", path, errno);
    return Status::Ok();
  }

  Status SyncDir(const std::string& path) override {
    int fd;
    do {
      fd = ::open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    } while (fd < 0 && errno == EINTR);
    if (fd < 0) return PosixError("open", path, errno);
    int rc;
    do {
      rc = ::fsync(fd);
    } while (rc != 0 && errno == EINTR);
    int err = errno;
    ::close(fd);
    if (rc != 0) return PosixError("fsync", path, err);
    return Status::Ok();
  }
};

}  // namespace

FileSystem* DefaultFileSystem() {
  static PosixFileSystem* fs = new PosixFileSystem();  // never destroyed: threads may outlive main
  return fs;
}

}  // namespace distri::log
