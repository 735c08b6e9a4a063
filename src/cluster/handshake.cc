// The cluster link handshake and the cluster secret (see handshake.h; the
// wire format and the security argument are in docs/replication.md, "Cluster
// links").
//
// Every message is an 8-byte header and a body of an exact length:
//
//   "DSCL" | version u8 | type u8 | body length u16 | body
//
// Integers are little-endian, like every Distri format. The header is checked
// byte by byte as it arrives, so garbage (a redis-cli pointed at the cluster
// port) is refused at its first byte and a correct prefix always means "wait
// for more"; no message is longer than kMaxHandshakeMessage.

#include "cluster/handshake.h"

#include <fcntl.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>

#include "base/endian.h"

namespace distri::cluster {

namespace {

constexpr std::string_view kMagic = "DSCL";
constexpr size_t kHeaderBytes = 8;

enum MessageType : uint8_t {
  kHello = 1,      // initiator -> responder: cluster id, node id, nonce
  kChallenge = 2,  // responder -> initiator: cluster id, node id, nonce
  kProof = 3,      // initiator -> responder: HMAC with the initiator's label
  kConfirm = 4,    // responder -> initiator: HMAC with the responder's label
};

constexpr size_t kIdentityBody = 8 + 8 + kNonceBytes;  // HELLO and CHALLENGE
constexpr size_t kMacBody = kMacBytes;                  // PROOF and CONFIRM
static_assert(kHeaderBytes + kIdentityBody <= kMaxHandshakeMessage);

// Distinct labels make the initiator's proof, the responder's proof and the
// session key three unrelated values of the same transcript: a proof sent in
// one role is useless in the other (reflection), and neither is the key.
constexpr std::string_view kInitiatorLabel = "distri cluster handshake v1: initiator proof";
constexpr std::string_view kResponderLabel = "distri cluster handshake v1: responder proof";
constexpr std::string_view kSessionLabel = "distri cluster handshake v1: session key";

size_t BodyBytes(uint8_t type) {
  return type == kHello || type == kChallenge ? kIdentityBody : kMacBody;
}

std::string_view TypeName(uint8_t type) {
  switch (type) {
    case kHello: return "HELLO";
    case kChallenge: return "CHALLENGE";
    case kProof: return "PROOF";
    case kConfirm: return "CONFIRM";
  }
  return "unknown";
}

Status Malformed(const std::string& what) {
  return Status::InvalidArgument("cluster handshake: " + what);
}

Status Denied(const std::string& what) {
  return Status(Code::kPermissionDenied, "cluster handshake: " + what);
}

void AppendHeader(uint8_t type, std::string* out) {
  out->append(kMagic);
  out->push_back(static_cast<char>(kHandshakeVersion));
  out->push_back(static_cast<char>(type));
  const size_t len = BodyBytes(type);
  out->push_back(static_cast<char>(len & 0xff));
  out->push_back(static_cast<char>(len >> 8));
}

std::string IdentityMessage(uint8_t type, uint64_t cluster_id, uint64_t node_id,
                            const std::array<uint8_t, kNonceBytes>& nonce) {
  std::string message;
  AppendHeader(type, &message);
  base::AppendLe64(&message, cluster_id);
  base::AppendLe64(&message, node_id);
  message.append(reinterpret_cast<const char*>(nonce.data()), nonce.size());
  return message;
}

// Looks at the front of `input` for one message of type `want`. Returns Ok
// with *message set (a view into input), Ok with *message empty when more bytes
// are needed, or the error. Each header byte is checked as soon as it is there.
Status ReadMessage(std::string_view input, uint8_t want, std::string_view* message) {
  *message = {};
  const size_t have_magic = std::min(input.size(), kMagic.size());
  if (input.substr(0, have_magic) != kMagic.substr(0, have_magic)) {
    return Malformed("not a Distri cluster handshake (bad magic; is this the cluster port?)");
  }
  if (input.size() > 4) {
    const uint8_t version = static_cast<uint8_t>(input[4]);
    if (version != kHandshakeVersion) {
      return Malformed("unsupported version " + std::to_string(version) + " (this node speaks " +
                       std::to_string(kHandshakeVersion) + ")");
    }
  }
  if (input.size() > 5) {
    const uint8_t type = static_cast<uint8_t>(input[5]);
    if (type != want) {
      return Malformed("expected " + std::string(TypeName(want)) + ", got message type " +
                       std::to_string(type));
    }
  }
  if (input.size() < kHeaderBytes) return Status::Ok();
  const size_t len = static_cast<uint8_t>(input[6]) | static_cast<size_t>(input[7] & 0xff) << 8;
  if (len != BodyBytes(want)) {
    return Malformed(std::string(TypeName(want)) + " body of " + std::to_string(len) +
                     " bytes (must be " + std::to_string(BodyBytes(want)) + ")");
  }
  if (input.size() < kHeaderBytes + len) return Status::Ok();
  *message = input.substr(0, kHeaderBytes + len);
  return Status::Ok();
}

struct Identity {
  uint64_t cluster_id;
  uint64_t node_id;
  std::string_view nonce;
};

// REQUIRES: message is a complete HELLO or CHALLENGE (ReadMessage said so).
Identity ParseIdentity(std::string_view message) {
  const char* body = message.data() + kHeaderBytes;
  return Identity{base::GetLe64(body), base::GetLe64(body + 8),
                  message.substr(kHeaderBytes + 16, kNonceBytes)};
}

std::string Id(uint64_t id) { return std::to_string(id); }

}  // namespace

// ---------------------------------------------------------------------------
// ClusterSecret

Result<std::shared_ptr<const ClusterSecret>> ClusterSecret::FromBytes(std::string_view bytes) {
  if (bytes.size() < kMinBytes) {
    return Status::InvalidArgument("cluster secret is " + std::to_string(bytes.size()) +
                                   " bytes; at least " + std::to_string(kMinBytes) +
                                   " are required (e.g. `openssl rand -base64 48`)");
  }
  if (bytes.size() > kMaxBytes) {
    return Status::InvalidArgument("cluster secret is longer than " + std::to_string(kMaxBytes) +
                                   " bytes");
  }
  return std::shared_ptr<const ClusterSecret>(new ClusterSecret(bytes));
}

ClusterSecret::~ClusterSecret() { OPENSSL_cleanse(bytes_.data(), bytes_.size()); }

Result<std::shared_ptr<const ClusterSecret>> LoadClusterSecret(const std::string& path) {
  const std::string where = "--cluster-secret-file " + path + ": ";
  // O_NONBLOCK: opening a FIFO must not hang startup; it is refused below.
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
  if (fd < 0) return Status::IOError(where + std::strerror(errno));
  struct stat st;
  if (::fstat(fd, &st) != 0) {
    const int err = errno;
    ::close(fd);
    return Status::IOError(where + std::strerror(err));
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    return Status::InvalidArgument(where + "not a regular file");
  }
  if ((st.st_mode & 077) != 0) {
    ::close(fd);
    char mode[8];
    std::snprintf(mode, sizeof mode, "%04o", static_cast<unsigned>(st.st_mode & 07777));
    return Status::InvalidArgument(where + "group or others have access (mode " + mode +
                                   "); the secret must be private to the server's user: "
                                   "chmod 600 " + path);
  }
  std::string contents(ClusterSecret::kMaxBytes + 3, '\0');  // room for "\r\n" and one more
  size_t got = 0;
  while (got < contents.size()) {
    const ssize_t n = ::read(fd, contents.data() + got, contents.size() - got);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      const int err = errno;
      ::close(fd);
      OPENSSL_cleanse(contents.data(), contents.size());
      return Status::IOError(where + std::strerror(err));
    }
    if (n == 0) break;
    got += static_cast<size_t>(n);
  }
  ::close(fd);
  std::string_view secret(contents.data(), got);
  if (secret.ends_with('\n')) secret.remove_suffix(1);
  if (secret.ends_with('\r')) secret.remove_suffix(1);
  Result<std::shared_ptr<const ClusterSecret>> result = ClusterSecret::FromBytes(secret);
  OPENSSL_cleanse(contents.data(), contents.size());
  if (!result.ok()) return Status::InvalidArgument(where + result.status().message());
  return result;
}

// ---------------------------------------------------------------------------
// Handshake

Handshake::Handshake(HandshakeConfig config) : config_(std::move(config)) {}

Handshake::~Handshake() {
  OPENSSL_cleanse(session_key_.data(), session_key_.size());
  OPENSSL_cleanse(nonce_.data(), nonce_.size());
}

Status Handshake::Fail(Status status) {
  state_ = State::kFailed;
  failure_ = status;
  return status;
}

Status Handshake::Start(std::string* out) {
  if (state_ != State::kNew) return Fail(Status::Internal("cluster handshake started twice"));
  if (config_.secret == nullptr) return Fail(Status::InvalidArgument("no cluster secret"));
  if (config_.node_id == 0) return Fail(Status::InvalidArgument("node id 0 is not valid"));
  if (config_.role == Role::kResponder && config_.cluster_id == 0) {
    return Fail(Status::InvalidArgument("a responder must belong to a cluster (cluster id 0)"));
  }
  if (RAND_bytes(nonce_.data(), static_cast<int>(nonce_.size())) != 1) {
    return Fail(Status::Internal("RAND_bytes failed"));
  }
  if (config_.role == Role::kResponder) {
    state_ = State::kAwaitHello;
    return Status::Ok();
  }
  hello_ = IdentityMessage(kHello, config_.cluster_id, config_.node_id, nonce_);
  out->append(hello_);
  state_ = State::kAwaitChallenge;
  return Status::Ok();
}

Status Handshake::Feed(std::string_view input, size_t* consumed, std::string* out) {
  *consumed = 0;
  if (state_ == State::kFailed) return failure_;
  if (state_ == State::kNew) return Fail(Status::Internal("cluster handshake fed before Start"));
  while (state_ != State::kDone) {
    uint8_t want = kHello;
    switch (state_) {
      case State::kAwaitHello: want = kHello; break;
      case State::kAwaitChallenge: want = kChallenge; break;
      case State::kAwaitProof: want = kProof; break;
      case State::kAwaitConfirm: want = kConfirm; break;
      default: return Fail(Status::Internal("cluster handshake in an impossible state"));
    }
    std::string_view message;
    Status status = ReadMessage(input.substr(*consumed), want, &message);
    if (!status.ok()) return Fail(std::move(status));
    if (message.empty()) break;  // need more bytes
    *consumed += message.size();
    switch (want) {
      case kHello: status = OnHello(message, out); break;
      case kChallenge: status = OnChallenge(message, out); break;
      case kProof: status = OnProof(message, out); break;
      case kConfirm: status = OnConfirm(message); break;
    }
    if (!status.ok()) return Fail(std::move(status));
  }
  return Status::Ok();
}

// The peer's claimed cluster must be this node's.
Status Handshake::CheckPeerCluster(uint64_t cluster_id) const {
  if (cluster_id == config_.cluster_id) return Status::Ok();
  return Denied("peer is in cluster " + Id(cluster_id) + ", this node in cluster " +
                Id(config_.cluster_id));
}

// The peer's claimed node id must be a real id and not this node's own.
Status Handshake::CheckPeerNode(uint64_t node_id) const {
  if (node_id == 0) return Malformed("peer sent node id 0");
  if (node_id == config_.node_id) {
    return Denied("peer claims this node's own id " + Id(node_id) +
                  " (a reflected or looped connection)");
  }
  return Status::Ok();
}

// Responder. Checks only what can be refused without knowing who the peer is
// (its claims are remembered, not believed), then answers with its own
// identity and nonce and no proof: a stranger gets nothing derived from the
// secret.
Status Handshake::OnHello(std::string_view message, std::string* out) {
  const Identity hello = ParseIdentity(message);
  // A joining node does not know the cluster yet and sends 0.
  if (hello.cluster_id != 0) DISTRI_RETURN_IF_ERROR(CheckPeerCluster(hello.cluster_id));
  DISTRI_RETURN_IF_ERROR(CheckPeerNode(hello.node_id));
  hello_ = std::string(message);
  claimed_ = PeerIdentity{hello.node_id, config_.cluster_id};
  challenge_ = IdentityMessage(kChallenge, config_.cluster_id, config_.node_id, nonce_);
  out->append(challenge_);
  state_ = State::kAwaitProof;
  return Status::Ok();
}

// Initiator. Proves first: it chose whom to dial (a --join address or a
// member's advertised address), whereas the responder's port is open to anyone.
Status Handshake::OnChallenge(std::string_view message, std::string* out) {
  const Identity challenge = ParseIdentity(message);
  if (challenge.cluster_id == 0) return Malformed("peer sent cluster id 0");
  // This node, if joining, does not know the cluster yet and accepts any.
  if (config_.cluster_id != 0) DISTRI_RETURN_IF_ERROR(CheckPeerCluster(challenge.cluster_id));
  DISTRI_RETURN_IF_ERROR(CheckPeerNode(challenge.node_id));
  if (CRYPTO_memcmp(challenge.nonce.data(), nonce_.data(), kNonceBytes) == 0) {
    return Denied("peer echoed this node's nonce (a reflected connection)");
  }
  challenge_ = std::string(message);
  claimed_ = PeerIdentity{challenge.node_id, challenge.cluster_id};
  DISTRI_RETURN_IF_ERROR(AppendProof(kProof, kInitiatorLabel, out));
  state_ = State::kAwaitConfirm;
  return Status::Ok();
}

// Responder: the initiator's proof is checked before this side proves anything.
Status Handshake::OnProof(std::string_view message, std::string* out) {
  DISTRI_RETURN_IF_ERROR(CheckProof(message, kInitiatorLabel));
  DISTRI_RETURN_IF_ERROR(AppendProof(kConfirm, kResponderLabel, out));
  return Finish();
}

// Initiator.
Status Handshake::OnConfirm(std::string_view message) {
  DISTRI_RETURN_IF_ERROR(CheckProof(message, kResponderLabel));
  return Finish();
}

// Appends a message of `type` whose body is this side's MAC under `label`.
Status Handshake::AppendProof(uint8_t type, std::string_view label, std::string* out) const {
  std::array<uint8_t, kMacBytes> proof;
  DISTRI_RETURN_IF_ERROR(Mac(label, &proof));
  AppendHeader(type, out);
  out->append(reinterpret_cast<const char*>(proof.data()), proof.size());
  OPENSSL_cleanse(proof.data(), proof.size());
  return Status::Ok();
}

// The body of `message` (a PROOF or CONFIRM) must be the peer's MAC under
// `label`; compared in constant time.
Status Handshake::CheckProof(std::string_view message, std::string_view label) const {
  std::array<uint8_t, kMacBytes> expected;
  DISTRI_RETURN_IF_ERROR(Mac(label, &expected));
  const bool match =
      CRYPTO_memcmp(message.data() + kHeaderBytes, expected.data(), kMacBytes) == 0;
  OPENSSL_cleanse(expected.data(), expected.size());
  if (match) return Status::Ok();
  return Denied("peer's proof does not match (a different cluster secret, or a replayed or "
                "relayed handshake)");
}

Status Handshake::Mac(std::string_view label, std::array<uint8_t, kMacBytes>* mac) const {
  // label || HELLO || CHALLENGE. The HELLO and CHALLENGE are the exact bytes
  // exchanged (version, both cluster ids, both node ids, both nonces), each of
  // a fixed length, so the concatenation is unambiguous.
  std::string transcript;
  transcript.reserve(label.size() + hello_.size() + challenge_.size());
  transcript.append(label).append(hello_).append(challenge_);
  unsigned int mac_len = 0;
  const std::string_view key = config_.secret->bytes();
  const unsigned char* result =
      HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()),
           reinterpret_cast<const unsigned char*>(transcript.data()), transcript.size(),
           mac->data(), &mac_len);
  // Cannot fail with a valid key and digest short of a broken OpenSSL; the
  // handshake then fails rather than compare an unset MAC.
  if (result == nullptr || mac_len != kMacBytes) return Status::Internal("HMAC-SHA256 failed");
  return Status::Ok();
}

Status Handshake::Finish() {
  DISTRI_RETURN_IF_ERROR(Mac(kSessionLabel, &session_key_));
  state_ = State::kDone;
  return Status::Ok();
}

std::optional<PeerIdentity> Handshake::peer() const {
  if (state_ != State::kDone) return std::nullopt;
  return claimed_;
}

std::optional<std::array<uint8_t, kMacBytes>> Handshake::session_key() const {
  if (state_ != State::kDone) return std::nullopt;
  return session_key_;
}

std::string_view HandshakeStateName(Handshake::State state) {
  switch (state) {
    case Handshake::State::kNew: return "new";
    case Handshake::State::kAwaitHello: return "await-hello";
    case Handshake::State::kAwaitChallenge: return "await-challenge";
    case Handshake::State::kAwaitProof: return "await-proof";
    case Handshake::State::kAwaitConfirm: return "await-confirm";
    case Handshake::State::kDone: return "done";
    case Handshake::State::kFailed: return "failed";
  }
  return "unknown";
}

}  // namespace distri::cluster
