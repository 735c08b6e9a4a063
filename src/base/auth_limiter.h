// AuthLimiter: counts failed password attempts per peer address and refuses
// further attempts from an address that failed too often, so a password
// cannot be guessed at network speed (without it one RESP connection tried
// 2.6 million passwords a second).
//
// Each address may fail `max_failures_per_sec` times within a one-second
// window; the attempt after that is refused without checking the password,
// until the window ends. Both the RESP port (AUTH, HELLO AUTH) and the HTTP
// port (Authorization: Bearer) count against the same table.
//
// Invariants:
//  1. The table holds at most `max_addresses` entries. Only addresses that
//     failed within the last window are kept; when the table is full, expired
//     windows are swept out, and if it is still full the failures of any
//     address not in it count against one shared overflow entry (so a flood
//     of addresses is limited together, and memory stays bounded).
//  2. An IPv6 peer is keyed by its /64 prefix (one host usually owns a whole
//     /64), an IPv4 peer by its address.
//
// Time is passed in by the caller (milliseconds), which keeps this testable.
// Thread-safety: none (the loop thread owns it).

#ifndef DISTRI_BASE_AUTH_LIMITER_H_
#define DISTRI_BASE_AUTH_LIMITER_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>

namespace distri::base {

class AuthLimiter {
 public:
  // max_failures_per_sec == 0 disables the limit.
  explicit AuthLimiter(uint32_t max_failures_per_sec, size_t max_addresses = 10000)
      : max_failures_(max_failures_per_sec), max_addresses_(max_addresses) {}
  AuthLimiter(const AuthLimiter&) = delete;
  AuthLimiter& operator=(const AuthLimiter&) = delete;

  // Whether `peer` (an address as Connection::PeerAddress renders it,
  // "ip:port") may try a password now.
  bool Allowed(std::string_view peer, int64_t now_ms) const;
  // Records a wrong password from `peer`.
  void RecordFailure(std::string_view peer, int64_t now_ms);

  size_t size() const { return table_.size(); }
  uint64_t refused() const { return refused_; }
  void CountRefused() { refused_++; }

  // "1.2.3.4:5" -> "1.2.3.4"; "2001:db8:1:2:3:4:5:6:7" -> "2001:db8:1:2::/64".
  static std::string KeyFor(std::string_view peer);

 private:
  struct Window {
    int64_t start_ms = 0;
    uint32_t failures = 0;
  };
  static constexpr int64_t kWindowMs = 1000;
  static constexpr std::string_view kOverflowKey = "*";

  const Window* Find(std::string_view key) const;
  void Sweep(int64_t now_ms);

  uint32_t max_failures_;
  size_t max_addresses_;
  std::unordered_map<std::string, Window> table_;
  uint64_t refused_ = 0;
  int64_t last_sweep_ms_ = INT64_MIN / 2;
};

}  // namespace distri::base

#endif  // DISTRI_BASE_AUTH_LIMITER_H_
