// Gallery embedding: images through a model into gallery rows, incremental and data-parallel
// (duet index, and duet run's test gallery). See duet/gallery.h.
#include <sys/stat.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>
#include <set>
#include <unordered_map>

#include "duet/dist.h"
#include "duet/error.h"
#include "duet/fileio.h"
#include "duet/gallery.h"
#include "duet/image.h"
#include "duet/progress.h"

namespace duet {

namespace {

namespace fs = std::filesystem;

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
    cv::resize(rgb, small,
               cv::Size(std::max(1, static_cast<int>(rgb.cols * s + 0.5)),
                        std::max(1, static_cast<int>(rgb.rows * s + 0.5))),
               0, 0, cv::INTER_AREA);
  else
    small = rgb;
  cv::cvtColor(small, bgr, cv::COLOR_RGB2BGR);
  std::vector<uchar> jpg;
  cv::imencode(".jpg", bgr, jpg, {cv::IMWRITE_JPEG_QUALITY, 85});
  return std::string(jpg.begin(), jpg.end());
}

// embed_gallery's rows for `paths` (sorted, distinct), without the graph; counts all but
// `images` and `dropped` in rep.
GalleryIndex embed_rows(const Model& model, const std::string& domain, const std::string& root,
                        const std::vector<std::string>& paths, const GalleryOptions& opt,
                        const GalleryIndex* previous, GalleryReport& rep) {
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

  std::vector<Features> done;  // batches embedded now
  std::vector<std::pair<size_t, size_t>> where(paths.size(),
                                               {SIZE_MAX, 0});  // row -> (batch, index)
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
        const std::string bytes = read_image_file(file);
        r.e.hash = fnv1a(bytes);
        r.e.bytes = static_cast<int64_t>(bytes.size());
        if (auto it = prev_hash.find(r.e.hash); it != prev_hash.end()) {
          // Same content as a previous row (renamed, copied or touched): its features are this
          // file's.
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
    const double since =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - last_checkpoint).count();
    if (!opt.partial.empty() && e < todo.size() && since >= opt.checkpoint_s && !done.empty()) {
      GalleryIndex part;
      part.root = root;
      part.domain = domain;
      part.model_hash = model.info().hash;
      for (size_t p = 0; p < rows.size(); ++p) {
        if (where[p].first == SIZE_MAX) continue;
        const int64_t k = static_cast<int64_t>(where[p].second);
        part.entries.push_back(rows[p].e);
        part.arrays.append(done[where[p].first].rows(k, k + 1));
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
  // Widths first: a gallery without rows still has them.
  if (const GalleryArrays* w = !done.empty() ? &done[0] : previous ? &previous->arrays : nullptr)
    g.arrays.append(w->rows(0, 0));
  for (size_t p = 0; p < rows.size(); ++p) {
    Row& r = rows[p];
    if (!r.ok) continue;
    if (r.prev >= 0) {
      g.arrays.append(previous->arrays.rows(r.prev, r.prev + 1));
    } else {
      const int64_t k = static_cast<int64_t>(where[p].second);
      g.arrays.append(done[where[p].first].rows(k, k + 1));
    }
    g.entries.push_back(std::move(r.e));
  }
  return g;
}

// Rows of the ranks' shares, in rank order, as one gallery (no graph).
GalleryIndex concat_galleries(const std::vector<GalleryIndex>& parts) {
  GalleryIndex g = parts.at(0);
  for (size_t p = 1; p < parts.size(); ++p) {
    const GalleryIndex& o = parts[p];
    g.entries.insert(g.entries.end(), o.entries.begin(), o.entries.end());
    g.arrays.append(o.arrays);
  }
  return g;
}
}  // namespace

GalleryIndex embed_gallery(const Model& model, const std::string& domain, const std::string& root,
                           std::vector<std::string> paths, const GalleryOptions& opt,
                           const GalleryIndex* previous, GalleryReport* report) {
  const auto t0 = std::chrono::steady_clock::now();
  GalleryReport rep;
  std::sort(paths.begin(), paths.end());
  paths.erase(std::unique(paths.begin(), paths.end()), paths.end());
  rep.images = static_cast<int64_t>(paths.size());
  GalleryIndex g;
  if (dist::world() == 1) {
    g = embed_rows(model, domain, root, paths, opt, previous, rep);
  } else {
    // Data-parallel ranks: each embeds a contiguous share of the sorted paths; rank 0 gathers the
    // shares (their rows in path order) and alone goes on. Each image is encoded alone, so the
    // rows are the ones one process computes.
    const auto [b, e] = dist::share(0, static_cast<int64_t>(paths.size()));
    GalleryIndex part =
        embed_rows(model, domain, root, {paths.begin() + b, paths.begin() + e}, opt, previous, rep);
    const std::vector<std::string> bytes = dist::gather_bytes(gallery_bytes(part));
    const auto n = dist::sum({static_cast<double>(rep.embedded), static_cast<double>(rep.reused),
                              static_cast<double>(rep.renamed), static_cast<double>(rep.skipped)});
    rep.embedded = static_cast<int64_t>(n[0]);
    rep.reused = static_cast<int64_t>(n[1]);
    rep.renamed = static_cast<int64_t>(n[2]);
    rep.skipped = static_cast<int64_t>(n[3]);
    if (!dist::leader()) {
      if (report) *report = rep;
      return part;
    }
    std::vector<GalleryIndex> parts;
    for (size_t r = 0; r < bytes.size(); ++r)
      parts.push_back(parse_gallery(bytes[r], "rank " + std::to_string(r) + "'s share"));
    g = concat_galleries(parts);
  }
  if (previous) {
    std::set<std::string> now(paths.begin(), paths.end()), gone;
    for (const auto& e : previous->entries)
      if (!now.count(e.path)) gone.insert(e.path);
    rep.dropped = std::max<int64_t>(0, static_cast<int64_t>(gone.size()) - rep.renamed);
  }
  const int64_t n = static_cast<int64_t>(g.entries.size());
  const RankOptions& rank = model.info().rank;
  g.graph = gallery_graph(g.arrays, rank);
  g.index_type = Searcher::index_type_for(n);
  rep.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  if (report) *report = rep;
  return g;
}

GalleryReport build_gallery_index(const Model& model, const std::string& model_dir,
                                  const std::string& images, const std::string& out,
                                  const GalleryOptions& options) {
  if (!dir_exists(images)) fail(images, ": no such folder");
  // Data-parallel ranks each checkpoint their own share; rank 0 writes the index.
  GalleryOptions opt = options;
  if (dist::world() > 1 && !opt.partial.empty())
    opt.partial += ".rank" + std::to_string(dist::rank());
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
      // Append the checkpoint's rows to the previous index's (paths may repeat: reuse takes the
      // first).
      prev = concat_galleries({prev, g});
    } catch (const Error& e) {
      log_line(std::string("not reused: ") + e.what());
    }
  }
  GalleryReport rep;
  GalleryIndex g = embed_gallery(model, model.info().gallery_domain, root, paths, opt,
                                 have_prev ? &prev : nullptr, &rep);
  if (dist::leader()) {
    if (g.entries.empty()) fail(images, ": none of its ", paths.size(), " images could be read");
    g.model_dir = fs::absolute(model_dir).lexically_normal().string();
    write_gallery(out, g);
  }
  if (!opt.partial.empty()) std::remove(opt.partial.c_str());
  return rep;
}

Features embed_files(const Model& model, const std::string& domain,
                     const std::vector<std::string>& files, int batch) {
  // Data-parallel ranks embed their shares; every rank gets every row.
  const auto [b0, e0] = dist::share(0, static_cast<int64_t>(files.size()));
  Features all = model.features(domain, {}, {});  // no rows yet, the widths
  Progress bar("embed " + domain, e0 - b0);
  for (size_t b = static_cast<size_t>(b0); b < static_cast<size_t>(e0);
       b += static_cast<size_t>(batch)) {
    const size_t e = std::min(static_cast<size_t>(e0), b + static_cast<size_t>(batch));
    std::vector<cv::Mat> imgs;
    std::vector<uint64_t> hashes(e - b);
    for (size_t i = b; i < e; ++i) imgs.push_back(load_rgb(files[i], &hashes[i - b]));
    all.append(model.features(domain, imgs, hashes));
    bar.tick(static_cast<int64_t>(e - b));
  }
  bar.finish();
  const int64_t n = static_cast<int64_t>(files.size());
  for (Matrix* m : all.matrices())
    *m = m->cols > 0 ? dist::gather_rows(*m, n) : Matrix(n, 0);  // gloo cannot gather empty rows
  return all;
}

}  // namespace duet
