// The arrays between stages and the rank options' JSON. See duet/features.h.
#include "duet/features.h"

#include <algorithm>
#include <nlohmann/json.hpp>

#include "common/json_whole.h"
#include "duet/error.h"

namespace duet {

using json = nlohmann::json;

GalleryArrays GalleryArrays::rows(int64_t b, int64_t e) const {
  GalleryArrays out;
  for (size_t k = 0; k < 4; ++k) {
    const Matrix& from = *matrices()[k];
    if (b < 0 || e < b || e > from.rows) fail("internal: rows [", b, ", ", e, ") of ", from.rows);
    Matrix& to = *out.matrices()[k];
    to = Matrix(e - b, from.cols);
    std::copy(from.row(b), from.row(b) + (e - b) * from.cols, to.data.begin());
  }
  return out;
}

void GalleryArrays::append(const GalleryArrays& o) {
  for (size_t k = 0; k < 4; ++k) {
    const Matrix& from = *o.matrices()[k];
    Matrix& to = *matrices()[k];
    if (to.rows == 0) to.cols = from.cols;
    if (from.rows == 0) continue;
    if (from.cols != to.cols)
      fail("internal: appending rows of ", from.cols, " columns to ", to.cols);
    to.data.insert(to.data.end(), from.data.begin(), from.data.end());
    to.rows += from.rows;
  }
}

GraphSpace parse_graph_space(const std::string& name) {
  if (name == "embedding") return GraphSpace::Embedding;
  if (name == "bridge") return GraphSpace::Bridge;
  if (name == "both") return GraphSpace::Both;
  fail("unknown graph space '", name, "' (embedding, bridge or both)");
}

const char* graph_space_name(GraphSpace g) {
  switch (g) {
    case GraphSpace::Embedding:
      return "embedding";
    case GraphSpace::Bridge:
      return "bridge";
    case GraphSpace::Both:
      return "both";
  }
  return "?";
}

json rank_to_json(const RankOptions& r) {
  return {{"fuse", r.fuse},
          {"fusion",
           {{"photo_power", r.fusion.photo_power},
            {"unseen_gate", r.fusion.unseen_gate},
            {"unseen_post", r.fusion.unseen_post},
            {"unseen_profile", r.fusion.unseen_profile},
            {"bridge", r.fusion.bridge},
            {"unseen_bridge", r.fusion.unseen_bridge}}},
          {"graph", graph_space_name(r.graph)},
          {"diffusion", r.diffusion},
          {"diffusion_options",
           {{"k", r.diff.k},
            {"alpha", r.diff.alpha},
            {"seeds", r.diff.seeds},
            {"blend", r.diff.blend},
            {"shortlist", r.diff.shortlist}}},
          {"prob_a", r.prob_a},
          {"prob_b", r.prob_b}};
}

RankOptions rank_from_json(const json& j) {
  RankOptions r;
  r.fuse = j.at("fuse").get<bool>();
  const json& f = j.at("fusion");
  r.fusion.photo_power = f.at("photo_power").get<double>();
  r.fusion.unseen_gate = f.at("unseen_gate").get<double>();
  r.fusion.unseen_post = f.at("unseen_post").get<double>();
  r.fusion.unseen_profile = f.at("unseen_profile").get<double>();
  // Models written before the bridge existed have neither its weights nor a graph space.
  r.fusion.bridge = f.value("bridge", 0.0);
  r.fusion.unseen_bridge = f.value("unseen_bridge", 0.0);
  r.graph = parse_graph_space(j.value("graph", std::string("embedding")));
  r.diffusion = j.at("diffusion").get<bool>();
  const json& d = j.at("diffusion_options");
  r.diff.k = json_whole<int>(d.at("k"));
  r.diff.alpha = d.at("alpha").get<double>();
  r.diff.seeds = json_whole<int>(d.at("seeds"));
  r.diff.blend = d.at("blend").get<double>();
  // Models written before the shortlist existed diffused over the whole gallery.
  r.diff.shortlist = d.contains("shortlist") ? json_whole<int>(d.at("shortlist")) : 0;
  r.prob_a = j.at("prob_a").get<double>();
  r.prob_b = j.at("prob_b").get<double>();
  return r;
}

}  // namespace duet
