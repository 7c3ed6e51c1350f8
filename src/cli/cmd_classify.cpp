// duet classify — ImageNet top-k of the pretrained backbone (checks a weight import by eye).
#include <cstdio>
#include <nlohmann/json.hpp>
#include <opencv2/core.hpp>

#include "cli/commands.h"
#include "duet/error.h"
#include "duet/image.h"
#include "duet/paths.h"

namespace duet::cli {

namespace {
struct ClassifyArgs {
  BackboneOptions backbone;
  std::string labels;
  std::vector<std::string> images;
  int top = 5;
  bool json = false;
};

void run_classify(const ClassifyArgs& a) {
  std::string labels = a.labels.empty() ? default_weights_file("imagenet_labels.txt") : a.labels;
  auto clf = open_classifier(a.backbone, labels);
  const int S = clf->input_size();
  nlohmann::json out = nlohmann::json::array();
  for (const auto& path : a.images) {
    std::vector<float> x(3 * S * S);
    to_chw(load_rgb(path), S, x.data());
    auto preds = clf->classify(1, x.data(), a.top)[0];
    if (a.json) {
      nlohmann::json j = {{"image", path}, {"top", nlohmann::json::array()}};
      for (const auto& p : preds)
        j["top"].push_back({{"label", p.label}, {"index", p.index}, {"prob", p.prob}});
      out.push_back(j);
      continue;
    }
    std::printf("%s\n", path.c_str());
    for (const auto& p : preds)
      std::printf("  %6.2f%%  %4d  %s\n", 100.0 * p.prob, p.index, p.label.c_str());
  }
  if (a.json) std::printf("%s\n", out.dump(2).c_str());
}
}  // namespace

void register_classify(CLI::App& app) {
  auto a = std::make_shared<ClassifyArgs>();
  auto* c = app.add_subcommand("classify",
                               "top-k ImageNet labels of images with the pretrained backbone");
  add_backbone_options(c, a->backbone);
  c->add_option(
      "--labels", a->labels,
      "label file, line i = output i (default: $DUET_SHARED/weights/imagenet_labels.txt)");
  c->add_option("-k,--top", a->top, "how many labels per image")
      ->check(positive)
      ->capture_default_str();
  c->add_flag("--json", a->json, "print JSON on stdout");
  c->add_option("images", a->images, "image files")->required();
  c->callback([a] { run_classify(*a); });
}

}  // namespace duet::cli
