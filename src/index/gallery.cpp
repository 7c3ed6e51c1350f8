// Gallery index files, folder scans and (incremental) gallery embedding. See duet/gallery.h.
#include "duet/gallery.h"

#include <nlohmann/json.hpp>
#include <sys/stat.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <map>
#include <set>
#include <unordered_map>

#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include "duet/error.h"
#include "duet/fileio.h"
#include "duet/image.h"
#include "duet/progress.h"

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

struct FileStat {
  int64_t bytes = -1, mtime_ns = 0;
};
FileStat stat_file(const std::string& path) {
  struct stat st;
  FileStat f;
  if (::stat(path.c_str(), &st) != 0) return f;
  f.bytes = st.st_size;
  f.mtime_ns = static_cast<int64_t>(st.st_mtim.tv_sec) * 1000000000LL + st.st_mtim.tv_nsec;
  return f;
}

std::string thumbnail(const cv::Mat& rgb, int side) {
  if (side <= 0) return "";
  const double s = static_cast<double>(side) / std::max(rgb.cols, rgb.rows);
  cv::Mat small, bgr;
  if (s < 1)
    cv::resize(rgb, small, cv::Size(std::max(1, static_cast<int>(rgb.cols * s + 0.5)),
                                    std::max(1, static_cast<int>(rgb.rows * s + 0.5))),
               0, 0, cv::INTER_AREA);
  else
    small = rgb;
  cv::cvtColor(small, bgr, cv::COLOR_RGB2BGR);
  std::vector<uchar> jpg;
  cv::imencode(".jpg", bgr, jpg, {cv::IMWRITE_JPEG_QUALITY, 85});
  return std::string(jpg.begin(), jpg.end());
}

void copy_row(const Matrix& from, int64_t r, Matrix& to, int64_t i) {
  std::copy(from.row(r), from.row(r) + from.cols, to.row(i));
}

}  // namespace

void write_gallery(const std::string& path, const GalleryIndex& g) {
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
  blobs.emplace_back("thumbs", std::move(thumbs));
  size_t off = 0;
  for (const auto& [name, b] : blobs) {
    h["blobs"].push_back({{"name", name}, {"offset", off}, {"bytes", b.size()}, {"checksum", hex64(checksum(b.data(), b.size()))}});
    off += b.size();
  }
  const std::string head = h.dump();
  AtomicFile f(path);
  f.write(kMagic, sizeof kMagic);
  const uint64_t len = head.size();
  f.write(&len, sizeof len);
  f.write(head);
  for (const auto& [name, b] : blobs) f.write(b);
  f.commit();
}

GalleryIndex read_gallery(const std::string& path) {
  if (!file_exists(path)) fail(path, ": no such gallery index (build one with `duet index`)");
  const std::string all = read_file(path);
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
  } catch (const json::exception& e) {
    fail(path, ": damaged gallery index header (", e.what(), ")");
  } catch (const std::out_of_range&) {
    fail(path, ": damaged gallery index (a blob is missing)");
  }
  return g;
}

Searcher gallery_searcher(const GalleryIndex& g, const RankOptions& rank) {
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

GalleryIndex embed_gallery(const Model& model, const std::string& domain, const std::string& root,
                           std::vector<std::string> paths, const GalleryOptions& opt,
                           const GalleryIndex* previous, GalleryReport* report) {
  const auto t0 = std::chrono::steady_clock::now();
  GalleryReport rep;
  std::sort(paths.begin(), paths.end());
  paths.erase(std::unique(paths.begin(), paths.end()), paths.end());
  rep.images = static_cast<int64_t>(paths.size());
  std::unordered_map<std::string, size_t> prev_path;
  std::unordered_map<uint64_t, size_t> prev_hash;
  if (previous)
    for (size_t i = 0; i < previous->entries.size(); ++i) {
      prev_path[previous->entries[i].path] = i;
      prev_hash.emplace(previous->entries[i].hash, i);
    }

  // Each path: reused from the previous index (by path, size and mtime, else by content), or new.
  struct Row {
    GalleryEntry e;
    int64_t prev = -1;  // row of `previous`, or -1: embedded now
    bool ok = false;
  };
  std::vector<Row> rows(paths.size());
  std::vector<size_t> todo;
  for (size_t i = 0; i < paths.size(); ++i) {
    Row& r = rows[i];
    r.e.path = paths[i];
    const FileStat st = stat_file(root + "/" + paths[i]);
    r.e.bytes = st.bytes;
    r.e.mtime_ns = st.mtime_ns;
    if (auto it = prev_path.find(paths[i]); it != prev_path.end()) {
      const GalleryEntry& p = previous->entries[it->second];
      if (p.bytes == st.bytes && p.mtime_ns == st.mtime_ns) {
        r.e.hash = p.hash;
        r.e.thumb = p.thumb;
        r.prev = static_cast<int64_t>(it->second);
        r.ok = true;
        ++rep.reused;
        continue;
      }
    }
    todo.push_back(i);
  }

  std::vector<Features> done;       // batches embedded now
  std::vector<std::pair<size_t, size_t>> where(paths.size(), {SIZE_MAX, 0});  // row -> (batch, index)
  Progress bar("index", static_cast<int64_t>(todo.size()));
  auto last_checkpoint = std::chrono::steady_clock::now();
  for (size_t b = 0; b < todo.size(); b += static_cast<size_t>(opt.batch)) {
    const size_t e = std::min(todo.size(), b + static_cast<size_t>(opt.batch));
    std::vector<cv::Mat> imgs;
    std::vector<uint64_t> hashes;
    std::vector<size_t> idx;
    for (size_t t = b; t < e; ++t) {
      Row& r = rows[todo[t]];
      const std::string file = root + "/" + r.e.path;
      try {
        const std::string bytes = read_file(file);
        r.e.hash = fnv1a(bytes);
        r.e.bytes = static_cast<int64_t>(bytes.size());
        if (auto it = prev_hash.find(r.e.hash); it != prev_hash.end()) {
          // Same content as a previous row (renamed, copied or touched): its features are this file's.
          r.prev = static_cast<int64_t>(it->second);
          r.e.thumb = previous->entries[it->second].thumb;
          r.ok = true;
          ++(previous->entries[it->second].path == r.e.path ? rep.reused : rep.renamed);
          continue;
        }
        cv::Mat rgb = decode_rgb(bytes, file);
        r.e.thumb = thumbnail(rgb, opt.thumb);
        imgs.push_back(std::move(rgb));
        hashes.push_back(r.e.hash);
        idx.push_back(todo[t]);
      } catch (const Error& err) {
        if (opt.strict) throw;
        log_line(std::string("skipped ") + err.what());
        ++rep.skipped;
      }
    }
    if (!imgs.empty()) {
      done.push_back(model.features(domain, imgs, hashes));
      for (size_t k = 0; k < idx.size(); ++k) {
        where[idx[k]] = {done.size() - 1, k};
        rows[idx[k]].ok = true;
        ++rep.embedded;
      }
    }
    bar.tick(static_cast<int64_t>(e - b));
    // A checkpoint of what this run embedded, so an interrupted run resumes from it.
    const double since = std::chrono::duration<double>(std::chrono::steady_clock::now() - last_checkpoint).count();
    if (!opt.partial.empty() && e < todo.size() && since >= opt.checkpoint_s && !done.empty()) {
      GalleryIndex part;
      part.root = root;
      part.domain = domain;
      part.model_hash = model.info().hash;
      const Features& f0 = done[0];
      part.arrays.emb = Matrix(0, f0.emb.cols);
      part.arrays.post = Matrix(0, f0.post.cols);
      part.arrays.code = Matrix(0, f0.code.cols);
      for (size_t p = 0; p < rows.size(); ++p) {
        if (where[p].first == SIZE_MAX) continue;
        const Features& f = done[where[p].first];
        const int64_t k = static_cast<int64_t>(where[p].second);
        part.entries.push_back(rows[p].e);
        for (auto [from, to] : {std::pair{&f.emb, &part.arrays.emb}, {&f.post, &part.arrays.post}, {&f.code, &part.arrays.code}}) {
          to->data.insert(to->data.end(), from->row(k), from->row(k) + from->cols);
          ++to->rows;
        }
      }
      write_gallery(opt.partial, part);
      last_checkpoint = std::chrono::steady_clock::now();
    }
  }
  bar.finish();

  // Assemble in path order.
  GalleryIndex g;
  g.root = root;
  g.domain = domain;
  g.model_hash = model.info().hash;
  int64_t n = 0;
  for (const auto& r : rows) n += r.ok;
  const Matrix* pe = previous ? &previous->arrays.emb : nullptr;
  int64_t D = 0, C = 0, Z = 0;
  if (!done.empty()) D = done[0].emb.cols, C = done[0].post.cols, Z = done[0].code.cols;
  else if (previous) D = pe->cols, C = previous->arrays.post.cols, Z = previous->arrays.code.cols;
  g.arrays.emb = Matrix(n, D);
  g.arrays.post = Matrix(n, C);
  g.arrays.code = Matrix(n, Z);
  int64_t i = 0;
  for (size_t p = 0; p < rows.size(); ++p) {
    Row& r = rows[p];
    if (!r.ok) continue;
    if (r.prev >= 0) {
      copy_row(previous->arrays.emb, r.prev, g.arrays.emb, i);
      copy_row(previous->arrays.post, r.prev, g.arrays.post, i);
      copy_row(previous->arrays.code, r.prev, g.arrays.code, i);
    } else {
      const Features& f = done[where[p].first];
      copy_row(f.emb, static_cast<int64_t>(where[p].second), g.arrays.emb, i);
      copy_row(f.post, static_cast<int64_t>(where[p].second), g.arrays.post, i);
      copy_row(f.code, static_cast<int64_t>(where[p].second), g.arrays.code, i);
    }
    g.entries.push_back(std::move(r.e));
    ++i;
  }
  if (previous) {
    std::set<std::string> now(paths.begin(), paths.end()), gone;
    for (const auto& e : previous->entries)
      if (!now.count(e.path)) gone.insert(e.path);
    rep.dropped = std::max<int64_t>(0, static_cast<int64_t>(gone.size()) - rep.renamed);
  }
  const RankOptions& rank = model.info().rank;
  if (rank.fuse && rank.diffusion && n >= 2) g.graph = std::make_shared<const GalleryGraph>(g.arrays.emb, rank.diff);
  g.index_type = Searcher::index_type_for(n);
  rep.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  if (report) *report = rep;
  return g;
}

GalleryReport build_gallery_index(const Model& model, const std::string& model_dir, const std::string& images,
                                  const std::string& out, const GalleryOptions& opt) {
  if (!dir_exists(images)) fail(images, ": no such folder");
  const std::string root = fs::absolute(images).lexically_normal().string();
  auto paths = scan_images(root);
  if (paths.empty()) fail(images, ": no images (jpg, jpeg, png, bmp, webp) under it");
  // What can be reused: the previous index and an interrupted run's checkpoint, if made by this
  // model from this folder.
  GalleryIndex prev;
  bool have_prev = false;
  for (const std::string& f : {out, opt.partial}) {
    if (f.empty() || !file_exists(f)) continue;
    try {
      GalleryIndex g = read_gallery(f);
      if (g.model_hash != model.info().hash || g.root != root) {
        log_line(f + ": made by another model or from another folder; not reused");
        continue;
      }
      if (!have_prev) {
        prev = std::move(g);
        have_prev = true;
        continue;
      }
      // Append the checkpoint's rows to the previous index's (paths may repeat: reuse takes the first).
      for (size_t r = 0; r < g.entries.size(); ++r) prev.entries.push_back(g.entries[r]);
      auto cat = [](Matrix& a, const Matrix& b) {
        a.data.insert(a.data.end(), b.data.begin(), b.data.end());
        a.rows += b.rows;
      };
      cat(prev.arrays.emb, g.arrays.emb);
      cat(prev.arrays.post, g.arrays.post);
      cat(prev.arrays.code, g.arrays.code);
    } catch (const Error& e) {
      log_line(std::string("not reused: ") + e.what());
    }
  }
  GalleryReport rep;
  GalleryIndex g = embed_gallery(model, model.info().gallery_domain, root, paths, opt, have_prev ? &prev : nullptr, &rep);
  if (g.entries.empty()) fail(images, ": none of its ", paths.size(), " images could be read");
  g.model_dir = fs::absolute(model_dir).lexically_normal().string();
  write_gallery(out, g);
  if (!opt.partial.empty()) std::remove(opt.partial.c_str());
  return rep;
}

}  // namespace duet

namespace duet {

Features embed_files(const Model& model, const std::string& domain, const std::vector<std::string>& files, int batch) {
  Features all;
  Progress bar("embed " + domain, static_cast<int64_t>(files.size()));
  for (size_t b = 0; b < files.size(); b += static_cast<size_t>(batch)) {
    const size_t e = std::min(files.size(), b + static_cast<size_t>(batch));
    std::vector<cv::Mat> imgs;
    std::vector<uint64_t> hashes(e - b);
    for (size_t i = b; i < e; ++i) imgs.push_back(load_rgb(files[i], &hashes[i - b]));
    Features f = model.features(domain, imgs, hashes);
    for (auto [from, to] : {std::pair{&f.emb, &all.emb}, {&f.post, &all.post}, {&f.code, &all.code}}) {
      to->cols = from->cols;
      to->rows += from->rows;
      to->data.insert(to->data.end(), from->data.begin(), from->data.end());
    }
    bar.tick(static_cast<int64_t>(e - b));
  }
  bar.finish();
  return all;
}

}  // namespace duet
