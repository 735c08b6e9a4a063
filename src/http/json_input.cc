// JSON input helpers; see json_input.h.

#include "http/json_input.h"

#include "http/text.h"

namespace distri::http {

namespace {

// The deepest nesting of [ and { outside strings.
int NestingDepth(std::string_view text) {
  int depth = 0, max_depth = 0;
  bool in_string = false;
  for (size_t i = 0; i < text.size(); i++) {
    char c = text[i];
    if (in_string) {
      if (c == '\\') {
        i++;
      } else if (c == '"') {
        in_string = false;
      }
    } else if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      if (++depth > max_depth) max_depth = depth;
    } else if (c == ']' || c == '}') {
      depth--;
    }
  }
  return max_depth;
}

}  // namespace

bool ParseJsonObject(std::string_view text, nlohmann::json* out, std::string* error) {
  if (NestingDepth(text) > kMaxJsonDepth) {
    *error = "JSON nested deeper than " + std::to_string(kMaxJsonDepth) + " levels";
    return false;
  }
  *out = nlohmann::json::parse(text.begin(), text.end(), nullptr, /*allow_exceptions=*/false);
  if (out->is_discarded()) {
    *error = "body is not valid JSON";
    return false;
  }
  if (!out->is_object()) {
    *error = "expected a JSON object";
    return false;
  }
  return true;
}

std::optional<std::string> BytesMember(const nlohmann::json& obj, std::string_view name, bool* ok,
                                       std::string* error) {
  std::string key(name);
  std::string b64_key = key + "_b64";
  auto it = obj.find(key);
  if (it != obj.end()) {
    if (!it->is_string()) {
      *ok = false;
      *error = "'" + key + "' must be a string";
      return std::nullopt;
    }
    return it->get_ref<const std::string&>();
  }
  it = obj.find(b64_key);
  if (it != obj.end()) {
    std::optional<std::string> decoded;
    if (it->is_string()) decoded = Base64Decode(it->get_ref<const std::string&>());
    if (!decoded) {
      *ok = false;
      *error = "'" + b64_key + "' must be a base64 string";
    }
    return decoded;
  }
  return std::nullopt;
}

std::optional<int64_t> IntMember(const nlohmann::json& obj, std::string_view name, bool* ok,
                                 std::string* error) {
  auto it = obj.find(std::string(name));
  if (it == obj.end() || it->is_null()) return std::nullopt;
  if (it->is_number_unsigned()) {
    if (it->get<uint64_t>() <= static_cast<uint64_t>(INT64_MAX))
      return static_cast<int64_t>(it->get<uint64_t>());
  } else if (it->is_number_integer()) {
    return it->get<int64_t>();
  }
  *ok = false;
  *error = "'" + std::string(name) + "' must be an integer";
  return std::nullopt;
}

}  // namespace distri::http
