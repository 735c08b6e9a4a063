// Text helpers for the HTTP endpoint: URL percent-decoding, query strings,
// UTF-8 validation, base64, and a small JSON writer.
//
// Why a JSON writer of our own next to nlohmann::json: requests are parsed
// with nlohmann (input is the hard, hostile part), but responses and the
// WebSocket's event stream are written straight into the connection's output
// buffer by JsonWriter, which allocates nothing per value and never throws.
// Keys and values in Distri are arbitrary bytes; JSON strings must be UTF-8,
// so callers check IsValidUtf8 and fall back to base64 (docs/http.md).
//
// Thread-safety: pure functions; a JsonWriter belongs to one caller.

#ifndef DISTRI_HTTP_TEXT_H_
#define DISTRI_HTTP_TEXT_H_

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace distri::http {

// Decodes %XX escapes (and '+' as space when `plus_is_space`, for query
// strings). nullopt on a malformed escape.
std::optional<std::string> PercentDecode(std::string_view s, bool plus_is_space = false);
// Encodes every byte outside [A-Za-z0-9-._~] as %XX.
std::string PercentEncode(std::string_view s);

// "a=1&b=x%20y" -> {{"a","1"},{"b","x y"}}. nullopt on a malformed escape.
std::optional<std::vector<std::pair<std::string, std::string>>> ParseQuery(std::string_view query);

bool IsValidUtf8(std::string_view s);

std::string Base64Encode(std::string_view in);
// Standard alphabet with padding; nullopt if malformed.
std::optional<std::string> Base64Decode(std::string_view in);

// Appends JSON text to a string. The caller keeps the structure well formed
// (Key before each value inside an object); commas are inserted here.
//
// Invariant: `first_` is true right after an opening bracket or a Key, so the
// next element needs no comma.
class JsonWriter {
 public:
  explicit JsonWriter(std::string* out) : out_(out) {}

  JsonWriter& BeginObject() {
    Sep();
    out_->push_back('{');
    first_ = true;
    return *this;
  }
  JsonWriter& EndObject() {
    out_->push_back('}');
    first_ = false;
    return *this;
  }
  JsonWriter& BeginArray() {
    Sep();
    out_->push_back('[');
    first_ = true;
    return *this;
  }
  JsonWriter& EndArray() {
    out_->push_back(']');
    first_ = false;
    return *this;
  }
  JsonWriter& Key(std::string_view k);
  // REQUIRES: s is valid UTF-8 (invalid bytes are replaced by U+FFFD).
  JsonWriter& String(std::string_view s);
  JsonWriter& Int(int64_t v);
  JsonWriter& Double(double v);
  JsonWriter& Bool(bool v);
  JsonWriter& Null();
  // Pre-rendered JSON.
  JsonWriter& Raw(std::string_view json);
  // Writes `name`: s if s is UTF-8, else `name`_b64: base64(s).
  JsonWriter& BytesField(std::string_view name, std::string_view s);

 private:
  void Sep() {
    if (!first_) out_->push_back(',');
    first_ = false;
  }
  std::string* out_;
  bool first_ = true;
};

// Appends `s` as a quoted JSON string (escaping ", \, control characters,
// and <, >, & so a JSON document is inert even if embedded in HTML).
void AppendJsonString(std::string_view s, std::string* out);

}  // namespace distri::http

#endif  // DISTRI_HTTP_TEXT_H_
