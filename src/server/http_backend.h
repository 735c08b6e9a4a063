// HttpBackend: the HTTP endpoint's view of the server (http::Backend),
// implemented with the Server's public API only.
//
// Reads come straight from the state machine (with lazy expiry, like GET);
// writes are encoded as log entries and proposed with Server::ProposeEntry,
// so a PUT from the dashboard is durable and replicated exactly like a SET;
// WebSocket mirrors are MirrorHub mirrors with a sink adapter. HTTP reads and
// writes count in STATS and ROOM.STATS like commands.
//
// Thread-safety: loop thread only.

#ifndef DISTRI_SERVER_HTTP_BACKEND_H_
#define DISTRI_SERVER_HTTP_BACKEND_H_

#include "http/backend.h"

namespace distri::server {

class Server;

class HttpBackend final : public http::Backend {
 public:
  explicit HttpBackend(Server* server) : server_(server) {}

  net::OutputGauge* response_gauge() override;
  net::OutputGauge* push_gauge() override;
  uint64_t response_output_limit() const override;
  int64_t NowMs() const override;
  http::Fields SiteStats() override;
  std::vector<http::Fields> ListRooms(bool with_codes) override;
  bool auth_required() const override;
  bool open_admin() const override;
  http::AuthResult Authenticate(std::string_view peer, std::string_view password) override;
  bool RoomExists(std::string_view code) override;
  http::Fields RoomStats(std::string_view code) override;
  void GatherSiteStats(http::StatsDone done) override;
  void GatherRoomStats(std::string_view code, http::StatsDone done) override;
  std::optional<http::KeyEntry> GetKey(std::string_view room, std::string_view key) override;
  uint64_t ScanKeys(std::string_view room, std::string_view prefix, uint64_t cursor, size_t limit,
                    std::vector<http::KeyEntry>* out) override;
  void SetKey(std::string_view room, std::string_view key, std::string_view value,
              int64_t expire_at_ms, http::WriteDone done) override;
  void DeleteKey(std::string_view room, std::string_view key, http::WriteDone done) override;
  void CreateRoom(std::string_view name, http::WriteDone done) override;
  void DropRoom(std::string_view code, http::WriteDone done) override;
  std::unique_ptr<http::MirrorHandle> StartMirror(
      std::string_view room, std::string_view prefix, std::optional<uint64_t> from,
      http::MirrorOutput* out, const std::function<void(const http::MirrorBegin&)>& begin) override;
  void MirrorDrained() override;
  http::ClusterView Cluster() override;
  std::vector<http::ServiceInfo> Services(std::optional<std::string_view> room,
                                          bool with_codes) override;
  void WriteMetrics(http::MetricsWriter& w) override;
  bool Ready(std::string* why) override;

 private:
  // The raft and transport series of a cluster node; nothing for a single node.
  void WriteClusterMetrics(http::MetricsWriter& w);
  void Propose(std::string_view entry, bool adds_data, std::string text, http::WriteDone done);

  Server* server_;
};

}  // namespace distri::server

#endif  // DISTRI_SERVER_HTTP_BACKEND_H_
