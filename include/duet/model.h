// duet/model.h — a model folder: everything retrieval needs, and nothing else.
//
//   <dir>/manifest.json      format tag, duet version, config, content hash, domains and their
//                            kinds, classes, what it was trained on, rank options (fusion,
//                            diffusion, Phase II calibration), file list
//   <dir>/<domain>.<m>.pt    Phase I encoder m of each domain (m = 0, 1 for the default ensemble)
//   <dir>/mapper.pt          Phase II
//   <dir>/bridge.pt          the map of each domain into the gallery's frozen features
//   (duet/bridge.h;
//                            the default config's, absent in others)
//   <dir>/backbone.<ext>     the ImageNet backbone the encoders' frozen stages come from
//
// `duet run` writes one per split (<out>/<split>/model/); `duet index` and `duet search` read it.
// The folder is written beside its place and renamed into it, and the manifest is written last:
// a folder without one is half-written. Loading checks the tag, the version, every file's size
// and hash, and every shape.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <opencv2/core.hpp>
#include <optional>
#include <string>
#include <vector>

#include "duet/domain.h"
#include "duet/features.h"

namespace duet {

constexpr const char* kModelFormat = "duet-model-v2";  // v2: domain kinds, any query domains

// What `duet run` hands over to write a model folder.
struct ModelSpec {
  std::string config;                                        // "default", "paper", ...
  std::vector<std::string> query_domains;                    // mapped by the query branch
  std::string gallery_domain;                                // mapped by the gallery branch
  std::map<std::string, std::vector<std::string>> encoders;  // domain -> member encoder files
  std::string mapper;                                        // mapper file
  std::string bridge;                                        // bridge file ("": none)
  RankOptions rank;
  std::string training = "{}";  // JSON: the data it learnt from
};

// manifest.json, read and checked.
struct ModelInfo {
  std::string dir, format, duet_version, config, hash;
  std::vector<std::string> query_domains;
  std::string gallery_domain;
  std::vector<std::string> classes;
  std::map<std::string, std::vector<std::string>> encoders;  // domain -> files in dir
  std::map<std::string, DomainKind> kinds;                   // domain -> its kind
  std::string mapper, backbone;
  std::string bridge;  // "" when the model has none
  RankOptions rank;
  std::string json;  // the manifest as written
};

// The column of each of the model's classes in the posterior of an encoder that learnt `learnt`
// (a query encoder may have learnt more, from extra sources); none when it lacks one of them.
std::optional<std::vector<int64_t>> class_columns(const std::vector<std::string>& learnt,
                                                  const std::vector<std::string>& model);

// Writes <dir> from the spec's files (copied); replaces an earlier model there only once the new
// one is complete. Throws Error when the encoders disagree on their classes.
void write_model(const std::string& dir, const ModelSpec& spec);
// Reads and checks <dir>/manifest.json and the files it lists (sizes and hash).
ModelInfo read_model_info(const std::string& dir);

class Model {
 public:
  // Opens the folder (read_model_info) and loads every encoder and the mapper; checks that their
  // shapes fit one another.
  static std::unique_ptr<Model> open(const std::string& dir, int threads = 0);
  virtual ~Model() = default;

  virtual const ModelInfo& info() const = 0;
  // Domains with an encoder: the query domains and the gallery domain.
  virtual std::vector<std::string> domains() const = 0;
  // images: decoded RGB (load_rgb) and their content hashes (which seed the test-time views).
  // Each image is encoded alone: its features do not depend on the images beside it. Throws
  // Error naming the model's domains when it has no encoder for `domain`.
  virtual Features features(const std::string& domain, const std::vector<cv::Mat>& images,
                            const std::vector<uint64_t>& hashes) const = 0;
};

}  // namespace duet
