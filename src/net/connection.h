// Connection: one TCP stream on the libuv loop, with buffered input and output.
//
// The owner (a server::Client) gets OnData() after each read and appends its
// replies to output(); Flush() writes them, trying a synchronous write first
// and falling back to uv_write for what the socket would not take. Close()
// is idempotent; OnClosed() runs once libuv has released the handle, and the
// owner may delete itself there.
//
// Output is a queue: sealed chunks, then the open output() string. Small
// replies append to output() (the hot path: one contiguous buffer, one
// write). A large payload that several connections send (a published
// message) is appended with AppendShared(): the queue holds a reference to
// one SharedBytes, so 40 subscribers of a 64 MiB message cost 64 MiB, not
// 2.5 GB. Flush() hands the queue to the socket as several buffers at once.
//
// Memory accounting: a Connection adds the bytes it owns (copies, not shared
// payloads, plus what its owner parks for it, set_parked()) to an
// OutputGauge, brought up to date by Flush() and SyncGauge(); a SharedBytes
// counts its own size once, in the gauge given to CountIn(). Close() and
// Reset() take the connection out of its gauge at once: what an uv_write in
// progress still refers to is freed when libuv cancels it, in the same loop
// iteration, and must not make the server cut off more clients meanwhile.
// The server sums its gauges into used memory.
//
// Thread-safety: loop thread only.

#ifndef DISTRI_NET_CONNECTION_H_
#define DISTRI_NET_CONNECTION_H_

#include <uv.h>

#include <deque>
#include <memory>
#include <string>
#include <string_view>

#include "net/buffer.h"

namespace distri::net {

// A running total of output bytes held in memory (see the file comment).
struct OutputGauge {
  uint64_t bytes = 0;
};

// Bytes written to several connections without a copy for each.
class SharedBytes {
 public:
  explicit SharedBytes(std::string bytes) : bytes_(std::move(bytes)) {}
  ~SharedBytes() {
    if (gauge_ != nullptr) gauge_->bytes -= bytes_.size();
  }
  SharedBytes(const SharedBytes&) = delete;
  SharedBytes& operator=(const SharedBytes&) = delete;

  std::string_view view() const { return bytes_; }
  size_t size() const { return bytes_.size(); }
  // The gauge these bytes are counted in, nullptr if none yet.
  const OutputGauge* gauge() const { return gauge_; }
  // Counts these bytes in `gauge` until destroyed. At most once; later calls
  // do nothing.
  void CountIn(OutputGauge* gauge) {
    if (gauge_ != nullptr) return;
    gauge_ = gauge;
    gauge_->bytes += bytes_.size();
  }

 private:
  const std::string bytes_;
  OutputGauge* gauge_ = nullptr;
};

// "ip:port" of a socket address, "?" when unknown.
std::string FormatAddress(const sockaddr_storage& addr);

class Connection {
 public:
  class Handler {
   public:
    virtual ~Handler() = default;
    virtual void OnData() = 0;         // new bytes in input()
    // EOF (the peer may still read our replies) or a read error.
    virtual void OnPeerClosed(bool eof) = 0;
    virtual void OnClosed() = 0;       // handle released; safe to delete
    virtual void OnDrained() {}        // all buffered output has been written
  };

  Connection(uv_loop_t* loop, Handler* handler);
  ~Connection();
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  // Accepts a pending connection from `server` and starts reading.
  int Accept(uv_stream_t* server);
  std::string PeerAddress() const;
  std::string LocalAddress() const;  // "ip:port" this side, for CLIENT LIST's laddr
  int fd() const;                    // the socket's descriptor, -1 once closed
  bool reading() const { return reading_; }

  Buffer& input() { return input_; }
  // The open end of the output queue: append replies here.
  std::string& output() { return output_; }
  // Queues a reference to `bytes` after everything appended so far.
  void AppendShared(std::shared_ptr<const SharedBytes> bytes);
  // Every byte not yet taken by the socket, shared payloads included.
  size_t pending_output() const { return output_.size() + queued_bytes_; }

  // The gauge this connection's own output bytes are counted in (nullptr:
  // none). Moves what is counted from the old gauge to the new one. A closing
  // connection stays out of every gauge.
  void set_gauge(OutputGauge* gauge);
  // Brings the gauge up to date with what output() holds now.
  void SyncGauge();
  // Bytes the owner holds for this connection outside the queue (replies
  // parked until earlier ones can go): counted in the gauge like output.
  void set_parked(size_t bytes);
  // What this connection counts in its gauge now.
  size_t counted_output() const { return counted_; }
  // Calls fn(const SharedBytes*) for each shared payload in the queue, once
  // per reference (in-flight ones included).
  template <typename Fn>
  void ForEachShared(Fn fn) const {
    for (const Chunk& c : queue_) {
      if (c.shared) fn(c.shared.get());
    }
  }

  // Writes buffered output. Returns false if the connection failed (closed).
  bool Flush();
  void PauseReading();
  void ResumeReading();
  // Closes after the buffered output is written.
  void CloseAfterFlush();
  // Closes at once, discarding unsent output.
  void Close();
  // Closes at once with a TCP reset, discarding unsent output (also what the
  // kernel still holds), for clients cut off for not reading.
  void Reset();
  bool closing() const { return closing_; }

 private:
  // A sealed piece of output: owned bytes, or a reference to shared ones.
  struct Chunk {
    std::string owned;
    std::shared_ptr<const SharedBytes> shared;
    size_t offset = 0;  // bytes already written
    std::string_view view() const {
      std::string_view all = shared ? shared->view() : std::string_view(owned);
      return all.substr(offset);
    }
  };

  static void AllocCb(uv_handle_t* h, size_t suggested, uv_buf_t* buf);
  static void ReadCb(uv_stream_t* s, ssize_t nread, const uv_buf_t* buf);
  static void WriteCb(uv_write_t* req, int status);
  static void CloseCb(uv_handle_t* h);

  // Moves output() to the end of the queue.
  void Seal();
  // Fills `bufs` (kMaxBufs of them) from the front of the queue for one
  // write; sets `total` to their bytes. Returns how many it filled.
  unsigned GatherQueue(uv_buf_t* bufs, size_t* total) const;
  // Drops `n` written bytes from the front of the queue.
  void ConsumeQueued(size_t n);
  // Writes as much of the queue as the socket takes now. Returns the libuv
  // error, or 0.
  int TryWriteQueue();
  // Starts an uv_write of the front of the queue. Returns the libuv error.
  int StartWrite();
  // Frees queued output that no write in progress refers to.
  void DiscardOutput();
  // The connection emptied its queue: close if asked to, else tell the owner.
  // Returns false if the connection closed.
  bool Drained();

  uv_tcp_t tcp_;
  uv_write_t write_req_;
  Handler* handler_;
  Buffer input_;
  std::string output_;          // not yet handed to the socket
  std::deque<Chunk> queue_;     // sealed output, before output_
  size_t queued_bytes_ = 0;     // unwritten bytes in queue_
  size_t queued_owned_ = 0;     // of which owned (not shared)
  size_t in_flight_chunks_ = 0; // queue_'s front chunks an uv_write refers to
  size_t in_flight_bytes_ = 0;  // and how many of their bytes it writes
  OutputGauge* gauge_ = nullptr;
  size_t counted_ = 0;          // bytes counted in gauge_
  size_t parked_ = 0;           // see set_parked()
  bool writing_ = false;
  bool reading_ = false;
  bool close_after_flush_ = false;
  bool closing_ = false;
};

}  // namespace distri::net

#endif  // DISTRI_NET_CONNECTION_H_
