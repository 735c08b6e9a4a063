// WebSocket (RFC 6455) framing for the server side: the handshake's accept
// key, a frame reader that reassembles messages, and a frame writer.
//
// The reader is pure (no I/O): Read(bytes, &consumed) yields one complete
// message or control frame at a time. It enforces what a server must:
// client frames are masked, control frames are short and unfragmented,
// continuation frames follow a started message, text is valid UTF-8, and a
// message is no larger than the limit. A violation is a ProtocolError with
// the close code to send (1002 protocol, 1007 bad data, 1009 too big).
//
// Thread-safety: none; one per connection.

#ifndef DISTRI_HTTP_WEBSOCKET_H_
#define DISTRI_HTTP_WEBSOCKET_H_

#include <cstdint>
#include <string>
#include <string_view>

namespace distri::http {

enum class WsOpcode : uint8_t {
  kContinuation = 0x0,
  kText = 0x1,
  kBinary = 0x2,
  kClose = 0x8,
  kPing = 0x9,
  kPong = 0xA,
};

// Close codes used here.
inline constexpr uint16_t kWsCloseNormal = 1000;
inline constexpr uint16_t kWsCloseGoingAway = 1001;
inline constexpr uint16_t kWsCloseProtocol = 1002;
inline constexpr uint16_t kWsCloseBadData = 1007;
inline constexpr uint16_t kWsClosePolicy = 1008;
inline constexpr uint16_t kWsCloseTooBig = 1009;

// Sec-WebSocket-Accept for a client's Sec-WebSocket-Key.
std::string WsAcceptKey(std::string_view client_key);

// Appends one unmasked, final frame.
void AppendWsFrame(std::string* out, WsOpcode opcode, std::string_view payload);
// Appends a close frame with a status code and a reason (trimmed to fit).
void AppendWsClose(std::string* out, uint16_t code, std::string_view reason);

struct WsMessage {
  WsOpcode opcode = WsOpcode::kText;  // kText, kBinary, kClose, kPing or kPong
  std::string payload;                // unmasked; for kClose: code (2 bytes) + reason
};

class WsReader {
 public:
  enum class State { kNeedMore, kMessage, kError };

  explicit WsReader(size_t max_message_bytes) : max_message_(max_message_bytes) {}

  // Reads at most one message from `data`; *consumed is what was used.
  State Read(std::string_view data, size_t* consumed);
  // REQUIRES: the last Read returned kMessage. Valid until the next Read.
  WsMessage& message() { return message_; }
  // After kError.
  uint16_t error_code() const { return error_code_; }
  const std::string& error_message() const { return error_message_; }

 private:
  State Fail(uint16_t code, std::string message);

  size_t max_message_;
  std::string partial_;  // fragments of a data message so far
  WsOpcode partial_opcode_ = WsOpcode::kText;
  bool in_fragmented_ = false;
  WsMessage message_;
  uint16_t error_code_ = 0;
  std::string error_message_;
};

}  // namespace distri::http

#endif  // DISTRI_HTTP_WEBSOCKET_H_
