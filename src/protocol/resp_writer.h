// ReplyWriter: encodes server replies as RESP2 or RESP3 into a std::string.
//
// Command handlers (src/commands) get a ReplyWriter over the connection's
// output buffer and call one method per reply element; the connection code
// (src/net) owns the buffer and writes it to the socket. The protocol version
// is the one the client chose with HELLO, so handlers write Map(), Set(),
// Double(), Boolean() and the writer picks the RESP2 fallback when needed
// (map -> flat array, double -> bulk string, boolean -> integer, ...).
// Aggregates are written as a header (Array(n), Map(pairs), ...) followed by
// exactly that many elements; the writer does not check the count.
//
// No I/O, no allocation beyond growing the output string; integers are
// formatted with std::to_chars. Wire details: docs/resp.md.
//
// A writer may be given a limit on the size of its output string (the
// client's output limit): an element that would pass it is not written, the
// writer becomes overflowed() and writes nothing more, so a handler building
// a huge reply (MGET of many large values) stops costing memory at once; the
// caller then discards the output and cuts the client off.
//
// Thread-safety: none; one writer per connection, used from its loop thread.

#ifndef DISTRI_PROTOCOL_RESP_WRITER_H_
#define DISTRI_PROTOCOL_RESP_WRITER_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace distri::protocol {

class ReplyWriter {
 public:
  // REQUIRES: out != nullptr, protocol is 2 or 3. `out` must outlive the writer.
  ReplyWriter(std::string* out, int protocol);

  // REQUIRES: p is 2 or 3 (HELLO validates what the client asked for).
  void set_protocol(int p);
  int protocol() const { return resp3_ ? 3 : 2; }
  std::string* out() const { return out_; }
  // Writes nothing that would make out()->size() exceed `max_size`.
  void set_limit(size_t max_size) { limit_ = max_size; }
  // Bytes that may still be written before the limit.
  size_t room() const { return limit_ > out_->size() ? limit_ - out_->size() : 0; }
  // An element was dropped for the limit: the output is incomplete.
  bool overflowed() const { return overflowed_; }

  void Ok();                          // +OK
  void Simple(std::string_view s);    // +s (CR/LF in s replaced by spaces)
  // -msg; msg already has its code prefix ("ERR ...", "WRONGTYPE ...").
  // CR/LF replaced by spaces, so a message can never break framing.
  void Error(std::string_view msg);
  void Integer(int64_t v);            // :v
  void Bulk(std::string_view s);      // $len\r\ns
  // The "$len\r\n" of a bulk string whose bytes and "\r\n" the caller sends
  // itself (a shared payload; see net::Connection::AppendShared).
  void BulkHeader(size_t len);
  void Null();                        // RESP3 "_", RESP2 "$-1"
  void NullArray();                   // RESP3 "_", RESP2 "*-1"
  void Array(size_t n);               // *n
  void Map(size_t pairs);             // RESP3 %n, RESP2 *2n
  void Set(size_t n);                 // RESP3 ~n, RESP2 *n
  void Push(size_t n);                // RESP3 >n, RESP2 *n
  // RESP3 ,d ("inf", "-inf", "nan"); RESP2 a bulk string of the same text,
  // as Redis does. Uses the shortest text that reads back as the same double.
  void Double(double d);
  void Boolean(bool b);               // RESP3 #t/#f, RESP2 :1/:0
  // RESP3 =len\r\nfmt:text, RESP2 a bulk string of text alone.
  // REQUIRES: fmt3.size() == 3 ("txt" or "mkd").
  void Verbatim(std::string_view fmt3, std::string_view text);
  // RESP3 (digits, RESP2 a bulk string of digits. REQUIRES: digits is an
  // optional '-' followed by decimal digits.
  void BigNumber(std::string_view digits);

 private:
  // Appends "<type><n>\r\n" in one append.
  void Header(char type, int64_t n);
  // False (and overflowed from now on) if `n` more bytes would pass the limit.
  bool Fits(size_t n) {
    if (out_->size() + n <= limit_ && !overflowed_) [[likely]] return true;
    overflowed_ = true;
    return false;
  }
  // Appends "<type><s>\r\n" with CR/LF in s turned into spaces.
  void Line(char type, std::string_view s);

  std::string* out_;
  bool resp3_;
  bool overflowed_ = false;
  size_t limit_ = SIZE_MAX;
};

}  // namespace distri::protocol

#endif  // DISTRI_PROTOCOL_RESP_WRITER_H_
