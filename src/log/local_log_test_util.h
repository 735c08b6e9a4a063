// Test helpers for the local log (tests only; not part of distri_log):
//   - FaultInjectionFileSystem: wraps a real FileSystem; can run out of space
//     (ENOSPC after a byte budget, writing the prefix that fits, like a real
//     full disk), fail renames, slow down fdatasync, and count syncs;
//   - TempDir: a fresh directory removed at the end of the test;
//   - LogHarness: opens a LocalLog, records what recovery loaded, and drives
//     Propose/Flush/Poll the way the server's loop does, waiting on a
//     condition variable that the log's wakeup function signals.
//
// Callers: local_log_test.cc and local_log_recovery_test.cc, on the test's
// main thread (the FileSystem is also called from the log's threads).

#ifndef DISTRI_LOG_LOCAL_LOG_TEST_UTIL_H_
#define DISTRI_LOG_LOCAL_LOG_TEST_UTIL_H_

#include <gtest/gtest.h>
#include <stdlib.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "log/file_system.h"
#include "log/local_log.h"

namespace distri::log::testing {

class FaultInjectionFileSystem final : public FileSystem {
 public:
  explicit FaultInjectionFileSystem(FileSystem* base = DefaultFileSystem()) : base_(base) {}

  // Bytes that writes may still add before failing with ENOSPC; -1 = no limit.
  void SetSpaceLeft(int64_t bytes) { space_left_ = bytes; }
  void SetSyncDelay(std::chrono::milliseconds delay) { sync_delay_ms_ = delay.count(); }
  // While set, Rename fails with EIO (e.g. the manifest update of a roll).
  void SetRenameFails(bool fails) { rename_fails_ = fails; }
  int sync_count() const { return sync_count_; }

  Status CreateDir(const std::string& path) override { return base_->CreateDir(path); }
  Result<std::vector<std::string>> ListDir(const std::string& path) override {
    return base_->ListDir(path);
  }
  Result<std::unique_ptr<WritableFile>> OpenWritable(const std::string& path,
                                                     bool truncate) override {
    auto file = base_->OpenWritable(path, truncate);
    if (!file.ok()) return file.status();
    return std::unique_ptr<WritableFile>(
        std::make_unique<File>(this, path, std::move(file).value()));
  }
  Result<std::unique_ptr<ReadOnlyFile>> OpenReadOnly(const std::string& path) override {
    return base_->OpenReadOnly(path);
  }
  Status Rename(const std::string& from, const std::string& to) override {
    if (rename_fails_) return PosixError("rename", from, EIO);
    return base_->Rename(from, to);
  }
  Status Unlink(const std::string& path) override { return base_->Unlink(path); }
  Status SyncDir(const std::string& path) override { return base_->SyncDir(path); }

 private:
  class File final : public WritableFile {
   public:
    File(FaultInjectionFileSystem* fs, std::string path, std::unique_ptr<WritableFile> base)
        : fs_(fs), path_(std::move(path)), base_(std::move(base)) {}

    Status WriteAt(uint64_t offset, std::span<const std::string_view> pieces) override {
      uint64_t total = 0;
      for (std::string_view p : pieces) total += p.size();
      uint64_t allowed = total;
      // Lock-free: a forked snapshot child writes through here too, and a
      // mutex held by another thread at the fork would never be released.
      int64_t left = fs_->space_left_.load();
      do {
        if (left < 0) {
          allowed = total;
          break;
        }
        allowed = std::min<uint64_t>(total, static_cast<uint64_t>(left));
      } while (!fs_->space_left_.compare_exchange_weak(left,
                                                       left - static_cast<int64_t>(allowed)));
      if (allowed == total) return base_->WriteAt(offset, pieces);
      // Write the prefix that fits, then fail as a full disk does.
      std::vector<std::string_view> prefix;
      for (std::string_view p : pieces) {
        if (allowed == 0) break;
        prefix.push_back(p.substr(0, allowed));
        allowed -= prefix.back().size();
      }
      if (!prefix.empty()) DISTRI_RETURN_IF_ERROR(base_->WriteAt(offset, prefix));
      return PosixError("write", path_, ENOSPC);
    }
    Status Sync() override {
      ++fs_->sync_count_;
      if (int ms = fs_->sync_delay_ms_; ms > 0) {
        std::this_thread::sleep_for(std::chrono::milliseconds(ms));
      }
      return base_->Sync();
    }
    Status Truncate(uint64_t size) override { return base_->Truncate(size); }

   private:
    FaultInjectionFileSystem* fs_;
    std::string path_;
    std::unique_ptr<WritableFile> base_;
  };

  FileSystem* base_;
  std::atomic<int64_t> space_left_{-1};
  std::atomic<int> sync_delay_ms_{0};
  std::atomic<bool> rename_fails_{false};
  std::atomic<int> sync_count_{0};
};

class TempDir {
 public:
  TempDir() {
    std::string templ = (std::filesystem::temp_directory_path() / "distri-log-XXXXXX").string();
    char* made = ::mkdtemp(templ.data());
    EXPECT_NE(made, nullptr);
    path_ = templ;
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

inline std::string ReadFileBytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

inline void WriteFileBytes(const std::string& path, std::string_view bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

// Sorted paths of the files in `dir` whose names end in `suffix`.
inline std::vector<std::string> ListFiles(const std::string& dir, std::string_view suffix) {
  std::vector<std::string> out;
  for (const auto& e : std::filesystem::directory_iterator(dir)) {
    std::string name = e.path().filename().string();
    if (name.size() >= suffix.size() && name.substr(name.size() - suffix.size()) == suffix) {
      out.push_back(e.path().string());
    }
  }
  std::sort(out.begin(), out.end());
  return out;
}

// The payload proposed for entry `index` in most tests: varied lengths
// (including empty) and contents.
inline std::string EntryFor(uint64_t index, size_t max_len = 64) {
  std::string s = "e" + std::to_string(index) + ":";
  s.resize(index % (max_len + 1), static_cast<char>('a' + index % 26));
  return s;
}

class LogHarness {
 public:
  explicit LogHarness(std::string dir) { options.dir = std::move(dir); }
  // The log's writer calls the wakeup, which uses mu_ and cv_: stop it first.
  ~LogHarness() { log.reset(); }

  // Opens the log, recording the snapshot and replayed entries.
  Status Open() {
    log.reset();
    snapshot_index = 0;
    snapshot.clear();
    replayed.clear();
    committed.clear();
    failures.clear();
    auto opened = LocalLog::Open(
        options,
        [&](uint64_t index, std::string_view data) {
          snapshot_index = index;
          snapshot = std::string(data);
          return load_status;
        },
        [&](uint64_t index, std::string_view entry) {
          replayed.emplace_back(index, std::string(entry));
          return replay_status;
        });
    if (!opened.ok()) return opened.status();
    log = std::move(opened).value();
    log->SetWakeup([this] {
      std::lock_guard lock(mu_);
      ++wakeups_;
      cv_.notify_all();
    });
    return Status::Ok();
  }

  // Proposes and flushes one entry; returns its index.
  uint64_t Append(std::string_view entry) {
    auto index = log->Propose(entry);
    EXPECT_TRUE(index.ok()) << index.status().ToString();
    log->Flush();
    return index.ok() ? *index : 0;
  }

  // Polls until entry `index` is committed or a failure is reported, waiting
  // for wakeups in between. False on timeout.
  bool WaitFor(uint64_t index) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
    for (;;) {
      uint64_t seen;
      {
        std::lock_guard lock(mu_);
        seen = wakeups_;
      }
      Poll();
      if (last_committed() >= index || !failures.empty()) return true;
      std::unique_lock lock(mu_);
      if (!cv_.wait_until(lock, deadline, [&] { return wakeups_ != seen; })) return false;
    }
  }

  void Poll() {
    log->Poll(
        [&](uint64_t index, std::string_view entry) {
          if (!committed.empty()) {
            EXPECT_EQ(index, committed.back().first + 1) << "out of order";
          }
          committed.emplace_back(index, std::string(entry));
        },
        [&](uint64_t first_index, const Status& why) { failures.emplace_back(first_index, why); });
  }

  uint64_t last_committed() const { return committed.empty() ? 0 : committed.back().first; }

  std::string log_dir() const { return options.dir + "/log"; }
  std::string snap_dir() const { return options.dir + "/snap"; }

  LocalLogOptions options;
  std::unique_ptr<LocalLog> log;
  Status load_status;    // returned by the load_snapshot callback
  Status replay_status;  // returned by the replay callback
  uint64_t snapshot_index = 0;
  std::string snapshot;
  std::vector<std::pair<uint64_t, std::string>> replayed;
  std::vector<std::pair<uint64_t, std::string>> committed;
  std::vector<std::pair<uint64_t, Status>> failures;

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  uint64_t wakeups_ = 0;  // guarded by mu_
};

}  // namespace distri::log::testing

#endif  // DISTRI_LOG_LOCAL_LOG_TEST_UTIL_H_
