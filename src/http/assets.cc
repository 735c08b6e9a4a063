// Asset lookup; the table itself is generated (see embed_assets.cmake).

#include "http/assets.h"

namespace distri::http {

const Asset* FindAsset(std::string_view path) {
  if (path == "/") path = "/index.html";
  for (const Asset& a : EmbeddedAssets()) {
    if (a.path == path) return &a;
  }
  return nullptr;
}

}  // namespace distri::http
