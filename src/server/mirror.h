// MirrorHub: live mirrors of rooms (the MIRROR command, and the dashboard's
// WebSocket), fed by the state machine's change notifications.
//
// Each change is kept in a bounded change history (for resuming FROM a
// revision) and delivered to every mirror of that room whose prefix it
// matches. A mirror is anything that implements MirrorSink: a RESP3 client
// encodes events as push frames (docs/protocol.md, "Live mirrors"), a
// WebSocket as JSON. A new mirror either replays the history after its FROM
// revision ("resume") or streams the room in chunks ("snapshot"), a few
// hundred keys at a time while its sink has room, so a million-key room
// neither stalls other clients nor doubles the server's memory.
//
// Why chunks interleaved with live changes are correct: each chunk is read
// from the current state after every earlier change was delivered, and every
// later change is delivered after it, so applying events in order leaves each
// key at its latest value.
//
// History is kept only for rooms that are mirrored, or were within the last
// kRetainIdleMs (so a mirror that lost its connection can resume), and for
// every room for that long after a restart (so mirrors that followed it
// before can resume): a room nobody follows costs no memory. Idle rooms are
// pruned from a queue in idle order, so the work per expiry cycle is the
// rooms whose time is up, not every room.
//
// Invariants:
//  1. history_ is ordered by revision. For a retained room R, every change
//     of R with revision > max(floor_, retained_[R].floor) is in it (older
//     ones may have been dropped, or were never kept).
//  2. A sink has at most one mirror per room.
//  3. A room of retained_ has at most one entry in idle_queue_ (`queued`),
//     and one whenever it is idle (idle_since_ms != 0), at a time no later
//     than idle_since_ms: so the queue never outgrows retained_, and a room
//     is dropped no sooner than kRetainIdleMs after it went idle.
//
// Thread-safety: loop thread only.

#ifndef DISTRI_SERVER_MIRROR_H_
#define DISTRI_SERVER_MIRROR_H_

#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "base/strings.h"
#include "state/change.h"
#include "state/keyspace.h"

namespace distri::server {

class Server;

// One thing a mirror is told, in order. Views are valid during Deliver only.
struct MirrorEvent {
  enum class Kind : uint8_t {
    kReset,     // clear the copy; snapshot events follow
    kSnapshot,  // add `items`
    kReady,     // the copy equals the state at `revision`
    kSet,       // key = value (expire_at_ms; 0 = none)
    kDel,       // key removed (`expired` if by expiry)
    kFlush,     // every key under the prefix removed
  };
  Kind kind;
  uint64_t revision = 0;
  std::string_view room;
  std::string_view key;
  std::string_view value;
  int64_t expire_at_ms = 0;
  bool expired = false;
  std::span<const state::Item* const> items;
};

// Where a mirror's events go.
class MirrorSink {
 public:
  virtual ~MirrorSink() = default;
  virtual void Deliver(const MirrorEvent& event) = 0;
  // Bytes queued but not yet sent: snapshots stream only while this is small.
  virtual size_t unsent_bytes() const = 0;
  virtual bool sink_closed() const = 0;
};

struct MirrorOptions {
  size_t history_entries = 100000;
  size_t history_bytes = 64ull << 20;
  // Keep history for every room, mirrored here or not (a cluster node: a mirror may resume
  // FROM its revision on any node after a failover). Within the same bounds.
  bool retain_all_rooms = false;
};

// How a new mirror begins (the reply to MIRROR).
struct MirrorStart {
  std::string_view room;
  uint64_t revision;  // the state's revision now
  bool resume;        // history covers FROM: replay; else reset + snapshot
};

class MirrorHub final : public state::ChangeObserver {
 public:
  // `start_revision`: the state's revision when history begins (after
  // recovery); every room that exists then is retained for a while.
  MirrorHub(Server* server, MirrorOptions options, uint64_t start_revision);

  // How long a room without mirrors keeps its change history.
  static constexpr int64_t kRetainIdleMs = 10 * 60 * 1000;
  // Stops keeping history for rooms idle longer than kRetainIdleMs.
  void PruneRetained(int64_t now_ms);
  MirrorHub(const MirrorHub&) = delete;
  MirrorHub& operator=(const MirrorHub&) = delete;

  void OnChange(const state::Change& change) override;

  // Starts mirroring `room` into `sink`: calls `reply` (to answer the request
  // before any event), then delivers the first events.
  void Start(MirrorSink* sink, std::string_view room, std::string_view prefix,
             std::optional<uint64_t> from, const std::function<void(const MirrorStart&)>& reply);
  // Stops the sink's mirror of `room`, or all of them; returns how many.
  size_t Stop(MirrorSink* sink, std::optional<std::string_view> room);

  // The state was replaced (a cluster node installed a snapshot from its leader): history
  // is dropped, and every mirror starts over with a reset and a snapshot of the new state.
  void Rebase(uint64_t revision);

  // Streams snapshot chunks to mirrors whose sinks have room. Returns true if
  // a mirror could take more right now (call again soon).
  bool Pump();
  bool snapshotting() const { return snapshotting_ > 0; }

  size_t mirror_count() const { return mirror_count_; }
  size_t MirrorsInRoom(std::string_view room) const;
  size_t history_bytes() const { return history_bytes_; }
  uint64_t history_floor() const { return floor_; }

 private:
  struct Mirror {
    MirrorSink* sink;
    std::string room;
    std::string prefix;
    bool snapshotting = false;
    uint64_t cursor = 0;
  };
  struct Record {
    uint64_t revision;
    state::Change::Kind kind;
    bool expired;
    int64_t expire_at_ms;
    std::string room;
    std::string key;  // empty for a flush
    std::string value;
  };

  struct Retention {
    uint64_t floor;            // the room's history is complete after this revision
    int64_t idle_since_ms;     // when its last mirror left; 0 while it has mirrors
    bool queued = false;       // has an entry in idle_queue_
  };

  static bool Matches(const Mirror& m, std::string_view key, state::Change::Kind kind);
  static MirrorEvent EventOf(const Record& r);
  void FinishSnapshot(Mirror& m);
  // Marks a retained room idle from now_ms (invariant 3).
  void MarkIdle(std::string_view room, Retention& retention, int64_t now_ms);

  Server* server_;
  MirrorOptions options_;
  std::deque<Record> history_;
  size_t history_bytes_ = 0;
  uint64_t floor_;
  std::unordered_map<std::string, std::vector<std::unique_ptr<Mirror>>, base::StringHash,
                     std::equal_to<>>
      by_room_;
  std::unordered_map<std::string, Retention, base::StringHash, std::equal_to<>> retained_;
  std::deque<std::pair<int64_t, std::string>> idle_queue_;  // invariant 3, roughly oldest first
  size_t mirror_count_ = 0;
  size_t snapshotting_ = 0;
};

// Encodes an event as the RESP3 push frame of docs/protocol.md.
void AppendMirrorFrame(const MirrorEvent& event, std::string* out);

}  // namespace distri::server

#endif  // DISTRI_SERVER_MIRROR_H_
