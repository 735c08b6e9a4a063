// Connection: one TCP stream on the libuv loop, with buffered input and output.
//
// The owner (a server::Client) gets OnData() after each read and appends its
// replies to output(); Flush() writes them, trying a synchronous write first
// and falling back to uv_write for what the socket would not take. Close()
// is idempotent; OnClosed() runs once libuv has released the handle, and the
// owner may delete itself there.
//
// Thread-safety: loop thread only.

#ifndef DISTRI_NET_CONNECTION_H_
#define DISTRI_NET_CONNECTION_H_

#include <uv.h>

#include <string>

#include "net/buffer.h"

namespace distri::net {

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
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  // Accepts a pending connection from `server` and starts reading.
  int Accept(uv_stream_t* server);
  std::string PeerAddress() const;
  std::string LocalAddress() const;  // "ip:port" this side, for CLIENT LIST's laddr
  int fd() const;                    // the socket's descriptor, -1 once closed
  bool reading() const { return reading_; }

  Buffer& input() { return input_; }
  std::string& output() { return output_; }
  size_t pending_output() const { return output_.size() + in_flight_.size(); }

  // Writes buffered output. Returns false if the connection failed (closed).
  bool Flush();
  void PauseReading();
  void ResumeReading();
  // Closes after the buffered output is written.
  void CloseAfterFlush();
  void Close();
  // Closes at once with a TCP reset, discarding unsent output (also what the
  // kernel still holds), for clients cut off for not reading.
  void Reset();
  bool closing() const { return closing_; }

 private:
  static void AllocCb(uv_handle_t* h, size_t suggested, uv_buf_t* buf);
  static void ReadCb(uv_stream_t* s, ssize_t nread, const uv_buf_t* buf);
  static void WriteCb(uv_write_t* req, int status);
  static void CloseCb(uv_handle_t* h);

  uv_tcp_t tcp_;
  uv_write_t write_req_;
  Handler* handler_;
  Buffer input_;
  std::string output_;     // not yet handed to the socket
  std::string in_flight_;  // owned by an uv_write in progress
  bool writing_ = false;
  bool reading_ = false;
  bool close_after_flush_ = false;
  bool closing_ = false;
};

}  // namespace distri::net

#endif  // DISTRI_NET_CONNECTION_H_
