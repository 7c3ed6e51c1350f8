// duet model info — what a model folder holds.
#include <cstdio>
#include <map>
#include <nlohmann/json.hpp>
#include <set>

#include "cli/commands.h"
#include "duet/model.h"

namespace duet::cli {

namespace {
std::string join(const std::vector<std::string>& v, const char* sep) {
  std::string o;
  for (size_t i = 0; i < v.size(); ++i) o += (i ? sep : "") + v[i];
  return o;
}

// The classes the model's encoders learnt, each with the sources and domains it learnt them from
// (the manifest's training record; a model from before it was kept lists the model's classes).
void print_classes(const ModelInfo& m) {
  const auto j = nlohmann::json::parse(m.json);
  std::map<std::string, std::vector<std::string>> from;  // class -> "source (domain)"
  if (j.contains("training") && j["training"].contains("classes_by_source"))
    for (const auto& [src, doms] : j["training"]["classes_by_source"].items())
      for (const auto& [dom, cls] : doms.items())
        for (const auto& c : cls) from[c.get<std::string>()].push_back(src + " (" + dom + ")");
  const std::set<std::string> gallery(m.classes.begin(), m.classes.end());
  if (from.empty())
    for (const auto& c : m.classes) from[c];
  for (const auto& [c, srcs] : from)
    std::printf("%s\t%s\t%s\n", c.c_str(), gallery.count(c) ? "gallery" : "query only",
                join(srcs, ", ").c_str());
}

void print_info(const std::string& dir, bool as_json, bool classes) {
  const ModelInfo m = read_model_info(dir);
  if (classes) {
    print_classes(m);
    return;
  }
  if (as_json) {
    std::printf("%s\n", nlohmann::json::parse(m.json).dump().c_str());
    return;
  }
  std::printf("model     %s\nformat    %s (duet %s)\nconfig    %s\nhash      %s\n", m.dir.c_str(),
              m.format.c_str(), m.duet_version.c_str(), m.config.c_str(), m.hash.c_str());
  std::printf("domains   query: %s; gallery: %s\n", join(m.query_domains, ", ").c_str(),
              m.gallery_domain.c_str());
  for (const auto& [domain, files] : m.encoders)
    std::printf("encoders  %s (%s): %s\n", domain.c_str(), kind_name(m.kinds.at(domain)),
                join(files, ", ").c_str());
  std::printf("mapper    %s (p(same | d) = sigmoid(%.4f - %.4f d))\nbackbone  %s\n",
              m.mapper.c_str(), m.rank.prob_a, m.rank.prob_b, m.backbone.c_str());
  std::printf(
      "classes   %zu (%s%s)\n", m.classes.size(),
      join(std::vector<std::string>(m.classes.begin(),
                                    m.classes.begin() + std::min<size_t>(5, m.classes.size())),
           ", ")
          .c_str(),
      m.classes.size() > 5 ? ", ..." : "");
  const auto j = nlohmann::json::parse(m.json);
  if (j.contains("training") && j["training"].contains("classes_by_source")) {
    std::string learnt;
    for (const auto& [src, doms] : j["training"]["classes_by_source"].items())
      for (const auto& [dom, cls] : doms.items())
        learnt += (learnt.empty() ? "" : "; ") + src + " " + dom + " " + std::to_string(cls.size());
    std::printf("learnt    %s (duet model info --classes lists them)\n", learnt.c_str());
  }
  const RankOptions& r = m.rank;
  if (r.fuse)
    std::printf("score     fused: photo power %g, unseen gate %g (posterior %g, profile %g)\n",
                r.fusion.photo_power, r.fusion.unseen_gate, r.fusion.unseen_post,
                r.fusion.unseen_profile);
  else
    std::printf("score     Phase II code distance\n");
  if (!m.bridge.empty())
    std::printf("bridge    %s (weight %g, unseen %g)\n", m.bridge.c_str(), r.fusion.bridge,
                r.fusion.unseen_bridge);
  if (r.fuse && r.diffusion)
    std::printf("diffusion k %d, alpha %g, seeds %d, blend %g, shortlist %d, graph over %s\n",
                r.diff.k, r.diff.alpha, r.diff.seeds, r.diff.blend, r.diff.shortlist,
                graph_space_name(r.graph));
  else
    std::printf("diffusion off\n");
}
}  // namespace

void register_model(CLI::App& app) {
  auto* c =
      app.add_subcommand("model", "inspect a model folder (<out>/<split>/model from `duet run`)");
  c->require_subcommand(1);
  auto dir = std::make_shared<std::string>();
  auto as_json = std::make_shared<bool>(false);
  auto* info = c->add_subcommand(
      "info", "print a model's manifest: config, domains, classes, files, rank options");
  info->add_option("dir", *dir, "model folder")->required();
  auto classes = std::make_shared<bool>(false);
  info->add_flag("--json", *as_json, "print the manifest as JSON");
  info->add_flag("--classes", *classes,
                 "list every class the encoders learnt: whether gallery images can have it, and "
                 "the sources (domains) it was learnt from");
  info->callback([dir, as_json, classes] { print_info(*dir, *as_json, *classes); });
}

}  // namespace duet::cli
