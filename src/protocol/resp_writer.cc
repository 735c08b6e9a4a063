// ReplyWriter: RESP2/RESP3 reply encoding; see resp_writer.h.
//
// Every reply element is built with at most a few appends to the output
// string, headers in a small stack buffer first, so writing a GET reply costs
// two appends and no allocation once the output buffer has grown.

#include "protocol/resp_writer.h"

#include <charconv>
#include <cmath>
#include <cstring>

#include "base/logging.h"

namespace distri::protocol {

namespace {

constexpr std::string_view kCrlf = "\r\n";

// Shortest round-trip text for d; "inf", "-inf", "nan" for the specials.
// Returns the length written into buf.
size_t FormatDouble(double d, char (&buf)[32]) {
  if (std::isnan(d)) {
    std::memcpy(buf, "nan", 3);
    return 3;
  }
  if (std::isinf(d)) {
    if (d > 0) {
      std::memcpy(buf, "inf", 3);
      return 3;
    }
    std::memcpy(buf, "-inf", 4);
    return 4;
  }
  return static_cast<size_t>(std::to_chars(buf, buf + sizeof buf, d).ptr - buf);
}

}  // namespace

ReplyWriter::ReplyWriter(std::string* out, int protocol) : out_(out), resp3_(protocol == 3) {
  CHECK(out != nullptr);
  CHECK(protocol == 2 || protocol == 3) << "protocol " << protocol;
}

void ReplyWriter::set_protocol(int p) {
  CHECK(p == 2 || p == 3) << "protocol " << p;
  resp3_ = p == 3;
}

void ReplyWriter::Header(char type, int64_t n) {
  if (!Fits(24)) return;
  char buf[24];  // type, 20 chars for any int64, CRLF
  buf[0] = type;
  char* end = std::to_chars(buf + 1, buf + sizeof buf - 2, n).ptr;
  *end++ = '\r';
  *end++ = '\n';
  out_->append(buf, end);
}

void ReplyWriter::Line(char type, std::string_view s) {
  if (!Fits(s.size() + 3)) return;
  const size_t start = out_->size();
  out_->push_back(type);
  out_->append(s);
  // Rare: messages built from user input may hold CR/LF. Fix them in place.
  if (s.find_first_of(kCrlf) != std::string_view::npos) {
    for (size_t i = start + 1; i < out_->size(); ++i) {
      char& c = (*out_)[i];
      if (c == '\r' || c == '\n') c = ' ';
    }
  }
  out_->append(kCrlf);
}

void ReplyWriter::Ok() { out_->append("+OK\r\n", 5); }

void ReplyWriter::Simple(std::string_view s) { Line('+', s); }

void ReplyWriter::Error(std::string_view msg) { Line('-', msg); }

void ReplyWriter::Integer(int64_t v) { Header(':', v); }

void ReplyWriter::Bulk(std::string_view s) {
  if (!Fits(s.size() + 26)) return;  // header, payload, CRLF
  Header('$', static_cast<int64_t>(s.size()));
  out_->append(s);
  out_->append(kCrlf);
}

void ReplyWriter::BulkHeader(size_t len) { Header('$', static_cast<int64_t>(len)); }

void ReplyWriter::Null() {
  if (resp3_) {
    out_->append("_\r\n", 3);
  } else {
    out_->append("$-1\r\n", 5);
  }
}

void ReplyWriter::NullArray() {
  if (resp3_) {
    out_->append("_\r\n", 3);
  } else {
    out_->append("*-1\r\n", 5);
  }
}

void ReplyWriter::Array(size_t n) { Header('*', static_cast<int64_t>(n)); }

void ReplyWriter::Map(size_t pairs) {
  if (resp3_) {
    Header('%', static_cast<int64_t>(pairs));
  } else {
    Header('*', static_cast<int64_t>(pairs * 2));
  }
}

void ReplyWriter::Set(size_t n) { Header(resp3_ ? '~' : '*', static_cast<int64_t>(n)); }

void ReplyWriter::Push(size_t n) { Header(resp3_ ? '>' : '*', static_cast<int64_t>(n)); }

void ReplyWriter::Double(double d) {
  char buf[32];
  const size_t len = FormatDouble(d, buf);
  if (resp3_) {
    out_->push_back(',');
    out_->append(buf, len);
    out_->append(kCrlf);
  } else {
    Bulk(std::string_view(buf, len));
  }
}

void ReplyWriter::Boolean(bool b) {
  if (resp3_) {
    out_->append(b ? "#t\r\n" : "#f\r\n", 4);
  } else {
    out_->append(b ? ":1\r\n" : ":0\r\n", 4);
  }
}

void ReplyWriter::Verbatim(std::string_view fmt3, std::string_view text) {
  CHECK(fmt3.size() == 3) << "verbatim format must be 3 bytes";
  if (!resp3_) {
    Bulk(text);
    return;
  }
  if (!Fits(text.size() + 30)) return;
  Header('=', static_cast<int64_t>(text.size() + 4));
  out_->append(fmt3);
  out_->push_back(':');
  out_->append(text);
  out_->append(kCrlf);
}

void ReplyWriter::BigNumber(std::string_view digits) {
  if (resp3_) {
    Line('(', digits);
  } else {
    Bulk(digits);
  }
}

}  // namespace distri::protocol
