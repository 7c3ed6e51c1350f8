#include "phase1/trunk_cache.h"

#include <mutex>
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

TrunkCache build_trunk_cache(BackboneNetImpl& net, const std::string& weights_id, const Dataset& d,
                             const std::vector<Sample>& samples, int split, int views, uint64_t seed,
                             bool frame, DomainKind kind, const std::string& cache_dir, int workers, Ledger& ledger) {
  TrunkCache c;
  c.split = split;
  c.views = views;
  std::ostringstream key;
  key << net.arch << "|" << weights_id << "|" << split << "|" << views << "|" << seed << "|" << d.root
      << "|" << kind_name(kind) << (frame ? "|framed" : "");
  for (const auto& s : samples) key << "|" << s.path;
  std::string file;
  if (!cache_dir.empty()) {
    make_dirs(cache_dir);
    std::ostringstream name;
    name << cache_dir << "/trunk-" << net.arch << "-" << std::hex << fnv1a(key.str()) << ".pt";
    file = name.str();
    bool ok = false;
    if (file_exists(file)) {
      try {
        torch::load(c.act, file);
        ok = c.act.dim() == 5 && c.act.size(0) == views && c.act.size(1) == static_cast<int64_t>(samples.size());
      } catch (const std::exception&) {
      }
      if (!ok) log_line("trunk cache: " + file + " is stale or unreadable, recomputing");
    }
    // Data-parallel ranks reuse it only if every one of them could read it.
    if (dist::all_agree(ok)) {
      log_line("trunk cache: reusing " + file);
      return c;
    }
  }
  const int S = net.input_size;
  const int64_t n = static_cast<int64_t>(samples.size());
  // Each data-parallel rank computes its share of the samples; the ranks then exchange them.
  const auto [b, e] = dist::share(0, n);
  torch::NoGradGuard ng;
  Progress bar("trunk " + (samples.empty() ? std::string() : samples[0].domain), e - b);
  std::mutex mu;
  for_each_image(e - b, workers, [&](int64_t i) {
    uint64_t hash = 0;
    cv::Mat img = load_rgb(d.abs_path(samples[b + i]), &hash);
    if (frame) img = frame_strokes(img);
    std::vector<float> x(static_cast<size_t>(views) * 3 * S * S);
    view_inputs(img, kind, views, view_seed(seed, hash), S, x.data());
    for (int v = 0; v < views; ++v) {
      auto in = torch::from_blob(x.data() + static_cast<size_t>(v) * 3 * S * S, {1, 3, S, S})
                    .contiguous(torch::MemoryFormat::ChannelsLast);
      auto a = net.run_stages(in, 0, split).contiguous();
      std::lock_guard<std::mutex> lock(mu);
      if (!c.act.defined()) c.act = torch::empty({views, e - b, a.size(1), a.size(2), a.size(3)});
      c.act[v][i].copy_(a[0]);
      if (v == views - 1) bar.tick();
    }
  });
  bar.finish();
  if (dist::world() > 1) {
    std::vector<torch::Tensor> all;
    for (int v = 0; v < views; ++v) all.push_back(dist::all_gather_rows(c.act[v], n));
    c.act = torch::stack(all);
  }
  ledger.image_forward += n * views;
  ledger.flops += static_cast<double>(n * views) * stage_flops(net, 0, split);
  if (!file.empty() && dist::leader()) {
    std::string tmp = file + ".tmp";
    torch::save(c.act, tmp);
    if (std::rename(tmp.c_str(), file.c_str()) != 0) fail("cannot write ", file);
  }
  return c;
}

}  // namespace duet
