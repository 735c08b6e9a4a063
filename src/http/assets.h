// The dashboard's files (web/), embedded in the binary at build time by
// embed_assets.cmake, so `distri serve` alone serves them.
//
// Thread-safety: immutable data.

#ifndef DISTRI_HTTP_ASSETS_H_
#define DISTRI_HTTP_ASSETS_H_

#include <span>
#include <string_view>

namespace distri::http {

struct Asset {
  std::string_view path;          // "/index.html", "/js/app.js"
  std::string_view content_type;  // from the extension
  std::string_view data;
  std::string_view etag;  // quoted, from the content's SHA-256
};

// Every embedded file (generated: web_assets.cc in the build tree).
std::span<const Asset> EmbeddedAssets();
// The asset served at `path` ("/" is /index.html), or nullptr.
const Asset* FindAsset(std::string_view path);

}  // namespace distri::http

#endif  // DISTRI_HTTP_ASSETS_H_
