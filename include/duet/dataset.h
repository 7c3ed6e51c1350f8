// duet/dataset.h — what a dataset is to duet: a list of labelled image files in domains.
//
// Layouts read:
//   image folder     <root>/<domain>/<class>/<file>          (domains: sketch, photo, art, ...)
//   Sketchy release  <root>/photo/tx_000000000000/<class>/<id>.jpg,
//                    <root>/sketch/tx_000000000000/<class>/<id>-<n>.png, and <root>/info/invalid-*.txt
//                    (sketches listed there are dropped)
//   split file       TSV with header "domain path class split", paths relative to the dataset root
//                    (the folder above splits/); split is train or test.
// A sketch's `instance` is the photo it was drawn from ("<id>" of "<id>-<n>"); a photo's is its own
// file stem. Splits keep an instance on one side so no photo leaks between train and test.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace duet {

struct Sample {
  std::string path;      // relative to Dataset::root
  std::string cls;       // class name
  std::string domain;    // "sketch", "photo", ...
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
  bool skip_bad = false;     // warn and drop unreadable entries instead of failing
  bool check_images = false; // decode every image once (slow: catches corrupt files up front)
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

// The instance id of a file name: "n0269_101-3.png" -> "n0269_101" for sketches, stem for others.
std::string instance_of(const std::string& domain, const std::string& filename);

// Deterministic shuffle independent of the standard library implementation.
void seeded_shuffle(std::vector<size_t>& v, uint64_t seed);

}  // namespace duet
