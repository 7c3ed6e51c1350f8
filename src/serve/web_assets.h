// src/serve/web_assets.h — the files of web/, compiled into duet (src/serve/embed_web.cmake), so
// the page is served with no network and no files beside the binary.
#pragma once

#include <cstddef>

namespace duet {

struct WebAsset {
  const char* path;  // "/index.html", "/app.js", ...
  const char* type;  // Content-Type
  const unsigned char* data;
  size_t size;
};

extern const WebAsset kWebAssets[];
extern const size_t kWebAssetCount;

}  // namespace duet
