// duet/domain.h — what differs between domains, as data rather than names.
//
// A domain is a folder of a dataset (<root>/<domain>/<class>/...) and has a kind:
//   drawing  dark strokes on a white background (sketches, line art, edge maps): Phase I
//            augments it with small affine warps and thickened strokes, and the default config
//            crops each image to its strokes (frame_strokes)
//   image    anything else (photos, paintings, cartoons): random crops and brightness/contrast
// The kind is decided from the pixels by detect_kind's rule, unless the user names it
// (--domain-kind art=image,sketch=drawing), and is recorded in every encoder and model.
#pragma once

#include <map>
#include <opencv2/core.hpp>
#include <string>
#include <vector>

#include "duet/dataset.h"

namespace duet {

enum class DomainKind { Drawing, Image };

const char* kind_name(DomainKind k);
// "drawing" | "image"; anything else is one Error naming both.
DomainKind parse_kind(const std::string& name);
// "art=image,sketch=drawing" -> {art: Image, sketch: Drawing}; Error on a malformed entry.
std::map<std::string, DomainKind> parse_kind_overrides(const std::string& spec);

// An image looks like a line drawing when at least kDrawingWhite of its pixels are near white
// (every channel >= 215) and at least 0.2% are dark strokes (luminance < 128).
constexpr double kDrawingWhite = 0.6;
bool looks_like_drawing(const cv::Mat& rgb);

struct KindGuess {
  DomainKind kind = DomainKind::Image;
  int looked = 0, drawings = 0;  // images decoded, and how many of them look like line drawings
  std::string describe(const std::string& domain) const;  // "sketch: drawing (62 of 64 ...)"
};
// The rule: a domain is a drawing domain when at least half of up to `sample` of its images,
// evenly spaced over its samples in dataset order, look like line drawings. Unreadable images
// are passed over (training reports them).
KindGuess detect_kind(const Dataset& d, const std::string& domain, int sample = 64);

// The domains of a run or a model: what the user named (--query-domain, repeatable, and
// --gallery-domain), or else these, the Sketchy layout's.
constexpr const char* kDefaultQueryDomain = "sketch";
constexpr const char* kDefaultGalleryDomain = "photo";
struct Domains {
  std::vector<std::string> query;  // one or more
  std::string gallery;
  std::vector<std::string> all() const;  // query..., gallery
};
// Fills in the defaults for what is not named and checks the result against the dataset: every
// domain has images, none is named twice, the gallery is not a query domain. One Error listing
// the dataset's domains otherwise.
Domains resolve_domains(const Dataset& d, const std::vector<std::string>& query,
                        const std::string& gallery);

// The kind of each domain: the override where the user gave one, else detect_kind's guess;
// logs each decision. Error when an override names a domain not in `domains`.
std::map<std::string, DomainKind> decide_kinds(const Dataset& d,
                                               const std::vector<std::string>& domains,
                                               const std::map<std::string, DomainKind>& overrides);

}  // namespace duet
