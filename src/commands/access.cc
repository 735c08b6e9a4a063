// Room ids, admin checks and password comparison; see access.h.

#include "commands/access.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "base/logging.h"

namespace distri::commands {

namespace {

constexpr size_t kDigestBytes = 32;

void Sha256(std::string_view prefix, std::string_view data, unsigned char out[kDigestBytes]) {
  std::string input;
  input.reserve(prefix.size() + data.size());
  input.append(prefix).append(data);
  unsigned int len = 0;
  CHECK(EVP_Digest(input.data(), input.size(), out, &len, EVP_sha256(), nullptr) == 1 &&
        len == kDigestBytes);
}

}  // namespace

bool IsAdmin(const ServerSettings& settings, const Session& session) {
  if (!settings.requirepass.empty()) return session.authenticated;
  return settings.open_admin;
}

std::string RoomId(std::string_view code) {
  if (state::IsBuiltinRoom(code)) return std::string(code);
  unsigned char digest[kDigestBytes];
  Sha256(std::string_view("distri-room-id\0", 15), code, digest);
  static const char kHex[] = "0123456789abcdef";
  std::string id = "r-";
  for (int i = 0; i < 8; i++) {
    id.push_back(kHex[digest[i] >> 4]);
    id.push_back(kHex[digest[i] & 15]);
  }
  return id;
}

std::string_view PublicRoomName(std::string_view code, std::string_view name,
                                const std::string& id) {
  return name == code ? std::string_view(id) : name;
}

bool PasswordEquals(std::string_view given, std::string_view want) {
  unsigned char a[kDigestBytes], b[kDigestBytes];
  Sha256({}, given, a);
  Sha256({}, want, b);
  return CRYPTO_memcmp(a, b, sizeof a) == 0;
}

}  // namespace distri::commands
