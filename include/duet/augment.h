// duet/augment.h — seeded image augmentation for Phase I training views, by domain kind.
//
// View 0 is the image itself, view 1 its mirror; views >= 2 are random variants drawn from
// (seed, sample, view), so the same seed always gives the same training images:
//   drawing: mirror (p=0.5), small affine (rotate +-10 deg, scale 0.9-1.1, shift +-6%), strokes
//            thickened by a 2x2 or 3x3 minimum filter (p=0.5)
//   image:   mirror (p=0.5), random crop of 70-100% of the side, brightness/contrast +-20%
#pragma once

#include <cstdint>
#include <opencv2/core.hpp>
#include <string>

#include "duet/domain.h"

namespace duet {

cv::Mat augment_view(const cv::Mat& rgb, DomainKind kind, int view, uint64_t seed);

// Views [0, kSeedlessViews) (the image and its mirror) do not depend on the seed: every Phase I
// member of a run sees them alike, so what is computed from them can be shared between members.
constexpr int kSeedlessViews = 2;

// The `seed` argument of augment_view for one image: a run's seed mixed with the hash of the
// image file's bytes (load_rgb's content_hash), so each image has its own views and anything that
// reads the same file, under any name or folder (a gallery index, a renamed copy), redraws them.
uint64_t view_seed(uint64_t run_seed, uint64_t content_hash);

// Views 0..views-1 of an image (seed: view_seed), each to_chw'd at size x size into
// out[views * 3 * size * size]: the one way Phase I training, `duet embed` and a gallery index
// turn an image into backbone inputs.
void view_inputs(const cv::Mat& rgb, DomainKind kind, int views, uint64_t seed, int size,
                 float* out);

}  // namespace duet
