// src/serve/web_assets.h — the files of web/ (and Debian's Chart.js), compiled into duet
// (src/serve/embed_web.cmake), so the page and the report need no network and no files beside
// the binary.
#pragma once

#include <cstddef>

namespace duet {

struct WebAsset {
  const char* path;  // "/index.html", "/app.js", ...
  const char* type;  // Content-Type
  const unsigned char* data;
  size_t size;
};

extern const WebAsset kWebAssets[];  // the page of `duet serve` (web/index.html, app.js, style.css)
extern const size_t kWebAssetsCount;
extern const WebAsset
    kReportAssets[];  // the report's template, script and Chart.js (duet/report.h)
extern const size_t kReportAssetsCount;

}  // namespace duet
