// duet/service.h — a gallery index and its model, opened together and checked: what `duet search`
// and `duet serve` answer queries with, through the one Searcher (duet/search.h).
//
//   auto s = SearchService::open("photos.idx");           // the index's own model folder
//   auto r = s->search_image(png_bytes, "sketch", 10);     // one query image -> its top 10
//
// The model is opened read-only and the index is read into memory once; nothing is written.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "duet/gallery.h"
#include "duet/model.h"
#include "duet/search.h"

namespace duet {

class SearchService {
 public:
  // Reads the index and opens its model (model_dir overrides the folder the index names).
  // Throws Error when either is missing or damaged, or when the index was built with another model.
  static std::unique_ptr<SearchService> open(const std::string& index, const std::string& model_dir = "",
                                             int threads = 0);
  // An index already in memory (bench/serve_latency's synthetic galleries) and a model.
  SearchService(GalleryIndex gallery, std::unique_ptr<Model> model);

  const GalleryIndex& gallery() const { return gallery_; }
  const Model& model() const { return *model_; }
  const Searcher& searcher() const { return searcher_; }
  int64_t size() const { return searcher_.size(); }

  // `domain`, checked against the model's encoders ("" = the model's first query domain).
  std::string query_domain(const std::string& domain) const;
  // The class an indexed photo is filed under: its folder's name when that is one of the model's
  // classes (a dataset laid out <class>/<file>), else "".
  const std::string& class_of(int64_t row) const { return classes_[static_cast<size_t>(row)]; }

  struct Answer {
    Ranking ranking;
    double cnn_ms = 0;     // the query's pass through its encoder
    double search_ms = 0;  // scoring and ranking the gallery
  };
  // One encoded image (PNG, JPEG, ...) of `domain` as the query. The image is hashed and decoded
  // as `duet search` does a file, so the same bytes get the same ranking. Throws Error for bytes
  // that are not an image (ImageTooLarge above the pixel cap) and for an unknown domain.
  Answer search_image(const std::string& bytes, const std::string& domain, int64_t k) const;
  // Gallery row `row` as the query, as if its file were searched as an image of the gallery
  // domain (its stored features are what that pass gives). Throws Error for a row out of range.
  Answer search_row(int64_t row, int64_t k) const;

 private:
  GalleryIndex gallery_;
  std::unique_ptr<Model> model_;
  Searcher searcher_;
  std::vector<std::string> classes_;
  // One CNN pass at a time: each already uses every core, and two at once only fight over them.
  mutable std::mutex cnn_;
};

}  // namespace duet
