// The Distri version, reported by --version, HELLO, INFO and STATS.
#ifndef DISTRI_VERSION_H_
#define DISTRI_VERSION_H_

namespace distri {
inline constexpr char kVersion[] = "0.1.0";
}  // namespace distri

#endif  // DISTRI_VERSION_H_
