// duet/shards.h — sharded serving: an index split into shards (`duet shard`), each served by its
// own `duet serve --index SHARD`, and a front (`duet serve --shards URL,URL,...`) that fans each
// query out to them, merges what they find and answers as one server over the whole gallery.
//
// The front ranks through rank() (duet/search.h), as one Searcher over the whole index does, with
// the shards as its row source: each of rank()'s questions is a round of POST /api/shard (JSON)
// to every shard at once, within the deadline:
//   1. "gate"  the unseen-class gate's evidence over the shard's rows (the fused score's gate);
//   2. "top"   its best rows by the score before diffusion (as many as the diffusion's shortlist,
//              or k), their gallery-graph rows, and its score mass: exp(s - top) summed;
//   3. "rows"  the scores and graph rows of the seeds' neighbours no shard has sent yet;
//   4. "entries" the paths of the final top k.
// So the ranking is the same, the scores up to float rounding in the mass. A shard that fails or
// misses a round's deadline is left out of the rest of the query, and the answer says "partial":
// true and names it in "missing" (no shard at all: 503). A shard answers through its own
// Searcher's rows(): above ScaleOptions::exact_limit rows its FAISS candidates, and its mass
// estimated outside them. SearchService::shard_reply (duet/service.h) is the shard's side.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "duet/model.h"
#include "duet/service.h"

namespace duet {

class ShardFront : public Retrieval {
 public:
  // Asks each URL (http://host:port) for its /api/info: together they must serve shards 0..n-1 of
  // one index, made by one model. model_dir: the model to run queries through ("" = the folder
  // the shards name). deadline_s: what each round of a query waits for the shards.
  ShardFront(std::vector<std::string> urls, const std::string& model_dir, int threads,
             double deadline_s);
  ~ShardFront() override;

  const Model& model() const override { return *model_; }
  int64_t size() const override { return total_; }
  std::string index_type() const override;
  Answer search_image(const std::string& bytes, const std::string& domain, int64_t k,
                      const Deadline& deadline) const override;
  Answer search_row(int64_t row, int64_t k) const override;
  std::pair<std::string, std::string> image(int64_t row, bool full) const override;
  double memory_bytes() const override { return 0; }

 private:
  struct Shard;
  std::vector<std::unique_ptr<Shard>> shards_;
  std::unique_ptr<Model> model_;
  int64_t total_ = 0;
  bool graph_ = false;  // the shards carry the gallery graph's rows (the model diffuses)
  double deadline_s_;
  mutable std::timed_mutex cnn_;
  class Rows;  // the shards as rank()'s row source (duet/search.h): the transport
  // One query's posterior, code and bridge row (empty when the model has none).
  Answer rank(const std::vector<float>& pq, const std::vector<float>& zq,
              const std::vector<float>& bq, int64_t k) const;
  size_t owner(int64_t row) const;  // the shard holding a row of the whole index
};

}  // namespace duet
