// duet split — a deterministic train/test split for a dataset that has none.
#include <cstdio>

#include "cli/commands.h"
#include "duet/dataset.h"
#include "duet/progress.h"

namespace duet::cli {

namespace {
struct SplitArgs {
  std::string data, out;
  uint64_t seed = 0;
  double test_fraction = 0.2;
  bool zeroshot = false, skip_bad = false, check_images = false;
};

void run_split(const SplitArgs& a) {
  LoadOptions lo;
  lo.skip_bad = a.skip_bad;
  lo.check_images = a.check_images;
  Dataset d = load_folder(a.data, lo);
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
      ->required()->check(CLI::ExistingDirectory);
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
