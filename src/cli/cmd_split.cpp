// duet split — a deterministic train/test split for a dataset that has none, or (--from) a
// validation split carved from the train part of an existing split, for choosing settings
// without looking at the test part.
#include <cstdio>

#include "cli/commands.h"
#include "duet/dataset.h"
#include "duet/error.h"
#include "duet/progress.h"

namespace duet::cli {

namespace {
struct SplitArgs {
  std::string data, out, from;
  uint64_t seed = 0;
  double test_fraction = 0.2;
  bool zeroshot = false, skip_bad = false, check_images = false;
};

void run_split(const SplitArgs& a) {
  LoadOptions lo;
  lo.skip_bad = a.skip_bad;
  lo.check_images = a.check_images;
  if (a.data.empty() && a.from.empty()) fail("give the dataset with --data, or an existing split with --from");
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
  if (a.zeroshot) make_zeroshot_split(d, a.seed, a.test_fraction);
  else make_split(d, a.seed, a.test_fraction);
  write_split(a.out, d);
  size_t test = 0;
  for (const auto& s : d.samples) test += s.split == "test";
  std::printf("%s: %zu samples, %zu classes, %zu train, %zu test\n", a.out.c_str(), d.samples.size(),
              d.classes().size(), d.samples.size() - test, test);
}
}  // namespace

void register_split(CLI::App& app) {
  auto a = std::make_shared<SplitArgs>();
  auto* c = app.add_subcommand("split", "write a seeded, class-stratified train/test split of an image folder");
  c->add_option("--data", a->data, "dataset: <root>/<domain>/<class>/<image> or a Sketchy release")
      ->check(CLI::ExistingDirectory);
  c->add_option("--from", a->from,
                "split only the train part of this split TSV (a validation split; --data is then its root)")
      ->check(CLI::ExistingFile);
  c->add_option("-o,--out", a->out, "split TSV to write (domain, path, class, split)")->required();
  c->add_option("--seed", a->seed, "random seed")->capture_default_str();
  c->add_option("--test-fraction", a->test_fraction, "share of instances (or classes) in test")
      ->check(CLI::Range(0.0, 1.0))->capture_default_str();
  c->add_flag("--zeroshot", a->zeroshot, "hold out whole classes instead of instances");
  c->add_flag("--skip-bad", a->skip_bad, "warn about and drop bad entries instead of failing");
  c->add_flag("--check-images", a->check_images, "decode every image once to find corrupt files");
  c->callback([a] { run_split(*a); });
}

}  // namespace duet::cli
