// Messaging: the server's pub/sub and services as command handlers see them.
//
// None of this enters the log: messages, requests and replies are ephemeral
// and routed between connections (and, in a cluster, between nodes). Names
// are scoped to the room the connection is in when it subscribes or serves.
// The server implements this interface (server/pubsub.h, server/services.h).
//
// Thread-safety: loop thread only.

#ifndef DISTRI_COMMANDS_MESSAGING_H_
#define DISTRI_COMMANDS_MESSAGING_H_

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "distri/status.h"
#include "protocol/resp_writer.h"

namespace distri::commands {

struct Session;

// CALL / CALL.ALL TIMEOUT bounds, in milliseconds. The maximum (365 days)
// keeps every deadline (monotonic now + timeout) far from int64 overflow;
// longer timeouts are refused, as Redis refuses out-of-range timeouts of its
// blocking commands.
inline constexpr int64_t kDefaultCallTimeoutMs = 30'000;
inline constexpr int64_t kMaxCallTimeoutMs = 365LL * 24 * 3600 * 1000;
// Services one connection may serve at once: a worker's record travels to every other node
// of a cluster in one announcement, which must stay within what a peer accepts.
inline constexpr size_t kMaxServicesPerWorker = 1024;

class Messaging {
 public:
  virtual ~Messaging() = default;

  // (P)SUBSCRIBE / (P)UNSUBSCRIBE: writes one confirmation frame per name
  // (RESP2 arrays or RESP3 pushes). An empty `names` unsubscribes from all.
  virtual void Subscribe(Session& session, std::span<const std::string_view> names, bool pattern,
                         protocol::ReplyWriter& reply) = 0;
  virtual void Unsubscribe(Session& session, std::span<const std::string_view> names, bool pattern,
                           protocol::ReplyWriter& reply) = 0;
  // Returns how many subscriptions received the message.
  virtual int64_t Publish(std::string_view room, std::string_view channel, std::string_view message) = 0;
  virtual std::vector<std::string> Channels(std::string_view room, std::optional<std::string_view> pattern) = 0;
  virtual int64_t NumSub(std::string_view room, std::string_view channel) = 0;
  virtual int64_t NumPat(std::string_view room) = 0;

  // SVC.SERVE: the session's connection becomes a worker for `services`.
  // Requests already waiting are pushed at once, so reply before calling.
  virtual void Serve(Session& session, std::span<const std::string_view> services,
                     uint32_t concurrency) = 0;
  // How many services the session's connection would serve after SVC.SERVE `services`.
  virtual size_t ServedWith(const Session& session,
                            std::span<const std::string_view> services) const = 0;
  // SVC.UNSERVE: stops serving (all when empty); returns how many stopped.
  virtual size_t Unserve(Session& session, std::span<const std::string_view> services) = 0;
  // SVC.REPLY / SVC.ERROR: false when the id is unknown, already answered,
  // or was not sent to this worker (the reply is dropped and counted).
  virtual bool Answer(Session& session, uint64_t request_id, bool ok, std::string_view payload) = 0;
  // CALL / CALL.ALL: the session blocks; its reply is written when the
  // worker(s) answer, the call times out, or no worker appears in time.
  // REQUIRES: 0 < timeout_ms <= kMaxCallTimeoutMs.
  virtual void Call(Session& session, std::string_view service, std::string_view payload,
                    int64_t timeout_ms, bool all) = 0;
  // SVC.LIST and SVC.STATS replies.
  virtual void ListServices(std::string_view room, protocol::ReplyWriter& reply) = 0;
  virtual bool ServiceStats(std::string_view room, std::string_view service,
                            protocol::ReplyWriter& reply) = 0;
};

}  // namespace distri::commands

#endif  // DISTRI_COMMANDS_MESSAGING_H_
