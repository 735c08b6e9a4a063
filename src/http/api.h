// Api: the routes of the HTTP endpoint other than the WebSocket itself —
// the JSON API (docs/http.md), /metrics, /healthz, /readyz and the embedded
// dashboard files.
//
// MatchRoute() maps a path to a route (with the room code and key decoded
// from their path segments); Api::Handle() answers it through a Backend,
// calling `respond` exactly once — at once for reads, after the entry
// applies for writes.
//
// Thread-safety: loop thread only.

#ifndef DISTRI_HTTP_API_H_
#define DISTRI_HTTP_API_H_

#include <functional>
#include <string>
#include <string_view>

#include "http/assets.h"
#include "http/backend.h"
#include "http/metrics.h"
#include "http/request_parser.h"
#include "http/response.h"
#include "http/text.h"

namespace distri::http {

struct Route {
  enum class Kind {
    kNotFound,
    kBadPath,  // a malformed percent-escape
    kAsset,
    kHealthz,
    kReadyz,
    kMetrics,
    kStats,
    kRooms,
    kRoom,
    kKeys,
    kKey,
    kRoomWs,
    kCluster,
    kServices,
  };
  Kind kind = Kind::kNotFound;
  std::string_view name = "other";  // route template, for metrics labels
  std::string code;                 // decoded room code
  std::string key;                  // decoded key
  const Asset* asset = nullptr;
};

Route MatchRoute(std::string_view path);

// The most services GET /api/services lists (the rest: "truncated": true).
inline constexpr size_t kMaxServicesListed = 1000;

// The largest page GET .../keys returns.
inline constexpr size_t kMaxKeysPerPage = 1000;

using Respond = std::function<void(Response)>;

class Api {
 public:
  // `own_metrics` appends the HTTP server's own families to /metrics.
  Api(Backend* backend, std::function<void(MetricsWriter&)> own_metrics)
      : backend_(backend), own_metrics_(std::move(own_metrics)) {}

  // REQUIRES: route == MatchRoute(req.path), route.kind != kRoomWs.
  // `show_codes`: the caller is an admin; room listings show codes, else ids.
  void Handle(const Request& req, const Route& route, bool show_codes, Respond respond);

 private:
  void Stats(Respond& respond);
  void Rooms(const Request& req, bool show_codes, Respond& respond);
  void Room(const Request& req, const Route& route, Respond& respond);
  void Keys(const Request& req, const Route& route, Respond& respond);
  void Key(const Request& req, const Route& route, Respond& respond);
  void PutKey(const Request& req, const Route& route, Respond& respond);
  void Cluster(Respond& respond);
  void Services(const Request& req, bool show_codes, Respond& respond);

  Backend* backend_;
  std::function<void(MetricsWriter&)> own_metrics_;
};

// Renders a field list as a JSON object.
void WriteFields(JsonWriter& w, const Fields& fields);
// The HTTP status for a write's error line ("NOTFOUND ..." -> 404).
int StatusForError(std::string_view error_line);
// {"error": {...}} for an error line "CODE message".
Response ErrorLineResponse(std::string_view error_line);

}  // namespace distri::http

#endif  // DISTRI_HTTP_API_H_
