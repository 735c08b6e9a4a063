// MirrorHub: live mirrors of rooms (the MIRROR command), fed by the state
// machine's change notifications.
//
// Each change is encoded once as a RESP3 push frame, kept in a bounded change
// history (for resuming FROM a revision) and appended to the output of every
// mirror of that room whose prefix it matches. A new mirror either replays
// the history after its FROM revision ("resume") or streams the room in
// chunks ("snapshot"), a few hundred keys at a time while its connection has
// room, so a million-key room neither stalls other clients nor doubles the
// server's memory. Frames are in docs/protocol.md ("Live mirrors").
//
// Why chunks interleaved with live changes are correct: each chunk is read
// from the current state after every earlier change frame was queued, and
// every later change is queued after it, so applying frames in order leaves
// each key at its latest value.
//
// Invariants:
//  1. history_ is ordered by revision; every change with revision > floor_
//     is in it (changes with revision <= floor_ may have been dropped).
//  2. A client has at most one mirror per room.
//
// Thread-safety: loop thread only.

#ifndef DISTRI_SERVER_MIRROR_H_
#define DISTRI_SERVER_MIRROR_H_

#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "protocol/resp_writer.h"
#include "state/change.h"

namespace distri::server {

class Client;
class Server;

struct MirrorOptions {
  size_t history_entries = 100000;
  size_t history_bytes = 64ull << 20;
};

class MirrorHub final : public state::ChangeObserver {
 public:
  // `start_revision`: the state's revision when history begins (after recovery).
  MirrorHub(Server* server, MirrorOptions options, uint64_t start_revision);
  MirrorHub(const MirrorHub&) = delete;
  MirrorHub& operator=(const MirrorHub&) = delete;

  void OnChange(const state::Change& change) override;

  // MIRROR: writes the reply and the first frames, then follows the room.
  // REQUIRES: the client speaks RESP3.
  void Start(Client* client, std::string_view room, std::string_view prefix,
             std::optional<uint64_t> from, protocol::ReplyWriter& reply);
  // UNMIRROR: stops the client's mirror of `room`, or all of them.
  size_t Stop(Client* client, std::optional<std::string_view> room);
  // The client is going away.
  void RemoveClient(Client* client);

  // Streams snapshot chunks to mirrors whose connections have room. Returns
  // true if a mirror could take more right now (call again soon).
  bool Pump();
  bool snapshotting() const { return snapshotting_ > 0; }

  size_t mirror_count() const { return mirror_count_; }
  size_t MirrorsInRoom(std::string_view room) const;
  size_t history_bytes() const { return history_bytes_; }
  uint64_t history_floor() const { return floor_; }

 private:
  struct Mirror {
    Client* client;
    std::string room;
    std::string prefix;
    bool snapshotting = false;
    uint64_t cursor = 0;
  };
  struct Record {
    uint64_t revision;
    std::string room;
    std::string key;     // empty for a flush
    std::string frame;   // the encoded push frame
  };

  static bool Matches(const Mirror& m, const Record& r);
  void Send(Mirror& m, std::string_view frame);
  void FinishSnapshot(Mirror& m);
  std::string EncodeControl(std::string_view room, std::string_view what, uint64_t revision) const;

  Server* server_;
  MirrorOptions options_;
  std::deque<Record> history_;
  size_t history_bytes_ = 0;
  uint64_t floor_;
  std::unordered_map<std::string, std::vector<std::unique_ptr<Mirror>>> by_room_;
  size_t mirror_count_ = 0;
  size_t snapshotting_ = 0;
};

}  // namespace distri::server

#endif  // DISTRI_SERVER_MIRROR_H_
