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

const char* image_type(const std::string& path) {
  std::string ext =
      path.substr(path.rfind('.') == std::string::npos ? path.size() : path.rfind('.') + 1);
  for (auto& c : ext) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  if (ext == "png") return "image/png";
  if (ext == "bmp") return "image/bmp";
  if (ext == "webp") return "image/webp";
  return "image/jpeg";
}
}  // namespace

std::unique_ptr<SearchService> SearchService::open(const std::string& index,
                                                   const std::string& model_dir, int threads) {
  GalleryIndex g = read_gallery(index);
  const std::string dir = model_dir.empty() ? g.model_dir : model_dir;
  if (!dir_exists(dir))
    fail(index, ": its model ", dir, " is not there (pass the model folder with --model)");
  auto model = Model::open(dir, threads);
  if (model->info().hash != g.model_hash)
    fail(index, ": built with another model (hash ", g.model_hash, "; ", dir, " is ",
         model->info().hash, "): rebuild it with `duet index --model ", dir, "`");
  return std::make_unique<SearchService>(std::move(g), std::move(model));
}

SearchService::SearchService(GalleryIndex gallery, std::unique_ptr<Model> model)
    : gallery_(std::move(gallery)),
      model_(std::move(model)),
      searcher_(gallery_searcher(gallery_, model_->info().rank)) {
  // The searcher holds its own graph, and nothing here reads the 1024-d embeddings again: 4 KB a
  // photo, most of a large index's memory.
  gallery_.arrays.emb = Matrix();
  gallery_.graph.reset();
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

std::string Retrieval::query_domain(const std::string& domain) const {
  const std::string d = domain.empty() ? model().info().query_domains.at(0) : domain;
  std::string have;
  for (const auto& m : model().domains()) {
    if (m == d) return d;
    have += (have.empty() ? "" : ", ") + m;
  }
  fail("domain '", d, "': the model has no encoder for it (it has: ", have, ")");
}

std::string Retrieval::shard_reply(const std::string&) const {
  throw NotFound("this server does not hold a shard of an index");
}

void Deadline::check(const char* stage) const {
  if (std::chrono::steady_clock::now() > at) expired(stage);
}

void Deadline::expired(const char* stage) const {
  throw TimedOut(std::string("timed out ") + stage + " (the server's --timeout)");
}

Features query_features(const Model& model, std::timed_mutex& cnn, const std::string& bytes,
                        const std::string& name, const std::string& domain,
                        const Deadline& deadline, double& cnn_ms) {
  const cv::Mat rgb = decode_rgb(bytes, name);
  const auto kind = model.info().kinds.find(domain);
  if (kind != model.info().kinds.end() && kind->second == DomainKind::Drawing && !has_ink(rgb))
    fail(name, ": the drawing is empty (no strokes darker than light grey)");
  deadline.check("after decoding the query");
  std::unique_lock<std::timed_mutex> lock(cnn, std::defer_lock);
  if (!lock.try_lock_until(deadline.at)) deadline.expired("waiting for the CNN");
  const auto t = std::chrono::steady_clock::now();
  Features f = model.features(domain, {rgb}, {fnv1a(bytes)});
  cnn_ms = ms_since(t);
  deadline.check("in the CNN pass");
  return f;
}

void SearchService::refuse_shard() const {
  if (gallery_.shard)
    fail("shard ", gallery_.shard->index, " of ", gallery_.shard->of,
         " of an index: its rows alone are not the gallery; search the whole index, or through a "
         "front (duet serve --shards URL,URL,...)");
}

Retrieval::Answer SearchService::answer(const Ranking& r) const {
  Answer a;
  a.unseen = r.unseen;
  for (const duet::Hit& h : r.hits)
    a.hits.push_back(
        {h.row, h.score, gallery_.entries[static_cast<size_t>(h.row)].path, class_of(h.row)});
  return a;
}

Retrieval::Answer SearchService::search_image(const std::string& bytes, const std::string& domain,
                                              int64_t k, const Deadline& deadline) const {
  return search_image(bytes, "query", domain, k, deadline);
}

Retrieval::Answer SearchService::search_image(const std::string& bytes, const std::string& name,
                                              const std::string& domain, int64_t k,
                                              const Deadline& deadline) const {
  refuse_shard();
  const std::string d = query_domain(domain);
  double cnn_ms = 0;
  Features f = query_features(*model_, cnn_, bytes, name, d, deadline, cnn_ms);
  const auto t = std::chrono::steady_clock::now();
  Answer a = answer(searcher_.search(query_row(f, 0), k));
  a.search_ms = ms_since(t);
  deadline.check("in the search");
  a.cnn_ms = cnn_ms;
  return a;
}

Retrieval::Answer SearchService::search_row(int64_t row, int64_t k) const {
  refuse_shard();
  if (row < 0 || row >= size())
    throw NotFound("image " + std::to_string(row) + " is not in the index");
  const GalleryArrays& g = gallery_.arrays;
  auto t = std::chrono::steady_clock::now();
  Answer a = answer(searcher_.search(query_row(g, row), k));
  a.search_ms = ms_since(t);
  return a;
}

std::pair<std::string, std::string> SearchService::image(int64_t row, bool full) const {
  if (row < 0 || row >= size())
    throw NotFound("image " + std::to_string(row) + " is not in the index");
  const GalleryEntry& e = gallery_.entries[static_cast<size_t>(row)];
  if (!full && !e.thumb.empty()) return {e.thumb, "image/jpeg"};
  // Only ever a path the index holds, by row number: nothing else on disk is reachable.
  const std::string path = gallery_.abs_path(static_cast<size_t>(row));
  if (!file_exists(path)) throw NotFound("image " + std::to_string(row) + " is no longer on disk");
  return {read_file(path), image_type(path)};
}

double SearchService::memory_bytes() const {
  const GalleryArrays& g = gallery_.arrays;
  double b =
      4.0 * static_cast<double>(g.post.data.size() + g.code.data.size() + g.bridge.data.size());
  for (const auto& e : gallery_.entries) b += static_cast<double>(e.thumb.size() + e.path.size());
  return b;
}

}  // namespace duet
