// Change notifications: what the state machine tells the rest of the server
// each time a key changes, so mirrors, watchers and the dashboard can follow.
//
// A change is reported synchronously from inside Apply(), after the keyspace
// has changed, with the revision (log index) of the entry being applied.
// Views in a Change are valid only during the call. Observers must not touch
// the state machine from OnChange.
//
// Thread-safety: loop thread only.

#ifndef DISTRI_STATE_CHANGE_H_
#define DISTRI_STATE_CHANGE_H_

#include <cstdint>
#include <string_view>

namespace distri::state {

struct Change {
  enum class Kind : uint8_t {
    kSet,    // key now holds value (with expire_at_ms; 0 = none)
    kDel,    // key removed; `expired` if by expiry
    kFlush,  // every key of the room removed (FLUSHDB, FLUSHALL, ROOM.DROP)
  };
  Kind kind;
  uint64_t revision;
  std::string_view room;
  std::string_view key;
  std::string_view value;
  int64_t expire_at_ms = 0;
  bool expired = false;
};

class ChangeObserver {
 public:
  virtual ~ChangeObserver() = default;
  virtual void OnChange(const Change& change) = 0;
};

// Shared by a StateMachine and its rooms: where to report, and about what.
struct ChangeSink {
  ChangeObserver* observer = nullptr;  // nullptr: nobody listens (tests, recovery)
  uint64_t revision = 0;               // the entry being applied
  bool expiring = false;               // the entry is an active-expiry deletion
};

}  // namespace distri::state

#endif  // DISTRI_STATE_CHANGE_H_
