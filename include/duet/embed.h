// duet/embed.h — images in, embedding file out: the glue between a dataset and an Encoder.
#pragma once

#include <string>
#include <vector>

#include "duet/dataset.h"
#include "duet/embeddings.h"
#include "duet/encoder.h"

namespace duet {

struct EmbedOptions {
  int batch = 32;         // images per forward pass
  bool skip_bad = false;  // drop unreadable images (with a warning) instead of failing
  int views = 0;  // test-time views averaged (duet/augment.h); 0 = the encoder's own tta_views()
};

// Decodes, preprocesses and encodes `samples` (paths relative to d.root) with a progress bar;
// decoding of the next batch overlaps encoding of the current one.
// Returns x [N, enc.dim()] and the manifest rows (N < samples.size() only with skip_bad).
Embeddings embed_samples(Encoder& enc, const Dataset& d, const std::vector<Sample>& samples,
                         const EmbedOptions& opt, const std::string& label = "embed");

}  // namespace duet
