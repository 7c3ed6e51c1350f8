// Phase II mapper: training on resampled sketch/photo pairs, the calibrated pair probability, and
// the mapper file. See duet/phase2.h.
#include <torch/torch.h>

#include <algorithm>
#include <map>
#include <sstream>

#include "duet/encoder.h"
#include "duet/error.h"
#include "duet/fileio.h"
#include "duet/phase2.h"
#include "duet/progress.h"

namespace duet {

namespace {

constexpr const char* kFormat = "duet-mapper-v1";

struct BranchImpl : torch::nn::Module {
  torch::nn::Linear fc1{nullptr}, fc2{nullptr};
  bool normalize = false;  // inputs to unit length first (MapperOptions::normalize)
  BranchImpl(int in, int hidden, int code, bool norm) : normalize(norm) {
    fc1 = register_module("fc1", torch::nn::Linear(in, hidden));
    fc2 = register_module("fc2", torch::nn::Linear(hidden, code));
  }
  torch::Tensor forward(torch::Tensor x) {  // [N, in] -> [N, code]
    namespace F = torch::nn::functional;
    if (normalize) x = F::normalize(x, F::NormalizeFuncOptions().dim(1));
    return fc2(torch::relu(fc1(x)));
  }
};
TORCH_MODULE(Branch);

struct Net {
  Branch q{nullptr}, g{nullptr};  // g == q when shared
  bool shared = false;
  std::vector<torch::Tensor> parameters() const {
    auto p = q->parameters();
    if (!shared)
      for (auto& t : g->parameters()) p.push_back(t);
    return p;
  }
};

torch::Tensor to_tensor(const Matrix& m) {
  return torch::from_blob(const_cast<float*>(m.data.data()), {m.rows, m.cols}, torch::kFloat32).clone();
}

torch::Tensor pair_distance(const torch::Tensor& a, const torch::Tensor& b) {
  return (a - b).pow(2).sum(1).add(1e-9).sqrt();  // epsilon: the gradient of sqrt at 0
}

class TorchMapper : public Mapper {
 public:
  mutable Net net;  // forward() of a module is not const in LibTorch
  int64_t in = 0, code = 0;
  double a = 0, b = 0;
  int64_t in_dim() const override { return in; }
  int64_t code_dim() const override { return code; }
  Matrix map(int side, const Matrix& x) const override {
    if (x.cols != in) fail("embeddings are ", x.cols, "-d but the mapper expects ", in, "-d (another encoder?)");
    torch::NoGradGuard ng;
    auto y = (side == 0 ? net.q : net.g)->forward(to_tensor(x)).contiguous();
    Matrix out(y.size(0), y.size(1));
    std::copy(y.data_ptr<float>(), y.data_ptr<float>() + y.numel(), out.data.begin());
    return out;
  }
  double probability(double d) const override { return 1.0 / (1.0 + std::exp(-(a - b * d))); }
  double prob_a() const override { return a; }
  double prob_b() const override { return b; }
};

}  // namespace

std::string MapperTrainResult::to_json() const {
  std::ostringstream os;
  os << "{\"sketches\": " << sketches << ", \"photos\": " << photos << ", \"pairs_per_epoch\": " << pairs_per_epoch
     << ", \"prob_a\": " << prob_a << ", \"prob_b\": " << prob_b << ", \"ledger\": " << ledger.to_json()
     << ", \"epoch_loss\": [";
  for (size_t i = 0; i < epoch_loss.size(); ++i) os << (i ? ", " : "") << epoch_loss[i];
  os << "]}";
  return os.str();
}

MapperTrainResult train_mapper(const Embeddings& qe, const Embeddings& ge, const MapperOptions& opt,
                               const std::string& out_file) {
  LedgerScope scope;
  if (qe.x.cols != ge.x.cols)
    fail("sketch embeddings are ", qe.x.cols, "-d but photo embeddings are ", ge.x.cols,
         "-d; Phase II needs both from encoders with the same --hidden");
  if (opt.loss != "contrastive" && opt.loss != "triplet") fail("unknown loss '", opt.loss, "': contrastive or triplet");
  if (opt.pos < 1 || opt.neg < 1 || opt.epochs < 1) fail("--pos, --neg and --epochs must be positive");
  auto dq = qe.meta.find("domain"), dg = ge.meta.find("domain");
  if (dq != qe.meta.end() && dg != ge.meta.end() && dq->second == dg->second)
    fail("both embedding files are of domain '", dq->second, "'; Phase II maps two different domains");
  AtomicFile out(out_file);  // opened now: an unwritable path fails before training, not after
  torch::manual_seed(opt.seed);
  set_threads(opt.threads);

  // Class ids over both sides; only classes present on both sides can form positive pairs.
  std::map<std::string, int64_t> cid;
  for (const auto& r : ge.rows) cid.emplace(r.cls, static_cast<int64_t>(cid.size()));
  std::vector<std::vector<int64_t>> photos_of(cid.size());
  for (size_t i = 0; i < ge.rows.size(); ++i) photos_of[cid[ge.rows[i].cls]].push_back(static_cast<int64_t>(i));
  std::vector<int64_t> qs, qlab;  // usable sketches and their class ids
  for (size_t i = 0; i < qe.rows.size(); ++i) {
    auto it = cid.find(qe.rows[i].cls);
    if (it != cid.end()) {
      qs.push_back(static_cast<int64_t>(i));
      qlab.push_back(it->second);
    }
  }
  if (qs.empty()) fail("no sketch class has photos: the two embedding files share no class");
  if (cid.size() < 2) fail("Phase II needs at least two photo classes for negative pairs");
  const int64_t nq = static_cast<int64_t>(qs.size()), ng = ge.x.rows;

  MapperTrainResult res;
  res.sketches = nq;
  res.photos = ng;
  auto Xq = to_tensor(qe.x).index_select(0, torch::tensor(qs));
  auto Xg = to_tensor(ge.x);
  std::vector<int64_t> glab_v(ng);
  for (int64_t i = 0; i < ng; ++i) glab_v[i] = cid[ge.rows[i].cls];
  auto glab = torch::tensor(glab_v), ql = torch::tensor(qlab);

  auto mapper = std::make_unique<TorchMapper>();
  mapper->in = qe.x.cols;
  mapper->code = opt.code;
  mapper->net.shared = opt.shared;
  const int in = static_cast<int>(qe.x.cols);
  mapper->net.q = Branch(in, opt.hidden, opt.code, opt.normalize);
  mapper->net.g = opt.shared ? mapper->net.q : Branch(in, opt.hidden, opt.code, opt.normalize);
  Net& net = mapper->net;
  torch::optim::AdamW optim(net.parameters(), torch::optim::AdamWOptions(opt.lr).weight_decay(opt.weight_decay));

  // Draws `pos` same-class and `neg` other-class photos per sketch: [nq, pos], [nq, neg].
  auto draw = [&](const torch::Tensor& hard_pool) {
    std::vector<int64_t> P(nq * opt.pos), N(nq * opt.neg);
    auto r = torch::randint(1 << 30, {nq, opt.pos + opt.neg}, torch::kInt64);
    auto ra = r.accessor<int64_t, 2>();
    torch::Tensor pool = hard_pool.defined() ? hard_pool.contiguous() : torch::Tensor();
    const int64_t* hp = pool.defined() ? pool.data_ptr<int64_t>() : nullptr;
    const int64_t pool_w = pool.defined() ? pool.size(1) : 0;
    for (int64_t i = 0; i < nq; ++i) {
      const auto& same = photos_of[qlab[i]];
      for (int k = 0; k < opt.pos; ++k) P[i * opt.pos + k] = same[ra[i][k] % same.size()];
      for (int k = 0; k < opt.neg; ++k) {
        int64_t j;
        if (hp) {
          j = hp[i * pool_w + ra[i][opt.pos + k] % pool_w];
        } else {
          do j = (ra[i][opt.pos + k] += 7919) % ng;  // rejection: redraw on a same-class photo
          while (glab_v[j] == qlab[i]);
        }
        N[i * opt.neg + k] = j;
      }
    }
    return std::make_pair(torch::tensor(P).view({nq, opt.pos}), torch::tensor(N).view({nq, opt.neg}));
  };
  // The 50 closest other-class photos of every sketch in the current code space.
  auto hard_pool = [&]() {
    torch::NoGradGuard ng_;
    auto zq = net.q->forward(Xq), zg = net.g->forward(Xg);
    auto d = torch::cdist(zq, zg);
    d.masked_fill_(ql.unsqueeze(1).eq(glab.unsqueeze(0)), 1e9);
    return std::get<1>(d.topk(std::min<int64_t>(50, ng), 1, false));
  };

  res.pairs_per_epoch = nq * (opt.pos + opt.neg);
  Progress bar("mapper " + opt.loss, opt.epochs);
  for (int ep = 1; ep <= opt.epochs; ++ep) {
    // Hard negatives from the second epoch on, once the codes mean something.
    auto [P, N] = draw(opt.hard_negatives && ep > 1 ? hard_pool() : torch::Tensor());
    auto order = torch::randperm(nq, torch::kInt64);
    double loss_sum = 0;
    int64_t terms = 0;
    for (int64_t b = 0; b < nq; b += std::max(1, opt.batch / (opt.pos + opt.neg))) {
      int64_t e = std::min(nq, b + std::max(1, opt.batch / (opt.pos + opt.neg)));
      auto idx = order.slice(0, b, e);
      const int64_t m = e - b;
      auto zq = net.q->forward(Xq.index_select(0, idx));                                    // [m, code]
      auto zp = net.g->forward(Xg.index_select(0, P.index_select(0, idx).flatten()))        // [m*pos, code]
                    .view({m, opt.pos, -1});
      auto zn = net.g->forward(Xg.index_select(0, N.index_select(0, idx).flatten())).view({m, opt.neg, -1});
      auto dp = (zq.unsqueeze(1) - zp).pow(2).sum(2).add(1e-9).sqrt();  // [m, pos]
      auto dn = (zq.unsqueeze(1) - zn).pow(2).sum(2).add(1e-9).sqrt();  // [m, neg]
      torch::Tensor loss;
      if (opt.loss == "contrastive") {
        loss = torch::cat({dp.pow(2).flatten(), torch::relu(opt.margin - dn).pow(2).flatten()}).mean();
      } else {
        // every positive against every negative of the same sketch
        loss = torch::relu(dp.unsqueeze(2) - dn.unsqueeze(1) + opt.margin).mean();
      }
      optim.zero_grad();
      loss.backward();
      optim.step();
      loss_sum += loss.item<double>() * m;
      terms += m;
    }
    res.epoch_loss.push_back(loss_sum / terms);
    char buf[48];
    std::snprintf(buf, sizeof buf, " loss %.4f", res.epoch_loss.back());
    bar.set_suffix(buf);
    bar.tick();
  }
  bar.finish();

  // p(same | d) = sigmoid(a - b d), fitted by logistic regression on one fresh draw of pairs.
  {
    auto [P, N] = draw(torch::Tensor());
    torch::Tensor d, y;
    {
      torch::NoGradGuard ng_;
      auto zq = net.q->forward(Xq), zp = net.g->forward(Xg.index_select(0, P.flatten())),
           zn = net.g->forward(Xg.index_select(0, N.flatten()));
      d = torch::cat({pair_distance(zq.repeat_interleave(opt.pos, 0), zp),
                      pair_distance(zq.repeat_interleave(opt.neg, 0), zn)});
      y = torch::cat({torch::ones({nq * opt.pos}), torch::zeros({nq * opt.neg})});
    }
    auto ab = torch::tensor({0.0f, 1.0f}, torch::requires_grad());
    torch::optim::Adam adam({ab}, torch::optim::AdamOptions(0.05));
    for (int it = 0; it < 500; ++it) {
      adam.zero_grad();
      torch::binary_cross_entropy_with_logits(ab[0] - ab[1] * d, y).backward();
      adam.step();
    }
    res.prob_a = ab[0].item<double>();
    res.prob_b = ab[1].item<double>();
  }

  torch::serialize::OutputArchive ar;
  ar.write("format", c10::IValue(std::string(kFormat)));
  ar.write("in_dim", c10::IValue(mapper->in));
  ar.write("hidden", c10::IValue(static_cast<int64_t>(opt.hidden)));
  ar.write("code", c10::IValue(static_cast<int64_t>(opt.code)));
  ar.write("shared", c10::IValue(opt.shared));
  ar.write("normalize", c10::IValue(opt.normalize));
  ar.write("loss", c10::IValue(opt.loss));
  ar.write("prob", torch::tensor({res.prob_a, res.prob_b}, torch::kFloat64));
  for (const auto& p : net.q->named_parameters()) ar.write("q." + p.key(), p.value().detach());
  for (const auto& p : net.g->named_parameters()) ar.write("g." + p.key(), p.value().detach());
  std::ostringstream bytes;
  ar.save_to(bytes);
  out.write(bytes.str());
  out.commit();
  res.ledger = scope.stop();
  res.ledger.flops = 3.0 * opt.epochs * (nq + 2.0 * res.pairs_per_epoch) * 2.0 *
                     (static_cast<double>(qe.x.cols) * opt.hidden + static_cast<double>(opt.hidden) * opt.code);
  return res;
}

std::unique_ptr<Mapper> open_mapper(const std::string& file) {
  if (!file_exists(file)) fail(file, ": no such mapper file");
  torch::serialize::InputArchive ar;
  try {
    ar.load_from(file);
  } catch (const std::exception& e) {
    fail(file, ": not a duet mapper file (train one with `duet train-mapper`): ",
         std::string(e.what()).substr(0, 160));
  }
  c10::IValue v;
  if (!ar.try_read("format", v) || !v.isString() || v.toStringRef() != kFormat)
    fail(file, ": not a duet mapper file (format ", v.isString() ? v.toStringRef() : v.tagKind(), ")");
  auto m = std::make_unique<TorchMapper>();
  ar.read("in_dim", v);
  m->in = v.toInt();
  ar.read("hidden", v);
  int hidden = static_cast<int>(v.toInt());
  ar.read("code", v);
  m->code = v.toInt();
  ar.read("shared", v);
  m->net.shared = v.toBool();
  const bool normalize = ar.try_read("normalize", v) && v.toBool();  // absent in older files: off
  torch::Tensor prob;
  ar.read("prob", prob);
  m->a = prob[0].item<double>();
  m->b = prob[1].item<double>();
  const int in = static_cast<int>(m->in), code = static_cast<int>(m->code);
  m->net.q = Branch(in, hidden, code, normalize);
  m->net.g = m->net.shared ? m->net.q : Branch(in, hidden, code, normalize);
  torch::NoGradGuard ng;
  for (auto& p : m->net.q->named_parameters()) {
    torch::Tensor t;
    ar.read("q." + p.key(), t);
    p.value().copy_(t);
  }
  for (auto& p : m->net.g->named_parameters()) {
    torch::Tensor t;
    ar.read("g." + p.key(), t);
    p.value().copy_(t);
  }
  return m;
}

}  // namespace duet
