// Gallery index files, folder scans and the searcher over an index. See duet/gallery.h.
#include "duet/gallery.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <functional>
#include <map>
#include <set>

#include "duet/error.h"
#include "duet/fileio.h"

namespace duet {

namespace {

using json = nlohmann::json;
namespace fs = std::filesystem;

constexpr char kMagic[8] = {'D', 'U', 'E', 'T', 'G', 'A', 'L', '1'};

// FNV-1a over 64-bit words (then the tail bytes): a checksum fast enough for gigabytes.
uint64_t checksum(const char* p, size_t n) {
  uint64_t h = 1469598103934665603ull;
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    uint64_t w;
    std::memcpy(&w, p + i, 8);
    h = (h ^ w) * 1099511628211ull;
  }
  for (; i < n; ++i) h = (h ^ static_cast<unsigned char>(p[i])) * 1099511628211ull;
  return h;
}

uint64_t from_hex(const std::string& s) { return std::stoull(s, nullptr, 16); }

template <typename T>
std::string bytes_of(const std::vector<T>& v) {
  return std::string(reinterpret_cast<const char*>(v.data()), v.size() * sizeof(T));
}
template <typename T>
std::vector<T> vector_of(const std::string& b) {
  std::vector<T> v(b.size() / sizeof(T));
  std::memcpy(v.data(), b.data(), v.size() * sizeof(T));
  return v;
}

bool is_image_name(const std::string& name) {
  const auto dot = name.find_last_of('.');
  if (dot == std::string::npos) return false;
  std::string ext = name.substr(dot + 1);
  std::transform(ext.begin(), ext.end(), ext.begin(), [](unsigned char c) { return std::tolower(c); });
  return ext == "jpg" || ext == "jpeg" || ext == "png" || ext == "bmp" || ext == "webp";
}


}  // namespace

std::string gallery_bytes(const GalleryIndex& g) {
  const int64_t n = static_cast<int64_t>(g.entries.size());
  json h;
  h["format"] = kGalleryFormat;
  h["duet_version"] = DUET_VERSION;
  h["model_hash"] = g.model_hash;
  h["model_dir"] = g.model_dir;
  h["root"] = g.root;
  h["domain"] = g.domain;
  h["index_type"] = g.index_type;
  h["rows"] = n;
  std::vector<std::pair<std::string, std::string>> blobs;
  std::string thumbs;
  json entries = json::array();
  for (const auto& e : g.entries) {
    entries.push_back({e.path, e.bytes, e.mtime_ns, hex64(e.hash), thumbs.size(), e.thumb.size()});
    thumbs += e.thumb;
  }
  h["entries"] = entries;  // [path, bytes, mtime_ns, hash, thumb offset, thumb bytes]
  auto matrix = [&](const char* name, const Matrix& m) {
    if (m.rows != n) fail("internal: ", name, " has ", m.rows, " rows for ", n, " entries");
    h["dims"][name] = m.cols;
    blobs.emplace_back(name, bytes_of(m.data));
  };
  matrix("emb", g.arrays.emb);
  matrix("post", g.arrays.post);
  matrix("code", g.arrays.code);
  if (g.graph) {
    h["graph"] = {{"edges", g.graph->csr_col().size()}};
    blobs.emplace_back("graph_start", bytes_of(g.graph->csr_start()));
    blobs.emplace_back("graph_col", bytes_of(g.graph->csr_col()));
    blobs.emplace_back("graph_w", bytes_of(g.graph->csr_weight()));
  }
  if (g.shard) {
    const GalleryShard& s = *g.shard;
    h["shard"] = {{"index", s.index}, {"of", s.of}, {"offset", s.offset}, {"total", s.total}};
    blobs.emplace_back("shard_start", bytes_of(s.start));
    blobs.emplace_back("shard_col", bytes_of(s.col));
    blobs.emplace_back("shard_w", bytes_of(s.w));
  }
  blobs.emplace_back("thumbs", std::move(thumbs));
  size_t off = 0;
  for (const auto& [name, b] : blobs) {
    h["blobs"].push_back({{"name", name}, {"offset", off}, {"bytes", b.size()}, {"checksum", hex64(checksum(b.data(), b.size()))}});
    off += b.size();
  }
  const std::string head = h.dump();
  const uint64_t len = head.size();
  std::string out(kMagic, sizeof kMagic);
  out.append(reinterpret_cast<const char*>(&len), sizeof len);
  out += head;
  for (const auto& [name, b] : blobs) out += b;
  return out;
}

GalleryIndex parse_gallery(const std::string& all, const std::string& path) {
  if (all.size() < 16 || std::memcmp(all.data(), kMagic, 8) != 0)
    fail(path, ": not a duet gallery index (build one with `duet index`)");
  uint64_t len = 0;
  std::memcpy(&len, all.data() + 8, 8);
  if (len > all.size() - 16) fail(path, ": truncated gallery index (rebuild it with `duet index`)");
  GalleryIndex g;
  try {
    const json h = json::parse(all.substr(16, len));
    if (h.at("format").get<std::string>() != kGalleryFormat)
      fail(path, ": a gallery index in format ", h.at("format").get<std::string>(), "; this duet reads ", kGalleryFormat,
           " (rebuild it with `duet index`)");
    g.model_hash = h.at("model_hash").get<std::string>();
    g.model_dir = h.at("model_dir").get<std::string>();
    g.root = h.at("root").get<std::string>();
    g.domain = h.at("domain").get<std::string>();
    g.index_type = h.at("index_type").get<std::string>();
    const int64_t n = h.at("rows").get<int64_t>();
    const size_t data = 16 + len;
    std::map<std::string, std::string> blob;
    size_t total = 0;
    for (const auto& b : h.at("blobs")) {
      const size_t off = b.at("offset").get<size_t>(), bytes = b.at("bytes").get<size_t>();
      if (off != total || data + off + bytes > all.size())
        fail(path, ": truncated gallery index (rebuild it with `duet index`)");
      if (hex64(checksum(all.data() + data + off, bytes)) != b.at("checksum").get<std::string>())
        fail(path, ": damaged gallery index (", b.at("name").get<std::string>(), " fails its checksum; rebuild it)");
      blob[b.at("name").get<std::string>()] = all.substr(data + off, bytes);
      total += bytes;
    }
    if (data + total != all.size()) fail(path, ": gallery index has trailing bytes (damaged; rebuild it)");
    auto matrix = [&](const char* name) {
      Matrix m;
      m.rows = n;
      m.cols = h.at("dims").at(name).get<int64_t>();
      const std::string& b = blob.at(name);
      if (b.size() != static_cast<size_t>(n * m.cols) * sizeof(float))
        fail(path, ": ", name, " has the wrong size (damaged index)");
      m.data = vector_of<float>(b);
      return m;
    };
    g.arrays.emb = matrix("emb");
    g.arrays.post = matrix("post");
    g.arrays.code = matrix("code");
    const std::string& thumbs = blob.at("thumbs");
    for (const auto& e : h.at("entries")) {
      GalleryEntry x;
      x.path = e.at(0).get<std::string>();
      x.bytes = e.at(1).get<int64_t>();
      x.mtime_ns = e.at(2).get<int64_t>();
      x.hash = from_hex(e.at(3).get<std::string>());
      const size_t off = e.at(4).get<size_t>(), bytes = e.at(5).get<size_t>();
      if (off + bytes > thumbs.size()) fail(path, ": thumbnail out of range (damaged index)");
      x.thumb = thumbs.substr(off, bytes);
      g.entries.push_back(std::move(x));
    }
    if (static_cast<int64_t>(g.entries.size()) != n) fail(path, ": ", g.entries.size(), " entries for ", n, " rows");
    if (h.contains("graph")) {
      DiffusionOptions o;  // only the CSR matters here; gallery_searcher sets the model's options
      g.graph = std::make_shared<const GalleryGraph>(n, o, vector_of<int64_t>(blob.at("graph_start")),
                                                     vector_of<int64_t>(blob.at("graph_col")),
                                                     vector_of<float>(blob.at("graph_w")));
    }
    if (h.contains("shard")) {
      const json& j = h.at("shard");
      GalleryShard s;
      s.index = j.at("index").get<int>();
      s.of = j.at("of").get<int>();
      s.offset = j.at("offset").get<int64_t>();
      s.total = j.at("total").get<int64_t>();
      s.start = vector_of<int64_t>(blob.at("shard_start"));
      s.col = vector_of<int64_t>(blob.at("shard_col"));
      s.w = vector_of<float>(blob.at("shard_w"));
      bool ok = s.of >= 1 && s.index >= 0 && s.index < s.of && s.offset >= 0 && s.offset + n <= s.total &&
                (s.start.empty() || (s.start.size() == static_cast<size_t>(n + 1) && s.start.front() == 0 &&
                                     s.start.back() == static_cast<int64_t>(s.col.size()))) &&
                s.col.size() == s.w.size();
      for (size_t i = 1; ok && i < s.start.size(); ++i) ok = s.start[i - 1] <= s.start[i];
      for (int64_t c : s.col) ok = ok && c >= 0 && c < s.total;
      if (!ok) fail(path, ": damaged shard header or graph rows (rebuild it with `duet shard`)");
      g.shard = std::move(s);
    }
  } catch (const json::exception& e) {
    fail(path, ": damaged gallery index header (", e.what(), ")");
  } catch (const std::out_of_range&) {
    fail(path, ": damaged gallery index (a blob is missing)");
  }
  return g;
}

void write_gallery(const std::string& path, const GalleryIndex& g) {
  AtomicFile f(path);
  f.write(gallery_bytes(g));
  f.commit();
}

GalleryIndex read_gallery(const std::string& path) {
  if (!file_exists(path)) fail(path, ": no such gallery index (build one with `duet index`)");
  return parse_gallery(read_file(path), path);
}

GalleryIndex shard_of(const GalleryIndex& g, int i, int n) {
  const int64_t rows = static_cast<int64_t>(g.entries.size());
  if (g.shard) fail("this index is already a shard (", g.shard->index, " of ", g.shard->of, "); shard the whole index");
  if (n < 1 || n > rows) fail("--shards: between 1 and the index's ", rows, " images (got ", n, ")");
  if (i < 0 || i >= n) fail("internal: shard ", i, " of ", n);
  const int64_t b = rows * i / n, e = rows * (i + 1) / n;
  GalleryIndex s;
  s.model_hash = g.model_hash;
  s.model_dir = g.model_dir;
  s.root = g.root;
  s.domain = g.domain;
  s.index_type = g.index_type;
  s.entries.assign(g.entries.begin() + b, g.entries.begin() + e);
  for (auto [from, to] : {std::pair{&g.arrays.emb, &s.arrays.emb}, {&g.arrays.post, &s.arrays.post}, {&g.arrays.code, &s.arrays.code}}) {
    *to = Matrix(e - b, from->cols);
    std::copy(from->row(b), from->row(b) + (e - b) * from->cols, to->data.begin());
  }
  GalleryShard sh;
  sh.index = i;
  sh.of = n;
  sh.offset = b;
  sh.total = rows;
  if (g.graph) {
    const auto &start = g.graph->csr_start(), &col = g.graph->csr_col();
    const auto& w = g.graph->csr_weight();
    sh.start.push_back(0);
    for (int64_t r = b; r < e; ++r) {
      sh.col.insert(sh.col.end(), col.begin() + start[r], col.begin() + start[r + 1]);
      sh.w.insert(sh.w.end(), w.begin() + start[r], w.begin() + start[r + 1]);
      sh.start.push_back(static_cast<int64_t>(sh.col.size()));
    }
  }
  s.shard = std::move(sh);
  return s;
}

Searcher gallery_searcher(const GalleryIndex& g, const RankOptions& rank) {
  // A shard's rows are scored for a front that diffuses over the whole graph (duet/shards.h).
  if (g.shard) return Searcher(g.arrays, rank, nullptr);
  std::shared_ptr<const GalleryGraph> graph;
  if (rank.fuse && rank.diffusion && g.graph) {
    auto copy = std::make_shared<GalleryGraph>(*g.graph);
    copy->set_options(rank.diff);
    graph = copy;
  } else if (rank.fuse && rank.diffusion && g.arrays.code.rows >= 2) {
    graph = std::make_shared<const GalleryGraph>(g.arrays.emb, rank.diff);
  }
  return Searcher(g.arrays, rank, graph);
}

std::vector<std::string> scan_images(const std::string& root) {
  std::vector<std::string> out;
  std::set<fs::path> seen;  // real folders visited: a link cycle ends at the second visit
  std::function<void(const fs::path&, const std::string&)> walk = [&](const fs::path& dir, const std::string& rel) {
    std::error_code ec;
    const fs::path real = fs::canonical(dir, ec);
    if (ec || !seen.insert(real).second) return;
    std::vector<fs::directory_entry> items;
    for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) items.push_back(*it);
    // By name: which of two links to one folder is walked must not depend on the directory order.
    std::sort(items.begin(), items.end(), [](const auto& a, const auto& b) { return a.path() < b.path(); });
    for (const auto& e : items) {
      const std::string name = e.path().filename().string();
      if (name.empty() || name[0] == '.') continue;
      const std::string r = rel.empty() ? name : rel + "/" + name;
      std::error_code e2;
      if (e.is_directory(e2)) walk(e.path(), r);
      else if (e.is_regular_file(e2) && is_image_name(name)) out.push_back(r);
    }
  };
  walk(fs::path(root), "");
  std::sort(out.begin(), out.end());
  return out;
}

}  // namespace duet
