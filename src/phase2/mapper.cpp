// Phase II mapper: training on resampled sketch/photo pairs, the calibrated pair probability, and
// the mapper file. See duet/phase2.h.
#include <torch/torch.h>

#include <algorithm>
#include <map>
#include <optional>
#include <sstream>

#include "common/torch_matrix.h"
#include "dist/collectives.h"
#include "duet/encoder.h"
#include "duet/error.h"
#include "duet/fileio.h"
#include "duet/phase2.h"
#include "duet/progress.h"
#include "model/mapper_file.h"

namespace duet {

const char* loss_name(MapperLoss l) { return l == MapperLoss::Triplet ? "triplet" : "contrastive"; }

namespace {

// One branch per domain: the query domains in order, the gallery domain last (as the file keeps
// them, model/mapper_file.h). Shared: one branch object under every name.
struct Net {
  std::vector<Branch> branch;
  bool shared = false;
  Branch& gallery() { return branch.back(); }
  std::vector<torch::Tensor> parameters() const {
    if (shared) return branch[0]->parameters();
    std::vector<torch::Tensor> p;
    for (const auto& b : branch)
      for (auto& t : b->parameters()) p.push_back(t);
    return p;
  }
  // Rows x of the query domains dom[] (indices into the branches) through their branches, in order.
  torch::Tensor map_queries(const torch::Tensor& x, const torch::Tensor& dom) {
    const int64_t nd = static_cast<int64_t>(branch.size()) - 1;
    if (nd == 1 || shared) return branch[0]->forward(x);
    torch::Tensor out;
    for (int64_t d = 0; d < nd; ++d) {
      auto pos = dom.eq(d).nonzero().squeeze(1);
      if (pos.numel() == 0) continue;
      auto z = branch[d]->forward(x.index_select(0, pos));
      if (!out.defined()) out = torch::zeros({x.size(0), z.size(1)});
      out = out.index_copy(0, pos, z);
    }
    return out;
  }
};

torch::Tensor pair_distance(const torch::Tensor& a, const torch::Tensor& b) {
  return (a - b).pow(2).sum(1).add(1e-9).sqrt();  // epsilon: the gradient of sqrt at 0
}

}  // namespace

std::string MapperTrainResult::to_json() const {
  std::ostringstream os;
  os << "{\"queries\": {";
  size_t i = 0;
  for (const auto& [d, n] : queries) os << (i++ ? ", " : "") << "\"" << d << "\": " << n;
  os << "}, \"gallery\": " << gallery << ", \"ranks\": " << ranks
     << ", \"pairs_per_epoch\": " << pairs_per_epoch << ", \"prob_a\": " << prob_a
     << ", \"prob_b\": " << prob_b << ", \"ledger\": " << ledger.to_json() << ", \"epoch_loss\": [";
  for (size_t e = 0; e < epoch_loss.size(); ++e) os << (e ? ", " : "") << epoch_loss[e];
  os << "]}";
  return os.str();
}

namespace {
std::string domain_of(const Embeddings& e, const char* what) {
  auto it = e.meta.find("domain");
  if (it == e.meta.end() || it->second.empty())
    fail(what,
         " embeddings name no domain in their manifest (write them with `duet train-encoder "
         "--emb-out` "
         "or `duet embed`)");
  return it->second;
}
}  // namespace

MapperTrainResult train_mapper(const std::vector<Embeddings>& qsets, const Embeddings& ge,
                               const MapperOptions& opt, const std::string& out_file) {
  LedgerScope scope;
  if (qsets.empty()) fail("Phase II needs the embeddings of at least one query domain");
  if (opt.pos < 1 || opt.neg < 1 || opt.epochs < 1)
    fail("--pos, --neg and --epochs must be positive");
  std::vector<std::string> domains;
  for (const auto& q : qsets) {
    const std::string d = domain_of(q, "query");
    if (std::find(domains.begin(), domains.end(), d) != domains.end())
      fail("two query embedding files are of domain '", d, "'; give each query domain once");
    if (q.x.cols != ge.x.cols)
      fail(d, " embeddings are ", q.x.cols, "-d but gallery embeddings are ", ge.x.cols,
           "-d; Phase II needs all from encoders with the same --hidden");
    domains.push_back(d);
  }
  const std::string gdom = domain_of(ge, "gallery");
  if (std::find(domains.begin(), domains.end(), gdom) != domains.end())
    fail("query and gallery embeddings are both of domain '", gdom,
         "'; Phase II maps different domains");
  domains.push_back(gdom);
  // Opened now, by the rank that writes it: an unwritable path fails before training, not after.
  std::optional<AtomicFile> out;
  if (dist::leader()) out.emplace(out_file);
  torch::manual_seed(opt.seed);
  set_threads(opt.threads);

  // Class ids over the gallery; only query rows of a class the gallery has can form positive
  // pairs. The query domains' usable rows are stacked in order, each row tagged with its domain.
  MapperTrainResult res;
  std::map<std::string, int64_t> cid;
  for (const auto& r : ge.rows) cid.emplace(r.cls, static_cast<int64_t>(cid.size()));
  std::vector<std::vector<int64_t>> photos_of(cid.size());
  for (size_t i = 0; i < ge.rows.size(); ++i)
    photos_of[cid[ge.rows[i].cls]].push_back(static_cast<int64_t>(i));
  std::vector<int64_t> qlab, qdom_v;
  std::vector<torch::Tensor> xq;
  for (size_t d = 0; d < qsets.size(); ++d) {
    std::vector<int64_t> rows;
    for (size_t i = 0; i < qsets[d].rows.size(); ++i) {
      auto it = cid.find(qsets[d].rows[i].cls);
      if (it == cid.end()) continue;
      rows.push_back(static_cast<int64_t>(i));
      qlab.push_back(it->second);
      qdom_v.push_back(static_cast<int64_t>(d));
    }
    if (rows.empty())
      fail("no ", domains[d], " class has ", gdom,
           " images: the two embedding files share no class");
    res.queries[domains[d]] = static_cast<int64_t>(rows.size());
    xq.push_back(to_tensor(qsets[d].x).index_select(0, torch::tensor(rows)));
  }
  if (cid.size() < 2) fail("Phase II needs at least two ", gdom, " classes for negative pairs");
  const int64_t nq = static_cast<int64_t>(qlab.size()), ng = ge.x.rows;
  res.gallery = ng;
  auto Xq = xq.size() == 1 ? xq[0] : torch::cat(xq);
  auto qdom = torch::tensor(qdom_v);
  auto Xg = to_tensor(ge.x);
  std::vector<int64_t> glab_v(ng);
  for (int64_t i = 0; i < ng; ++i) glab_v[i] = cid[ge.rows[i].cls];
  auto glab = torch::tensor(glab_v), ql = torch::tensor(qlab);

  Net net;
  net.shared = opt.shared;
  const int in = static_cast<int>(ge.x.cols);
  for (size_t d = 0; d < domains.size(); ++d)
    net.branch.push_back(opt.shared && d > 0 ? net.branch[0]
                                             : Branch(in, opt.hidden, opt.code, opt.normalize));
  const auto params = net.parameters();
  torch::optim::AdamW optim(params,
                            torch::optim::AdamWOptions(opt.lr).weight_decay(opt.weight_decay));

  // Draws `pos` same-class and `neg` other-class gallery rows per query: [nq, pos], [nq, neg].
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
          do j = (ra[i][opt.pos + k] += 7919) % ng;  // rejection: redraw on a same-class row
          while (glab_v[j] == qlab[i]);
        }
        N[i * opt.neg + k] = j;
      }
    }
    return std::make_pair(torch::tensor(P).view({nq, opt.pos}),
                          torch::tensor(N).view({nq, opt.neg}));
  };
  // The 50 closest other-class gallery rows of every query in the current code space.
  auto hard_pool = [&]() {
    torch::NoGradGuard ng_;
    auto zq = net.map_queries(Xq, qdom), zg = net.gallery()->forward(Xg);
    auto d = torch::cdist(zq, zg);
    d.masked_fill_(ql.unsqueeze(1).eq(glab.unsqueeze(0)), 1e9);
    return std::get<1>(d.topk(std::min<int64_t>(50, ng), 1, false));
  };

  res.pairs_per_epoch = nq * (opt.pos + opt.neg);
  Progress bar(std::string("mapper ") + loss_name(opt.loss), opt.epochs);
  for (int ep = 1; ep <= opt.epochs; ++ep) {
    // Hard negatives from the second epoch on, once the codes mean something.
    auto [P, N] = draw(opt.hard_negatives && ep > 1 ? hard_pool() : torch::Tensor());
    auto order = torch::randperm(nq, torch::kInt64);
    double loss_sum = 0;
    int64_t terms = 0;
    const int64_t step = std::max(1, opt.batch / (opt.pos + opt.neg));
    for (int64_t b = 0; b < nq; b += step) {
      const int64_t e = std::min(nq, b + step), M = e - b;
      // This rank's share of the minibatch (all of it on one rank). Its loss is its part of the
      // whole minibatch's mean, so the gradients summed over the ranks are the minibatch's.
      const auto [mb, me] = dist::share(b, e);
      auto idx = order.slice(0, mb, me);
      const int64_t m = me - mb;
      auto zq = net.map_queries(Xq.index_select(0, idx), qdom.index_select(0, idx));  // [m, code]
      auto zp =
          net.gallery()
              ->forward(Xg.index_select(0, P.index_select(0, idx).flatten()))  // [m*pos, code]
              .view({m, opt.pos, -1});
      auto zn = net.gallery()
                    ->forward(Xg.index_select(0, N.index_select(0, idx).flatten()))
                    .view({m, opt.neg, -1});
      auto dp = (zq.unsqueeze(1) - zp).pow(2).sum(2).add(1e-9).sqrt();  // [m, pos]
      auto dn = (zq.unsqueeze(1) - zn).pow(2).sum(2).add(1e-9).sqrt();  // [m, neg]
      torch::Tensor loss;
      if (opt.loss == MapperLoss::Contrastive) {
        loss =
            torch::cat({dp.pow(2).flatten(), torch::relu(opt.margin - dn).pow(2).flatten()}).sum() /
            static_cast<double>(M * (opt.pos + opt.neg));
      } else {
        // every positive against every negative of the same query
        loss = torch::relu(dp.unsqueeze(2) - dn.unsqueeze(1) + opt.margin).sum() /
               static_cast<double>(M * opt.pos * opt.neg);
      }
      optim.zero_grad();
      loss.backward();
      dist::all_reduce_grads(params);
      optim.step();
      loss_sum += loss.item<double>() * M;
      terms += M;
    }
    auto total = torch::tensor({loss_sum}, torch::kFloat32);
    dist::all_reduce_sum({total});
    res.epoch_loss.push_back(total.item<double>() / terms);
    char buf[48];
    std::snprintf(buf, sizeof buf, " loss %.4f", res.epoch_loss.back());
    bar.set_suffix(buf);
    bar.tick();
  }
  bar.finish();

  // p(same | d) = sigmoid(a - b d), fitted by logistic regression on one fresh draw of pairs
  // (of every query domain together: the ranking compares one query with gallery rows only).
  {
    auto [P, N] = draw(torch::Tensor());
    torch::Tensor d, y;
    {
      torch::NoGradGuard ng_;
      auto zq = net.map_queries(Xq, qdom),
           zp = net.gallery()->forward(Xg.index_select(0, P.flatten())),
           zn = net.gallery()->forward(Xg.index_select(0, N.flatten()));
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
  ar.write("format", c10::IValue(std::string(kMapperFormat)));
  std::string names;
  for (const auto& d : domains) names += (names.empty() ? "" : "\n") + d;
  ar.write("domains", c10::IValue(names));
  ar.write("in_dim", c10::IValue(ge.x.cols));
  ar.write("hidden", c10::IValue(static_cast<int64_t>(opt.hidden)));
  ar.write("code", c10::IValue(static_cast<int64_t>(opt.code)));
  ar.write("shared", c10::IValue(opt.shared));
  ar.write("normalize", c10::IValue(opt.normalize));
  ar.write("loss", c10::IValue(std::string(loss_name(opt.loss))));
  ar.write("prob", torch::tensor({res.prob_a, res.prob_b}, torch::kFloat64));
  for (size_t b = 0; b < (opt.shared ? 1 : net.branch.size()); ++b)
    for (const auto& p : net.branch[b]->named_parameters())
      ar.write("b" + std::to_string(b) + "." + p.key(), p.value().detach());
  // The ranks stepped on the same summed gradients: they hold the same parameters, or something
  // (a nondeterministic draw, a rank on other data) broke the data-parallel contract.
  if (double dev = dist::divergence(params); dev != 0)
    fail("the ", dist::world(), " ranks trained different mappers (parameters differ by up to ",
         dev, ")");
  res.ranks = dist::world();
  if (out) {
    std::ostringstream bytes;
    ar.save_to(bytes);
    out->write(bytes.str());
    out->commit();
  }
  res.ledger = scope.stop();
  res.ledger.flops =
      3.0 * opt.epochs * (nq + 2.0 * res.pairs_per_epoch) * 2.0 *
      (static_cast<double>(ge.x.cols) * opt.hidden + static_cast<double>(opt.hidden) * opt.code);
  return res;
}

}  // namespace duet
