// duet/augment.h — seeded, domain-aware image augmentation for Phase I training views.
//
// View 0 is the image itself, view 1 its mirror; views >= 2 are random variants drawn from
// (seed, sample, view), so the same seed always gives the same training images:
//   sketch: mirror (p=0.5), small affine (rotate +-10 deg, scale 0.9-1.1, shift +-6%), strokes
//           thickened by a 2x2 or 3x3 minimum filter (p=0.5)
//   other:  mirror (p=0.5), random crop of 70-100% of the side, brightness/contrast +-20%
#pragma once

#include <cstdint>
#include <opencv2/core.hpp>
#include <string>

namespace duet {

cv::Mat augment_view(const cv::Mat& rgb, const std::string& domain, int view, uint64_t seed);

// The `seed` argument of augment_view for one sample: a run's seed mixed with the sample's path
// (relative to its dataset root), so each image has its own views and any run can redraw them.
uint64_t view_seed(uint64_t run_seed, const std::string& path);

}  // namespace duet
