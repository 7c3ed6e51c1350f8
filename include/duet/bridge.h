// duet/bridge.h — the bridge: every domain's images as points in one space the backbone already
// had before any training, the gallery domain's frozen ImageNet features.
//
// Phase I encoders learn the train classes; what they learn says little about a class no train
// image showed. The frozen backbone's pooled features of gallery images group such classes well
// (docs/experiments.md), so the bridge ranks a gallery by them, and maps each query domain into
// them with a closed-form ridge regression fitted on the train images:
//
//   gallery row   g = unit(f - mu_g)                 f: frozen features, mu_g: their train mean
//   query row     b = unit([unit(a - mu_q), unit(e)] W + c)   a: the query's frozen features,
//                                                                 e: its Phase I embedding
//   target of a train query image: s g_src + (1 - s) mean_class(g), where g_src is the gallery
//   image it was made from (Sample::instance; none: the class mean alone).
//
// A gallery-domain query is its own g. The fused score adds w b . g (duet/fusion.h). Bridge and
// open_bridge (duet/inference.h) apply a fitted bridge.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "duet/embeddings.h"

namespace duet {

struct BridgeOptions {
  double ridge = 10;           // lambda of the ridge regression
  double source_weight = 0.5;  // s above
};

// One domain's train rows: frozen features [n, F] and (query domains) Phase I embeddings [n, D],
// row i of both the manifest row rows[i] of `frozen`; and (query domains) each row's source image
// among the gallery's rows (source_rows in duet/dataset.h; -1: none).
struct BridgeRows {
  Embeddings frozen;
  Matrix emb;
  std::vector<int64_t> source;
};

struct BridgeTrainResult {
  int64_t gallery_rows = 0;
  std::map<std::string, int64_t> query_rows, with_source;  // per query domain
  double seconds = 0;
  std::string to_json() const;
};

// Fits the map of each query domain into the gallery domain's space and writes it to out_file
// (atomically). Throws Error when a side has no rows or the widths disagree.
BridgeTrainResult train_bridge(const std::string& gallery_domain, const BridgeRows& gallery,
                               const std::map<std::string, BridgeRows>& queries,
                               const BridgeOptions& opt, const std::string& out_file);

}  // namespace duet
