// Sharded serving: the shard side of the protocol and the front. See duet/shards.h.
#include "duet/shards.h"

#include <httplib.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <future>
#include <map>
#include <nlohmann/json.hpp>
#include <numeric>
#include <set>

#include "duet/diffusion.h"
#include "duet/error.h"
#include "duet/gallery.h"
#include "duet/search.h"

namespace duet {

namespace {
using json = nlohmann::json;
using Clock = std::chrono::steady_clock;

double ms_since(Clock::time_point t) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t).count();
}
Clock::time_point after(double seconds) {
  return Clock::now() +
         std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(seconds));
}

// Best first: higher score, then lower row (the order Searcher::search ranks by).
void sort_best(std::vector<std::pair<float, int64_t>>& v, size_t keep) {
  auto better = [](const auto& a, const auto& b) {
    return a.first > b.first || (a.first == b.first && a.second < b.second);
  };
  keep = std::min(keep, v.size());
  std::partial_sort(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(keep), v.end(), better);
  v.resize(keep);
}
}  // namespace

std::string shard_reply(const SearchService& svc, const std::string& request) {
  json q;
  try {
    q = json::parse(request);
  } catch (const json::exception&) {
    fail("malformed shard request: not JSON");
  }
  const GalleryIndex& g = svc.gallery();
  if (!g.shard) fail("not a shard");
  const GalleryShard& sh = *g.shard;
  const Searcher& searcher = svc.searcher();
  const bool fused = searcher.options().fuse;
  const int64_t n = svc.size(), C = g.arrays.post.cols, D = g.arrays.code.cols,
                B = g.arrays.bridge.cols;
  const bool bridged = searcher.uses_bridge();
  json a;
  try {
    auto floats = [&](const char* key, int64_t want) {
      auto v = q.at(key).get<std::vector<float>>();
      if (static_cast<int64_t>(v.size()) != want)
        fail("shard request: ", key, " has ", v.size(), " values, not ", want);
      return v;
    };
    auto local = [&](int64_t row) {
      if (row < sh.offset || row >= sh.offset + n)
        fail("shard request: row ", row, " is not in this shard");
      return row - sh.offset;
    };
    const std::string op = q.at("op").get<std::string>();
    if (op == "gate") {
      if (!fused) fail("shard request: the gate belongs to the fused score");
      const auto bridge = bridged ? floats("bridge", B) : std::vector<float>();
      a["max"] = searcher.gate_evidence(floats("code", D).data(), floats("post", C).data(),
                                        bridged ? bridge.data() : nullptr);
    } else if (op == "top" || op == "rows") {
      const auto code = floats("code", D);
      const auto post = fused ? floats("post", C) : std::vector<float>();
      const auto bridge = bridged ? floats("bridge", B) : std::vector<float>();
      const float* bq = bridged ? bridge.data() : nullptr;
      const bool unseen = q.at("unseen").get<bool>();
      std::vector<int64_t> pick;  // local rows
      std::vector<float> s;
      if (op == "top") {
        const int64_t limit = std::clamp<int64_t>(q.at("limit").get<int64_t>(), 0, n);
        Searcher::Part part = searcher.best_rows(code.data(), post.data(), bq, unseen, limit);
        pick = std::move(part.rows);
        s = std::move(part.score);
        a["top"] = part.top;
        a["mass"] = part.mass;
      } else {
        for (int64_t row : q.at("rows").get<std::vector<int64_t>>()) pick.push_back(local(row));
        s = searcher.row_scores(code.data(), post.data(), bq, unseen, pick);
      }
      json rows = json::array(), scores = json::array(), adj = json::array();
      const bool graph = q.value("graph", false) && !sh.start.empty();
      for (size_t i = 0; i < pick.size(); ++i) {
        const int64_t r = pick[i];
        rows.push_back(sh.offset + r);
        scores.push_back(s[i]);
        if (!graph) continue;
        const auto b = sh.start[r], e = sh.start[r + 1];
        adj.push_back({std::vector<int64_t>(sh.col.begin() + b, sh.col.begin() + e),
                       std::vector<float>(sh.w.begin() + b, sh.w.begin() + e)});
      }
      a["rows"] = rows;
      a["scores"] = scores;
      if (graph) a["adj"] = adj;
    } else if (op == "entries") {
      for (int64_t row : q.at("rows").get<std::vector<int64_t>>()) {
        const int64_t r = local(row);
        a["paths"].push_back(g.entries[static_cast<size_t>(r)].path);
        a["classes"].push_back(svc.class_of(r));
      }
    } else if (op == "features") {
      const int64_t r = local(q.at("row").get<int64_t>());
      a["post"] = std::vector<float>(g.arrays.post.row(r), g.arrays.post.row(r) + C);
      a["code"] = std::vector<float>(g.arrays.code.row(r), g.arrays.code.row(r) + D);
      a["bridge"] = std::vector<float>(g.arrays.bridge.row(r), g.arrays.bridge.row(r) + B);
    } else {
      fail("shard request: unknown op '", op, "' (gate, top, rows, entries, features)");
    }
  } catch (const json::exception& e) {
    fail("malformed shard request: ", e.what());
  }
  return a.dump();
}

struct ShardFront::Shard {
  std::string url, host;
  int port = 0;
  int index = 0;
  int64_t offset = 0, rows = 0;
  std::string type;  // its own index_type

  // One request within `until`; throws Error with the reason when the shard does not answer well.
  json call(const std::string& method, const std::string& path, const std::string& body,
            Clock::time_point until, std::string* raw = nullptr,
            std::string* type = nullptr) const {
    const auto left =
        std::chrono::duration_cast<std::chrono::microseconds>(until - Clock::now()).count();
    if (left <= 0) fail("no time left before the deadline");
    httplib::Client c(host, port);
    c.set_connection_timeout(left / 1000000, left % 1000000);
    c.set_read_timeout(left / 1000000, left % 1000000);
    c.set_write_timeout(left / 1000000, left % 1000000);
    auto res =
        method == "GET" ? c.Get(path.c_str()) : c.Post(path.c_str(), body, "application/json");
    if (!res) fail("no answer (", httplib::to_string(res.error()), ")");
    if (res->status == 404) throw NotFound(url + ": " + res->body);
    if (res->status != 200) fail("HTTP ", res->status, " ", res->body.substr(0, 200));
    if (raw) {
      *raw = res->body;
      if (type) *type = res->get_header_value("Content-Type");
      return {};
    }
    try {
      return json::parse(res->body);
    } catch (const json::exception&) {
      fail("an answer that is not JSON");
    }
  }
};

namespace {
// What one round of a query sends and gets: a request per shard (null: not asked), the replies
// (null where a shard failed; it joins `missing` and is asked nothing more).
struct Round {
  std::vector<json> request, reply;
};
}  // namespace

ShardFront::~ShardFront() = default;

ShardFront::ShardFront(std::vector<std::string> urls, const std::string& model_dir, int threads,
                       double deadline_s)
    : deadline_s_(deadline_s) {
  if (urls.empty()) fail("--shards: give the shard servers' URLs (http://host:port,...)");
  if (!(deadline_s > 0)) fail("--deadline: must be positive (got ", deadline_s, ")");
  std::string hash, dir;
  std::map<int, std::unique_ptr<Shard>> by_index;
  int of = 0;
  for (const std::string& u : urls) {
    auto s = std::make_unique<Shard>();
    s->url = u;
    const std::string rest = u.rfind("http://", 0) == 0 ? u.substr(7) : "";
    const size_t colon = rest.rfind(':');
    try {
      if (colon == std::string::npos || colon == 0) throw std::invalid_argument("");
      s->host = rest.substr(0, colon);
      std::string port = rest.substr(colon + 1);
      while (!port.empty() && port.back() == '/') port.pop_back();
      size_t used = 0;
      s->port = std::stoi(port, &used);
      if (used != port.size() || s->port < 1 || s->port > 65535) throw std::invalid_argument("");
    } catch (const std::exception&) {
      fail("--shards: '", u, "' is not http://host:port");
    }
    json info;
    try {
      info = s->call("GET", "/api/info", "", after(std::max(deadline_s, 5.0)));
    } catch (const Error& e) {
      fail("shard ", u, " does not answer /api/info: ", e.what());
    }
    if (!info.contains("shard"))
      fail(u,
           " serves a whole index, not a shard (make shards with `duet shard`, serve each with "
           "`duet serve --index`)");
    const json& sh = info.at("shard");
    s->index = sh.at("index").get<int>();
    s->offset = sh.at("offset").get<int64_t>();
    s->rows = info.at("images").get<int64_t>();
    s->type = info.value("index_type", "?");
    const int64_t total = sh.at("total").get<int64_t>();
    const std::string h = info.at("model").at("hash").get<std::string>();
    if (by_index.empty()) {
      hash = h, dir = info.at("model").at("dir").get<std::string>(), total_ = total,
      of = sh.at("of").get<int>();
      graph_ = info.value("graph", false);
    } else if (h != hash || total != total_ || sh.at("of").get<int>() != of) {
      fail(u, " serves a shard of another index (model ", h, ", ", total, " images, one of ",
           sh.at("of").get<int>(), ") than ", by_index.begin()->second->url, " (model ", hash, ", ",
           total_, " images, one of ", of, ")");
    }
    if (by_index.count(s->index))
      fail(u, " and ", by_index.at(s->index)->url, " both serve shard ", s->index);
    by_index[s->index] = std::move(s);
  }
  if (static_cast<int>(by_index.size()) != of)
    fail("the index has ", of, " shards but --shards names ", by_index.size(), ": give every one");
  int64_t next = 0;
  for (auto& [i, s] : by_index) {
    if (s->offset != next)
      fail("shard ", i, " (", s->url, ") starts at row ", s->offset, ", not ", next);
    next += s->rows;
    shards_.push_back(std::move(s));
  }
  if (next != total_) fail("the shards hold ", next, " rows of the index's ", total_);
  model_ = Model::open(model_dir.empty() ? dir : model_dir, threads);
  if (model_->info().hash != hash)
    fail("the shards were made with model ", hash, " but ", model_->info().dir, " is ",
         model_->info().hash);
}

std::string ShardFront::index_type() const {
  // "shards<n>," and the shards' own kinds (one when they agree): "shards2,exact".
  std::set<std::string> kinds;
  for (const auto& s : shards_) kinds.insert(s->type);
  std::string out = "shards" + std::to_string(shards_.size());
  for (const auto& k : kinds) out += "," + k;
  return out;
}

size_t ShardFront::owner(int64_t row) const {
  for (size_t i = 0; i < shards_.size(); ++i)
    if (row >= shards_[i]->offset && row < shards_[i]->offset + shards_[i]->rows) return i;
  throw NotFound("image " + std::to_string(row) + " is not in the index");
}

Retrieval::Answer ShardFront::rank(const std::vector<float>& pq, const std::vector<float>& zq,
                                   const std::vector<float>& bq, int64_t k) const {
  const auto t0 = Clock::now();
  const RankOptions& ro = model_->info().rank;
  const size_t ns = shards_.size();
  Answer ans;
  std::vector<char> down(ns, 0);
  // Every asked shard at once, each round within the deadline; a shard that fails or misses it is
  // left out of the rest of the query.
  auto fan_out = [&](Round& r) {
    const auto until = after(deadline_s_);
    r.reply.assign(ns, json());
    std::vector<std::future<json>> f(ns);
    for (size_t i = 0; i < ns; ++i)
      if (!down[i] && !r.request[i].is_null())
        f[i] = std::async(std::launch::async, [&, i] {
          return shards_[i]->call("POST", "/api/shard", r.request[i].dump(), until);
        });
    for (size_t i = 0; i < ns; ++i) {
      if (!f[i].valid()) continue;
      try {
        r.reply[i] = f[i].get();
      } catch (const std::exception& e) {
        down[i] = 1;
        ans.missing.push_back(shards_[i]->url + ": " + e.what());
      }
    }
    if (std::all_of(down.begin(), down.end(), [](char d) { return d; }))
      throw Unavailable("no shard answered: " + ans.missing.at(0));
  };
  json query = {{"code", zq}};
  if (ro.fuse) query["post"] = pq;
  if (ro.fuse && ro.fusion.uses_bridge()) query["bridge"] = bq;

  // 1. The gate over the whole gallery: the largest evidence of any shard.
  bool unseen = false;
  if (ro.fuse && ro.fusion.unseen_gate > 0) {
    Round r;
    json q = query;
    q["op"] = "gate";
    r.request.assign(ns, q);
    fan_out(r);
    float best = -INFINITY;
    for (const json& a : r.reply)
      if (!a.is_null()) best = std::max(best, a.at("max").get<float>());
    unseen = best < ro.fusion.unseen_gate;
  }
  ans.unseen = unseen;
  query["unseen"] = unseen;

  // 2. Each shard's best rows: the shortlist's worth (whole: every row) and k.
  const bool diffuse = ro.fuse && ro.diffusion && graph_;
  const bool whole = ro.diff.shortlist == 0 || total_ <= ro.diff.shortlist;
  const int64_t limit = diffuse ? std::max<int64_t>(whole ? total_ : ro.diff.shortlist, k) : k;
  std::map<int64_t, float> score;  // scored rows
  std::map<int64_t, std::pair<std::vector<int64_t>, std::vector<float>>> adj;
  auto take = [&](const json& a) {
    const auto rows = a.at("rows").get<std::vector<int64_t>>();
    const auto s = a.at("scores").get<std::vector<float>>();
    for (size_t i = 0; i < rows.size() && i < s.size(); ++i) {
      score[rows[i]] = s[i];
      if (a.contains("adj"))
        adj[rows[i]] = a.at("adj").at(i).get<std::pair<std::vector<int64_t>, std::vector<float>>>();
    }
  };
  float top = -INFINITY;
  double total = 0;
  {
    Round r;
    json q = query;
    q["op"] = "top";
    q["limit"] = limit;
    q["graph"] = diffuse;
    r.request.assign(ns, q);
    fan_out(r);
    for (const json& a : r.reply)
      if (!a.is_null()) top = std::max(top, a.at("top").get<float>());
    for (const json& a : r.reply) {
      if (a.is_null()) continue;
      take(a);
      total += a.at("mass").get<double>() *
               std::exp(static_cast<double>(a.at("top").get<float>() - top));
    }
  }
  std::vector<std::pair<float, int64_t>> final_scores;
  if (!diffuse) {
    for (const auto& [row, s] : score) final_scores.emplace_back(s, row);
  } else {
    // 3. The seeds' graph neighbours that no shard sent, from their shards; then the diffusion over
    // the shortlist as a Searcher runs it (diffuse_shortlist), on the graph the known rows span:
    // the shortlist and the seeds' neighbours are all among them.
    std::vector<std::pair<float, int64_t>> seeds;
    for (const auto& [row, s] : score) seeds.emplace_back(s, row);
    sort_best(seeds, static_cast<size_t>(ro.diff.seeds));
    std::vector<std::vector<int64_t>> more(ns);
    for (const auto& seed : seeds)
      for (int64_t o : adj[seed.second].first)
        if (!score.count(o)) more[owner(o)].push_back(o);
    Round r;
    r.request.assign(ns, json());
    for (size_t i = 0; i < ns; ++i) {
      std::sort(more[i].begin(), more[i].end());
      more[i].erase(std::unique(more[i].begin(), more[i].end()), more[i].end());
      if (more[i].empty()) continue;
      r.request[i] = query;
      r.request[i]["op"] = "rows";
      r.request[i]["rows"] = more[i];
      r.request[i]["graph"] = true;
    }
    if (std::any_of(more.begin(), more.end(), [](const auto& m) { return !m.empty(); })) {
      fan_out(r);
      for (const json& a : r.reply)
        if (!a.is_null()) take(a);
    }
    // The known rows in order as rows 0..m-1 of a graph, each with its edges among them in the
    // stored order (what rerank_subset would take from the whole graph).
    std::vector<int64_t> rows, start{0}, col;
    std::vector<float> s, w;
    for (const auto& [row, v] : score) rows.push_back(row), s.push_back(v);
    for (int64_t g : rows) {
      const auto& [cols, ws] = adj[g];
      for (size_t e = 0; e < cols.size(); ++e) {
        auto it = std::lower_bound(rows.begin(), rows.end(), cols[e]);
        if (it == rows.end() || *it != cols[e]) continue;
        col.push_back(it - rows.begin());
        w.push_back(ws[e]);
      }
      start.push_back(static_cast<int64_t>(col.size()));
    }
    // Whole: every row is known, and the mass is summed over them as Searcher::scores sums it.
    if (whole) {
      total = 0;
      for (float v : s) total += std::exp(v - top);
    }
    std::vector<float> out(rows.size());
    if (rows.size() >= 2) {
      std::vector<int64_t> local(rows.size());
      std::iota(local.begin(), local.end(), 0);
      const GalleryGraph known(static_cast<int64_t>(rows.size()), ro.diff, start, col, w);
      diffuse_shortlist(
          known, ro.diff, local.data(), s.data(), rows.size(), top, total,
          [](const std::vector<int64_t>&, float*) {}, out.data());
    } else {
      for (size_t i = 0; i < rows.size(); ++i)
        out[i] = static_cast<float>(ro.diff.blend * std::exp(s[i] - top) / total);
    }
    for (size_t i = 0; i < rows.size(); ++i) final_scores.emplace_back(out[i], rows[i]);
  }
  sort_best(final_scores, static_cast<size_t>(k));

  // 4. The paths of the results.
  Round r;
  r.request.assign(ns, json());
  std::vector<std::vector<int64_t>> asked(ns);
  for (const auto& [s, row] : final_scores) asked[owner(row)].push_back(row);
  for (size_t i = 0; i < ns; ++i)
    if (!asked[i].empty()) r.request[i] = {{"op", "entries"}, {"rows", asked[i]}};
  fan_out(r);
  std::map<int64_t, std::pair<std::string, std::string>> entry;
  for (size_t i = 0; i < ns; ++i) {
    if (r.reply[i].is_null()) continue;
    for (size_t j = 0; j < asked[i].size(); ++j)
      entry[asked[i][j]] = {r.reply[i].at("paths").at(j).get<std::string>(),
                            r.reply[i].at("classes").at(j).get<std::string>()};
  }
  for (const auto& [s, row] : final_scores)
    if (entry.count(row)) ans.hits.push_back({row, s, entry.at(row).first, entry.at(row).second});
  ans.search_ms = ms_since(t0);
  return ans;
}

Retrieval::Answer ShardFront::search_image(const std::string& bytes, const std::string& domain,
                                           int64_t k, const Deadline& deadline) const {
  const std::string d = query_domain(domain);
  double cnn_ms = 0;
  Features f = query_features(*model_, cnn_, bytes, "query", d, deadline, cnn_ms);
  auto row0 = [](const Matrix& m) { return std::vector<float>(m.row(0), m.row(0) + m.cols); };
  Answer a = rank(row0(f.post), row0(f.code), row0(f.bridge), k);
  deadline.check("in the search");
  a.cnn_ms = cnn_ms;
  return a;
}

Retrieval::Answer ShardFront::search_row(int64_t row, int64_t k) const {
  const Shard& s = *shards_[owner(row)];
  json f;
  try {
    f = s.call("POST", "/api/shard", json{{"op", "features"}, {"row", row}}.dump(),
               after(deadline_s_));
  } catch (const NotFound&) {
    throw;
  } catch (const Error& e) {
    throw Unavailable("image " + std::to_string(row) + " is on shard " + s.url +
                      ", which does not answer: " + e.what());
  }
  return rank(f.at("post").get<std::vector<float>>(), f.at("code").get<std::vector<float>>(),
              f.value("bridge", std::vector<float>()), k);
}

std::pair<std::string, std::string> ShardFront::image(int64_t row, bool full) const {
  const Shard& s = *shards_[owner(row)];
  std::string bytes, type;
  try {
    s.call("GET", "/api/image/" + std::to_string(row - s.offset) + (full ? "?full=1" : ""), "",
           after(deadline_s_), &bytes, &type);
  } catch (const NotFound&) {
    throw;
  } catch (const Error& e) {
    throw Unavailable("image " + std::to_string(row) + " is on shard " + s.url +
                      ", which does not answer: " + e.what());
  }
  return {bytes, type};
}

}  // namespace duet
