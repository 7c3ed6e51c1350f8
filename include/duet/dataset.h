// duet/dataset.h — what a dataset is to duet: a list of labelled image files in domains.
//
// Layouts read:
//   image folder     <root>/<domain>/<class>/<file>          (domains: sketch, photo, art, ...)
//   Sketchy release  <root>/photo/tx_000000000000/<class>/<id>.jpg,
//                    <root>/sketch/tx_000000000000/<class>/<id>-<n>.png, and
//                    <root>/info/invalid-*.txt (sketches listed there are dropped)
//   split file       TSV with header "domain path class split", paths relative to the dataset root
//                    (the folder above splits/); split is train or test.
// A sample's `instance` ties images of one thing across domains (link_instances): a file whose
// stem is "<stem>-<n>" where <stem> is a file of another domain in the same class was made from
// that file (Sketchy: sketch n0269_101-3.png of photo n0269_101.jpg); every other file is its own
// instance. Splits keep an instance on one side so no image leaks between train and test.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace duet {

struct Sample {
  std::string path;      // relative to Dataset::root
  std::string cls;       // class name
  std::string domain;    // the domain folder's name
  std::string split;     // "train", "test" or "" (not assigned)
  std::string instance;  // source-photo id, see above
};

struct Dataset {
  std::string root;
  std::vector<Sample> samples;  // sorted by (domain, class, path) when read from folders

  std::string abs_path(const Sample& s) const { return root + "/" + s.path; }
  // Samples of one domain (and one split, when split is not empty), in dataset order.
  std::vector<Sample> select(const std::string& domain, const std::string& split = "") const;
  // Sorted distinct class names over all samples (or those of one split).
  std::vector<std::string> classes(const std::string& split = "") const;
  std::vector<std::string> domains() const;
};

struct LoadOptions {
  bool skip_bad = false;      // warn and drop unreadable entries instead of failing
  bool check_images = false;  // decode every image once (slow: catches corrupt files up front)
};

// Reads an image folder or a Sketchy release (detected by photo/tx_000000000000).
Dataset load_folder(const std::string& root, const LoadOptions& opt = {});
// Reads a split TSV; root defaults to the folder above the file's folder (".../splits/x.tsv").
Dataset load_split(const std::string& tsv_path, const std::string& root = "",
                   const LoadOptions& opt = {});
// Writes a split TSV (atomically).
void write_split(const std::string& tsv_path, const Dataset& d);

// Assigns train/test: per (class), instances are shuffled with `seed` and about `test_fraction`
// of them (at least one when a class has two or more) go to test with all their samples.
void make_split(Dataset& d, uint64_t seed, double test_fraction = 0.2);
// Zero-shot variant: whole classes go to test (about test_fraction of the classes).
void make_zeroshot_split(Dataset& d, uint64_t seed, double test_fraction = 0.2);

// Sets every sample's instance by the rule above (load_folder and load_split call it).
void link_instances(Dataset& d);
// For each of `images` (paths of d), the index in `gallery` (paths of d, another domain) of its
// source image: the one of the same class and instance; -1 where `gallery` has none.
std::vector<int64_t> source_rows(const Dataset& d, const std::vector<std::string>& images,
                                 const std::vector<std::string>& gallery);

// A class left out because it lacks images in some of the domains asked for.
struct DroppedClass {
  std::string cls;
  std::vector<std::string> missing;  // the domains without images of it
};
// Keeps only the samples of `domains`, and of them only the classes with images in every one;
// returns the classes left out (the caller lists them). Error when a domain has no images, or
// when no class is left.
std::vector<DroppedClass> restrict_domains(Dataset& d, const std::vector<std::string>& domains);
// One line per dropped class for stderr: "class 'x' has no images in: photo (left out)".
void log_dropped(const std::vector<DroppedClass>& dropped);

// Deterministic shuffle independent of the standard library implementation.
void seeded_shuffle(std::vector<size_t>& v, uint64_t seed);

}  // namespace duet
