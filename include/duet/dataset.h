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
#include <map>
#include <set>
#include <string>
#include <vector>

namespace duet {

// The split of an extra source's images of a held-out class (merge_extra).
constexpr const char* kExcluded = "excluded";

struct Sample {
  std::string path;      // relative to Dataset::root
  std::string cls;       // class name
  std::string domain;    // the domain folder's name
  std::string split;     // "train", "test", "" (not assigned) or kExcluded
  std::string instance;  // source-photo id, see above
  std::string source;    // the dataset it came from: "" = the main one, else an extra's name
};

struct Dataset {
  std::string root;
  std::vector<Sample> samples;  // sorted by (domain, class, path) when read from folders

  // Extra sources' samples (merge_extra) carry absolute paths.
  std::string abs_path(const Sample& s) const {
    return !s.path.empty() && s.path[0] == '/' ? s.path : root + "/" + s.path;
  }
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

// Extra training data (`duet run --extra`): another dataset's images, merged with a run's by
// class name. They only ever train, so their classes need not exist in every domain.
struct ExtraSource {
  std::string name, root;                    // name: the folder's name
  std::map<std::string, int64_t> images;     // merged images per domain
  std::vector<std::string> classes;          // the classes it taught
  std::vector<std::string> held_out;         // its classes left out (held_out_classes)
  std::vector<std::string> ignored_domains;  // its domains the run does not have
};
// The classes an extra source must not teach a run of split `d`: every class the main dataset
// has (`all_classes`: the split's and its folders' names) that is not a train class of `d`. A
// zero-shot split's unseen classes, and the classes a validation split carved from it leaves
// out, never train from any source.
std::set<std::string> held_out_classes(const Dataset& d,
                                       const std::vector<std::string>& all_classes);
// Adds `extra`'s samples of `domains` to d with absolute paths and source = name: as train
// samples (with max_classes > 0, only of its first max_classes classes), except those of
// `held_out` classes, which get split kExcluded: nothing trains on them or tests with them, they
// only keep the image list the same for every split of a run, so that the splits share the frozen
// backbone stages' cache (phase1); under a class limit they are dropped. Error when nothing is
// left to train on.
ExtraSource merge_extra(Dataset& d, const Dataset& extra, const std::string& name,
                        const std::vector<std::string>& domains,
                        const std::set<std::string>& held_out, int max_classes = 0);

// Deterministic shuffle independent of the standard library implementation.
void seeded_shuffle(std::vector<size_t>& v, uint64_t seed);

}  // namespace duet
