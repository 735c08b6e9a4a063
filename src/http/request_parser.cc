// RequestParser; see request_parser.h.

#include "http/request_parser.h"

#include <cctype>

namespace distri::http {

namespace {

void LowerInPlace(std::string* s) {
  for (char& c : *s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
}

bool HeaderHasToken(std::string_view value, std::string_view token) {
  // Comma-separated, case-insensitive tokens ("keep-alive, Upgrade").
  while (!value.empty()) {
    size_t comma = value.find(',');
    std::string_view part = value.substr(0, comma);
    while (!part.empty() && (part.front() == ' ' || part.front() == '\t')) part.remove_prefix(1);
    while (!part.empty() && (part.back() == ' ' || part.back() == '\t')) part.remove_suffix(1);
    if (part.size() == token.size()) {
      bool eq = true;
      for (size_t i = 0; i < part.size() && eq; i++) {
        eq = std::tolower(static_cast<unsigned char>(part[i])) == token[i];
      }
      if (eq) return true;
    }
    if (comma == std::string_view::npos) break;
    value.remove_prefix(comma + 1);
  }
  return false;
}

}  // namespace

const std::string* Request::Header(std::string_view name) const {
  for (const auto& [n, v] : headers) {
    if (n == name) return &v;
  }
  return nullptr;
}

RequestParser::RequestParser(RequestLimits limits) : limits_(limits) {
  http_parser_settings_init(&settings_);
  settings_.on_message_begin = OnMessageBegin;
  settings_.on_url = OnUrl;
  settings_.on_header_field = OnHeaderField;
  settings_.on_header_value = OnHeaderValue;
  settings_.on_headers_complete = OnHeadersComplete;
  settings_.on_body = OnBody;
  settings_.on_message_complete = OnMessageComplete;
  http_parser_init(&parser_, HTTP_REQUEST);
  parser_.data = this;
  Reset();
}

void RequestParser::Reset() {
  request_ = Request{};
  header_bytes_ = 0;
  in_value_ = false;
  headers_done_ = false;
  expect_continue_ = false;
  complete_ = false;
  if (HTTP_PARSER_ERRNO(&parser_) == HPE_PAUSED) http_parser_pause(&parser_, 0);
}

RequestParser::State RequestParser::Feed(std::string_view data, size_t* consumed) {
  *consumed = 0;
  if (error_status_ != 0) return State::kError;
  if (complete_) return State::kRequest;
  if (data.empty()) return State::kNeedMore;
  size_t n = http_parser_execute(&parser_, &settings_, data.data(), data.size());
  *consumed = n;
  if (error_status_ != 0) return State::kError;
  enum http_errno err = HTTP_PARSER_ERRNO(&parser_);
  if (complete_) {
    // Paused in OnMessageComplete: `n` is the offset just past this message,
    // where the next Feed starts.
    return State::kRequest;
  }
  if (err != HPE_OK) {
    if (err == HPE_INVALID_VERSION) {
      Fail(505, "HTTP version not supported");
    } else if (err == HPE_HEADER_OVERFLOW) {
      Fail(431, "request headers too large");
    } else {
      Fail(400, std::string("bad request: ") + http_errno_description(err));
    }
    return State::kError;
  }
  if (parser_.upgrade && headers_done_) {
    // http-parser stops at the end of the headers of an upgrade request; the
    // rest belongs to the new protocol.
    complete_ = true;
    return State::kRequest;
  }
  return State::kNeedMore;
}

int RequestParser::Fail(int status, std::string message) {
  if (error_status_ == 0) {
    error_status_ = status;
    error_message_ = std::move(message);
  }
  return -1;  // stops http_parser_execute
}

bool RequestParser::CountHeaderBytes(size_t len) {
  header_bytes_ += len;
  return header_bytes_ <= limits_.max_header_bytes;
}

int RequestParser::OnMessageBegin(http_parser* p) {
  auto* self = static_cast<RequestParser*>(p->data);
  self->request_ = Request{};
  return 0;
}

int RequestParser::OnUrl(http_parser* p, const char* at, size_t len) {
  auto* self = static_cast<RequestParser*>(p->data);
  if (!self->CountHeaderBytes(len)) return self->Fail(431, "request line too long");
  self->request_.target.append(at, len);
  return 0;
}

int RequestParser::OnHeaderField(http_parser* p, const char* at, size_t len) {
  auto* self = static_cast<RequestParser*>(p->data);
  if (!self->CountHeaderBytes(len + 4)) return self->Fail(431, "request headers too large");
  auto& headers = self->request_.headers;
  if (self->in_value_ || headers.empty()) {
    if (headers.size() >= self->limits_.max_headers)
      return self->Fail(431, "too many request headers");
    headers.emplace_back();
    self->in_value_ = false;
  }
  headers.back().first.append(at, len);
  return 0;
}

int RequestParser::OnHeaderValue(http_parser* p, const char* at, size_t len) {
  auto* self = static_cast<RequestParser*>(p->data);
  if (!self->CountHeaderBytes(len)) return self->Fail(431, "request headers too large");
  if (self->request_.headers.empty()) return self->Fail(400, "header value without a name");
  self->in_value_ = true;
  self->request_.headers.back().second.append(at, len);
  return 0;
}

int RequestParser::OnHeadersComplete(http_parser* p) {
  auto* self = static_cast<RequestParser*>(p->data);
  Request& r = self->request_;
  if (p->http_major != 1) return self->Fail(505, "HTTP version not supported");
  r.method = http_method_str(static_cast<http_method>(p->method));
  for (auto& [name, value] : r.headers) LowerInPlace(&name);
  size_t q = r.target.find('?');
  r.path = r.target.substr(0, q);
  if (q != std::string::npos) r.query = r.target.substr(q + 1);
  if (r.path.empty() || r.path[0] != '/') return self->Fail(400, "request target must be a path");
  r.keep_alive = http_should_keep_alive(p) != 0;
  const std::string* connection = r.Header("connection");
  r.upgrade = p->upgrade && connection != nullptr && HeaderHasToken(*connection, "upgrade");
  if ((p->flags & F_CONTENTLENGTH) && p->content_length > self->limits_.max_body_bytes) {
    return self->Fail(
        413, "request body larger than " + std::to_string(self->limits_.max_body_bytes) + " bytes");
  }
  const std::string* expect = r.Header("expect");
  self->expect_continue_ = expect != nullptr && HeaderHasToken(*expect, "100-continue");
  self->headers_done_ = true;
  return 0;
}

int RequestParser::OnBody(http_parser* p, const char* at, size_t len) {
  auto* self = static_cast<RequestParser*>(p->data);
  if (self->request_.body.size() + len > self->limits_.max_body_bytes) {
    return self->Fail(
        413, "request body larger than " + std::to_string(self->limits_.max_body_bytes) + " bytes");
  }
  self->request_.body.append(at, len);
  return 0;
}

int RequestParser::OnMessageComplete(http_parser* p) {
  auto* self = static_cast<RequestParser*>(p->data);
  self->complete_ = true;
  // Stop after this message: the next one is parsed after this one is answered.
  http_parser_pause(p, 1);
  return 0;
}

}  // namespace distri::http
