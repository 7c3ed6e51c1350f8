// duet split — a deterministic train/test split for a dataset that has none, or (--from) a
// validation split carved from the train part of an existing split, for choosing settings
// without looking at the test part. Any domains: a class enters the split only with images in
// every one of them; the classes left out are listed.
#include <cstdio>
#include <filesystem>
#include <map>

#include "cli/commands.h"
#include "duet/dataset.h"
#include "duet/error.h"
#include "duet/fileio.h"
#include "duet/progress.h"

namespace duet::cli {

namespace {
struct SplitArgs {
  std::string data, out, from;
  std::vector<std::string> domains;
  uint64_t seed = 0;
  double test_fraction = 0.2;
  bool zeroshot = false, skip_bad = false, check_images = false;
};

void run_split(const SplitArgs& a) {
  LoadOptions lo;
  lo.skip_bad = a.skip_bad;
  lo.check_images = a.check_images;
  if (a.data.empty() && a.from.empty())
    fail("give the dataset with --data, or an existing split with --from");
  Dataset d;
  if (a.from.empty()) {
    d = load_folder(a.data, lo);
  } else {
    d = load_split(a.from, a.data, lo);
    std::vector<Sample> train;
    for (auto& s : d.samples)
      if (s.split == "train") train.push_back(std::move(s));
    if (train.empty()) fail(a.from, ": has no train samples to split");
    d.samples = std::move(train);
  }
  if (d.domains().size() < 2 && a.domains.empty())
    fail(a.from.empty() ? a.data : a.from, ": one domain only (", d.domains()[0],
         "); a split for cross-domain retrieval needs two or more "
         "(<root>/<domain>/<class>/<image>)");
  log_dropped(restrict_domains(d, a.domains.empty() ? d.domains() : a.domains));
  if (d.classes().size() < 2)
    fail("a split needs at least two classes with images in every domain");
  if (a.zeroshot)
    make_zeroshot_split(d, a.seed, a.test_fraction);
  else
    make_split(d, a.seed, a.test_fraction);
  // <data>/splits/ is where `duet run --split NAME` looks: made when missing.
  const std::string parent = std::filesystem::path(a.out).parent_path().string();
  if (!parent.empty()) make_dirs(parent);
  write_split(a.out, d);
  std::map<std::string, std::pair<size_t, size_t>> per;  // domain -> (train, test)
  for (const auto& s : d.samples)
    (s.split == "test" ? per[s.domain].second : per[s.domain].first)++;
  std::string doms;
  for (const auto& [dom, n] : per)
    doms += "; " + dom + " " + std::to_string(n.first) + "/" + std::to_string(n.second);
  std::printf("%s: %zu samples, %zu classes (train/test%s)\n", a.out.c_str(), d.samples.size(),
              d.classes().size(), doms.c_str());
}
}  // namespace

void register_split(CLI::App& app) {
  auto a = std::make_shared<SplitArgs>();
  auto* c = app.add_subcommand(
      "split", "write a seeded, class-stratified train/test split of an image folder");
  c->add_option("--data", a->data, "dataset: <root>/<domain>/<class>/<image> or a Sketchy release")
      ->check(CLI::ExistingDirectory);
  c->add_option(
       "--from", a->from,
       "split only the train part of this split TSV (a validation split; --data is then its root)")
      ->check(CLI::ExistingFile);
  c->add_option("-o,--out", a->out, "split TSV to write (domain, path, class, split)")->required();
  c->add_option("--domains", a->domains,
                "the domains to split (default: all; a class needs images in each)")
      ->delimiter(',');
  c->add_option("--seed", a->seed, "random seed")->capture_default_str();
  c->add_option("--test-fraction", a->test_fraction, "share of instances (or classes) in test")
      ->check(CLI::Range(0.0, 1.0))
      ->capture_default_str();
  c->add_flag("--zeroshot", a->zeroshot, "hold out whole classes instead of instances");
  c->add_flag("--skip-bad", a->skip_bad, "warn about and drop bad entries instead of failing");
  c->add_flag("--check-images", a->check_images, "decode every image once to find corrupt files");
  c->callback([a] { run_split(*a); });
}

}  // namespace duet::cli
