// The end-to-end baseline: both backbones trained jointly on sketch/photo triplets through the
// networks themselves, the architecture the dual-phase method claims to approach at a fraction of
// the compute. Training stops when a FLOP budget is spent, so the two can be compared at equal
// (and several times) the dual-phase compute. See duet/baseline.h.
#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <map>
#include <random>

#include "backbone/nets.h"
#include "duet/augment.h"
#include "duet/baseline.h"
#include "duet/dataset.h"
#include "duet/embed.h"
#include "duet/error.h"
#include "duet/image.h"
#include "duet/progress.h"
#include "phase1/trunk_cache.h"

namespace duet {

namespace {

// One domain's branch: backbone -> FC-hidden (+ReLU) -> FC-code, L2-normalised.
struct Branch {
  std::shared_ptr<BackboneNetImpl> net;
  torch::nn::Sequential head{nullptr};
  int from = 0;  // first trainable stage

  torch::Tensor forward(torch::Tensor x) {  // [N, 3, S, S] -> codes [N, code]
    if (from > 0) {
      torch::NoGradGuard ng;
      x = net->run_stages(x, 0, from);
    }
    x = net->pool(net->run_stages(x, from, net->num_stages()));
    return torch::nn::functional::normalize(head->forward(x),
                                            torch::nn::functional::NormalizeFuncOptions().dim(1));
  }
};

Branch make_branch(const SiameseOptions& opt) {
  Branch b;
  b.net = open_backbone_net(opt.base.backbone.arch, opt.base.backbone.weights);
  b.from = std::clamp(opt.train_from, 0, b.net->num_stages() - 1);
  for (auto& p : b.net->parameters()) p.set_requires_grad(false);
  for (auto& p : b.net->parameters_from(b.from)) p.set_requires_grad(true);
  b.head = torch::nn::Sequential(torch::nn::Linear(b.net->feature_dim, opt.hidden),
                                 torch::nn::ReLU(), torch::nn::Linear(opt.hidden, opt.code_dim));
  return b;
}

// Images -> [n, 3, S, S] channels-last, decoded and given view `views[i]` (augment_view) in
// parallel.
torch::Tensor load_batch(const Dataset& d, const std::vector<Sample>& s, DomainKind kind,
                         const std::vector<int>& idx, const std::vector<int>& views, uint64_t seed,
                         int S) {
  auto x = torch::empty({static_cast<int64_t>(idx.size()), 3, S, S});
  float* p = x.data_ptr<float>();
#pragma omp parallel for schedule(dynamic, 1)
  for (size_t i = 0; i < idx.size(); ++i) {
    cv::Mat img = augment_view(load_rgb(d.abs_path(s[idx[i]])), kind, views[i],
                               seed + static_cast<uint64_t>(idx[i]));
    to_chw(img, S, p + i * 3 * S * S);
  }
  return x.contiguous(torch::MemoryFormat::ChannelsLast);
}

// A branch as an Encoder (image -> code), so that evaluation goes through embed_samples like every
// other embedding: one image per worker thread, the fast inference path (see for_each_image).
class BranchEncoder : public Encoder {
 public:
  BranchEncoder(Branch& b, int code_dim, int workers)
      : b_(b), code_dim_(code_dim), workers_(workers) {}
  int input_size() const override { return b_.net->input_size; }
  int64_t dim() const override { return code_dim_; }
  void encode(int64_t n, const float* x, float* out) override {
    const int S = input_size();
    b_.net->eval();
    for_each_image(n, workers_, [&](int64_t i) {
      auto in = torch::from_blob(const_cast<float*>(x) + i * 3 * S * S, {1, 3, S, S})
                    .contiguous(torch::MemoryFormat::ChannelsLast);
      auto c = b_.forward(in).contiguous();
      std::copy(c.data_ptr<float>(), c.data_ptr<float>() + code_dim_, out + i * code_dim_);
    });
  }
  std::string source() const override { return "siamese:" + b_.net->arch; }

 private:
  Branch& b_;
  int code_dim_, workers_;
};

}  // namespace

std::vector<BaselineResult> baseline_siamese(const SiameseOptions& opt) {
  auto t0 = std::chrono::steady_clock::now();
  if (opt.batch < 2) fail("--batch must be at least 2 (negatives come from the batch)");
  if (opt.epochs < 1) fail("--epochs must be positive");
  for (double b : opt.budgets_tflops)
    if (!(b > 0)) fail("--budget-tflops: budgets must be positive (got ", b, ")");
  Dataset d = load_split(opt.base.split_file, opt.base.data);
  BaselineSides sides = baseline_sides(d, opt.base);
  auto ts = d.select(sides.doms.query[0], "train"), tp = d.select(sides.doms.gallery, "train");
  const auto& q = sides.q;
  const auto& g = sides.g;
  std::map<std::string, std::vector<int>> photos_of;
  for (size_t i = 0; i < tp.size(); ++i) photos_of[tp[i].cls].push_back(static_cast<int>(i));
  std::vector<int> anchors;  // train sketches whose class has train photos
  for (size_t i = 0; i < ts.size(); ++i)
    if (photos_of.count(ts[i].cls)) anchors.push_back(static_cast<int>(i));
  if (photos_of.size() < 2 || anchors.empty())
    fail(opt.base.split_file, ": needs train ", sides.doms.query[0], " and ", sides.doms.gallery,
         " images of at least 2 classes");

  torch::manual_seed(opt.seed);
  std::mt19937_64 rng(opt.seed);
  Branch sk = make_branch(opt), ph = make_branch(opt);
  const int S = sk.net->input_size, from = sk.from;
  const int threads = set_threads(opt.base.backbone.threads);

  // Compute per step: 2B images forward through the network, backward (2x) through the trained
  // part.
  const double frozen = stage_flops(*sk.net, 0, from),
               top = stage_flops(*sk.net, from, sk.net->num_stages());
  const double head = 2.0 * (sk.net->feature_dim * opt.hidden + opt.hidden * opt.code_dim);
  const double step_flops = 2.0 * opt.batch * (frozen + 3.0 * (top + head));
  // Full batches only (the last partial one of an epoch is dropped), so every step costs the same.
  if (static_cast<int>(anchors.size()) < opt.batch)
    fail("--batch ", opt.batch, " is larger than the ", anchors.size(), " train ",
         sides.doms.query[0], " images");
  const int64_t steps_per_epoch = static_cast<int64_t>(anchors.size()) / opt.batch;
  // Evaluation points: the step at which each budget is spent (all epochs when there is none).
  const int64_t max_steps = steps_per_epoch * opt.epochs;
  std::vector<int64_t> stops;
  for (double b : opt.budgets_tflops)
    stops.push_back(
        std::min<int64_t>(max_steps, static_cast<int64_t>(std::ceil(b * 1e12 / step_flops))));
  if (stops.empty()) stops.push_back(max_steps);
  std::sort(stops.begin(), stops.end());
  stops.erase(std::unique(stops.begin(), stops.end()), stops.end());
  const int64_t total = stops.back();
  sides.decide_kinds(d);  // after the checks above: an error stays one line
  log_line("siamese: " + std::to_string(anchors.size()) + " train " + sides.doms.query[0] + ", " +
           std::to_string(tp.size()) + " train " + sides.doms.gallery + ", " + sk.net->arch +
           " trained from stage " + std::to_string(from) + ", " + std::to_string(total) +
           " steps of " + std::to_string(opt.batch) + " pairs (" +
           std::to_string(step_flops * total / 1e12) + " TFLOPs)");

  std::vector<torch::Tensor> backbone_params, head_params;
  for (Branch* b : {&sk, &ph}) {
    for (auto& p : b->net->parameters_from(from)) backbone_params.push_back(p);
    for (auto& p : b->head->parameters()) head_params.push_back(p);
  }
  std::vector<torch::optim::OptimizerParamGroup> groups;
  groups.emplace_back(backbone_params,
                      std::make_unique<torch::optim::AdamWOptions>(
                          torch::optim::AdamWOptions(opt.lr).weight_decay(opt.weight_decay)));
  groups.emplace_back(head_params,
                      std::make_unique<torch::optim::AdamWOptions>(
                          torch::optim::AdamWOptions(opt.lr * 10).weight_decay(opt.weight_decay)));
  torch::optim::AdamW optim(groups);

  std::vector<std::string> ql, gl;
  for (const auto& x : q) ql.push_back(x.cls);
  for (const auto& x : g) gl.push_back(x.cls);
  // Evaluates the current networks; the time it takes is kept out of the training ledger.
  double eval_wall = 0, eval_cpu = 0;
  std::vector<BaselineResult> results;
  LedgerScope scope;
  Ledger work;
  auto checkpoint = [&](int64_t steps) {
    BaselineResult r;
    r.train = scope.stop();
    r.train.wall_s -= eval_wall;
    r.train.cpu_s -= eval_cpu;
    r.train.image_forward = work.image_forward;
    r.train.image_backward = work.image_backward;
    r.train.flops = work.flops;
    r.steps = steps;
    r.epochs = static_cast<double>(steps) / steps_per_epoch;
    auto w0 = std::chrono::steady_clock::now();
    const double c0 = process_cpu_seconds();
    {
      BranchEncoder se(sk, opt.code_dim, threads), pe(ph, opt.code_dim, threads);
      auto qm = embed_samples(se, d, q, {}, "siamese query"),
           gm = embed_samples(pe, d, g, {}, "siamese gallery");
      EvalOptions eo;
      eo.metric = Metric::Euclidean;
      r.metrics = evaluate(qm.x, gm.x, ql, gl, eo);
    }
    eval_wall += std::chrono::duration<double>(std::chrono::steady_clock::now() - w0).count();
    eval_cpu += process_cpu_seconds() - c0;
    r.wall_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    log_line("siamese: " + std::to_string(r.train.flops / 1e12) + " TFLOPs, " +
             std::to_string(r.epochs) + " epochs: map_all " + std::to_string(r.metrics.map_all));
    results.push_back(r);
  };

  Progress bar("siamese", total);
  double loss_avg = 0;
  std::vector<int> order = anchors;
  size_t next_stop = 0;
  for (int64_t step = 0; step < total;) {
    std::shuffle(order.begin(), order.end(), rng);
    for (size_t b = 0; b + opt.batch <= order.size() && step < total; b += opt.batch) {
      const size_t n = opt.batch;
      std::vector<int> si(order.begin() + b, order.begin() + b + n), pi(n), sv(n), pv(n);
      std::vector<int64_t> cls(n);
      for (size_t i = 0; i < n; ++i) {
        const auto& pool = photos_of[ts[si[i]].cls];
        pi[i] = pool[rng() % pool.size()];
        sv[i] =
            2 + static_cast<int>(rng() % 1000000);  // a fresh augmentation (views 0/1 are fixed)
        pv[i] = 2 + static_cast<int>(rng() % 1000000);
        cls[i] = std::distance(photos_of.begin(), photos_of.find(ts[si[i]].cls));
      }
      sk.net->train();
      ph.net->train();
      auto a = sk.forward(load_batch(d, ts, sides.qk, si, sv, opt.seed, S));
      auto p = ph.forward(load_batch(d, tp, sides.gk, pi, pv, opt.seed ^ 0x9e3779b97f4a7c15ull, S));
      // Triplets inside the batch ("batch all"): each sketch's photo is its positive and every
      // photo of another class a negative; the same with the roles swapped. Averaging over all
      // triplets rather than taking the hardest negative keeps the codes from collapsing early in
      // training.
      auto dist = torch::cdist(a, p);
      auto c = torch::from_blob(cls.data(), {static_cast<int64_t>(n)}, torch::kInt64);
      auto neg = c.unsqueeze(1).ne(c.unsqueeze(0)).to(torch::kFloat32);
      auto pos = dist.diagonal();
      auto l1 = torch::relu(pos.unsqueeze(1) - dist + opt.margin) * neg;  // sketch anchors
      auto l2 = torch::relu(pos.unsqueeze(0) - dist + opt.margin) * neg;  // photo anchors
      auto loss = (l1 + l2).sum() / (2 * neg.sum().clamp_min(1));
      optim.zero_grad();
      loss.backward();
      optim.step();
      work.image_forward += 2 * static_cast<int64_t>(n);
      work.image_backward += 2 * static_cast<int64_t>(n);
      work.flops += step_flops;
      loss_avg = step ? 0.95 * loss_avg + 0.05 * loss.item<double>() : loss.item<double>();
      char buf[48];
      std::snprintf(buf, sizeof buf, " loss %.4f", loss_avg);
      bar.set_suffix(buf);
      bar.tick();
      if (++step == stops[next_stop]) {
        checkpoint(step);
        ++next_stop;
      }
    }
  }
  bar.finish();
  return results;
}

}  // namespace duet
