// WebSocket framing; see websocket.h.

#include "http/websocket.h"

#include <openssl/sha.h>

#include "http/text.h"

namespace distri::http {

std::string WsAcceptKey(std::string_view client_key) {
  static constexpr std::string_view kGuid = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
  std::string input(client_key);
  input += kGuid;
  unsigned char digest[SHA_DIGEST_LENGTH];
  SHA1(reinterpret_cast<const unsigned char*>(input.data()), input.size(), digest);
  return Base64Encode(std::string_view(reinterpret_cast<const char*>(digest), sizeof digest));
}

void AppendWsFrame(std::string* out, WsOpcode opcode, std::string_view payload) {
  out->push_back(static_cast<char>(0x80 | static_cast<uint8_t>(opcode)));
  uint64_t n = payload.size();
  if (n < 126) {
    out->push_back(static_cast<char>(n));
  } else if (n <= 0xFFFF) {
    out->push_back(126);
    out->push_back(static_cast<char>(n >> 8));
    out->push_back(static_cast<char>(n & 0xFF));
  } else {
    out->push_back(127);
    for (int shift = 56; shift >= 0; shift -= 8)
      out->push_back(static_cast<char>((n >> shift) & 0xFF));
  }
  out->append(payload);
}

void AppendWsClose(std::string* out, uint16_t code, std::string_view reason) {
  std::string payload;
  payload.push_back(static_cast<char>(code >> 8));
  payload.push_back(static_cast<char>(code & 0xFF));
  reason = reason.substr(0, 123);  // control frames carry at most 125 bytes
  while (!reason.empty() && !IsValidUtf8(reason)) reason.remove_suffix(1);
  payload.append(reason);
  AppendWsFrame(out, WsOpcode::kClose, payload);
}

WsReader::State WsReader::Fail(uint16_t code, std::string message) {
  error_code_ = code;
  error_message_ = std::move(message);
  return State::kError;
}

WsReader::State WsReader::Read(std::string_view data, size_t* consumed) {
  *consumed = 0;
  if (error_code_ != 0) return State::kError;
  size_t pos = 0;
  while (true) {
    if (data.size() - pos < 2) return State::kNeedMore;
    auto byte = [&](size_t i) { return static_cast<uint8_t>(data[i]); };
    const uint8_t b0 = byte(pos), b1 = byte(pos + 1);
    const bool fin = b0 & 0x80;
    const uint8_t opcode = b0 & 0x0F;
    if (b0 & 0x70) return Fail(kWsCloseProtocol, "reserved bits set (no extension was negotiated)");
    if (!(b1 & 0x80)) return Fail(kWsCloseProtocol, "client frames must be masked");
    uint64_t len = b1 & 0x7F;
    size_t header = 2;
    if (len == 126) {
      if (data.size() - pos < 4) return State::kNeedMore;
      len = static_cast<uint64_t>(byte(pos + 2)) << 8 | byte(pos + 3);
      header = 4;
      if (len < 126) return Fail(kWsCloseProtocol, "non-minimal frame length");
    } else if (len == 127) {
      if (data.size() - pos < 10) return State::kNeedMore;
      len = 0;
      for (size_t i = 0; i < 8; i++) len = len << 8 | byte(pos + 2 + i);
      header = 10;
      if (len >> 63) return Fail(kWsCloseProtocol, "frame length has the top bit set");
      if (len <= 0xFFFF) return Fail(kWsCloseProtocol, "non-minimal frame length");
    }
    const bool control = opcode & 0x08;
    if (control) {
      if (!fin) return Fail(kWsCloseProtocol, "fragmented control frame");
      if (len > 125) return Fail(kWsCloseProtocol, "control frame longer than 125 bytes");
      if (opcode != 0x8 && opcode != 0x9 && opcode != 0xA)
        return Fail(kWsCloseProtocol, "unknown opcode");
    } else {
      if (opcode != 0x0 && opcode != 0x1 && opcode != 0x2)
        return Fail(kWsCloseProtocol, "unknown opcode");
      if (opcode == 0x0 && !in_fragmented_)
        return Fail(kWsCloseProtocol, "continuation without a message");
      if (opcode != 0x0 && in_fragmented_)
        return Fail(kWsCloseProtocol, "new message inside a fragmented one");
      if (partial_.size() + len > max_message_) {
        return Fail(kWsCloseTooBig,
                    "message larger than " + std::to_string(max_message_) + " bytes");
      }
    }
    if (data.size() - pos - header < 4 + len) return State::kNeedMore;
    const uint8_t* mask = reinterpret_cast<const uint8_t*>(data.data() + pos + header);
    std::string_view masked = data.substr(pos + header + 4, len);
    pos += header + 4 + len;
    *consumed = pos;

    std::string& dst = control ? message_.payload : partial_;
    if (control) dst.clear();
    size_t base = dst.size();
    dst.resize(base + masked.size());
    for (size_t i = 0; i < masked.size(); i++) {
      dst[base + i] = static_cast<char>(static_cast<uint8_t>(masked[i]) ^ mask[i & 3]);
    }
    if (control) {
      message_.opcode = static_cast<WsOpcode>(opcode);
      if (message_.opcode == WsOpcode::kClose) {
        if (message_.payload.size() == 1)
          return Fail(kWsCloseProtocol, "close frame with a 1-byte body");
        if (message_.payload.size() > 2 &&
            !IsValidUtf8(std::string_view(message_.payload).substr(2))) {
          return Fail(kWsCloseBadData, "close reason is not UTF-8");
        }
      }
      return State::kMessage;
    }
    if (opcode != 0x0) partial_opcode_ = static_cast<WsOpcode>(opcode);
    if (!fin) {
      in_fragmented_ = true;
      continue;
    }
    in_fragmented_ = false;
    message_.opcode = partial_opcode_;
    message_.payload.swap(partial_);
    partial_.clear();
    if (message_.opcode == WsOpcode::kText && !IsValidUtf8(message_.payload)) {
      return Fail(kWsCloseBadData, "text message is not UTF-8");
    }
    return State::kMessage;
  }
}

}  // namespace distri::http
