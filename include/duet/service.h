// duet/service.h — a gallery index and its model, opened together and checked: what `duet search`
// and `duet serve` answer queries with, through the one Searcher (duet/search.h).
//
//   auto s = SearchService::open("photos.idx");           // the index's own model folder
//   auto r = s->search_image(png_bytes, "sketch", 10);     // one query image -> its top 10
//
// The model is opened read-only and the index is read into memory once; nothing is written.
// `duet serve` answers through the Retrieval interface: one index (SearchService), or a front
// over the shards of one (ShardFront, duet/shards.h).
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "duet/gallery.h"
#include "duet/model.h"
#include "duet/search.h"

namespace duet {

// When a request's work must end: checked between its stages (decode, waiting for the CNN, the
// CNN pass, the search), so a request past its deadline stops at the next one with TimedOut.
struct Deadline {
  std::chrono::steady_clock::time_point at = std::chrono::steady_clock::time_point::max();
  // Throws TimedOut, naming the stage reached, when the deadline has passed.
  void check(const char* stage) const;
  // Throws TimedOut naming the stage: for a wait that ended at the deadline.
  [[noreturn]] void expired(const char* stage) const;
};

class Retrieval {
 public:
  struct Hit {
    int64_t id = 0;  // row of the (whole) index
    float score = 0;
    std::string path;  // relative to the indexed folder
    std::string cls;   // the class its folder names, or ""
  };
  struct Answer {
    std::vector<Hit> hits;  // best first
    bool unseen = false;    // the unseen-class gate fired
    double cnn_ms = 0;      // the query's pass through its encoder
    double search_ms = 0;   // scoring and ranking the gallery
    bool partial = false;   // some of the gallery did not answer: the hits are the rest's
    std::vector<std::string> missing;  // what did not answer: "URL: why" (a front's shards)
  };
  virtual ~Retrieval() = default;
  virtual const Model& model() const = 0;
  virtual int64_t size() const = 0;
  virtual std::string index_type() const = 0;
  // `domain`, checked against the model's encoders ("" = the model's first query domain).
  std::string query_domain(const std::string& domain) const;
  // One encoded image (PNG, JPEG, ...) of `domain` as the query (query_features). Throws Error
  // for bytes that are not an image (ImageTooLarge above the pixel cap), an empty drawing and an
  // unknown domain; TimedOut past the deadline.
  virtual Answer search_image(const std::string& bytes, const std::string& domain, int64_t k,
                              const Deadline& deadline) const = 0;
  // Gallery row `row` as the query, as if its file were searched as an image of the gallery
  // domain (its stored features are what that pass gives). Throws Error for a row out of range.
  virtual Answer search_row(int64_t row, int64_t k) const = 0;
  // The stored thumbnail of a row (JPEG; full: the indexed file itself) and its content type.
  // Throws Error when there is none.
  virtual std::pair<std::string, std::string> image(int64_t row, bool full) const = 0;
  // Bytes of the index held in memory (vectors, thumbnails, paths).
  virtual double memory_bytes() const = 0;
  // Set when this serves one shard of an index: it then answers a front's requests (shard_reply,
  // duet/shards.h) and nothing else searches it.
  virtual const GalleryShard* shard() const { return nullptr; }
  virtual std::string shard_reply(const std::string& request) const;  // Error when not a shard
};

// The features of one encoded query image `name`: decoded (decode_rgb), refused when it is a
// drawing without ink (the ranking would not depend on it), then `model`'s pass over it, one pass
// at a time (`cnn`). `duet search` and the server both embed their queries here, so the same bytes
// get the same ranking. cnn_ms: the pass's time, not the wait for it.
Features query_features(const Model& model, std::timed_mutex& cnn, const std::string& bytes,
                        const std::string& name, const std::string& domain,
                        const Deadline& deadline, double& cnn_ms);

class SearchService : public Retrieval {
 public:
  // Reads the index and opens its model (model_dir overrides the folder the index names).
  // Throws Error when either is missing or damaged, or when the index was built with another model.
  static std::unique_ptr<SearchService> open(const std::string& index,
                                             const std::string& model_dir = "", int threads = 0);
  // An index already in memory (bench/serve_latency's synthetic galleries) and a model.
  SearchService(GalleryIndex gallery, std::unique_ptr<Model> model);

  const GalleryIndex& gallery() const { return gallery_; }
  const Model& model() const override { return *model_; }
  const Searcher& searcher() const { return searcher_; }
  int64_t size() const override { return searcher_.size(); }
  std::string index_type() const override { return searcher_.index_type(); }

  // The class an indexed photo is filed under: its folder's name when that is one of the model's
  // classes (a dataset laid out <class>/<file>), else "".
  const std::string& class_of(int64_t row) const { return classes_[static_cast<size_t>(row)]; }

  // On a shard (duet/shards.h) these refuse: its rows alone are not the gallery.
  Answer search_image(const std::string& bytes, const std::string& domain, int64_t k,
                      const Deadline& deadline) const override;
  // search_image with the query called `name` in its errors (`duet search` names each file).
  Answer search_image(const std::string& bytes, const std::string& name, const std::string& domain,
                      int64_t k, const Deadline& deadline) const;
  Answer search_row(int64_t row, int64_t k) const override;
  std::pair<std::string, std::string> image(int64_t row, bool full) const override;
  double memory_bytes() const override;
  const GalleryShard* shard() const override { return gallery_.shard ? &*gallery_.shard : nullptr; }
  std::string shard_reply(const std::string& request) const override;

 private:
  GalleryIndex gallery_;
  std::unique_ptr<Model> model_;
  Searcher searcher_;
  std::vector<std::string> classes_;
  // One CNN pass at a time: each already uses every core, and two at once only fight over them.
  mutable std::timed_mutex cnn_;
  Answer answer(const Ranking& r) const;
  void refuse_shard() const;
};

}  // namespace duet
