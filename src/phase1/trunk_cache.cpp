#include "phase1/trunk_cache.h"

#include <sstream>

#include "dist/collectives.h"
#include "duet/augment.h"
#include "duet/error.h"
#include "duet/fileio.h"
#include "duet/image.h"
#include "duet/progress.h"

namespace duet {

double stage_flops(BackboneNetImpl& net, int from, int to) {
  torch::NoGradGuard ng;
  auto x = net.run_stages(torch::zeros({1, 3, net.input_size, net.input_size}), 0, from);
  FlopCount count;
  x = net.run_stages(x, from, to);
  if (to == net.num_stages()) net.pool(x);
  return count.flops;
}

namespace {

std::string cache_file(const std::string& dir, const std::string& what, const std::string& arch,
                       const std::string& key) {
  std::ostringstream name;
  name << dir << "/" << what << "-" << arch << "-" << std::hex << fnv1a(key) << ".pt";
  return name.str();
}

// Loads `file` into t when it holds a tensor of `shape` (its leading dimensions; `dims` in all);
// every data-parallel rank must manage, or none uses it.
bool load_kept(const std::string& file, torch::Tensor& t, const std::vector<int64_t>& shape,
               int64_t dims) {
  bool ok = false;
  if (!file.empty() && file_exists(file)) {
    try {
      torch::load(t, file);
      ok = t.dim() == dims;
      for (size_t i = 0; ok && i < shape.size(); ++i)
        ok = t.size(static_cast<int64_t>(i)) == shape[i];
    } catch (const std::exception&) {
    }
    if (!ok) log_line("trunk cache: " + file + " is stale or unreadable, recomputing");
  }
  if (!dist::all_agree(ok)) return false;
  if (ok) log_line("trunk cache: reusing " + file);
  return ok;
}

void keep(const std::string& file, const torch::Tensor& t) {
  if (file.empty() || !dist::leader()) return;
  std::string tmp = file + ".tmp";
  torch::save(t, tmp);
  if (std::rename(tmp.c_str(), file.c_str()) != 0) fail("cannot write ", file);
}

}  // namespace

TrunkCache build_trunk_cache(BackboneNetImpl& net, const std::string& weights_id, const Dataset& d,
                             const std::vector<Sample>& samples, int split, int views,
                             uint64_t seed, bool frame, DomainKind kind,
                             const std::string& cache_dir, int workers, Ledger& ledger) {
  TrunkCache c;
  c.split = split;
  c.views = views;
  const int64_t n = static_cast<int64_t>(samples.size());
  std::ostringstream images;
  images << net.arch << "|" << weights_id << "|" << split << "|" << d.root << "|" << kind_name(kind)
         << (frame ? "|framed" : "");
  for (const auto& s : samples) images << "|" << s.path;
  // Views [from, to) in one file: the seed's augmented views apart from the two that need none.
  struct Group {
    int from, to;
    std::string file;
    bool have = false;
  };
  std::vector<Group> groups;
  const int fixed = std::min(views, kSeedlessViews);
  groups.push_back({0, fixed});
  if (views > fixed) groups.push_back({fixed, views});
  torch::NoGradGuard ng;
  const int S = net.input_size;
  {
    auto a = net.run_stages(torch::zeros({1, 3, S, S}), 0, split);
    c.act = torch::empty({views, n, a.size(1), a.size(2), a.size(3)});
  }
  for (auto& g : groups) {
    std::ostringstream key;
    key << images.str() << "|views" << g.from << "-" << g.to;
    if (g.from >= kSeedlessViews) key << "|seed" << seed;
    c.groups.push_back({g.from, g.to, ""});
    if (cache_dir.empty()) continue;
    make_dirs(cache_dir);
    g.file = cache_file(cache_dir, "trunk", net.arch, key.str());
    c.groups.back().pooled_file = cache_file(cache_dir, "pooled", net.arch, key.str());
    torch::Tensor t;
    g.have =
        load_kept(g.file, t, {g.to - g.from, n, c.act.size(2), c.act.size(3), c.act.size(4)}, 5);
    if (g.have) c.act.slice(0, g.from, g.to).copy_(t);
  }

  // The views no file had, in one pass over the images: each rank its share, then exchanged.
  std::vector<int> todo;
  for (const auto& g : groups)
    for (int v = g.from; !g.have && v < g.to; ++v) todo.push_back(v);
  if (todo.empty()) return c;
  const auto [b, e] = dist::share(0, n);
  Progress bar("trunk " + (samples.empty() ? std::string() : samples[0].domain), e - b);
  for_each_image(e - b, workers, [&](int64_t i) {
    uint64_t hash = 0;
    cv::Mat img = load_rgb(d.abs_path(samples[b + i]), &hash);
    if (frame) img = frame_strokes(img);
    std::vector<float> x(static_cast<size_t>(views) * 3 * S * S);
    view_inputs(img, kind, views, view_seed(seed, hash), S, x.data());
    for (int v : todo) {
      auto in = torch::from_blob(x.data() + static_cast<size_t>(v) * 3 * S * S, {1, 3, S, S})
                    .contiguous(torch::MemoryFormat::ChannelsLast);
      c.act[v][b + i].copy_(net.run_stages(in, 0, split)[0]);  // rows apart: no lock needed
    }
    bar.tick();
  });
  bar.finish();
  if (dist::world() > 1)
    for (int v : todo) c.act[v].copy_(dist::all_gather_rows(c.act[v].slice(0, b, e), n));
  for (const auto& g : groups)
    if (!g.have && !g.file.empty()) keep(g.file, c.act.slice(0, g.from, g.to).clone());
  ledger.image_forward += n * static_cast<int64_t>(todo.size());
  ledger.flops += static_cast<double>(n) * todo.size() * stage_flops(net, 0, split);
  return c;
}

torch::Tensor frozen_pooled(const TrunkCache& c, BackboneNetImpl& net, Ledger& ledger) {
  const int64_t n = c.act.size(1);
  torch::NoGradGuard ng;
  net.eval();
  const int top = net.num_stages();
  const auto [b, e] = dist::share(0, n);
  auto t = torch::empty({c.views, n, net.feature_dim});
  for (const auto& g : c.groups) {
    torch::Tensor kept;
    if (load_kept(g.pooled_file, kept, {g.to - g.from, n, net.feature_dim}, 3)) {
      t.slice(0, g.from, g.to).copy_(kept);
      continue;
    }
    // Each data-parallel rank pools its share of the rows; every rank gets them all.
    for (int v = g.from; v < g.to; ++v) {
      auto mine = torch::empty({e - b, net.feature_dim});
      for (int64_t i = b; i < e; i += 64) {
        const int64_t j = std::min<int64_t>(e, i + 64);
        mine.slice(0, i - b, j - b)
            .copy_(net.pool(net.run_stages(c.act[v].slice(0, i, j), c.split, top)));
      }
      t[v].copy_(dist::all_gather_rows(mine, n));
    }
    ledger.flops += static_cast<double>(g.to - g.from) * n * stage_flops(net, c.split, top);
    keep(g.pooled_file, t.slice(0, g.from, g.to).clone());
  }
  return t;
}

}  // namespace duet
