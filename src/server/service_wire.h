// The frames services exchange between cluster nodes (types 24-39 of the
// ClusterNode's ephemeral traffic; see docs/messaging.md "Services across the cluster").
// Encoding and decoding only, no I/O, so every frame is unit-tested and fuzzed
// without sockets. Used by MessageRouter (service_routes.cc), loop thread.
//
// Integers are little-endian, strings a u32 length and their bytes. A decoder
// never reads past its input: a truncated or malformed frame decodes to false
// (the caller drops it and logs, rate limited), never to a partial value.
//
//   WORKERS        u8 full (1: replaces the sender's whole table) | records...
//     record       u8 kind | u64 worker id | kind 1 (upsert): u32 concurrency,
//                  u32 in flight (all callers), u32 in flight from the receiver,
//                  str label, u32 n, n x (str room, str service)
//                  kind 2 (load): u32 in flight, u32 from the receiver
//                  kind 3 (gone): nothing more
//   REQUEST        u64 call id (the caller node's) | u64 worker id | u64 timeout ms left |
//                  str room | str service | str payload
//   RESULT         u64 call id | u64 worker id | u8 status | u32 worker's in flight |
//                  u32 from the receiver | str payload
//   BROADCAST      u64 group id | u64 timeout ms left | str room | str service | str payload
//   BROADCAST_RES  u64 group id | u32 n | n x (str label, u8 status, str payload)
//   STATS          u64 dropped replies | u32 n | n x (str room, str service, u64 calls,
//                  u64 errors, u64 timeouts, u64 waiting, u64 latency samples,
//                  u32 k, k x f64 latency quantile points in ms)

#ifndef DISTRI_SERVER_SERVICE_WIRE_H_
#define DISTRI_SERVER_SERVICE_WIRE_H_

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace distri::server::svcwire {

enum FrameType : uint8_t {
  kFrameWorkers = 24,
  kFrameRequest = 25,
  kFrameResult = 26,
  kFrameBroadcast = 27,
  kFrameBroadcastResult = 28,
  kFrameStats = 29,
};

// How a request ended, as the worker's node reports it.
enum class Status : uint8_t {
  kOk = 0,      // SVC.REPLY
  kError = 1,   // SVC.ERROR
  kNotRun = 2,  // refused on arrival (worker gone or full): never reached a worker
  kTimeout = 3, // the worker's node gave up at the deadline
  kLost = 4,    // the worker disconnected with it: it may have run
};
constexpr uint8_t kMaxStatus = 4;

enum class RecordKind : uint8_t { kUpsert = 1, kLoad = 2, kGone = 3 };

struct WorkerRecord {
  RecordKind kind = RecordKind::kUpsert;
  uint64_t id = 0;
  uint32_t concurrency = 0;
  uint32_t in_flight = 0;
  uint32_t yours = 0;  // of in_flight, requests from the receiving node
  std::string label;
  std::vector<std::pair<std::string, std::string>> services;  // (room, name)
};
struct WorkersFrame {
  bool full = false;
  std::vector<WorkerRecord> records;
};

struct Request {
  uint64_t call_id = 0, worker_id = 0, timeout_ms = 0;
  std::string_view room, service, payload;
};
struct Result {
  uint64_t call_id = 0, worker_id = 0;
  Status status = Status::kOk;
  uint32_t in_flight = 0, yours = 0;
  std::string_view payload;
};
struct Broadcast {
  uint64_t group = 0, timeout_ms = 0;
  std::string_view room, service, payload;
};
struct BroadcastSlot {
  std::string label;
  Status status = Status::kOk;
  std::string payload;
};
struct BroadcastResult {
  uint64_t group = 0;
  std::vector<BroadcastSlot> slots;
};
struct ServiceCounters {
  std::string room, name;
  uint64_t calls = 0, errors = 0, timeouts = 0, waiting = 0, samples = 0;
  std::vector<double> quantiles;  // evenly spaced from the fastest to the slowest sample
};
struct StatsFrame {
  uint64_t dropped_replies = 0;
  std::vector<ServiceCounters> services;
};

// Appends one record to a WORKERS frame begun with BeginWorkers.
std::string BeginWorkers(bool full);
void AppendWorker(std::string* frame, const WorkerRecord& record);
std::string EncodeRequest(const Request& r);
std::string EncodeResult(const Result& r);
std::string EncodeBroadcast(const Broadcast& b);
std::string EncodeBroadcastResult(const BroadcastResult& b);
std::string EncodeStats(const StatsFrame& s);

// Each false on a truncated or malformed frame. Views point into `payload`.
// max_records bounds what one frame may hold (a hostile peer's table stays bounded).
bool DecodeWorkers(std::string_view payload, size_t max_records, WorkersFrame* out);
bool DecodeRequest(std::string_view payload, Request* out);
bool DecodeResult(std::string_view payload, Result* out);
bool DecodeBroadcast(std::string_view payload, Broadcast* out);
bool DecodeBroadcastResult(std::string_view payload, size_t max_slots, BroadcastResult* out);
bool DecodeStats(std::string_view payload, size_t max_services, StatsFrame* out);

}  // namespace distri::server::svcwire

#endif  // DISTRI_SERVER_SERVICE_WIRE_H_
