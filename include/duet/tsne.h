// duet/tsne.h — 2-D maps of embeddings: Barnes-Hut t-SNE (van der Maaten, JMLR 2014).
//
//   Matrix y = tsne(x, {});            // x [n, d] -> y [n, 2]
//
// The rows go to `pca_dims` dimensions first (FAISS PCAMatrix), input similarities come from
// each point's 3 * perplexity nearest neighbours (FAISS, exact), with a per-point bandwidth
// matched to the perplexity by bisection, and the map is optimised by gradient descent with
// momentum, gains and early exaggeration, the repulsive forces summarised over a quadtree
// (theta). Everything is seeded and summed in a fixed order: one seed, one map, on any thread
// count. No well-kept Debian or npm library does this for C++ (opentsne and sklearn are Python).
#pragma once

#include <cstdint>

#include "duet/embeddings.h"

namespace duet {

struct TsneOptions {
  double perplexity = 30;
  int iterations = 1000;
  int exaggeration_iterations = 250;  // of those, early exaggeration (x12, momentum 0.5)
  double theta = 0.5;                 // Barnes-Hut accuracy: 0 = exact, larger = faster, coarser
  int pca_dims = 50;                  // 0 = none
  uint64_t seed = 0;
};

// x [n, d] (n >= 2) -> [n, 2]. Error on bad options or non-finite input.
Matrix tsne(const Matrix& x, const TsneOptions& opt = {});

// Trustworthiness of a map at k (Venna & Kaski 2001): 1 when every point's k nearest in the map
// are among its k nearest in the input, lower the more the map brings strangers close. Exact,
// O(n^2 log n): for tests and reports of a few thousand points.
double trustworthiness(const Matrix& x, const Matrix& y, int k);

}  // namespace duet
