// Small helpers shared by the benchmark load generators (mirror_bench,
// msg_bench): a monotonic clock, fatal errors, and a loopback TCP connect.

#ifndef DISTRI_BENCH_BENCH_UTIL_H_
#define DISTRI_BENCH_BENCH_UTIL_H_

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

namespace distri::bench {

inline int64_t NowNs() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

// Prints "<program>: msg" and exits.
[[noreturn]] inline void Die(const std::string& msg, int code = 1) {
  std::fprintf(stderr, "%s: %s\n", program_invocation_short_name, msg.c_str());
  std::exit(code);
}

// A blocking TCP connection to 127.0.0.1:port with Nagle off; dies on failure.
inline int Connect(int port) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) Die("socket failed");
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    Die("cannot connect to 127.0.0.1:" + std::to_string(port));
  }
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  return fd;
}

}  // namespace distri::bench

#endif  // DISTRI_BENCH_BENCH_UTIL_H_
