// bench/serve_latency — what `POST /api/search` with a sketch PNG costs end to end over loopback:
// a real HttpServer (the one `duet serve` runs) in this process, real HTTP clients in threads.
// Prints a table and writes JSON.
//
//   serve_latency --index G.idx --query SKETCH.png [--query ...] [--sizes 100000] [--clients 1,4]
//                 [--requests 40] [--shards N] [--json out.json]
//
// Rows: the real index (--index: its model, vectors, graph) and synthetic galleries of --sizes
// photos with the real dimensions (bench/synthetic.h) searched with the same model; each at 1 and
// 4 concurrent clients. Each row: p50/p99 latency of one request as the client sees it,
// throughput (answers/s), and, from the server's answers, the median of the query's CNN pass
// (timed apart from waiting for the CNN lock) and of the gallery search alone. --shards N: each
// synthetic gallery also cut into N shards (`duet shard`), each served on loopback, and measured
// through a front (`duet serve --shards`), with the share of the whole server's top 10 it returns.
#include <httplib.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>
#include <thread>

#include "duet/error.h"
#include "duet/fileio.h"
#include "duet/runtime.h"
#include "duet/serve.h"
#include "duet/service.h"
#include "duet/shards.h"
#include "synthetic.h"

using namespace duet;
using Clock = std::chrono::steady_clock;

namespace {

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : v[v.size() / 2];
}

double pct(std::vector<double> v, double p) {
  std::sort(v.begin(), v.end());
  return v.empty()
             ? 0
             : v[std::min(v.size() - 1, static_cast<size_t>(p * static_cast<double>(v.size())))];
}

// `requests` POSTs spread over `clients` threads, each on its own keep-alive connection.
nlohmann::json measure(const std::string& what, const Retrieval& svc,
                       const std::vector<std::string>& queries, int clients, int requests) {
  ServeOptions opt;
  opt.port = 0;
  opt.log = false;
  HttpServer server(svc, opt);
  const int port = server.bind();
  std::thread serving([&] { server.listen(); });
  std::vector<std::vector<double>> ms(clients), cnn(clients), search(clients);
  std::vector<std::string> errors;
  std::mutex mu;
  // Client c sends requests c, c + clients, ... below `count`.
  auto client = [&](int c, int count) {
    httplib::Client http("127.0.0.1", port);
    http.set_keep_alive(true);
    http.set_tcp_nodelay(true);
    http.set_read_timeout(120, 0);
    for (int i = c; i < count; i += clients) {
      const std::string& body = queries[static_cast<size_t>(i) % queries.size()];
      const auto t = Clock::now();
      auto res = http.Post("/api/search?k=10", body, "image/png");
      const double took = std::chrono::duration<double, std::milli>(Clock::now() - t).count();
      if (!res || res->status != 200) {
        std::lock_guard<std::mutex> lock(mu);
        errors.push_back(res ? std::to_string(res->status) + " " + res->body
                             : httplib::to_string(res.error()));
        continue;
      }
      auto j = nlohmann::json::parse(res->body);
      ms[c].push_back(took);
      cnn[c].push_back(j["cnn_ms"].get<double>());
      search[c].push_back(j["search_ms"].get<double>());
    }
  };
  // One warm-up request (first-call allocations, caches) before the clock starts.
  client(0, 1);
  ms[0].clear(), cnn[0].clear(), search[0].clear();
  const auto t0 = Clock::now();
  std::vector<std::thread> threads;
  for (int c = 0; c < clients; ++c) threads.emplace_back(client, c, requests);
  for (auto& t : threads) t.join();
  const double wall = std::chrono::duration<double>(Clock::now() - t0).count();
  server.stop();
  serving.join();
  if (!errors.empty()) fail(what, ": ", errors.size(), " requests failed, e.g. ", errors[0]);
  std::vector<double> all, all_cnn, all_search;
  for (int c = 0; c < clients; ++c) {
    all.insert(all.end(), ms[c].begin(), ms[c].end());
    all_cnn.insert(all_cnn.end(), cnn[c].begin(), cnn[c].end());
    all_search.insert(all_search.end(), search[c].begin(), search[c].end());
  }
  nlohmann::json r = {
      {"gallery", svc.size()},     {"data", what},
      {"index", svc.index_type()}, {"clients", clients},
      {"requests", all.size()},    {"p50_ms", pct(all, 0.5)},
      {"p99_ms", pct(all, 0.99)},  {"answers_per_s", static_cast<double>(all.size()) / wall},
      {"cnn_ms", median(all_cnn)}, {"search_ms", median(all_search)}};
  std::printf("%-9lld %-10s %-26s %7d %8zu %9.1f %9.1f %8.2f %8.1f %9.2f\n",
              static_cast<long long>(svc.size()), what.c_str(), svc.index_type().c_str(), clients,
              all.size(), pct(all, 0.5), pct(all, 0.99), static_cast<double>(all.size()) / wall,
              median(all_cnn), median(all_search));
  std::fflush(stdout);
  return r;
}

// Shard servers of g's shards on loopback (each its own HttpServer in a thread, as `duet serve
// --index G-i.idx` runs it), stopped when this goes out of scope.
struct ShardServers {
  std::vector<std::unique_ptr<SearchService>> services;
  std::vector<std::unique_ptr<HttpServer>> servers;
  std::vector<std::thread> threads;
  std::vector<std::string> urls;
  ShardServers(const GalleryIndex& g, int n, const std::string& model_dir) {
    for (int i = 0; i < n; ++i) {
      services.push_back(
          std::make_unique<SearchService>(shard_of(g, i, n), Model::open(model_dir)));
      ServeOptions opt;
      opt.port = 0;
      opt.log = false;
      servers.push_back(std::make_unique<HttpServer>(*services.back(), opt));
      urls.push_back("http://127.0.0.1:" + std::to_string(servers.back()->bind()));
      threads.emplace_back([s = servers.back().get()] { s->listen(); });
    }
  }
  ~ShardServers() {
    for (auto& s : servers) s->stop();
    for (auto& t : threads) t.join();
  }
};

// How many of the whole server's top ten the front returns, for 20 evenly spaced gallery rows
// as queries (like=ID): the sketches of --query, mapped from another model's classes onto a
// synthetic gallery, meet thousands of near ties there, which says nothing about the front.
double agreement(const Retrieval& whole, const Retrieval& front) {
  double hit = 0, all = 0;
  for (int64_t i = 0; i < 20; ++i) {
    const int64_t row = i * (whole.size() / 20);
    const auto a = whole.search_row(row, 10), b = front.search_row(row, 10);
    for (const auto& h : a.hits)
      for (const auto& o : b.hits) hit += h.id == o.id;
    all += static_cast<double>(a.hits.size());
  }
  return hit / all;
}

}  // namespace

int main(int argc, char** argv) {
  init_runtime();
  CLI::App app{"end-to-end latency of duet serve's POST /api/search over loopback"};
  std::string index, json_out;
  std::vector<std::string> query_files;
  std::vector<int64_t> sizes = {100000};
  std::vector<int> clients = {1, 4};
  int requests = 40;
  app.add_option("--index", index,
                 "a gallery index from `duet index` (its model is used for every row)")
      ->required();
  app.add_option("--query", query_files, "sketch PNGs to send (cycled)")->required();
  app.add_option("--sizes", sizes, "synthetic gallery sizes")->delimiter(',');
  app.add_option("--clients", clients, "concurrent clients per row")->delimiter(',');
  app.add_option("--requests", requests, "timed requests per row");
  app.add_option("--json", json_out, "write the rows as JSON");
  int shards = 0;
  app.add_option("--shards", shards,
                 "also serve each synthetic gallery as this many shard servers behind a front");
  CLI11_PARSE(app, argc, argv);
  try {
    std::vector<std::string> queries;
    for (const auto& f : query_files) queries.push_back(read_file(f));
    nlohmann::json out;
    out["rows"] = nlohmann::json::array();
    std::printf("%-9s %-10s %-26s %7s %8s %9s %9s %8s %8s %9s\n", "gallery", "data", "index",
                "clients", "requests", "p50_ms", "p99_ms", "answers/s", "cnn_ms", "search_ms");
    auto real = SearchService::open(index);
    for (int c : clients) out["rows"].push_back(measure("real", *real, queries, c, requests));
    const std::string model_dir = real->model().info().dir;
    const int64_t classes = real->gallery().arrays.post.cols,
                  dim = real->gallery().arrays.code.cols;
    real.reset();
    for (int64_t n : sizes) {
      bench::Synthetic s =
          bench::synthetic(n, 1, static_cast<int>(classes), static_cast<int>(dim), 7);
      GalleryIndex g;
      g.arrays = std::move(s.g);
      g.graph = s.graph;
      g.root = "/synthetic";
      g.model_hash = Model::open(model_dir)->info().hash;
      g.model_dir = model_dir;
      g.entries.resize(static_cast<size_t>(n));
      for (int64_t i = 0; i < n; ++i)
        g.entries[static_cast<size_t>(i)].path = std::to_string(i) + ".jpg";
      std::unique_ptr<ShardServers> shard_servers;
      if (shards > 0) shard_servers = std::make_unique<ShardServers>(g, shards, model_dir);
      SearchService svc(std::move(g), Model::open(model_dir));
      for (int c : clients) out["rows"].push_back(measure("synthetic", svc, queries, c, requests));
      if (shard_servers) {
        ShardFront front(shard_servers->urls, model_dir, 0, 10);
        const double agree = agreement(svc, front);
        for (int c : clients) {
          nlohmann::json r = measure("shards", front, queries, c, requests);
          r["agreement_at_10"] = agree;
          out["rows"].push_back(r);
        }
        std::printf(
            "front over %d shards: %.3f of the whole server's top 10 (20 gallery rows as "
            "queries)\n",
            shards, agree);
      }
    }
    if (!json_out.empty()) std::ofstream(json_out) << out.dump(2) << "\n";
  } catch (const Error& e) {
    std::fprintf(stderr, "serve_latency: error: %s\n", e.what());
    return 1;
  }
  return 0;
}
