// libFuzzer target: untrusted bytes through the HTTP request parser (split
// at an input-chosen point, so incremental parsing is exercised), the
// WebSocket frame reader, and the JSON body reader. Any crash, sanitizer
// report or broken invariant (consuming more than was given) is a bug.

#include <cstddef>
#include <cstdint>
#include <string_view>

#include "base/logging.h"
#include "http/json_input.h"
#include "http/request_parser.h"
#include "http/text.h"
#include "http/websocket.h"

using namespace distri::http;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view in(reinterpret_cast<const char*>(data), size);
  size_t split = size > 0 ? data[0] % (size + 1) : 0;

  RequestLimits limits;
  limits.max_header_bytes = 4096;
  limits.max_body_bytes = 65536;
  RequestParser parser(limits);
  std::string buffer;
  for (std::string_view part : {in.substr(0, split), in.substr(split)}) {
    buffer.append(part);
    while (true) {
      size_t consumed = 0;
      RequestParser::State st = parser.Feed(buffer, &consumed);
      CHECK(consumed <= buffer.size());
      buffer.erase(0, consumed);
      if (st != RequestParser::State::kRequest) break;
      Request& r = parser.request();
      (void)ParseQuery(r.query);
      (void)PercentDecode(r.path);
      if (r.upgrade) break;
      parser.Reset();
    }
  }

  WsReader reader(4096);
  std::string_view frames = in;
  while (true) {
    size_t consumed = 0;
    WsReader::State st = reader.Read(frames, &consumed);
    CHECK(consumed <= frames.size());
    frames.remove_prefix(consumed);
    if (st != WsReader::State::kMessage) break;
  }

  nlohmann::json obj;
  std::string error;
  if (ParseJsonObject(in, &obj, &error)) {
    bool ok = true;
    (void)BytesMember(obj, "value", &ok, &error);
    (void)IntMember(obj, "ttl_ms", &ok, &error);
  }
  std::string out;
  AppendJsonString(in, &out);
  return 0;
}
