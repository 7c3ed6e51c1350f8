// duet/serve.h — `duet serve`: a SearchService over HTTP (cpp-httplib), and the drawing page.
//
//   GET  /                      the page (web/: canvas, file drop, results grid), built into duet
//   GET  /api/info              the model's domains and classes, the gallery's size, the limits
//   POST /api/search            body: an image (image/png, image/jpeg, ... or
//                               application/octet-stream), or multipart/form-data with a `query`
//                               file; ?k=10 &domain=sketch. ?like=ID (no body) searches with
//                               indexed image ID. -> {"results": [{"id", "path", "score",
//                               "class"?}], "took_ms", "cnn_ms", "search_ms", "unseen",
//                               "domain"}
//   GET  /api/image/ID          the stored thumbnail (JPEG); ?full=1 the indexed file itself
//   GET  /healthz, /metrics     liveness; Prometheus text (requests, errors, latency, index size)
//
// Bounded: a body cap (413), a length required (411), the pixel cap read from the image's header
// (413), an empty drawing refused (400), each search within timeout_s from its first byte (503),
// `workers` searches at once and twice the pixel cap of images decoding at once (the rest wait,
// within the timeout), read/write and keep-alive timeouts, k at most max_k. Every refused request
// gets a 4xx or 503 and {"error": "..."}. Files reachable: the stored thumbnails and the indexed
// paths, by row number only. One line per request on stderr.
#pragma once

#include <cstddef>
#include <memory>
#include <string>

#include "duet/service.h"

namespace duet {

struct ServeOptions {
  std::string host = "127.0.0.1";  // loopback unless told otherwise
  int port = 8080;                 // 0: any free port (the bound one is returned by bind())
  int workers = 8;                 // searches at once; 4 more threads serve the other routes
  size_t max_body = 8u << 20;      // bytes of a request body
  int max_k = 1000;                // results per query
  int timeout_s = 10;              // a search's whole work from its first byte; each read or write
  int keep_alive_s = 5;            // an idle connection is closed after this
  bool log = true;                 // one line per request on stderr
};

class HttpServer {
 public:
  HttpServer(const Retrieval& service, const ServeOptions& opt);
  ~HttpServer();
  // Binds host:port; returns the port (the chosen one for port 0). Throws Error when it cannot.
  int bind();
  // Serves until stop() (from another thread or a signal handler's thread).
  void listen();
  void stop();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace duet
