// Reading JSON from untrusted clients (request bodies, WebSocket messages).
//
// nlohmann::json parses; this file adds what hostile input needs: a nesting
// limit checked before parsing (so a body of 8 MiB of '[' costs a scan, not
// a deep tree), no exceptions escaping, and the bytes-field convention of
// docs/http.md ("value" as a UTF-8 string, or "value_b64" as base64).
//
// Thread-safety: pure functions.

#ifndef DISTRI_HTTP_JSON_INPUT_H_
#define DISTRI_HTTP_JSON_INPUT_H_

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>

namespace distri::http {

inline constexpr int kMaxJsonDepth = 32;

// Parses `text` as a JSON object. False with *error set otherwise.
bool ParseJsonObject(std::string_view text, nlohmann::json* out, std::string* error);

// Field `name` as bytes: a string under `name`, or base64 under `name`_b64.
// Returns nullopt if absent; false in *ok (with *error) if malformed.
std::optional<std::string> BytesMember(const nlohmann::json& obj, std::string_view name, bool* ok,
                                       std::string* error);
// Integer field; nullopt if absent; *ok=false if present but not an integer.
std::optional<int64_t> IntMember(const nlohmann::json& obj, std::string_view name, bool* ok,
                                 std::string* error);

}  // namespace distri::http

#endif  // DISTRI_HTTP_JSON_INPUT_H_
