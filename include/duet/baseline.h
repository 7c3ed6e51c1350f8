// duet/baseline.h — reference points that need no Phase I/II training.
//
//   hog:   HOG descriptors of the sketch and of the photo's Canny edge map (both 128x128
//          greyscale, 8x8 cells, 16x16 blocks, 9 bins), ranked by cosine similarity.
//   raw:   ImageNet backbone features of both domains (MobileNetV2: 1280-d), cosine, no training.
// Both evaluate test sketches against test photos of a split, like `duet run`.
#pragma once

#include <string>

#include "duet/encoder.h"
#include "duet/metrics.h"

namespace duet {

struct BaselineOptions {
  std::string split_file;  // <data>/splits/<name>.tsv
  std::string data;        // "" = the split file's dataset root
  BackboneOptions backbone;
};

struct BaselineResult {
  RetrievalMetrics metrics;
  double wall_s = 0;
};

BaselineResult baseline_hog(const BaselineOptions& opt);
BaselineResult baseline_raw(const BaselineOptions& opt);

}  // namespace duet
