#include "duet/dataset.h"

#include <algorithm>
#include <filesystem>
#include <map>
#include <set>
#include <sstream>

#include "duet/error.h"
#include "duet/fileio.h"
#include "duet/image.h"
#include "duet/progress.h"

namespace fs = std::filesystem;

namespace duet {

namespace {

const std::set<std::string> kImageExt = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"};

bool is_image(const fs::path& p) {
  std::string e = p.extension().string();
  std::transform(e.begin(), e.end(), e.begin(), ::tolower);
  return kImageExt.count(e) > 0;
}

std::vector<fs::path> sorted_entries(const fs::path& dir) {
  std::vector<fs::path> out;
  std::error_code ec;
  for (auto it = fs::directory_iterator(dir, ec); !ec && it != fs::directory_iterator();
       it.increment(ec))
    out.push_back(it->path());
  if (ec) fail("cannot list ", dir.string(), ": ", ec.message());
  std::sort(out.begin(), out.end());
  return out;
}

// Reads <domain_dir>/<class>/<file> into d (paths relative to root).
void read_domain(Dataset& d, const fs::path& root, const fs::path& domain_dir,
                 const std::string& domain, const std::set<std::string>& drop_stems,
                 const LoadOptions& opt, int64_t& skipped) {
  for (const auto& cdir : sorted_entries(domain_dir)) {
    if (!fs::is_directory(cdir)) continue;
    std::string cls = cdir.filename().string();
    size_t before = d.samples.size();
    for (const auto& f : sorted_entries(cdir)) {
      if (!fs::is_regular_file(f) || !is_image(f)) continue;
      if (drop_stems.count(f.stem().string())) continue;
      Sample s;
      s.path = fs::relative(f, root).string();
      s.cls = cls;
      s.domain = domain;
      d.samples.push_back(std::move(s));
    }
    if (d.samples.size() == before) {
      if (!opt.skip_bad)
        fail(cdir.string(),
             ": class folder has no images (.jpg/.png/...); remove it or use --skip-bad");
      log_line("warning: " + cdir.string() + ": empty class folder, skipped");
      ++skipped;
    }
  }
}

// Sketchy's info/invalid-*.txt list sketch names ("n02691156_10151-3", sometimes with a class
// prefix or extension); all of them are dropped.
std::set<std::string> sketchy_invalid(const fs::path& root) {
  std::set<std::string> out;
  fs::path info = root / "info";
  if (!fs::is_directory(info)) return out;
  for (const auto& f : sorted_entries(info)) {
    std::string name = f.filename().string();
    if (name.rfind("invalid", 0) != 0 || f.extension() != ".txt") continue;
    std::istringstream in(read_file(f.string()));
    std::string line;
    while (std::getline(in, line)) {
      while (!line.empty() && (line.back() == '\r' || line.back() == ' ')) line.pop_back();
      if (line.empty()) continue;
      out.insert(fs::path(line).stem().string());
    }
  }
  return out;
}

void check_images(Dataset& d, const LoadOptions& opt, int64_t& skipped) {
  Progress bar("check images", static_cast<int64_t>(d.samples.size()));
  std::vector<Sample> kept;
  for (auto& s : d.samples) {
    try {
      load_rgb(d.abs_path(s));
      kept.push_back(std::move(s));
    } catch (const Error& e) {
      if (!opt.skip_bad) throw;
      log_line(std::string("warning: ") + e.what());
      ++skipped;
    }
    bar.tick();
  }
  d.samples = std::move(kept);
}

}  // namespace

void link_instances(Dataset& d) {
  // (class, stem) -> the domains that have a file of that stem
  std::map<std::pair<std::string, std::string>, std::set<std::string>> stems;
  for (const auto& s : d.samples) stems[{s.cls, fs::path(s.path).stem().string()}].insert(s.domain);
  for (auto& s : d.samples) {
    s.instance = fs::path(s.path).stem().string();
    const auto dash = s.instance.rfind('-');
    if (dash == std::string::npos || dash == 0 || dash + 1 == s.instance.size() ||
        s.instance.find_first_not_of("0123456789", dash + 1) != std::string::npos)
      continue;
    auto it = stems.find({s.cls, s.instance.substr(0, dash)});
    if (it == stems.end()) continue;
    for (const auto& dom : it->second)
      if (dom != s.domain) {
        s.instance.resize(dash);
        break;
      }
  }
}

std::vector<int64_t> source_rows(const Dataset& d, const std::vector<std::string>& images,
                                 const std::vector<std::string>& gallery) {
  // Keyed by class too: stems need only be distinct within a class.
  std::map<std::string, const Sample*> by_path;
  for (const auto& s : d.samples) by_path[s.path] = &s;
  auto sample = [&](const std::string& path) -> const Sample& {
    auto it = by_path.find(path);
    if (it == by_path.end()) fail("internal: ", path, " is not in the dataset");
    return *it->second;
  };
  std::map<std::pair<std::string, std::string>, int64_t>
      row_of;  // (class, instance) -> gallery row
  for (size_t i = 0; i < gallery.size(); ++i) {
    const Sample& g = sample(gallery[i]);
    row_of.emplace(std::make_pair(g.cls, g.instance), static_cast<int64_t>(i));
  }
  std::vector<int64_t> rows;
  for (const auto& path : images) {
    const Sample& s = sample(path);
    auto it = row_of.find({s.cls, s.instance});
    rows.push_back(it == row_of.end() ? -1 : it->second);
  }
  return rows;
}

std::vector<DroppedClass> restrict_domains(Dataset& d, const std::vector<std::string>& domains) {
  std::map<std::string, std::set<std::string>> has;  // class -> its domains among `domains`
  std::set<std::string> want(domains.begin(), domains.end()), seen;
  for (const auto& s : d.samples) {
    auto& h = has[s.cls];
    if (want.count(s.domain)) {
      h.insert(s.domain);
      seen.insert(s.domain);
    }
  }
  for (const auto& dom : domains)
    if (!seen.count(dom)) {
      std::string have;
      for (const auto& x : d.domains()) have += (have.empty() ? "" : ", ") + x;
      fail("no images of domain '", dom, "' in ", d.root, " (its domains: ", have, ")");
    }
  std::vector<DroppedClass> dropped;
  for (const auto& [cls, doms] : has)
    if (doms.size() < want.size()) {
      DroppedClass c{cls, {}};
      for (const auto& dom : domains)
        if (!doms.count(dom)) c.missing.push_back(dom);
      dropped.push_back(std::move(c));
    }
  std::vector<Sample> kept;
  for (auto& s : d.samples)
    if (want.count(s.domain) && has[s.cls].size() == want.size()) kept.push_back(std::move(s));
  d.samples = std::move(kept);
  if (d.samples.empty()) {
    std::string names;
    for (const auto& dom : domains) names += (names.empty() ? "" : ", ") + dom;
    fail("no class has images in every one of the domains ", names, " (", dropped.size(),
         " classes, none complete)");
  }
  return dropped;
}

void log_dropped(const std::vector<DroppedClass>& dropped) {
  for (const auto& c : dropped) {
    std::string m;
    for (const auto& dom : c.missing) m += (m.empty() ? "" : ", ") + dom;
    log_line("class '" + c.cls + "' has no images in: " + m + " (left out)");
  }
  if (!dropped.empty()) log_line(std::to_string(dropped.size()) + " classes left out");
}

std::vector<Sample> Dataset::select(const std::string& domain, const std::string& split) const {
  std::vector<Sample> out;
  for (const auto& s : samples)
    if (s.domain == domain && (split.empty() || s.split == split)) out.push_back(s);
  return out;
}

std::vector<std::string> Dataset::classes(const std::string& split) const {
  std::set<std::string> c;
  for (const auto& s : samples)
    if (split.empty() || s.split == split) c.insert(s.cls);
  return {c.begin(), c.end()};
}

std::vector<std::string> Dataset::domains() const {
  std::set<std::string> c;
  for (const auto& s : samples) c.insert(s.domain);
  return {c.begin(), c.end()};
}

Dataset load_folder(const std::string& root_str, const LoadOptions& opt) {
  fs::path root(root_str);
  if (!fs::is_directory(root)) fail(root_str, ": no such dataset folder");
  Dataset d;
  d.root = root_str;
  int64_t skipped = 0;
  if (fs::is_directory(root / "photo" / "tx_000000000000")) {
    // Sketchy release: photo/tx_000000000000 and sketch/tx_000000000000 (first augmentation).
    if (!fs::is_directory(root / "sketch" / "tx_000000000000"))
      fail(root_str,
           ": looks like a Sketchy release (photo/tx_000000000000) but has no "
           "sketch/tx_000000000000");
    auto invalid = sketchy_invalid(root);
    read_domain(d, root, root / "photo" / "tx_000000000000", "photo", {}, opt, skipped);
    read_domain(d, root, root / "sketch" / "tx_000000000000", "sketch", invalid, opt, skipped);
    if (!invalid.empty())
      log_line("Sketchy info/invalid-*.txt: " + std::to_string(invalid.size()) +
               " sketches excluded");
  } else {
    for (const auto& dom : sorted_entries(root)) {
      if (!fs::is_directory(dom) || dom.filename() == "splits" || dom.filename() == "info")
        continue;
      read_domain(d, root, dom, dom.filename().string(), {}, opt, skipped);
    }
  }
  if (d.samples.empty())
    fail(root_str,
         ": no images found; expected <root>/<domain>/<class>/<image> (e.g. sketch/cat/1.png) "
         "or a Sketchy release (photo/tx_000000000000/<class>/...)");
  if (opt.check_images) check_images(d, opt, skipped);
  if (skipped) log_line("skipped " + std::to_string(skipped) + " bad entries");
  link_instances(d);
  return d;
}

Dataset load_split(const std::string& tsv_path, const std::string& root, const LoadOptions& opt) {
  Dataset d;
  d.root = root.empty() ? fs::path(tsv_path).parent_path().parent_path().string() : root;
  if (d.root.empty()) d.root = ".";
  std::istringstream in(read_file(tsv_path));
  std::string line;
  int lineno = 0;
  int64_t skipped = 0;
  while (std::getline(in, line)) {
    ++lineno;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.empty()) continue;
    if (lineno == 1) {
      if (line != "domain\tpath\tclass\tsplit")
        fail(tsv_path, ":1: expected header 'domain<TAB>path<TAB>class<TAB>split'");
      continue;
    }
    std::istringstream ls(line);
    Sample s;
    if (!std::getline(ls, s.domain, '\t') || !std::getline(ls, s.path, '\t') ||
        !std::getline(ls, s.cls, '\t') || !std::getline(ls, s.split, '\t'))
      fail(tsv_path, ":", lineno,
           ": expected 4 tab-separated columns (domain, path, class, split)");
    if (s.split != "train" && s.split != "test")
      fail(tsv_path, ":", lineno, ": split must be train or test, got '", s.split, "'");
    if (!file_exists(d.abs_path(s))) {
      if (!opt.skip_bad)
        fail(tsv_path, ":", lineno, ": ", d.abs_path(s),
             " does not exist; pass the dataset folder with --data, or --skip-bad to drop it");
      log_line("warning: " + tsv_path + ":" + std::to_string(lineno) + ": missing " +
               d.abs_path(s));
      ++skipped;
      continue;
    }
    d.samples.push_back(std::move(s));
  }
  if (lineno == 0) fail(tsv_path, ": empty split file");
  if (d.samples.empty()) fail(tsv_path, ": no usable rows");
  if (opt.check_images) check_images(d, opt, skipped);
  if (skipped) log_line("skipped " + std::to_string(skipped) + " bad entries");
  link_instances(d);
  return d;
}

void write_split(const std::string& tsv_path, const Dataset& d) {
  std::ostringstream os;
  os << "domain\tpath\tclass\tsplit\n";
  for (const auto& s : d.samples)
    os << s.domain << "\t" << s.path << "\t" << s.cls << "\t" << s.split << "\n";
  write_file_atomic(tsv_path, os.str());
}

std::set<std::string> held_out_classes(const Dataset& d,
                                       const std::vector<std::string>& all_classes) {
  std::set<std::string> out(all_classes.begin(), all_classes.end());
  for (const auto& c : d.classes()) out.insert(c);
  for (const auto& c : d.classes("train")) out.erase(c);
  return out;
}

ExtraSource merge_extra(Dataset& d, const Dataset& extra, const std::string& name,
                        const std::vector<std::string>& domains,
                        const std::set<std::string>& held_out, int max_classes) {
  ExtraSource src;
  src.name = name;
  src.root = fs::absolute(extra.root).lexically_normal().string();
  std::set<std::string> keep;
  for (const auto& c : extra.classes()) {
    if (held_out.count(c)) {
      src.held_out.push_back(c);
      continue;
    }
    if (max_classes <= 0 || static_cast<int>(keep.size()) < max_classes) keep.insert(c);
  }
  const std::set<std::string> doms(domains.begin(), domains.end());
  std::set<std::string> ignored, taught;
  for (const auto& s : extra.samples) {
    if (!doms.count(s.domain)) {
      ignored.insert(s.domain);
      continue;
    }
    // Under a class limit the splits list different images anyway: held-out ones are dropped.
    const bool held = held_out.count(s.cls) > 0;
    if (held ? max_classes > 0 : !keep.count(s.cls)) continue;
    Sample m = s;
    m.path = (fs::path(src.root) / s.path).lexically_normal().string();
    m.split = held ? kExcluded : "train";
    m.source = name;
    m.instance = name + ":" + s.instance;  // never one of the main dataset's instances
    d.samples.push_back(std::move(m));
    if (held) continue;
    ++src.images[s.domain];
    taught.insert(s.cls);
  }
  src.classes.assign(taught.begin(), taught.end());
  src.ignored_domains.assign(ignored.begin(), ignored.end());
  if (taught.empty()) {
    std::string names;
    for (const auto& dom : domains) names += (names.empty() ? "" : ", ") + dom;
    fail(extra.root, ": no images of the run's domains (", names, ") in classes it may train on");
  }
  return src;
}

void seeded_shuffle(std::vector<size_t>& v, uint64_t seed) {
  // splitmix64 + Fisher-Yates: the same sequence on every platform and standard library.
  uint64_t x = seed;
  auto next = [&x]() {
    uint64_t z = (x += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  };
  for (size_t i = v.size(); i > 1; --i) std::swap(v[i - 1], v[next() % i]);
}

namespace {
// Moves the chosen keys (about frac of them, at least one of two or more, never all) to test.
std::set<std::string> pick_test(std::vector<std::string> keys, uint64_t seed, double frac) {
  std::sort(keys.begin(), keys.end());
  keys.erase(std::unique(keys.begin(), keys.end()), keys.end());
  std::vector<size_t> idx(keys.size());
  for (size_t i = 0; i < idx.size(); ++i) idx[i] = i;
  seeded_shuffle(idx, seed);
  size_t n = static_cast<size_t>(frac * keys.size() + 0.5);
  if (keys.size() >= 2)
    n = std::clamp<size_t>(n, 1, keys.size() - 1);
  else
    n = 0;
  std::set<std::string> out;
  for (size_t i = 0; i < n; ++i) out.insert(keys[idx[i]]);
  return out;
}

}  // namespace

void make_split(Dataset& d, uint64_t seed, double test_fraction) {
  if (!(test_fraction > 0 && test_fraction < 1))
    fail("test fraction must be in (0, 1), got ", test_fraction);
  std::map<std::string, std::vector<std::string>> inst;  // class -> instances
  for (const auto& s : d.samples) inst[s.cls].push_back(s.instance);
  std::map<std::string, std::set<std::string>> test;
  for (auto& [cls, keys] : inst) test[cls] = pick_test(keys, seed ^ fnv1a(cls), test_fraction);
  for (auto& s : d.samples) s.split = test[s.cls].count(s.instance) ? "test" : "train";
}

void make_zeroshot_split(Dataset& d, uint64_t seed, double test_fraction) {
  if (!(test_fraction > 0 && test_fraction < 1))
    fail("test fraction must be in (0, 1), got ", test_fraction);
  auto test = pick_test(d.classes(), seed, test_fraction);
  for (auto& s : d.samples) s.split = test.count(s.cls) ? "test" : "train";
}

}  // namespace duet
