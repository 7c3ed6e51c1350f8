// Gallery index files, folder scans and the searcher over an index. See duet/gallery.h.
#include "duet/gallery.h"

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <set>

#include "common/json_whole.h"
#include "duet/error.h"
#include "duet/fileio.h"

namespace duet {

namespace {

using json = nlohmann::json;
namespace fs = std::filesystem;

constexpr char kMagic[8] = {'D', 'U', 'E', 'T', 'G', 'A', 'L', '1'};

// FNV-1a over 64-bit words (then the tail bytes): a checksum fast enough for gigabytes. Fed in
// pieces (a blob straight from its vector, the thumbnails entry by entry), it gives what it gives
// over the pieces joined.
class Checksum {
 public:
  void add(const char* p, size_t n) {
    while (n > 0 && pending_ > 0) {  // complete the word a previous piece began
      word_[pending_++] = *p++, --n;
      if (pending_ == 8) mix(word_), pending_ = 0;
    }
    for (; n >= 8; p += 8, n -= 8) mix(p);
    for (; n > 0; --n) word_[pending_++] = *p++;
  }
  uint64_t value() const {
    uint64_t h = h_;
    for (size_t i = 0; i < pending_; ++i)
      h = (h ^ static_cast<unsigned char>(word_[i])) * 1099511628211ull;
    return h;
  }

 private:
  uint64_t h_ = 1469598103934665603ull;
  char word_[8] = {};
  size_t pending_ = 0;
  void mix(const char* p) {
    uint64_t w;
    std::memcpy(&w, p, 8);
    h_ = (h_ ^ w) * 1099511628211ull;
  }
};

// A content hash as hex64 wrote it (std::stoull alone would throw std::invalid_argument).
uint64_t from_hex(const std::string& s) {
  if (s.empty() || s.size() > 16 ||
      s.find_first_not_of("0123456789abcdefABCDEF") != std::string::npos)
    throw json::type_error::create(302, "a content hash, not '" + s.substr(0, 40) + "'", nullptr);
  return std::stoull(s, nullptr, 16);
}

bool is_image_name(const std::string& name) {
  const auto dot = name.find_last_of('.');
  if (dot == std::string::npos) return false;
  std::string ext = name.substr(dot + 1);
  std::transform(ext.begin(), ext.end(), ext.begin(),
                 [](unsigned char c) { return std::tolower(c); });
  return ext == "jpg" || ext == "jpeg" || ext == "png" || ext == "bmp" || ext == "webp";
}

}  // namespace

namespace {

// A blob of the file: its name and its pieces (memory the index owns, written as it is).
struct Blob {
  std::string name;
  std::vector<std::pair<const char*, size_t>> pieces;
  size_t bytes() const {
    size_t n = 0;
    for (const auto& p : pieces) n += p.second;
    return n;
  }
};
template <typename T>
Blob blob_of(const std::string& name, const std::vector<T>& v) {
  return {name, {{reinterpret_cast<const char*>(v.data()), v.size() * sizeof(T)}}};
}

// Writes the file through `out` (a string, or the temporary file of write_gallery) straight from
// the index's arrays: a 1M-photo index (about 10 GB) is never copied whole in memory.
void emit_gallery(const GalleryIndex& g, const std::function<void(const char*, size_t)>& out) {
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
  std::vector<Blob> blobs;
  Blob thumbs{"thumbs", {}};
  json entries = json::array();
  size_t thumb_at = 0;
  for (const auto& e : g.entries) {
    entries.push_back({e.path, e.bytes, e.mtime_ns, hex64(e.hash), thumb_at, e.thumb.size()});
    thumbs.pieces.emplace_back(e.thumb.data(), e.thumb.size());
    thumb_at += e.thumb.size();
  }
  h["entries"] = std::move(entries);  // [path, bytes, mtime_ns, hash, thumb offset, thumb bytes]
  auto matrix = [&](const char* name, const Matrix& m) {
    if (m.rows != n) fail("internal: ", name, " has ", m.rows, " rows for ", n, " entries");
    h["dims"][name] = m.cols;
    blobs.push_back(blob_of(name, m.data));
  };
  matrix("emb", g.arrays.emb);
  matrix("post", g.arrays.post);
  matrix("code", g.arrays.code);
  if (g.arrays.bridge.cols > 0) matrix("bridge", g.arrays.bridge);
  if (g.graph) {
    h["graph"] = {{"edges", g.graph->csr_col().size()}};
    blobs.push_back(blob_of("graph_start", g.graph->csr_start()));
    blobs.push_back(blob_of("graph_col", g.graph->csr_col()));
    blobs.push_back(blob_of("graph_w", g.graph->csr_weight()));
  }
  if (g.shard) {
    const GalleryShard& s = *g.shard;
    h["shard"] = {{"index", s.index}, {"of", s.of}, {"offset", s.offset}, {"total", s.total}};
    blobs.push_back(blob_of("shard_start", s.start));
    blobs.push_back(blob_of("shard_col", s.col));
    blobs.push_back(blob_of("shard_w", s.w));
  }
  blobs.push_back(std::move(thumbs));
  size_t off = 0;
  for (const auto& b : blobs) {
    Checksum c;
    for (const auto& [p, len] : b.pieces) c.add(p, len);
    h["blobs"].push_back(
        {{"name", b.name}, {"offset", off}, {"bytes", b.bytes()}, {"checksum", hex64(c.value())}});
    off += b.bytes();
  }
  const std::string head = h.dump();
  const uint64_t len = head.size();
  out(kMagic, sizeof kMagic);
  out(reinterpret_cast<const char*>(&len), sizeof len);
  out(head.data(), head.size());
  for (const auto& b : blobs)
    for (const auto& [p, len] : b.pieces) out(p, len);
}

// Reads `n` bytes at `off` of the file (or of bytes in memory) into `out`; the caller has checked
// that they are there.
using ReadAt = std::function<void(uint64_t off, size_t n, char* out)>;

// The index from its bytes, each blob read once into the array that keeps it and checked against
// its checksum there.
GalleryIndex parse_index(uint64_t size, const ReadAt& read, const std::string& path) {
  char start[16];
  if (size < 16) fail(path, ": not a duet gallery index (build one with `duet index`)");
  read(0, 16, start);
  if (std::memcmp(start, kMagic, 8) != 0)
    fail(path, ": not a duet gallery index (build one with `duet index`)");
  uint64_t len = 0;
  std::memcpy(&len, start + 8, 8);
  if (len > size - 16) fail(path, ": truncated gallery index (rebuild it with `duet index`)");
  std::string head(len, '\0');
  read(16, len, head.data());
  GalleryIndex g;
  try {
    const json h = json::parse(head);
    if (h.at("format").get<std::string>() != kGalleryFormat)
      fail(path, ": a gallery index in format ", h.at("format").get<std::string>(),
           "; this duet reads ", kGalleryFormat, " (rebuild it with `duet index`)");
    g.model_hash = h.at("model_hash").get<std::string>();
    g.model_dir = h.at("model_dir").get<std::string>();
    g.root = h.at("root").get<std::string>();
    g.domain = h.at("domain").get<std::string>();
    g.index_type = h.at("index_type").get<std::string>();
    // Each row has an entry in the header: more rows than header bytes is damage (and bounds n).
    const int64_t n = json_whole<int64_t>(h.at("rows"));
    if (n < 0 || static_cast<uint64_t>(n) > len)
      fail(path, ": damaged gallery index header (", n, " rows)");
    const uint64_t data = 16 + len;
    struct Span {
      uint64_t off = 0, bytes = 0;
      std::string checksum;
    };
    std::map<std::string, Span> blob;
    uint64_t total = 0;
    for (const auto& b : h.at("blobs")) {
      const uint64_t off = json_whole<uint64_t>(b.at("offset")),
                     bytes = json_whole<uint64_t>(b.at("bytes"));
      if (off != total || bytes > size - data - off)
        fail(path, ": truncated gallery index (rebuild it with `duet index`)");
      blob[b.at("name").get<std::string>()] = {data + off, bytes,
                                               b.at("checksum").get<std::string>()};
      total += bytes;
    }
    if (data + total != size)
      fail(path, ": gallery index has trailing bytes (damaged; rebuild it)");
    auto check = [&](const std::string& name, const Checksum& c) {
      if (hex64(c.value()) != blob.at(name).checksum)
        fail(path, ": damaged gallery index (", name, " fails its checksum; rebuild it)");
    };
    auto array = [&](const std::string& name, auto& v) {
      const Span& b = blob.at(name);
      using T = typename std::decay_t<decltype(v)>::value_type;
      if (b.bytes % sizeof(T) != 0) fail(path, ": ", name, " has the wrong size (damaged index)");
      v.resize(b.bytes / sizeof(T));
      read(b.off, b.bytes, reinterpret_cast<char*>(v.data()));
      Checksum c;
      c.add(reinterpret_cast<const char*>(v.data()), b.bytes);
      check(name, c);
    };
    auto matrix = [&](const char* name) {
      Matrix m;
      m.rows = n;
      m.cols = json_whole<int64_t>(h.at("dims").at(name));
      // n * cols floats, checked by division: a damaged header's cols must not overflow it.
      const uint64_t bytes = blob.at(name).bytes, row = static_cast<uint64_t>(n) * sizeof(float);
      if (m.cols < 0 ||
          (n == 0 ? bytes != 0 : bytes % row != 0 || bytes / row != static_cast<uint64_t>(m.cols)))
        fail(path, ": ", name, " has the wrong size (damaged index)");
      array(name, m.data);
      return m;
    };
    g.arrays.emb = matrix("emb");
    g.arrays.post = matrix("post");
    g.arrays.code = matrix("code");
    // Indexes of models without a bridge have none.
    g.arrays.bridge = h.at("dims").contains("bridge") ? matrix("bridge") : Matrix(n, 0);
    // The thumbnails lie in entry order, one after another: each read into its entry.
    const Span& thumbs = blob.at("thumbs");
    Checksum tc;
    uint64_t thumb_at = 0;
    for (const auto& e : h.at("entries")) {
      GalleryEntry x;
      x.path = e.at(0).get<std::string>();
      x.bytes = json_whole<int64_t>(e.at(1));
      x.mtime_ns = json_whole<int64_t>(e.at(2));
      x.hash = from_hex(e.at(3).get<std::string>());
      const uint64_t off = json_whole<uint64_t>(e.at(4)), bytes = json_whole<uint64_t>(e.at(5));
      if (off != thumb_at || bytes > thumbs.bytes - off)
        fail(path, ": thumbnail out of range (damaged index)");
      x.thumb.resize(bytes);
      read(thumbs.off + off, bytes, x.thumb.data());
      tc.add(x.thumb.data(), bytes);
      thumb_at += bytes;
      g.entries.push_back(std::move(x));
    }
    if (thumb_at != thumbs.bytes) fail(path, ": thumbnail out of range (damaged index)");
    check("thumbs", tc);
    if (static_cast<int64_t>(g.entries.size()) != n)
      fail(path, ": ", g.entries.size(), " entries for ", n, " rows");
    if (h.contains("graph")) {
      std::vector<int64_t> start, col;
      std::vector<float> w;
      array("graph_start", start);
      array("graph_col", col);
      array("graph_w", w);
      DiffusionOptions o;  // only the CSR matters here; gallery_searcher sets the model's options
      g.graph = std::make_shared<const GalleryGraph>(n, o, std::move(start), std::move(col),
                                                     std::move(w));
    }
    if (h.contains("shard")) {
      const json& j = h.at("shard");
      GalleryShard s;
      s.index = json_whole<int>(j.at("index"));
      s.of = json_whole<int>(j.at("of"));
      s.offset = json_whole<int64_t>(j.at("offset"));
      s.total = json_whole<int64_t>(j.at("total"));
      array("shard_start", s.start);
      array("shard_col", s.col);
      array("shard_w", s.w);
      bool ok = s.of >= 1 && s.index >= 0 && s.index < s.of && s.offset >= 0 && s.total >= n &&
                s.offset <= s.total - n &&
                (s.start.empty() ||
                 (s.start.size() == static_cast<size_t>(n + 1) && s.start.front() == 0 &&
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

}  // namespace

std::string gallery_bytes(const GalleryIndex& g) {
  std::string out;
  emit_gallery(g, [&](const char* p, size_t n) { out.append(p, n); });
  return out;
}

GalleryIndex parse_gallery(const std::string& all, const std::string& path) {
  const ReadAt read = [&](uint64_t off, size_t n, char* out) {
    if (n > 0) std::memcpy(out, all.data() + off, n);  // an empty blob's vector: data() may be null
  };
  return parse_index(all.size(), read, path);
}

void write_gallery(const std::string& path, const GalleryIndex& g) {
  AtomicFile f(path);
  emit_gallery(g, [&](const char* p, size_t n) { f.write(p, n); });
  f.commit();
}

GalleryIndex read_gallery(const std::string& path) {
  if (!file_exists(path)) fail(path, ": no such gallery index (build one with `duet index`)");
  std::ifstream f(path, std::ios::binary);
  if (!f) fail(path, ": cannot open the gallery index");
  f.seekg(0, std::ios::end);
  const auto size = static_cast<uint64_t>(f.tellg());
  // Blob by blob from the file into the arrays that keep them.
  return parse_index(
      size,
      [&](uint64_t off, size_t n, char* out) {
        f.seekg(static_cast<std::streamoff>(off));
        if (!f.read(out, static_cast<std::streamsize>(n)))
          fail(path, ": cannot read the gallery index (", n, " bytes at ", off, ")");
      },
      path);
}

GalleryIndex shard_of(const GalleryIndex& g, int i, int n) {
  const int64_t rows = static_cast<int64_t>(g.entries.size());
  if (g.shard)
    fail("this index is already a shard (", g.shard->index, " of ", g.shard->of,
         "); shard the whole index");
  if (n < 1 || n > rows)
    fail("--shards: between 1 and the index's ", rows, " images (got ", n, ")");
  if (i < 0 || i >= n) fail("internal: shard ", i, " of ", n);
  const int64_t b = rows * i / n, e = rows * (i + 1) / n;
  GalleryIndex s;
  s.model_hash = g.model_hash;
  s.model_dir = g.model_dir;
  s.root = g.root;
  s.domain = g.domain;
  s.index_type = g.index_type;
  s.entries.assign(g.entries.begin() + b, g.entries.begin() + e);
  s.arrays = g.arrays.rows(b, e);
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
  // The searcher keeps copies of the posteriors, codes and (when its score weighs them) bridge
  // rows, not of the 1024-d embeddings.
  GalleryArrays rows{Matrix(), g.arrays.post, g.arrays.code,
                     rank.fuse && rank.fusion.uses_bridge() ? g.arrays.bridge : Matrix()};
  // A shard's rows are scored for a front that diffuses over the whole graph (duet/shards.h).
  if (g.shard) return Searcher(std::move(rows), rank, nullptr);
  std::shared_ptr<const GalleryGraph> graph;
  if (rank.fuse && rank.diffusion && g.graph) {
    auto copy = std::make_shared<GalleryGraph>(*g.graph);
    copy->set_options(rank.diff);
    graph = copy;
  } else {
    graph = gallery_graph(g.arrays, rank);
  }
  return Searcher(std::move(rows), rank, graph);
}

std::vector<std::string> scan_images(const std::string& root) {
  std::vector<std::string> out;
  std::set<fs::path> seen;  // real folders visited: a link cycle ends at the second visit
  std::function<void(const fs::path&, const std::string&)> walk = [&](const fs::path& dir,
                                                                      const std::string& rel) {
    std::error_code ec;
    const fs::path real = fs::canonical(dir, ec);
    if (ec || !seen.insert(real).second) return;
    std::vector<fs::directory_entry> items;
    for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec))
      items.push_back(*it);
    // By name: which of two links to one folder is walked must not depend on the directory order.
    std::sort(items.begin(), items.end(),
              [](const auto& a, const auto& b) { return a.path() < b.path(); });
    for (const auto& e : items) {
      const std::string name = e.path().filename().string();
      if (name.empty() || name[0] == '.') continue;
      const std::string r = rel.empty() ? name : rel + "/" + name;
      std::error_code e2;
      if (e.is_directory(e2))
        walk(e.path(), r);
      else if (e.is_regular_file(e2) && is_image_name(name))
        out.push_back(r);
    }
  };
  walk(fs::path(root), "");
  std::sort(out.begin(), out.end());
  return out;
}

}  // namespace duet
