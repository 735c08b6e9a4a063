// Failed-password accounting per address; see auth_limiter.h.

#include "base/auth_limiter.h"

#include <arpa/inet.h>

#include <cstring>

namespace distri::base {

std::string AuthLimiter::KeyFor(std::string_view peer) {
  size_t colon = peer.rfind(':');
  std::string host(colon == std::string_view::npos ? peer : peer.substr(0, colon));
  in6_addr a6;
  if (host.find(':') != std::string::npos && inet_pton(AF_INET6, host.c_str(), &a6) == 1) {
    // An IPv4-mapped address (::ffff:1.2.3.4) is the IPv4 host itself.
    if (IN6_IS_ADDR_V4MAPPED(&a6)) return host.substr(host.rfind(':') + 1);
    std::memset(a6.s6_addr + 8, 0, 8);
    char buf[INET6_ADDRSTRLEN];
    inet_ntop(AF_INET6, &a6, buf, sizeof buf);
    return std::string(buf) + "/64";
  }
  return host;
}

const AuthLimiter::Window* AuthLimiter::Find(std::string_view key) const {
  auto it = table_.find(std::string(key));
  if (it != table_.end()) return &it->second;
  // Invariant 1: an address not in the table is judged by the overflow entry
  // (which exists only while the table was recently full).
  auto over = table_.find(std::string(kOverflowKey));
  return over == table_.end() ? nullptr : &over->second;
}

bool AuthLimiter::Allowed(std::string_view peer, int64_t now_ms) const {
  if (max_failures_ == 0) return true;
  const Window* w = Find(KeyFor(peer));
  return w == nullptr || now_ms - w->start_ms >= kWindowMs || w->failures < max_failures_;
}

void AuthLimiter::Sweep(int64_t now_ms) {
  std::erase_if(table_, [now_ms](const auto& kv) {
    return now_ms - kv.second.start_ms >= kWindowMs;
  });
}

void AuthLimiter::RecordFailure(std::string_view peer, int64_t now_ms) {
  if (max_failures_ == 0) return;
  std::string key = KeyFor(peer);
  auto it = table_.find(key);
  if (it == table_.end()) {
    if (table_.size() + 1 >= max_addresses_ && now_ms - last_sweep_ms_ >= kWindowMs) {
      last_sweep_ms_ = now_ms;  // at most one O(table) sweep per window
      Sweep(now_ms);
    }
    // Keep one slot for the overflow entry.
    if (table_.size() + 1 >= max_addresses_) key = std::string(kOverflowKey);
    it = table_.try_emplace(std::move(key), Window{now_ms, 0}).first;
  }
  Window& w = it->second;
  if (now_ms - w.start_ms >= kWindowMs) w = Window{now_ms, 0};
  w.failures++;
}

}  // namespace distri::base
