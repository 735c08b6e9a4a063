// wal_bench: Distri's Raft write-ahead log under the write pattern of its Raft leader, the
// segment-code side of bench/wal_compare.py (bench/raft_engine_bench is the raft-engine side;
// issue 10: "choose by measurement").
//
//   wal_bench append  --dir D --batch B --concurrency C --seconds S [--preallocate 1]
//   wal_bench fill    --dir D --entries N --batch B
//   wal_bench recover --dir D
//
// The code path is RaftLog's own (replication/raft_log.cc, HandleReady and Recover) minus
// raft-rs: RaftLog cannot run without its RaftNode, so this drives the pieces it persists
// through directly. One "Ready" = B entries (index, term 1, a 16-byte proposal context,
// 100 bytes of incompressible data) plus a hard state, encoded by replication::EncodeRecord
// into one LocalLog record; LocalLog's writer thread writes each group with one pwritev and
// one fdatasync (group commit). Everything runs on one thread as on the server's loop:
// Propose, Flush, wait for the wakeup, Poll.
//
// append: C Readies in flight, each from its own "group" (index space), each replaced by the
//   next as soon as Poll reports it durable, for S seconds (then the ones in flight finish).
//   C = 1 is a leader that waits for each fsync; C > 1 is what group commit merges, the same
//   closed loop as raft_engine_bench's C writer threads. Latency: encode to durable.
// --preallocate 1 (append only, an experiment, not what the server does): segment files get
//   their space ahead of the writes, 4 MiB at a time, with fallocate(2) extending the file
//   size, as raft-engine does with its log files; the question is whether our fdatasyncs
//   get cheaper when a write no longer extends the file. The log could not be reopened
//   as is (recovery would read the zeroed tail as a torn one and cut it).
// fill: N entries in records of B, fsynced in a few large groups: the directory for recover.
// recover: LocalLog::Open replaying every record through RaftDurableState::ApplyRecord, as a
//   restarting node does, and reports how many entries it holds (wal_compare.py checks).
//
// Each mode prints one JSON object on stdout, with the keys raft_engine_bench prints.
// Results: docs/benchmarks.md ("Issue 10: WAL storage, segment code vs raft-engine").

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "base/endian.h"
#include "bench_util.h"
#include "log/local_log.h"
#include "replication/raft_wal.h"

namespace {

using distri::Status;
using distri::bench::Die;
using distri::Result;
using distri::log::FileSystem;
using distri::log::LocalLog;
using distri::log::LocalLogOptions;
using distri::replication::EncodeRecord;
using distri::replication::EntryType;
using distri::replication::HardState;
using distri::replication::RaftDurableState;
using distri::replication::RaftEntry;
using Clock = std::chrono::steady_clock;

constexpr size_t kPayloadBytes = 100;
constexpr size_t kContextBytes = 16;
// No single run writes more than this many entries (a bound on disk use: ~15 GB at most).
constexpr uint64_t kMaxEntries = 100'000'000;

// The same pseudo-random bytes as raft_engine_bench (xorshift64*): neither side compresses.
struct Payload {
  uint64_t state;
  void Fill(char* out, size_t n) {
    for (size_t i = 0; i < n; i += 8) {
      state ^= state >> 12;
      state ^= state << 25;
      state ^= state >> 27;
      const uint64_t v = state * 0x2545F4914F6CDD1DULL;
      for (size_t j = 0; j < 8 && i + j < n; j++) out[i + j] = static_cast<char>(v >> (8 * j));
    }
  }
};

struct Args {
  std::string mode;
  std::string dir;
  uint64_t batch = 1;
  uint64_t concurrency = 1;
  double seconds = 2;
  uint64_t entries = 300'000;
  bool preallocate = false;
};

uint64_t Number(const char* flag, const char* value) {
  char* end = nullptr;
  const unsigned long long v = std::strtoull(value, &end, 10);
  if (end == value || *end != '\0') Die(std::string(flag) + ": not a number: " + value, 2);
  return v;
}

Args ParseArgs(int argc, char** argv) {
  const char* usage =
      "usage: wal_bench append|fill|recover --dir D [--batch B] [--concurrency C] "
      "[--seconds S] [--entries N] [--preallocate 0|1]";
  if (argc < 2) Die(usage, 2);
  Args a;
  a.mode = argv[1];
  if (a.mode != "append" && a.mode != "fill" && a.mode != "recover") Die(usage, 2);
  for (int i = 2; i < argc; i += 2) {
    if (i + 1 >= argc) Die(usage, 2);
    const std::string flag = argv[i];
    const char* value = argv[i + 1];
    if (flag == "--dir") {
      a.dir = value;
    } else if (flag == "--batch") {
      a.batch = Number("--batch", value);
    } else if (flag == "--concurrency") {
      a.concurrency = Number("--concurrency", value);
    } else if (flag == "--entries") {
      a.entries = Number("--entries", value);
    } else if (flag == "--preallocate") {
      a.preallocate = Number("--preallocate", value) != 0;
    } else if (flag == "--seconds") {
      a.seconds = std::atof(value);
    } else {
      Die("unknown flag " + flag + "\n" + usage, 2);
    }
  }
  if (a.dir.empty()) Die("--dir is required", 2);
  if (a.batch < 1 || a.batch > 4096 || a.concurrency < 1 || a.concurrency > 256) {
    Die("--batch must be in [1, 4096] and --concurrency in [1, 256]", 2);
  }
  if (!(a.seconds > 0 && a.seconds <= 600) || a.entries == 0 || a.entries > kMaxEntries) {
    Die("--seconds must be in (0, 600] and --entries in [1, 100000000]", 2);
  }
  return a;
}

// A segment file whose space is reserved ahead of the writes (see --preallocate).
class PreallocatedFile final : public distri::log::WritableFile {
 public:
  static constexpr uint64_t kChunk = 4 << 20;
  PreallocatedFile(std::unique_ptr<distri::log::WritableFile> inner, int fd)
      : inner_(std::move(inner)), fd_(fd) {}
  ~PreallocatedFile() override { close(fd_); }
  Status WriteAt(uint64_t offset, std::span<const std::string_view> pieces) override {
    uint64_t end = offset;
    for (std::string_view p : pieces) end += p.size();
    if (end > capacity_) {
      const uint64_t grow = std::max(kChunk, end - capacity_);
      if (fallocate(fd_, 0, static_cast<off_t>(capacity_), static_cast<off_t>(grow)) != 0) {
        return distri::log::PosixError("fallocate", "segment", errno);
      }
      capacity_ += grow;
    }
    return inner_->WriteAt(offset, pieces);
  }
  Status Sync() override { return inner_->Sync(); }
  Status Truncate(uint64_t size) override { return inner_->Truncate(size); }

 private:
  std::unique_ptr<distri::log::WritableFile> inner_;
  const int fd_;  // a second descriptor of the same file, for fallocate
  uint64_t capacity_ = 0;
};

class PreallocatingFileSystem final : public FileSystem {
 public:
  Status CreateDir(const std::string& path) override { return base_->CreateDir(path); }
  Result<std::vector<std::string>> ListDir(const std::string& path) override {
    return base_->ListDir(path);
  }
  Result<std::unique_ptr<distri::log::WritableFile>> OpenWritable(const std::string& path,
                                                                  bool truncate) override {
    auto file = base_->OpenWritable(path, truncate);
    if (!file.ok() || !path.ends_with(".seg")) return file;
    const int fd = open(path.c_str(), O_WRONLY | O_CLOEXEC);
    if (fd < 0) return distri::log::PosixError("open", path, errno);
    return std::unique_ptr<distri::log::WritableFile>(
        std::make_unique<PreallocatedFile>(std::move(file).value(), fd));
  }
  Result<std::unique_ptr<distri::log::ReadOnlyFile>> OpenReadOnly(
      const std::string& path) override {
    return base_->OpenReadOnly(path);
  }
  Status Rename(const std::string& from, const std::string& to) override {
    return base_->Rename(from, to);
  }
  Status Unlink(const std::string& path) override { return base_->Unlink(path); }
  Status SyncDir(const std::string& path) override { return base_->SyncDir(path); }

 private:
  FileSystem* const base_ = distri::log::DefaultFileSystem();
};

// One group's writer: what HandleReady encodes for a Ready of `n` entries from `next` on (the
// hard state's commit trails by one batch, as a leader's does).
class Group {
 public:
  explicit Group(uint64_t id) : id_(id), payload_{0x9E3779B97F4A7C15ULL ^ id} {}

  void EncodeReady(uint64_t n, std::string* record) {
    bytes_.resize(n * (kPayloadBytes + kContextBytes));
    std::vector<RaftEntry> entries;
    entries.reserve(n);
    for (uint64_t i = 0; i < n; i++) {
      char* data = bytes_.data() + i * (kPayloadBytes + kContextBytes);
      char* context = data + kPayloadBytes;
      payload_.Fill(data, kPayloadBytes);
      std::string ctx;
      distri::base::AppendLe64(&ctx, id_);
      distri::base::AppendLe64(&ctx, next_ + i);
      std::copy(ctx.begin(), ctx.end(), context);
      entries.push_back(RaftEntry{next_ + i, 1, EntryType::kNormal,
                                  std::string_view(data, kPayloadBytes),
                                  std::string_view(context, kContextBytes)});
    }
    record->clear();
    EncodeRecord(record, HardState{1, id_, next_ - 1}, nullptr, {}, entries);
    next_ += n;
  }

 private:
  const uint64_t id_;
  Payload payload_;
  uint64_t next_ = 1;
  std::string bytes_;
};

// The loop thread's side of LocalLog's wakeup (the server's uv_async).
struct Wakeup {
  std::mutex mu;
  std::condition_variable cv;
  bool woken = false;
  void Wake() {
    std::lock_guard lock(mu);
    woken = true;
    cv.notify_one();
  }
  void Wait() {
    std::unique_lock lock(mu);
    cv.wait_for(lock, std::chrono::milliseconds(100), [&] { return woken; });
    woken = false;
  }
};

std::unique_ptr<LocalLog> OpenLog(const std::string& dir, bool fsync, RaftDurableState* state,
                                  FileSystem* fs = nullptr) {
  LocalLogOptions options;
  options.dir = dir;
  options.fsync = fsync;
  options.file_system = fs;
  auto opened = LocalLog::Open(
      options,
      [&](uint64_t, std::string_view data) {
        std::string_view payload;
        return state->ApplyCheckpoint(data, &payload);
      },
      [&](uint64_t, std::string_view record) { return state->ApplyRecord(record); });
  if (!opened.ok()) Die("open " + dir + ": " + opened.status().ToString());
  return std::move(opened).value();
}

uint64_t Percentile(const std::vector<uint32_t>& sorted, double p) {
  if (sorted.empty()) return 0;
  return sorted[static_cast<size_t>(static_cast<double>(sorted.size() - 1) * p + 0.5)];
}

void Append(const Args& a) {
  RaftDurableState state;
  PreallocatingFileSystem preallocating;
  auto log = OpenLog(a.dir, /*fsync=*/true, &state, a.preallocate ? &preallocating : nullptr);
  Wakeup wakeup;
  log->SetWakeup([&] { wakeup.Wake(); });
  std::vector<Group> groups;
  for (uint64_t g = 0; g < a.concurrency; g++) groups.emplace_back(g + 1);
  struct InFlight {
    uint64_t group;
    Clock::time_point start;
  };
  std::map<uint64_t, InFlight> in_flight;  // record index -> its Ready
  std::vector<uint32_t> latencies_us;
  std::string record;
  const uint64_t max_batches = kMaxEntries / a.batch;
  const Clock::time_point start = Clock::now();
  const Clock::time_point deadline =
      start + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(a.seconds));
  uint64_t started = 0;
  auto submit = [&](uint64_t g) {
    const Clock::time_point t0 = Clock::now();
    groups[g].EncodeReady(a.batch, &record);
    auto index = log->Propose(record);
    if (!index.ok()) Die("propose: " + index.status().ToString());
    in_flight[index.value()] = InFlight{g, t0};
    started++;
  };
  for (uint64_t g = 0; g < a.concurrency; g++) submit(g);
  log->Flush();
  std::vector<uint64_t> ready;
  while (!in_flight.empty()) {
    wakeup.Wait();
    ready.clear();
    log->Poll(
        [&](uint64_t index, std::string_view) {
          auto it = in_flight.find(index);
          if (it == in_flight.end()) Die("durable record not in flight");
          const auto us = std::chrono::duration_cast<std::chrono::microseconds>(
                              Clock::now() - it->second.start)
                              .count();
          latencies_us.push_back(static_cast<uint32_t>(std::min<int64_t>(us, UINT32_MAX)));
          ready.push_back(it->second.group);
          in_flight.erase(it);
        },
        [&](uint64_t, const Status& why) { Die("write failed: " + why.ToString()); });
    if (Clock::now() < deadline) {
      for (uint64_t g : ready) {
        if (started < max_batches) submit(g);
      }
      log->Flush();
    }
  }
  const double elapsed = std::chrono::duration<double>(Clock::now() - start).count();
  log->Close();
  std::sort(latencies_us.begin(), latencies_us.end());
  const uint64_t batches = latencies_us.size();
  std::printf(
      "{\"engine\": \"%s\", \"mode\": \"append\", \"batch\": %llu, \"concurrency\": %llu, "
      "\"seconds\": %.3f, \"batches\": %llu, \"entries\": %llu, \"p50_us\": %llu, "
      "\"p99_us\": %llu, \"max_us\": %llu}\n",
      a.preallocate ? "segment+prealloc" : "segment", static_cast<unsigned long long>(a.batch),
      static_cast<unsigned long long>(a.concurrency), elapsed,
      static_cast<unsigned long long>(batches),
      static_cast<unsigned long long>(batches * a.batch),
      static_cast<unsigned long long>(Percentile(latencies_us, 0.5)),
      static_cast<unsigned long long>(Percentile(latencies_us, 0.99)),
      static_cast<unsigned long long>(latencies_us.empty() ? 0 : latencies_us.back()));
}

void Fill(const Args& a) {
  RaftDurableState state;
  auto log = OpenLog(a.dir, /*fsync=*/true, &state);
  Wakeup wakeup;
  log->SetWakeup([&] { wakeup.Wake(); });
  Group group(1);
  std::string record;
  const Clock::time_point start = Clock::now();
  uint64_t last = 0;
  uint64_t records = 0;
  for (uint64_t next = 1; next <= a.entries; next += a.batch) {
    group.EncodeReady(std::min(a.batch, a.entries - next + 1), &record);
    auto index = log->Propose(record);
    if (!index.ok()) Die("propose: " + index.status().ToString());
    last = index.value();
    // Flushed in groups of up to 1 MiB, then made durable together (as a sync at the end).
    if (++records % std::max<uint64_t>(1, (1 << 20) / record.size()) == 0) log->Flush();
  }
  log->Flush();
  uint64_t durable = 0;
  while (durable < last) {
    wakeup.Wait();
    log->Poll([&](uint64_t index, std::string_view) { durable = index; },
              [&](uint64_t, const Status& why) { Die("write failed: " + why.ToString()); });
  }
  log->Close();
  std::printf(
      "{\"engine\": \"segment\", \"mode\": \"fill\", \"batch\": %llu, \"entries\": %llu, "
      "\"seconds\": %.3f}\n",
      static_cast<unsigned long long>(a.batch), static_cast<unsigned long long>(a.entries),
      std::chrono::duration<double>(Clock::now() - start).count());
}

void Recover(const Args& a) {
  const Clock::time_point start = Clock::now();
  RaftDurableState state;
  auto log = OpenLog(a.dir, /*fsync=*/true, &state);
  const double seconds = std::chrono::duration<double>(Clock::now() - start).count();
  if (!state.has_hard_state) Die("no hard state after recovery");
  const uint64_t entries = state.entries.size();
  log->Close();
  std::printf(
      "{\"engine\": \"segment\", \"mode\": \"recover\", \"entries\": %llu, \"seconds\": %.3f}\n",
      static_cast<unsigned long long>(entries), seconds);
}

}  // namespace

int main(int argc, char** argv) {
  const Args a = ParseArgs(argc, argv);
  if (a.mode == "append") {
    Append(a);
  } else if (a.mode == "fill") {
    Fill(a);
  } else {
    Recover(a);
  }
  return 0;
}
