// duet/gallery.h — a gallery index: a folder of images embedded once by a model, ready to search.
//
// One file, written atomically: "DUETGAL1", the header length (uint64 LE), a JSON header (format,
// model hash and folder, the indexed root, per image: path relative to the root, size, mtime,
// content hash, thumbnail span), then the blobs the header lists with their offsets and
// checksums: the Phase I embeddings, posteriors and Phase II codes (float32, row-major, rows in
// path order), the diffusion graph (CSR) and the JPEG thumbnails.
//
// `duet index` builds or updates one (build_gallery_index); `duet run` builds its test gallery
// with the same embedding code (embed_gallery) and never writes it.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "duet/diffusion.h"
#include "duet/model.h"
#include "duet/search.h"

namespace duet {

constexpr const char* kGalleryFormat = "duet-gallery-v1";

struct GalleryEntry {
  std::string path;   // relative to GalleryIndex::root
  int64_t bytes = 0;  // file size
  int64_t mtime_ns = 0;
  uint64_t hash = 0;  // fnv1a of the file's bytes (load_rgb's content_hash)
  std::string thumb;  // JPEG bytes (may be empty)
};

// A shard of a larger index (`duet shard`, served behind `duet serve --shards`): rows
// [offset, offset + rows) of `total`, with the whole gallery graph's rows of these items (CSR,
// columns are rows of the whole index; empty when the model does not diffuse).
struct GalleryShard {
  int index = 0, of = 1;
  int64_t offset = 0, total = 0;
  std::vector<int64_t> start;  // [rows + 1]
  std::vector<int64_t> col;
  std::vector<float> w;
};

struct GalleryIndex {
  std::string model_hash, model_dir;  // the model that embedded it
  std::string root;                   // absolute path of the indexed folder
  std::string domain;                 // the model domain its images went through
  std::vector<GalleryEntry> entries;  // sorted by path; row i of the arrays is entry i
  GalleryArrays arrays;
  std::shared_ptr<const GalleryGraph> graph;  // null when the model does not diffuse
  std::string index_type = "exact";           // how search() finds candidates
  std::optional<GalleryShard> shard;          // set in a shard (then graph is null)

  std::string abs_path(size_t row) const { return root + "/" + entries[row].path; }
};

void write_gallery(const std::string& path, const GalleryIndex& g);
// The file's bytes, and back (`source` names them in errors): data-parallel ranks send their
// shares of a gallery so.
std::string gallery_bytes(const GalleryIndex& g);
GalleryIndex parse_gallery(const std::string& bytes, const std::string& source);
// Throws Error naming the file when it is missing, not an index, truncated or damaged.
GalleryIndex read_gallery(const std::string& path);
// Shard i of n of a whole index: a contiguous, near-equal share of its rows, with their graph rows.
GalleryIndex shard_of(const GalleryIndex& g, int i, int n);
// The searcher over an index, with the model's rank options (and the index's stored graph).
Searcher gallery_searcher(const GalleryIndex& g, const RankOptions& rank);

struct GalleryOptions {
  bool strict = false;       // a bad image is an error instead of a skipped line
  int batch = 16;            // images per model call
  int thumb = 128;           // thumbnail's longer side in pixels (0: none)
  std::string partial;       // checkpoint file for resuming ("" = none)
  double checkpoint_s = 10;  // seconds between checkpoints
};

struct GalleryReport {
  int64_t images = 0;    // image files found
  int64_t embedded = 0;  // run through the model this time
  int64_t reused = 0;    // unchanged since the previous index (path, size and mtime)
  int64_t renamed = 0;   // content found under another name in the previous index
  int64_t dropped = 0;   // in the previous index, gone from the folder
  int64_t skipped = 0;   // unreadable, truncated or oversized (named on stderr)
  double seconds = 0;
};

// Image files under `root`, recursively: jpg, jpeg, png, bmp, webp (any case); hidden files and
// folders skipped; symbolic links followed, each real folder visited once. Sorted, relative.
std::vector<std::string> scan_images(const std::string& root);

// Embeds `paths` (relative to root) as gallery rows of `domain`, sorted by path, with their
// graph; `previous` rows are reused where the file is unchanged or renamed (same content hash).
// Data-parallel ranks (duet/dist.h) each embed a share of the paths: rank 0 gets the whole
// gallery (the rows one process would compute, bit for bit), the others their share, no graph.
GalleryIndex embed_gallery(const Model& model, const std::string& domain, const std::string& root,
                           std::vector<std::string> paths, const GalleryOptions& opt,
                           const GalleryIndex* previous = nullptr, GalleryReport* report = nullptr);

// Query images (paths as given) through the model's `domain` encoder, in batches with a progress
// bar; a file that is not a readable image is an Error. Data-parallel ranks each embed a share;
// every rank gets every row.
Features embed_files(const Model& model, const std::string& domain,
                     const std::vector<std::string>& files, int batch = 16);

// `duet index`: every image under `images` through the model's gallery domain into `out`.
// Re-running updates `out` (see embed_gallery); an interrupted run resumes from out.partial
// (out.partial.rank<r> per data-parallel rank). Rank 0 writes `out`.
GalleryReport build_gallery_index(const Model& model, const std::string& model_dir,
                                  const std::string& images, const std::string& out,
                                  const GalleryOptions& opt);

}  // namespace duet
