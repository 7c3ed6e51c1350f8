// HttpServer: the routes of duet/serve.h on cpp-httplib, with their limits, metrics and log.
#include <httplib.h>
#include <sys/socket.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>

#include "duet/error.h"
#include "duet/image.h"
#include "duet/serve.h"
#include "serve/search_request.h"
#include "serve/web_assets.h"

namespace duet {

namespace {
using Clock = std::chrono::steady_clock;
constexpr int kSpareThreads =
    4;  // connections served beside the searches (health, metrics, images)

void json_reply(httplib::Response& res, const nlohmann::json& j, int status = 200) {
  res.status = status;
  res.set_content(j.dump(), "application/json");
}

// The route a request is counted under (a bounded set, whatever paths clients send).
std::string route_of(const std::string& path) {
  if (path.rfind("/api/image/", 0) == 0) return "/api/image";
  for (const char* r : {"/api/search", "/api/info", "/api/shard", "/healthz", "/metrics"})
    if (path == r) return r;
  for (size_t i = 0; i < kWebAssetsCount; ++i)
    if (path == kWebAssets[i].path ||
        (path == "/" && std::string(kWebAssets[i].path) == "/index.html"))
      return "page";
  return "other";
}

// Prometheus counters and a latency histogram per route.
class Metrics {
 public:
  static constexpr std::array<double, 11> kBuckets{0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                                                   0.5,   1,    2.5,   5,    10};
  void record(const std::string& route, int status, double seconds) {
    std::lock_guard<std::mutex> lock(mu_);
    ++requests_[{route, status}];
    if (status >= 400) ++errors_[route];
    auto& h = latency_[route];
    for (size_t b = 0; b < kBuckets.size(); ++b) h.counts[b] += seconds <= kBuckets[b];
    ++h.count;
    h.sum += seconds;
  }
  // index_bytes: what the served index holds in memory (constant, counted once by the caller).
  std::string text(int64_t images, double index_bytes) const {
    std::lock_guard<std::mutex> lock(mu_);
    std::string out;
    char line[256];
    out +=
        "# HELP duet_http_requests_total Requests answered, by route and status code.\n"
        "# TYPE duet_http_requests_total counter\n";
    for (const auto& [key, n] : requests_) {
      std::snprintf(line, sizeof line, "duet_http_requests_total{route=\"%s\",code=\"%d\"} %lld\n",
                    key.first.c_str(), key.second, static_cast<long long>(n));
      out += line;
    }
    out +=
        "# HELP duet_http_errors_total Requests answered with a 4xx or 5xx status.\n"
        "# TYPE duet_http_errors_total counter\n";
    for (const auto& [route, n] : errors_) {
      std::snprintf(line, sizeof line, "duet_http_errors_total{route=\"%s\"} %lld\n", route.c_str(),
                    static_cast<long long>(n));
      out += line;
    }
    out +=
        "# HELP duet_http_request_duration_seconds Time from routing a request to its answer.\n"
        "# TYPE duet_http_request_duration_seconds histogram\n";
    for (const auto& [route, h] : latency_) {
      for (size_t b = 0; b < kBuckets.size(); ++b) {
        std::snprintf(line, sizeof line,
                      "duet_http_request_duration_seconds_bucket{route=\"%s\",le=\"%g\"} %lld\n",
                      route.c_str(), kBuckets[b], static_cast<long long>(h.counts[b]));
        out += line;
      }
      std::snprintf(line, sizeof line,
                    "duet_http_request_duration_seconds_bucket{route=\"%s\",le=\"+Inf\"} %lld\n"
                    "duet_http_request_duration_seconds_sum{route=\"%s\"} %.6f\n"
                    "duet_http_request_duration_seconds_count{route=\"%s\"} %lld\n",
                    route.c_str(), static_cast<long long>(h.count), route.c_str(), h.sum,
                    route.c_str(), static_cast<long long>(h.count));
      out += line;
    }
    std::snprintf(
        line, sizeof line,
        "# HELP duet_index_images Images in the served index.\n# TYPE duet_index_images gauge\n"
        "duet_index_images %lld\n"
        "# HELP duet_index_bytes Bytes of the served index held in memory (vectors, thumbnails, "
        "paths).\n"
        "# TYPE duet_index_bytes gauge\nduet_index_bytes %.0f\n",
        static_cast<long long>(images), index_bytes);
    out += line;
    return out;
  }

 private:
  struct Histogram {
    std::array<int64_t, kBuckets.size()> counts{};
    int64_t count = 0;
    double sum = 0;
  };
  mutable std::mutex mu_;
  std::map<std::pair<std::string, int>, int64_t> requests_;
  std::map<std::string, int64_t> errors_;
  std::map<std::string, Histogram> latency_;
};

// When the worker thread began the request it is on (set before routing, read by the logger).
thread_local Clock::time_point t_request_start;
thread_local bool t_request_started = false;

// A counting semaphore whose takers ask for different amounts, waiting until a deadline at most.
// The server keeps two: searches at once (1 each, --workers in all), so the pool has threads to
// spare for /healthz, /metrics and thumbnails while every search is busy; and the pixels of the
// query images being decoded and embedded (each its header's count, twice the pixel cap in all),
// so eight images at the cap decode two at a time and the server's memory stays bounded, while
// drawings of a few hundred thousand pixels never wait for each other.
class Budget {
 public:
  explicit Budget(int64_t capacity) : capacity_(capacity), free_(capacity) {}
  // Takes min(amount, capacity), waiting until the deadline at most (then TimedOut, naming `what`).
  int64_t take(int64_t amount, const Deadline& d, const char* what) {
    amount = std::min(amount, capacity_);
    std::unique_lock<std::mutex> lock(mu_);
    if (!cv_.wait_until(lock, d.at, [&] { return free_ >= amount; })) d.expired(what);
    free_ -= amount;
    return amount;
  }
  void give(int64_t amount) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      free_ += amount;
    }
    cv_.notify_all();
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  const int64_t capacity_;
  int64_t free_;
};

// What a Budget lent, given back when the request ends however it ends.
struct Lease {
  Budget& budget;
  int64_t amount;
  ~Lease() { budget.give(amount); }
};
}  // namespace

struct HttpServer::Impl {
  const Retrieval& svc;
  ServeOptions opt;
  httplib::Server server;
  Metrics metrics;
  mutable Budget searches{opt.workers};
  mutable Budget pixels{2 * max_image_pixels()};
  double index_bytes = 0;  // vectors, thumbnails and paths held in memory
  Impl(const Retrieval& s, const ServeOptions& o) : svc(s), opt(o), index_bytes(s.memory_bytes()) {}

  nlohmann::json answer_json(const Retrieval::Answer& a, const std::string& domain,
                             double took_ms) const {
    nlohmann::json results = nlohmann::json::array();
    for (const Retrieval::Hit& h : a.hits) {
      nlohmann::json r{{"id", h.id}, {"path", h.path}, {"score", h.score}};
      if (!h.cls.empty()) r["class"] = h.cls;
      results.push_back(std::move(r));
    }
    nlohmann::json j{{"results", std::move(results)}, {"took_ms", took_ms}, {"cnn_ms", a.cnn_ms},
                     {"search_ms", a.search_ms},      {"unseen", a.unseen}, {"domain", domain}};
    // A front over shards says when some did not answer in time: the results are then of the
    // others.
    j["partial"] = a.partial;
    j["missing"] = a.missing;
    return j;
  }

  void search(const httplib::Request& req, httplib::Response& res) const {
    const auto t0 = Clock::now();
    const SearchRequest q = parse_search_request(req, opt.max_k, svc.size());
    Retrieval::Answer a;
    std::string domain;
    if (q.like >= 0) {
      domain = svc.model().info().gallery_domain;
      a = svc.search_row(q.like, q.k);
    } else {
      domain = svc.query_domain(q.domain);  // an unknown one: Error, hence 400
      // The request's whole work, from its first byte read, ends within --timeout.
      const Deadline deadline{(t_request_started ? t_request_start : t0) +
                              std::chrono::seconds(opt.timeout_s)};
      const ImageHeader h =
          checked_header(q.image, "query");  // not an image, or too large: refused unread
      const Lease slot{searches, searches.take(1, deadline, "waiting for a free search slot")};
      const Lease px{pixels, pixels.take(h.width * h.height, deadline,
                                         "waiting to decode (other large images first)")};
      a = svc.search_image(q.image, domain, q.k, deadline);
    }
    json_reply(res,
               answer_json(a, domain,
                           std::chrono::duration<double, std::milli>(Clock::now() - t0).count()));
  }

  void image(const httplib::Request& req, httplib::Response& res) const {
    const int64_t row = parse_int(req.matches[1], 0, svc.size() - 1, "image id", 404);
    const bool full = req.has_param("full") && req.get_param_value("full") != "0";
    // Only ever a path the index holds, by row number: nothing else on disk is reachable.
    auto [bytes, type] = svc.image(row, full);
    if (!full) res.set_header("Cache-Control", "max-age=3600");
    res.set_content(bytes, type);
  }

  // What the canvas queries: the first query domain of the drawing kind (strokes on white, as
  // drawn), else the first query domain.
  static std::string draw_domain(const ModelInfo& m) {
    for (const auto& d : m.query_domains)
      if (m.kinds.count(d) && m.kinds.at(d) == DomainKind::Drawing) return d;
    return m.query_domains.at(0);
  }

  nlohmann::json info() const {
    const ModelInfo& m = svc.model().info();
    nlohmann::json kinds = nlohmann::json::object();
    for (const auto& [domain, kind] : m.kinds) kinds[domain] = kind_name(kind);
    nlohmann::json j{{"images", svc.size()},
                     {"domains", svc.model().domains()},
                     {"query_domains", m.query_domains},
                     {"gallery_domain", m.gallery_domain},
                     {"kinds", kinds},
                     {"draw_domain", draw_domain(m)},
                     {"classes", m.classes},
                     {"model", {{"config", m.config}, {"hash", m.hash}, {"dir", m.dir}}},
                     {"index_type", svc.index_type()},
                     {"max_k", opt.max_k},
                     {"max_body", opt.max_body},
                     {"max_pixels", max_image_pixels()}};
    if (const GalleryShard* shard = svc.shard()) {
      const GalleryShard& s = *shard;
      j["shard"] = {{"index", s.index}, {"of", s.of}, {"offset", s.offset}, {"total", s.total}};
      j["graph"] = !s.start.empty();
    }
    return j;
  }

  void routes() {
    for (size_t i = 0; i < kWebAssetsCount; ++i) {
      const WebAsset& a = kWebAssets[i];
      auto serve = [&a](const httplib::Request&, httplib::Response& res) {
        res.set_content(reinterpret_cast<const char*>(a.data), a.size, a.type);
      };
      server.Get(a.path, serve);
      if (std::string(a.path) == "/index.html") server.Get("/", serve);
    }
    server.Get("/api/info", [this](const httplib::Request&, httplib::Response& res) {
      json_reply(res, info());
    });
    server.Post("/api/search",
                [this](const httplib::Request& q, httplib::Response& r) { search(q, r); });
    server.Get("/api/search",
               [this](const httplib::Request& q, httplib::Response& r) { search(q, r); });
    server.Get(R"(/api/image/(\d+))",
               [this](const httplib::Request& q, httplib::Response& r) { image(q, r); });
    if (svc.shard()) {
      server.Post("/api/shard", [this](const httplib::Request& q, httplib::Response& r) {
        r.set_content(svc.shard_reply(q.body), "application/json");
      });
    }
    server.Get("/healthz", [this](const httplib::Request&, httplib::Response& res) {
      json_reply(res, {{"ok", true}, {"images", svc.size()}});
    });
    server.Get("/metrics", [this](const httplib::Request&, httplib::Response& res) {
      res.set_content(metrics.text(svc.size(), index_bytes), "text/plain; version=0.0.4");
    });
  }

  void limits() {
    // `workers` searches at once (Slots) and a few threads beside them for everything else.
    const size_t threads = static_cast<size_t>(opt.workers) + kSpareThreads;
    server.new_task_queue = [threads] { return new httplib::ThreadPool(threads); };
    server.set_payload_max_length(opt.max_body);
    // Without it a client's body written after its headers waits for the delayed ACK (40 ms).
    server.set_tcp_nodelay(true);
    // httplib's default also sets SO_REUSEPORT, which lets a second server bind a port in use and
    // take half its connections; a busy port must be an error instead.
    server.set_socket_options([](socket_t sock) {
      int yes = 1;
      setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof yes);
    });
    server.set_read_timeout(opt.timeout_s, 0);
    server.set_write_timeout(opt.timeout_s, 0);
    server.set_keep_alive_timeout(opt.keep_alive_s);
    server.set_keep_alive_max_count(100);
    server.set_pre_routing_handler([](const httplib::Request& req, httplib::Response& res) {
      t_request_start = Clock::now();
      t_request_started = true;
      // Runs before httplib reads a body: a POST that says neither its length nor that it is
      // chunked would be read until the client closes or --timeout passes. Refused at once.
      if ((req.method == "POST" || req.method == "PUT") && !req.has_header("Content-Length") &&
          !req.has_header("Transfer-Encoding")) {
        json_reply(res,
                   {{"error", "a " + req.method + " needs a Content-Length (or a chunked body)"}},
                   411);
        res.set_header("Connection", "close");
        return httplib::Server::HandlerResponse::Handled;
      }
      return httplib::Server::HandlerResponse::Unhandled;
    });
    server.set_exception_handler(
        [](const httplib::Request&, httplib::Response& res, std::exception_ptr ep) {
          int status = 500;
          std::string what = "internal error";
          try {
            std::rethrow_exception(ep);
          } catch (const HttpError& e) {
            status = e.status, what = e.what();
          } catch (const ImageTooLarge& e) {
            status = 413, what = e.what();
          } catch (const NotFound& e) {
            status = 404, what = e.what();
          } catch (const Unavailable& e) {
            status = 503, what = e.what();
          } catch (const TimedOut& e) {
            status = 503, what = e.what();
          } catch (const Error& e) {
            status = 400, what = e.what();
          } catch (const std::exception& e) {
            std::fprintf(stderr, "duet serve: internal error: %s\n", e.what());
          }
          json_reply(res, {{"error", what}}, status);
        });
    // Refusals httplib makes itself (no route, body too large, unparsable request) get the same
    // JSON body as ours.
    const size_t max_body = opt.max_body;
    server.set_error_handler(httplib::Server::HandlerWithResponse(
        [max_body](const httplib::Request& req, httplib::Response& res) {
          if (!res.body.empty()) return httplib::Server::HandlerResponse::Unhandled;
          std::string what =
              res.status == 400
                  ? "malformed request (bad request line, headers, multipart or chunked body)"
                  : "refused (HTTP " + std::to_string(res.status) + ")";
          if (res.status == 404) what = "no such route: " + req.method + " " + req.path;
          if (res.status == 413) what = "request body over " + std::to_string(max_body) + " bytes";
          json_reply(res, {{"error", what}}, res.status);
          return httplib::Server::HandlerResponse::Handled;
        }));
    const bool log = opt.log;
    server.set_logger([this, log](const httplib::Request& req, const httplib::Response& res) {
      const double s = t_request_started
                           ? std::chrono::duration<double>(Clock::now() - t_request_start).count()
                           : 0;
      t_request_started = false;
      metrics.record(route_of(req.path), res.status, s);
      if (log)
        std::fprintf(stderr, "duet serve: %s %s %s %d %zuB %.1fms\n", req.remote_addr.c_str(),
                     req.method.c_str(), req.target.empty() ? req.path.c_str() : req.target.c_str(),
                     res.status, res.body.size(), s * 1e3);
    });
  }
};

HttpServer::HttpServer(const Retrieval& service, const ServeOptions& opt)
    : impl_(std::make_unique<Impl>(service, opt)) {
  if (opt.workers < 1) fail("--workers: must be at least 1 (got ", opt.workers, ")");
  if (opt.max_k < 1) fail("--max-k: must be at least 1 (got ", opt.max_k, ")");
  if (opt.timeout_s < 1) fail("--timeout: must be at least 1 second (got ", opt.timeout_s, ")");
  max_image_pixels();  // a bad DUET_MAX_PIXELS fails the start, not every request
  impl_->routes();
  impl_->limits();
}

HttpServer::~HttpServer() = default;

int HttpServer::bind() {
  auto& s = impl_->server;
  const auto& o = impl_->opt;
  const int port =
      o.port == 0 ? s.bind_to_any_port(o.host) : (s.bind_to_port(o.host, o.port) ? o.port : -1);
  if (port <= 0)
    fail("cannot listen on ", o.host, ":", o.port,
         " (is the port in use, or the host not one of this machine's "
         "addresses? pick another with --port/--host)");
  return port;
}

void HttpServer::listen() {
  if (!impl_->server.listen_after_bind()) fail("the server stopped: could not accept connections");
}

void HttpServer::stop() { impl_->server.stop(); }

}  // namespace duet
