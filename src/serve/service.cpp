// SearchService: an index and its model, checked against each other once, answering queries.
#include "duet/service.h"

#include <algorithm>
#include <chrono>
#include <set>

#include "duet/error.h"
#include "duet/fileio.h"
#include "duet/image.h"

namespace duet {

namespace {
double ms_since(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t).count();
}

QueryArrays one_query(const float* post, int64_t c, const float* code, int64_t d) {
  QueryArrays q{Matrix(1, c), Matrix(1, d)};
  std::copy(post, post + c, q.post.data.begin());
  std::copy(code, code + d, q.code.data.begin());
  return q;
}
}  // namespace

std::unique_ptr<SearchService> SearchService::open(const std::string& index, const std::string& model_dir,
                                                   int threads) {
  GalleryIndex g = read_gallery(index);
  const std::string dir = model_dir.empty() ? g.model_dir : model_dir;
  if (!dir_exists(dir)) fail(index, ": its model ", dir, " is not there (pass the model folder with --model)");
  auto model = Model::open(dir, threads);
  if (model->info().hash != g.model_hash)
    fail(index, ": built with another model (hash ", g.model_hash, "; ", dir, " is ", model->info().hash,
         "): rebuild it with `duet index --model ", dir, "`");
  return std::make_unique<SearchService>(std::move(g), std::move(model));
}

SearchService::SearchService(GalleryIndex gallery, std::unique_ptr<Model> model)
    : gallery_(std::move(gallery)),
      model_(std::move(model)),
      searcher_(gallery_searcher(gallery_, model_->info().rank)) {
  const auto& names = model_->info().classes;
  const std::set<std::string> known(names.begin(), names.end());
  classes_.reserve(gallery_.entries.size());
  for (const auto& e : gallery_.entries) {
    const size_t slash = e.path.rfind('/');
    std::string folder = slash == std::string::npos ? "" : e.path.substr(0, slash);
    folder = folder.substr(folder.rfind('/') == std::string::npos ? 0 : folder.rfind('/') + 1);
    classes_.push_back(known.count(folder) ? folder : "");
  }
}

std::string SearchService::query_domain(const std::string& domain) const {
  const std::string d = domain.empty() ? model_->info().query_domains.at(0) : domain;
  std::string have;
  for (const auto& m : model_->domains()) {
    if (m == d) return d;
    have += (have.empty() ? "" : ", ") + m;
  }
  fail("domain '", d, "': the model has no encoder for it (it has: ", have, ")");
}

SearchService::Answer SearchService::search_image(const std::string& bytes, const std::string& domain,
                                                  int64_t k) const {
  const std::string d = query_domain(domain);
  const cv::Mat rgb = decode_rgb(bytes, "query");
  const uint64_t hash = fnv1a(bytes);
  Answer a;
  Features f;
  {
    std::lock_guard<std::mutex> lock(cnn_);
    const auto t = std::chrono::steady_clock::now();  // the pass itself, not the wait for the lock
    f = model_->features(d, {rgb}, {hash});
    a.cnn_ms = ms_since(t);
  }
  const auto t = std::chrono::steady_clock::now();
  a.ranking = searcher_.search(one_query(f.post.row(0), f.post.cols, f.code.row(0), f.code.cols), k)[0];
  a.search_ms = ms_since(t);
  return a;
}

SearchService::Answer SearchService::search_row(int64_t row, int64_t k) const {
  if (row < 0 || row >= size()) fail("image ", row, " is not in the index (it has ", size(), ")");
  const GalleryArrays& g = gallery_.arrays;
  Answer a;
  auto t = std::chrono::steady_clock::now();
  a.ranking = searcher_.search(one_query(g.post.row(row), g.post.cols, g.code.row(row), g.code.cols), k)[0];
  a.search_ms = ms_since(t);
  return a;
}

}  // namespace duet
