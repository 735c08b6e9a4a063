// The authenticated handshake that opens every cluster link (node to node, on
// the cluster port), and the cluster secret it proves knowledge of.
//
// A pure state machine with no I/O, like the RESP parser: the transport (the
// next piece of issue 10, not written yet) feeds it the bytes it reads and
// sends the bytes it is given. Both sides prove that they hold the cluster
// secret by an HMAC-SHA256 over the whole transcript (both fresh nonces, both
// cluster ids, both node ids, the roles and the protocol version), so a proof
// cannot be replayed on another connection, reflected back to its sender, or
// relayed to another node or cluster; the secret never crosses the wire. The
// initiator (the side that connected) proves first, so a stranger who connects
// to a listener learns nothing it could test secret guesses against offline.
// Message formats and the security argument: docs/replication.md, "Cluster
// links".
//
// Nothing the peer sends is trusted before the handshake succeeds: the peer's
// node id and cluster id are readable only through peer(), which is empty
// until done(). After any failure the handshake stays failed and consumes
// nothing more; the transport closes the connection, logs the Status, and (on
// the listener) records the failure in a base::AuthLimiter keyed by address.
//
// Thread-safety: none; one handshake per connection, used by its loop thread.
// ClusterSecret is immutable after loading and may be shared across threads.

#ifndef DISTRI_CLUSTER_HANDSHAKE_H_
#define DISTRI_CLUSTER_HANDSHAKE_H_

#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "distri/status.h"

namespace distri::cluster {

// ---------------------------------------------------------------------------
// The cluster secret

// The key every member of a cluster holds. Loaded from --cluster-secret-file,
// never from the command line (it would show in `ps`). Not copyable, so it is
// not duplicated by accident; the bytes are wiped on destruction. It has no
// printing operator: it must never reach a log.
class ClusterSecret {
 public:
  // Fewer bytes than this are refused: the secret is the only thing between a
  // stranger and the cluster, and a short one could be guessed. 32 bytes is
  // what `openssl rand -base64 32` (44 characters) comfortably exceeds.
  static constexpr size_t kMinBytes = 32;
  // A bound on what is read from the file.
  static constexpr size_t kMaxBytes = 4096;

  // REQUIRES: nothing; returns InvalidArgument for a secret outside
  // [kMinBytes, kMaxBytes].
  static Result<std::shared_ptr<const ClusterSecret>> FromBytes(std::string_view bytes);

  ClusterSecret(const ClusterSecret&) = delete;
  ClusterSecret& operator=(const ClusterSecret&) = delete;
  ~ClusterSecret();

  std::string_view bytes() const { return bytes_; }

 private:
  explicit ClusterSecret(std::string_view bytes) : bytes_(bytes) {}
  std::string bytes_;
};

// Reads the secret from `path` (the value of --cluster-secret-file). Refuses a
// file that is not a regular file, that group or others may read or write
// (chmod 600, as ssh insists for its keys), that is larger than
// ClusterSecret::kMaxBytes, or whose contents (after removing one trailing
// "\n" or "\r\n", which editors and `echo` add) are shorter than
// ClusterSecret::kMinBytes. Errors name the file and say what to do.
Result<std::shared_ptr<const ClusterSecret>> LoadClusterSecret(const std::string& path);

// ---------------------------------------------------------------------------
// The handshake

// The wire version this code speaks. A peer with another version is refused
// with a clear error (no negotiation until there is a second version).
inline constexpr uint8_t kHandshakeVersion = 1;
// Bytes of each fresh nonce (256 bits).
inline constexpr size_t kNonceBytes = 32;
// Bytes of a proof (HMAC-SHA256) and of the session key.
inline constexpr size_t kMacBytes = 32;
// No handshake message is longer than this; the transport never needs to
// buffer more than this from an unauthenticated peer.
inline constexpr size_t kMaxHandshakeMessage = 64;
// The default for the listener's failure limit (base::AuthLimiter): failed
// handshakes per second per address before further attempts are refused.
inline constexpr uint32_t kDefaultHandshakeFailuresPerSec = 5;

enum class Role : uint8_t { kInitiator = 1, kResponder = 2 };

struct HandshakeConfig {
  Role role = Role::kInitiator;
  std::shared_ptr<const ClusterSecret> secret;
  // The cluster this node belongs to. 0 only for an initiator that is not a
  // member of any cluster yet (a node joining through --join): it accepts the
  // responder's cluster id, and learns it from peer() once authenticated.
  uint64_t cluster_id = 0;
  // This node's id (non-zero, the Raft id).
  uint64_t node_id = 0;
};

// Who the peer is. Known only after it proved it holds the secret.
struct PeerIdentity {
  uint64_t node_id = 0;
  uint64_t cluster_id = 0;  // the cluster of the link (the responder's)
};

class Handshake {
 public:
  enum class State : uint8_t {
    kNew,             // Start() not called yet
    kAwaitHello,      // responder: waiting for the initiator's HELLO
    kAwaitChallenge,  // initiator: sent HELLO, waiting for CHALLENGE
    kAwaitProof,      // responder: sent CHALLENGE, waiting for the initiator's PROOF
    kAwaitConfirm,    // initiator: sent its PROOF, waiting for the responder's
    kDone,            // both sides proved the secret
    kFailed,          // terminal: nothing more is consumed
  };

  explicit Handshake(HandshakeConfig config);
  Handshake(const Handshake&) = delete;
  Handshake& operator=(const Handshake&) = delete;
  ~Handshake();

  // Draws this side's nonce. An initiator appends its HELLO to *out (send it);
  // a responder appends nothing. Fails (and the handshake with it) on an
  // invalid config (no secret, node id 0, a responder without a cluster id) or
  // if the random generator fails.
  // REQUIRES: state() == kNew.
  Status Start(std::string* out);

  // Feeds bytes received from the peer. Consumes whole handshake messages from
  // the front of `input` and sets *consumed to how many bytes they took; a
  // partial message is left unconsumed (call again with more bytes). Appends
  // what must be sent to *out. Stops consuming once done(): the bytes after the
  // last handshake message belong to the link. On a malformed, oversize,
  // wrong-version, wrong-cluster or wrong-proof message, returns the error and
  // the handshake is failed; every later call fails at once.
  // REQUIRES: Start() was called.
  Status Feed(std::string_view input, size_t* consumed, std::string* out);

  State state() const { return state_; }
  bool done() const { return state_ == State::kDone; }
  bool failed() const { return state_ == State::kFailed; }

  // The authenticated peer; empty unless done().
  std::optional<PeerIdentity> peer() const;

  // A key both sides derive from the secret and the transcript, unique to this
  // link, for the transport to authenticate the frames that follow (so that
  // nobody on the path can inject into an authenticated link). Empty unless
  // done().
  std::optional<std::array<uint8_t, kMacBytes>> session_key() const;

 private:
  Status Fail(Status status);
  Status CheckPeerCluster(uint64_t cluster_id) const;
  Status AppendProof(uint8_t type, std::string_view label, std::string* out) const;
  Status CheckProof(std::string_view message, std::string_view label) const;
  Status CheckPeerNode(uint64_t node_id) const;
  Status OnHello(std::string_view message, std::string* out);
  Status OnChallenge(std::string_view message, std::string* out);
  Status OnProof(std::string_view message, std::string* out);
  Status OnConfirm(std::string_view message);
  // HMAC-SHA256(secret, label || hello || challenge) for one of the labels.
  Status Mac(std::string_view label, std::array<uint8_t, kMacBytes>* mac) const;
  Status Finish();

  HandshakeConfig config_;
  State state_ = State::kNew;
  Status failure_;  // the first error, returned by every call after it
  std::array<uint8_t, kNonceBytes> nonce_{};
  // The HELLO and CHALLENGE messages exactly as sent/received: the transcript.
  std::string hello_;
  std::string challenge_;
  // Claimed by the peer; exposed only once authenticated.
  PeerIdentity claimed_;
  std::array<uint8_t, kMacBytes> session_key_{};
};

std::string_view HandshakeStateName(Handshake::State state);

}  // namespace distri::cluster

#endif  // DISTRI_CLUSTER_HANDSHAKE_H_
