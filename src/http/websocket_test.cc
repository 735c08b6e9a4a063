#include "http/websocket.h"

#include <gtest/gtest.h>

namespace distri::http {
namespace {

// A masked client frame.
std::string ClientFrame(uint8_t first_byte, std::string_view payload, uint32_t mask = 0x12345678) {
  std::string f;
  f.push_back(static_cast<char>(first_byte));
  size_t n = payload.size();
  if (n < 126) {
    f.push_back(static_cast<char>(0x80 | n));
  } else if (n <= 0xFFFF) {
    f.push_back(static_cast<char>(0x80 | 126));
    f.push_back(static_cast<char>(n >> 8));
    f.push_back(static_cast<char>(n & 0xFF));
  } else {
    f.push_back(static_cast<char>(0x80 | 127));
    for (int s = 56; s >= 0; s -= 8) f.push_back(static_cast<char>((uint64_t{n} >> s) & 0xFF));
  }
  uint8_t m[4] = {static_cast<uint8_t>(mask >> 24), static_cast<uint8_t>(mask >> 16),
                  static_cast<uint8_t>(mask >> 8), static_cast<uint8_t>(mask)};
  for (uint8_t b : m) f.push_back(static_cast<char>(b));
  for (size_t i = 0; i < n; i++) f.push_back(static_cast<char>(payload[i] ^ m[i & 3]));
  return f;
}

TEST(WebSocket, AcceptKeyFromTheRfc) {
  EXPECT_EQ(WsAcceptKey("dGhlIHNhbXBsZSBub25jZQ=="), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
}

TEST(WebSocket, WritesFramesOfEverySize) {
  for (size_t n : {0, 125, 126, 65535, 65536}) {
    std::string out;
    AppendWsFrame(&out, WsOpcode::kText, std::string(n, 'x'));
    EXPECT_EQ(static_cast<uint8_t>(out[0]), 0x81);
    size_t header = n < 126 ? 2 : n <= 0xFFFF ? 4 : 10;
    EXPECT_EQ(out.size(), header + n);
  }
}

TEST(WebSocket, ReadsMaskedAndFragmentedMessages) {
  WsReader r(1 << 20);
  std::string in = ClientFrame(0x01, "hel") + ClientFrame(0x89, "p") + ClientFrame(0x80, "lo") +
                   ClientFrame(0x81, std::string(70000, 'z'));
  size_t consumed = 0;
  std::string_view view = in;
  ASSERT_EQ(r.Read(view, &consumed), WsReader::State::kMessage);  // the ping, mid-message
  EXPECT_EQ(r.message().opcode, WsOpcode::kPing);
  EXPECT_EQ(r.message().payload, "p");
  view.remove_prefix(consumed);
  ASSERT_EQ(r.Read(view, &consumed), WsReader::State::kMessage);
  EXPECT_EQ(r.message().opcode, WsOpcode::kText);
  EXPECT_EQ(r.message().payload, "hello");
  view.remove_prefix(consumed);
  // The big one, a byte at a time.
  std::string buf;
  WsReader::State st = WsReader::State::kNeedMore;
  for (char c : view) {
    buf.push_back(c);
    st = r.Read(buf, &consumed);
    buf.erase(0, consumed);
    if (st != WsReader::State::kNeedMore) break;
  }
  ASSERT_EQ(st, WsReader::State::kMessage);
  EXPECT_EQ(r.message().payload.size(), 70000u);
}

TEST(WebSocket, RejectsWhatAServerMust) {
  struct Case {
    std::string frame;
    uint16_t code;
  };
  std::string unmasked = "\x81\x01x";
  std::string bad_utf8 = ClientFrame(0x81, "\xff");
  std::vector<Case> cases = {
      {unmasked, kWsCloseProtocol},
      {ClientFrame(0xC1, "x"), kWsCloseProtocol},  // RSV1 without an extension
      {ClientFrame(0x80, "x"), kWsCloseProtocol},  // continuation first
      {ClientFrame(0x09, "x"), kWsCloseProtocol},  // fragmented ping
      {ClientFrame(0x89, std::string(126, 'p')), kWsCloseProtocol},
      {ClientFrame(0x83, "x"), kWsCloseProtocol},  // reserved opcode
      {bad_utf8, kWsCloseBadData},
      {ClientFrame(0x81, std::string(2000, 'x')), kWsCloseTooBig},
      {ClientFrame(0x01, "a") + ClientFrame(0x81, "b"),
       kWsCloseProtocol},  // new message mid-fragment
  };
  for (const Case& c : cases) {
    WsReader r(1000);
    std::string_view view = c.frame;
    size_t consumed = 0;
    WsReader::State st;
    while ((st = r.Read(view, &consumed)) == WsReader::State::kMessage)
      view.remove_prefix(consumed);
    EXPECT_EQ(st, WsReader::State::kError);
    EXPECT_EQ(r.error_code(), c.code) << r.error_message();
  }
}

TEST(WebSocket, CloseFrame) {
  std::string out;
  AppendWsClose(&out, 1001, "bye");
  EXPECT_EQ(out, std::string("\x88\x05\x03\xe9"
                             "bye",
                             7));
}

}  // namespace
}  // namespace distri::http
