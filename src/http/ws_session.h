// WsSession: the JSON protocol of GET /api/rooms/{code}/ws (docs/http.md).
//
// The same semantics as MIRROR (docs/protocol.md, "Live mirrors"): on
// connect (or on {"op":"mirror"}) the server sends a "mirror" message, then
// either "reset" + "snapshot" chunks + "ready", or (resuming FROM a revision
// still in the change history) the missed changes + "ready"; then every
// change in order as "set" / "del" / "flush". The client may also write:
// {"op":"set"|"del"|"stats"|"ping", "id": ...} gets a "result" message with
// the same id once the write has applied (after the change it caused).
//
// Thread-safety: loop thread only. Owned by its HttpConnection.

#ifndef DISTRI_HTTP_WS_SESSION_H_
#define DISTRI_HTTP_WS_SESSION_H_

#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "http/backend.h"

namespace distri::http {

class HttpConnection;
class HttpServer;

class WsSession final : public MirrorOutput {
 public:
  WsSession(HttpServer* server, HttpConnection* conn, std::string room);
  ~WsSession() override;
  WsSession(const WsSession&) = delete;
  WsSession& operator=(const WsSession&) = delete;

  // Starts (or replaces) the room's mirror.
  void Mirror(std::string_view prefix, std::optional<uint64_t> from);
  // Stops the mirror (the connection is closing).
  void StopMirror() { mirror_.reset(); }
  // One complete text message from the client.
  void OnText(std::string_view text);
  // The connection's output drained.
  void OnDrained();

  // MirrorOutput
  void Deliver(const MirrorUpdate& update) override;
  size_t unsent_bytes() const override;
  bool closed() const override;

 private:
  void Send();  // sends scratch_ as one text message
  void SendError(std::string_view id_json, std::string_view code, std::string_view message);
  void SendOutcome(std::string_view id_json, const WriteOutcome& out, bool del);

  HttpServer* server_;
  HttpConnection* conn_;
  std::string room_;
  std::unique_ptr<MirrorHandle> mirror_;
  std::string scratch_;
  std::shared_ptr<WsSession*> self_;  // weak handles for write callbacks
};

}  // namespace distri::http

#endif  // DISTRI_HTTP_WS_SESSION_H_
