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

}  // namespace

// The shard side: one request of the protocol (the body of POST /api/shard).
std::string SearchService::shard_reply(const std::string& request) const {
  const SearchService& svc = *this;
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
    if (op == "gate" || op == "top" || op == "rows") {
      // The query, against this shard's rows as its Searcher reads them.
      const auto code = floats("code", D);
      const auto post = fused ? floats("post", C) : std::vector<float>();
      const auto bridge = bridged ? floats("bridge", B) : std::vector<float>();
      const QueryRow row{code.data(), fused ? post.data() : nullptr,
                         bridged ? bridge.data() : nullptr};
      std::unique_ptr<RowQuery> rq = searcher.rows().query(row);
      if (op == "gate") {
        if (!fused) fail("shard request: the gate belongs to the fused score");
        a["max"] = rq->gate_evidence();
        return a.dump();
      }
      const bool unseen = q.at("unseen").get<bool>();
      ScoredRows sr;
      if (op == "top") {
        sr = rq->best(unseen, std::clamp<int64_t>(q.at("limit").get<int64_t>(), 0, n), false);
        a["top"] = sr.top;
        a["mass"] = sr.mass;
      } else {
        std::vector<int64_t> pick;
        for (int64_t r : q.at("rows").get<std::vector<int64_t>>()) pick.push_back(local(r));
        std::sort(pick.begin(), pick.end());
        pick.erase(std::unique(pick.begin(), pick.end()), pick.end());
        sr = rq->rows(unseen, pick, false);
      }
      // Rows of the whole index, and their rows of the whole gallery graph.
      json rows = json::array(), adj = json::array();
      const bool graph = q.value("graph", false) && !sh.start.empty();
      for (int64_t r : sr.rows) {
        rows.push_back(sh.offset + r);
        if (!graph) continue;
        const auto b = sh.start[r], e = sh.start[r + 1];
        adj.push_back({std::vector<int64_t>(sh.col.begin() + b, sh.col.begin() + e),
                       std::vector<float>(sh.w.begin() + b, sh.w.begin() + e)});
      }
      a["rows"] = rows;
      a["scores"] = sr.score;
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

// The shards as the rows of one gallery, for rank(): each of its questions is a round of
// requests to every shard still answering, all at once, within the deadline. A shard that fails or
// misses a round is left out of the rest of the query and named in `missing`.
class ShardFront::Rows : public RowSource {
 public:
  Rows(const ShardFront& front, int64_t C, int64_t D, int64_t B, std::vector<std::string>& missing)
      : f_(front), C_(C), D_(D), B_(B), missing_(missing), down_(front.shards_.size(), 0) {}
  int64_t size() const override { return f_.total_; }
  bool has_graph() const override { return f_.graph_; }
  std::unique_ptr<RowQuery> query(const QueryRow& q) const override {
    json j = {{"code", std::vector<float>(q.code, q.code + D_)}};
    if (q.post) j["post"] = std::vector<float>(q.post, q.post + C_);
    if (q.bridge) j["bridge"] = std::vector<float>(q.bridge, q.bridge + B_);
    return std::make_unique<Query>(*this, std::move(j));
  }

  // One round: a request per shard (null: not asked); the replies (null where a shard failed).
  // Throws Unavailable when no shard is left.
  std::vector<json> round(const std::vector<json>& request) const {
    const size_t ns = f_.shards_.size();
    const auto until = after(f_.deadline_s_);
    std::vector<json> reply(ns);
    std::vector<std::future<json>> fut(ns);
    for (size_t i = 0; i < ns; ++i)
      if (!down_[i] && !request[i].is_null())
        fut[i] = std::async(std::launch::async, [&, i] {
          return f_.shards_[i]->call("POST", "/api/shard", request[i].dump(), until);
        });
    for (size_t i = 0; i < ns; ++i) {
      if (!fut[i].valid()) continue;
      try {
        reply[i] = fut[i].get();
      } catch (const std::exception& e) {
        down_[i] = 1;
        missing_.push_back(f_.shards_[i]->url + ": " + e.what());
      }
    }
    if (std::all_of(down_.begin(), down_.end(), [](char d) { return d; }))
      throw Unavailable("no shard answered: " + missing_.at(0));
    return reply;
  }

 private:
  const ShardFront& f_;
  int64_t C_, D_, B_;
  std::vector<std::string>& missing_;
  mutable std::vector<char> down_;

  class Query : public RowQuery {
   public:
    Query(const Rows& rows, json query) : r_(rows), q_(std::move(query)) {}
    float gate_evidence() override {
      json q = q_;
      q["op"] = "gate";
      float best = -INFINITY;
      for (const json& a : r_.round(std::vector<json>(r_.f_.shards_.size(), q)))
        if (!a.is_null()) best = std::max(best, a.at("max").get<float>());
      return best;
    }
    ScoredRows best(bool unseen, int64_t limit, bool graph) override {
      json q = q_;
      q["op"] = "top";
      q["unseen"] = unseen;
      q["limit"] = limit;
      q["graph"] = graph;
      const std::vector<json> reply = r_.round(std::vector<json>(r_.f_.shards_.size(), q));
      ScoredRows out;
      out.top = -INFINITY;
      for (const json& a : reply)
        if (!a.is_null()) out.top = std::max(out.top, a.at("top").get<float>());
      for (const json& a : reply)
        if (!a.is_null())
          out.mass += a.at("mass").get<double>() *
                      std::exp(static_cast<double>(a.at("top").get<float>() - out.top));
      return take(reply, limit, out);
    }
    ScoredRows rows(bool unseen, const std::vector<int64_t>& rows, bool graph) override {
      std::vector<std::vector<int64_t>> by(r_.f_.shards_.size());
      for (int64_t row : rows) by[r_.f_.owner(row)].push_back(row);
      std::vector<json> request(by.size());
      for (size_t i = 0; i < by.size(); ++i) {
        if (by[i].empty()) continue;
        request[i] = q_;
        request[i]["op"] = "rows";
        request[i]["unseen"] = unseen;
        request[i]["rows"] = by[i];
        request[i]["graph"] = graph;
      }
      ScoredRows out;
      return take(r_.round(request), static_cast<int64_t>(rows.size()), out);
    }

   private:
    const Rows& r_;
    json q_;
    // The replies' rows, best first, the best `limit` of them, into out.
    static ScoredRows& take(const std::vector<json>& reply, int64_t limit, ScoredRows& out) {
      struct Row {
        int64_t row;
        float score;
        std::vector<int64_t> col;
        std::vector<float> w;
      };
      std::vector<Row> all;
      for (const json& a : reply) {
        if (a.is_null()) continue;
        const auto rows = a.at("rows").get<std::vector<int64_t>>();
        const auto s = a.at("scores").get<std::vector<float>>();
        if (rows.size() != s.size())
          fail("a shard's reply has ", rows.size(), " rows but ", s.size(), " scores");
        for (size_t i = 0; i < rows.size(); ++i) {
          Row r{rows[i], s[i], {}, {}};
          if (a.contains("adj"))
            std::tie(r.col, r.w) =
                a.at("adj").at(i).get<std::pair<std::vector<int64_t>, std::vector<float>>>();
          if (r.col.size() != r.w.size()) fail("a shard's reply has a graph row of unequal arrays");
          all.push_back(std::move(r));
        }
      }
      std::vector<int64_t> ids;
      std::vector<float> s;
      for (const Row& r : all) ids.push_back(r.row), s.push_back(r.score);
      for (size_t i : best_first(ids, s, limit)) {
        out.add_row(all[i].row, all[i].score);
        out.add_edges(all[i].col.data(), all[i].w.data(), static_cast<int64_t>(all[i].col.size()));
      }
      return out;
    }
  };
};

Retrieval::Answer ShardFront::rank(const std::vector<float>& pq, const std::vector<float>& zq,
                                   const std::vector<float>& bq, int64_t k) const {
  const auto t0 = Clock::now();
  const RankOptions& ro = model_->info().rank;
  Answer ans;
  Rows rows(*this, static_cast<int64_t>(pq.size()), static_cast<int64_t>(zq.size()),
            static_cast<int64_t>(bq.size()), ans.missing);
  const QueryRow q{zq.data(), ro.fuse ? pq.data() : nullptr,
                   ro.fuse && ro.fusion.uses_bridge() ? bq.data() : nullptr};
  const Ranking r = duet::rank(rows, ro, q, k);
  ans.unseen = r.unseen;
  // The paths of the results, from their shards.
  const size_t ns = shards_.size();
  std::vector<json> request(ns);
  std::vector<std::vector<int64_t>> asked(ns);
  for (const duet::Hit& h : r.hits) asked[owner(h.row)].push_back(h.row);
  for (size_t i = 0; i < ns; ++i)
    if (!asked[i].empty()) request[i] = {{"op", "entries"}, {"rows", asked[i]}};
  const std::vector<json> reply = rows.round(request);
  std::map<int64_t, std::pair<std::string, std::string>> entry;
  for (size_t i = 0; i < ns; ++i) {
    if (reply[i].is_null()) continue;
    for (size_t j = 0; j < asked[i].size(); ++j)
      entry[asked[i][j]] = {reply[i].at("paths").at(j).get<std::string>(),
                            reply[i].at("classes").at(j).get<std::string>()};
  }
  for (const duet::Hit& h : r.hits)
    if (entry.count(h.row))
      ans.hits.push_back({h.row, h.score, entry.at(h.row).first, entry.at(h.row).second});
  ans.partial = !ans.missing.empty();
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
