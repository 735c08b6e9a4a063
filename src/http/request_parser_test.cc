#include "http/request_parser.h"

#include <gtest/gtest.h>

namespace distri::http {
namespace {

RequestParser::State FeedAll(RequestParser& p, std::string& buf) {
  size_t consumed = 0;
  RequestParser::State st = p.Feed(buf, &consumed);
  buf.erase(0, consumed);
  return st;
}

TEST(RequestParser, ParsesAGetWithHeadersAndQuery) {
  RequestParser p;
  std::string in =
      "GET /api/rooms/x/keys?prefix=a HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Thing: A\r\n\r\n";
  ASSERT_EQ(FeedAll(p, in), RequestParser::State::kRequest);
  Request& r = p.request();
  EXPECT_EQ(r.method, "GET");
  EXPECT_EQ(r.path, "/api/rooms/x/keys");
  EXPECT_EQ(r.query, "prefix=a");
  ASSERT_NE(r.Header("x-thing"), nullptr);
  EXPECT_EQ(*r.Header("x-thing"), "A");
  EXPECT_TRUE(r.keep_alive);
  EXPECT_TRUE(in.empty());
}

TEST(RequestParser, ByteAtATimeAndPipelined) {
  RequestParser p;
  std::string stream =
      "PUT /k HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello"
      "DELETE /k HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n";
  std::string buf;
  std::vector<Request> got;
  for (char c : stream) {
    buf.push_back(c);
    while (true) {
      RequestParser::State st = FeedAll(p, buf);
      ASSERT_NE(st, RequestParser::State::kError) << p.error_message();
      if (st != RequestParser::State::kRequest) break;
      got.push_back(std::move(p.request()));
      p.Reset();
    }
  }
  ASSERT_EQ(got.size(), 2u);
  EXPECT_EQ(got[0].method, "PUT");
  EXPECT_EQ(got[0].body, "hello");
  EXPECT_EQ(got[1].method, "DELETE");
  EXPECT_FALSE(got[1].keep_alive);
}

TEST(RequestParser, ChunkedBody) {
  RequestParser p;
  std::string in =
      "POST /x HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: "
      "chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n";
  ASSERT_EQ(FeedAll(p, in), RequestParser::State::kRequest);
  EXPECT_EQ(p.request().body, "abcde");
}

TEST(RequestParser, Limits) {
  RequestLimits limits;
  limits.max_header_bytes = 100;
  limits.max_body_bytes = 10;
  {
    RequestParser p(limits);
    std::string in = "GET / HTTP/1.1\r\nX: " + std::string(200, 'a') + "\r\n\r\n";
    EXPECT_EQ(FeedAll(p, in), RequestParser::State::kError);
    EXPECT_EQ(p.error_status(), 431);
  }
  {
    RequestParser p(limits);
    std::string in = "PUT / HTTP/1.1\r\nContent-Length: 11\r\n\r\n";
    EXPECT_EQ(FeedAll(p, in), RequestParser::State::kError);
    EXPECT_EQ(p.error_status(), 413);
  }
  {
    RequestParser p(limits);  // chunked: no length up front
    std::string in =
        "PUT / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nb\r\n01234567890\r\n0\r\n\r\n";
    EXPECT_EQ(FeedAll(p, in), RequestParser::State::kError);
    EXPECT_EQ(p.error_status(), 413);
  }
  {
    RequestParser p(limits);
    std::string in = "GET / HTTP/1.1\r\n";
    for (int i = 0; i < 150; i++) in += "A:\r\n";
    EXPECT_EQ(FeedAll(p, in), RequestParser::State::kError);
    EXPECT_EQ(p.error_status(), 431);
  }
}

TEST(RequestParser, Garbage) {
  for (std::string in :
       {"HELLO\r\n\r\n", "GET / HTTP/9.9\r\n\r\n", "GET http://x/ HTTP/1.1\r\n\r\n",
        "GET / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n"}) {
    RequestParser p;
    EXPECT_EQ(FeedAll(p, in), RequestParser::State::kError) << in;
    EXPECT_GE(p.error_status(), 400);
  }
}

TEST(RequestParser, UpgradeStopsAtTheHeaders) {
  RequestParser p;
  std::string in =
      "GET /api/rooms/x/ws HTTP/1.1\r\nHost: h\r\nConnection: keep-alive, Upgrade\r\nUpgrade: "
      "websocket\r\n"
      "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n\x81\x80";
  ASSERT_EQ(FeedAll(p, in), RequestParser::State::kRequest);
  EXPECT_TRUE(p.request().upgrade);
  EXPECT_EQ(in, "\x81\x80");  // frames stay for the WebSocket reader
}

TEST(RequestParser, ExpectContinue) {
  RequestParser p;
  std::string in =
      "PUT /k HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n";
  EXPECT_EQ(FeedAll(p, in), RequestParser::State::kNeedMore);
  EXPECT_TRUE(p.wants_continue());
  in = "abc";
  EXPECT_EQ(FeedAll(p, in), RequestParser::State::kRequest);
  EXPECT_EQ(p.request().body, "abc");
}

}  // namespace
}  // namespace distri::http
