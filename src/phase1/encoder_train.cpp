// Phase I training: frozen-backbone head training on cached features, then fine-tuning of the top
// backbone stages from the cached trunk activations. See duet/phase1.h.
#include <torch/torch.h>

#include <algorithm>
#include <cstdio>
#include <functional>
#include <map>
#include <set>
#include <sstream>

#include "backbone/nets.h"
#include "dist/collectives.h"
#include "duet/embeddings.h"
#include "duet/error.h"
#include "duet/fileio.h"
#include "duet/phase1.h"
#include "duet/progress.h"
#include "model/encoder_file.h"
#include "phase1/preserve.h"
#include "phase1/trunk_cache.h"

namespace duet {

namespace {

// The dropout mask of a whole minibatch [rows, hidden], drawn exactly as torch::dropout draws it
// (so one process trains as it always did) and on every data-parallel rank alike, each rank then
// taking its share's rows: the ranks' random streams stay in step. Undefined when p is 0.
torch::Tensor dropout_mask(int64_t rows, int64_t hidden, double p) {
  if (!(p > 0)) return {};
  if (p >= 1) return torch::zeros({rows, hidden});
  return torch::empty({rows, hidden}).bernoulli_(1 - p).div_(1 - p);
}

std::string join(const std::vector<std::string>& v, char sep) {
  std::string o;
  for (size_t i = 0; i < v.size(); ++i) o += (i ? std::string(1, sep) : "") + v[i];
  return o;
}

// The encoder file (model/encoder_file.h); open_encoder reads it.
void save_encoder(AtomicFile& out, const EncoderMeta& m, BackboneNetImpl& net, HeadImpl& head) {
  torch::serialize::OutputArchive ar;
  ar.write("format", c10::IValue(std::string(kEncoderFormat)));
  ar.write("arch", c10::IValue(m.arch));
  ar.write("weights", c10::IValue(m.weights));
  ar.write("domain", c10::IValue(m.domain));
  ar.write("classes", c10::IValue(join(m.classes, '\n')));
  ar.write("split", c10::IValue(static_cast<int64_t>(m.split)));
  ar.write("hidden", c10::IValue(static_cast<int64_t>(m.hidden)));
  ar.write("kind", c10::IValue(std::string(kind_name(m.kind))));
  ar.write("frame", c10::IValue(static_cast<int64_t>(m.frame)));
  ar.write("tta_views", c10::IValue(static_cast<int64_t>(m.tta_views)));
  ar.write("seed", c10::IValue(static_cast<int64_t>(m.seed)));
  // Only the trained stages travel; the frozen ones come from the backbone weights file.
  auto top = net.parameters_from(m.split);
  for (size_t i = 0; i < top.size(); ++i) ar.write("top." + std::to_string(i), top[i].detach());
  for (const auto& p : head.named_parameters()) ar.write("head." + p.key(), p.value().detach());
  std::ostringstream bytes;
  ar.save_to(bytes);
  out.write(bytes.str());
  out.commit();
}

// A teacher's rows (by path) for `samples`, [N, cols]; zero rows for samples it has none of.
// With `classes` (the student's), the teacher's columns are the classes its meta names, each
// placed in the student's column of that name and the others left zero: a query encoder that
// learns classes its gallery lacks (extra sources) learns the gallery's posterior over those it
// shares. Error when the widths or names do not fit, or when it has a row for no train sample.
torch::Tensor teacher_rows(const Embeddings& t, const std::vector<Sample>& samples, int64_t cols,
                           const std::string& what, const std::vector<std::string>& classes = {}) {
  std::vector<int64_t> col(static_cast<size_t>(t.x.cols));
  for (int64_t j = 0; j < t.x.cols; ++j) col[static_cast<size_t>(j)] = j;
  if (!classes.empty() && t.meta.count("classes")) {
    std::map<std::string, int64_t> at;
    for (size_t c = 0; c < classes.size(); ++c) at.emplace(classes[c], static_cast<int64_t>(c));
    std::vector<std::string> names;
    std::istringstream list(t.meta.at("classes"));
    for (std::string c; std::getline(list, c, ',');) names.push_back(c);
    if (static_cast<int64_t>(names.size()) != t.x.cols)
      fail(what, " names ", names.size(), " classes for ", t.x.cols, " outputs");
    for (size_t j = 0; j < names.size(); ++j) {
      auto it = at.find(names[j]);
      if (it == at.end())
        fail(what, " has class '", names[j], "', which the student did not learn");
      col[j] = it->second;
    }
  } else if (t.x.cols != cols) {
    fail(what, " has ", t.x.cols, " outputs, not ", cols);
  }
  std::map<std::string, size_t> row_of;
  for (size_t i = 0; i < t.rows.size(); ++i) row_of.emplace(t.rows[i].path, i);
  auto out = torch::zeros({static_cast<int64_t>(samples.size()), cols});
  int64_t taught = 0;
  for (size_t i = 0; i < samples.size(); ++i)
    if (auto it = row_of.find(samples[i].path); it != row_of.end()) {
      const float* r = t.x.row(static_cast<int64_t>(it->second));
      float* o = out[static_cast<int64_t>(i)].data_ptr<float>();
      for (int64_t j = 0; j < t.x.cols; ++j) o[col[static_cast<size_t>(j)]] = r[j];
      taught += samples[i].split == "train";
    }
  if (taught == 0) fail(what, " has a row for none of its train images");
  return out;
}

double accuracy(const torch::Tensor& logits, const torch::Tensor& y) {
  if (y.numel() == 0) return -1;
  return logits.argmax(1).eq(y).to(torch::kFloat64).mean().item<double>();
}

}  // namespace

std::string posteriors_path_for(const std::string& emb_path) {
  return npy_stem(emb_path) + ".probs.npy";
}

std::string EncoderTrainResult::to_json() const {
  std::ostringstream os;
  os << "{\"domain\": \"" << domain << "\", \"classes\": " << classes.size()
     << ", \"train_count\": " << train_count << ", \"val_count\": " << val_count
     << ", \"ranks\": " << ranks << ", \"train_acc\": " << train_acc << ", \"val_acc\": " << val_acc
     << ", \"ledger\": " << ledger.to_json() << ", \"epochs\": [";
  for (size_t i = 0; i < epochs.size(); ++i)
    os << (i ? ", " : "") << "{\"stage\": \"" << epochs[i].stage
       << "\", \"epoch\": " << epochs[i].epoch << ", \"loss\": " << epochs[i].loss
       << ", \"train_acc\": " << epochs[i].train_acc << ", \"val_acc\": " << epochs[i].val_acc
       << "}";
  os << "]}";
  return os.str();
}

EncoderTrainResult train_encoder(const Dataset& d, const std::string& domain,
                                 const EncoderTrainOptions& opt, const std::string& out_file,
                                 const std::string& emb_out) {
  LedgerScope scope;
  Ledger work;
  if (opt.views < 1) fail("--views must be at least 1");
  if (opt.batch < 1) fail("--batch must be positive");
  if (opt.tta_views < 1 || opt.tta_views > opt.views)
    fail("--tta-views must be between 1 and --views (", opt.views, "); got ", opt.tta_views);
  // Data-parallel ranks (duet/dist.h) share every minibatch and sum their gradients; rank 0
  // writes. Opened now: an unwritable path fails before training, not after.
  std::optional<AtomicFile> out;
  if (dist::leader()) out.emplace(out_file);
  torch::manual_seed(opt.seed);
  set_threads(opt.backbone.threads);
  EncoderTrainResult res;
  res.domain = domain;

  // Samples: all of the domain (embeddings are written for both splits); train = split "train".
  auto all = d.select(domain);
  if (all.empty())
    fail("no ", domain, " samples in the dataset (domains: ", join(d.domains(), ','), ")");
  const DomainKind kind = opt.kind ? *opt.kind : decide_kinds(d, {domain}, {}).at(domain);
  std::set<std::string> train_cls;
  for (const auto& s : all)
    if (s.split == "train") train_cls.insert(s.cls);
  if (train_cls.size() < 2)
    fail("the ", domain, " train split has ", train_cls.size(), " classes; need at least 2");
  res.classes.assign(train_cls.begin(), train_cls.end());
  std::map<std::string, int64_t> cls_id;
  for (size_t i = 0; i < res.classes.size(); ++i) cls_id[res.classes[i]] = static_cast<int64_t>(i);
  std::vector<int64_t> train_idx, val_idx, label(all.size(), -1);
  for (size_t i = 0; i < all.size(); ++i) {
    auto it = cls_id.find(all[i].cls);
    if (it != cls_id.end()) label[i] = it->second;
    if (all[i].split == "train")
      train_idx.push_back(static_cast<int64_t>(i));
    else if (it != cls_id.end())
      val_idx.push_back(static_cast<int64_t>(i));
  }
  res.train_count = static_cast<int64_t>(train_idx.size());
  res.val_count = static_cast<int64_t>(val_idx.size());

  auto net = open_backbone_net(opt.backbone.arch, opt.backbone.weights);
  // VGG16's classifier draws its own dropout masks, per rank: the ranks would drift apart.
  if (dist::world() > 1 && net->arch == "vgg16")
    fail(
        "data-parallel Phase I does not support the vgg16 backbone (its classifier's dropout); "
        "train it with one process");
  const std::string weights_id = opt.backbone.weights.empty() ? "default" : opt.backbone.weights;
  const int S_total = net->num_stages();
  // The split point does not depend on the epochs, so runs with other schedules share a cache.
  const int ft = std::clamp(opt.finetune_stages, 0, S_total - 1);
  const int split = S_total - ft;
  net->eval();
  for (auto& p : net->parameters()) p.set_requires_grad(false);

  log_line(domain + " (" + kind_name(kind) + "): " + std::to_string(res.train_count) + " train / " +
           std::to_string(res.val_count) + " held-out images, " +
           std::to_string(res.classes.size()) + " classes, backbone " + net->arch + " (stages " +
           std::to_string(split) + ".." + std::to_string(S_total - 1) + " fine-tuned)");
  TrunkCache cache =
      build_trunk_cache(*net, weights_id, d, all, split, opt.views, opt.seed, opt.frame, kind,
                        opt.cache_dir, resolve_threads(opt.backbone.threads), work);
  const double top_flops = stage_flops(*net, split, S_total);

  auto lab =
      torch::from_blob(label.data(), {static_cast<int64_t>(label.size())}, torch::kInt64).clone();
  auto tr = torch::from_blob(train_idx.data(), {res.train_count}, torch::kInt64).clone();
  auto va = torch::from_blob(val_idx.data(), {res.val_count}, torch::kInt64).clone();

  // Pooled features of the first `nv` views of the samples `rows` through the top stages (as they
  // are now): [nv, rows, D]. Each rank computes its share of the rows; every rank gets them all.
  const auto every_row = torch::arange(static_cast<int64_t>(all.size()), torch::kInt64);
  auto pooled = [&](int nv, const torch::Tensor& rows) {
    torch::NoGradGuard ng;
    net->eval();
    const int64_t n = rows.size(0);
    const auto [b, e] = dist::share(0, n);
    auto out = torch::empty({nv, n, net->feature_dim});
    for (int v = 0; v < nv; ++v) {
      auto mine = torch::empty({e - b, net->feature_dim});
      for (int64_t i = b; i < e; i += 64) {
        const int64_t j = std::min<int64_t>(e, i + 64);
        auto act = cache.act[v].index_select(0, rows.slice(0, i, j));
        mine.slice(0, i - b, j - b).copy_(net->pool(net->run_stages(act, split, S_total)));
      }
      out[v].copy_(dist::all_gather_rows(mine, n));
    }
    return out;
  };

  Head head(net->feature_dim, opt.hidden, static_cast<int>(res.classes.size()));
  // Knowledge preservation: the frozen backbone's ImageNet distribution of every cached view
  // ([views, N, K], computed once from the frozen pooled features) and the head that learns it
  // from the embedding (trained, not saved).
  if (opt.preserve < 0 || opt.distill < 0 || !(opt.distill_t > 0))
    fail("teacher weights must be non-negative");
  torch::Tensor teacher;
  torch::nn::Linear keep{nullptr};
  if (opt.preserve > 0) {
    if (net->num_classes < 2)
      fail("knowledge preservation needs a backbone with an ImageNet classifier");
    keep = torch::nn::Linear(opt.hidden, net->num_classes);
  }
  // The preservation term of some samples: preserve * KL(teacher || softmax(keep(h))), summed.
  auto preserve_loss = [&](const torch::Tensor& f, const torch::Tensor& idx,
                           const torch::Tensor& v) {
    return opt.preserve * preservation_kl(teacher.index({v, idx}), keep(head->embed(f)));
  };
  // Cross-domain distillation: each sample's teacher distribution at temperature T ([N, C]; zero
  // rows: no teacher).
  torch::Tensor soft;
  if (opt.distill > 0)
    soft = soften(teacher_rows(opt.class_teacher, all, static_cast<int64_t>(res.classes.size()),
                               "the " + domain + " class teacher", res.classes),
                  opt.distill_t);
  auto distill_loss = [&](const torch::Tensor& idx, const torch::Tensor& logits) {
    const double t = opt.distill_t;
    return opt.distill * t * t * preservation_kl(soft.index_select(0, idx), logits / t);
  };
  torch::Tensor extra;  // set by a forward: the teachers' terms of its share of the minibatch
  // The head's logits for pooled features f of samples idx at views v (dropout rows m), the
  // teachers' terms left in `extra`. Both stages forward through it.
  auto taught_forward = [&](const torch::Tensor& f, const torch::Tensor& idx,
                            const torch::Tensor& v, const torch::Tensor& m) {
    if (keep) extra = preserve_loss(f, idx, v);
    auto logits = head->forward(f, m);
    if (soft.defined())
      extra = extra.defined() ? extra + distill_loss(idx, logits) : distill_loss(idx, logits);
    return logits;
  };
  // Summed over this rank's share, divided by the whole minibatch: the ranks' gradients add up to
  // the minibatch mean's.
  const auto ce = torch::nn::functional::CrossEntropyFuncOptions()
                      .label_smoothing(opt.label_smoothing)
                      .reduction(torch::kSum);
  // Held-out accuracy from the held-out rows' pooled features of view 0 ([val_count, D]).
  auto evaluate_val = [&](const torch::Tensor& val_feats) {
    torch::NoGradGuard ng;
    head->eval();
    double acc = accuracy(head->forward(val_feats), lab.index_select(0, va));
    head->train();
    return acc;
  };
  // One epoch over the train samples, each seen at a random cached view:
  // forward(sample indices [b], views [b], dropout mask rows [b, hidden]) -> logits [b, C] for
  // this rank's share of each minibatch; the gradients of `params` are summed over the ranks
  // before each step. Every rank draws the same order, views and masks. Returns (mean loss,
  // accuracy) over all ranks.
  using Forward = std::function<torch::Tensor(const torch::Tensor&, const torch::Tensor&,
                                              const torch::Tensor&)>;
  // `epoch`: the train rows it draws from (every one, or this epoch's draw).
  auto run_epoch = [&](torch::optim::Optimizer& optim, const std::vector<torch::Tensor>& params,
                       const Forward& forward, Progress* per_sample, const torch::Tensor& epoch) {
    const int64_t count = epoch.size(0);
    auto perm = epoch.index_select(0, torch::randperm(count, torch::kInt64));
    auto view = torch::randint(cache.views, {count}, torch::kInt64);
    double loss_sum = 0, correct = 0;
    for (int64_t b0 = 0; b0 < count; b0 += opt.batch) {
      const int64_t e0 = std::min<int64_t>(count, b0 + opt.batch);
      auto mask = dropout_mask(e0 - b0, opt.hidden, opt.dropout);
      const auto [b, e] = dist::share(b0, e0);
      optim.zero_grad();
      if (e > b) {
        auto idx = perm.slice(0, b, e);
        auto y = lab.index_select(0, idx);
        auto logits = forward(idx, view.slice(0, b, e),
                              mask.defined() ? mask.slice(0, b - b0, e - b0) : mask);
        auto loss = torch::nn::functional::cross_entropy(logits, y, ce);
        if (extra.defined()) loss = loss + extra;
        extra = torch::Tensor();
        loss = loss / static_cast<double>(e0 - b0);
        loss.backward();
        loss_sum += loss.item<double>() * (e0 - b0);
        correct += logits.argmax(1).eq(y).sum().item<double>();
      }
      dist::all_reduce_grads(params);
      optim.step();
      if (per_sample) per_sample->tick(e0 - b0);
    }
    const auto t = dist::sum({loss_sum, correct});
    return std::make_pair(t[0] / count, t[1] / count);
  };
  auto log_epoch = [&](Progress& bar, const char* stage, int ep, std::pair<double, double> lr,
                       double val) {
    res.epochs.push_back(EpochLog{stage, ep, lr.first, lr.second, val});
    char buf[96];
    std::snprintf(buf, sizeof buf, " loss %.3f train %.3f val %.3f", lr.first, lr.second, val);
    bar.set_suffix(buf);
  };

  // Stage 1: backbone frozen, head trains on pooled features.
  {
    // The untouched top stages' features: the same for every run over these images and views.
    auto feats = frozen_pooled(cache, *net, work);
    auto val_feats = feats[0].index_select(0, va);
    if (keep && opt.teacher.rows.empty()) {
      torch::NoGradGuard ng;
      teacher = torch::empty({cache.views, feats.size(1), net->num_classes});
      for (int v = 0; v < cache.views; ++v)
        teacher[v].copy_(torch::softmax(net->logits(feats[v]), 1));
    } else if (keep) {
      // One distribution per sample, whichever view it is seen at.
      auto t = teacher_rows(opt.teacher, all, net->num_classes, "the " + domain + " teacher");
      teacher = t.unsqueeze(0).expand({cache.views, t.size(0), t.size(1)});
    }
    auto head_params = head->parameters();
    if (keep)
      for (const auto& p : keep->parameters()) head_params.push_back(p);
    torch::optim::AdamW optim(head_params,
                              torch::optim::AdamWOptions(opt.lr).weight_decay(opt.weight_decay));
    Progress bar(domain + " frozen", opt.frozen_epochs);
    for (int ep = 1; ep <= opt.frozen_epochs; ++ep) {
      head->train();
      auto r = run_epoch(
          optim, head_params,
          [&](const torch::Tensor& idx, const torch::Tensor& v, const torch::Tensor& m) {
            return taught_forward(feats.index({v, idx}), idx, v, m);
          },
          nullptr, tr);
      log_epoch(bar, "frozen", ep, r, res.val_count ? evaluate_val(val_feats) : -1.0);
      bar.tick();
    }
  }

  // Stage 2: the top backbone stages unfreeze and train with the head, from the cached trunk.
  if (ft > 0 && opt.finetune_epochs > 0) {
    auto top = net->parameters_from(split);
    for (auto& p : top) p.set_requires_grad(true);
    std::vector<torch::optim::OptimizerParamGroup> groups;
    groups.emplace_back(
        top, std::make_unique<torch::optim::AdamWOptions>(
                 torch::optim::AdamWOptions(opt.finetune_lr).weight_decay(opt.weight_decay)));
    auto head_params = head->parameters();
    if (keep)
      for (const auto& p : keep->parameters()) head_params.push_back(p);
    groups.emplace_back(
        head_params,
        std::make_unique<torch::optim::AdamWOptions>(
            torch::optim::AdamWOptions(opt.finetune_lr * 3).weight_decay(opt.weight_decay)));
    torch::optim::AdamW optim(groups);
    auto params = top;
    for (const auto& p : head_params) params.push_back(p);
    // Each epoch passes every train image of the main dataset and a fresh draw of the extra
    // sources' (merge_extra) up to finetune_samples in all: more data need not cost as many
    // passes, and the main dataset's images keep theirs.
    std::vector<int64_t> main_rows, extra_rows;
    for (int64_t i : train_idx) (all[i].source.empty() ? main_rows : extra_rows).push_back(i);
    const int64_t drawn =
        opt.finetune_samples > 0
            ? std::clamp<int64_t>(opt.finetune_samples - static_cast<int64_t>(main_rows.size()), 0,
                                  static_cast<int64_t>(extra_rows.size()))
            : static_cast<int64_t>(extra_rows.size());
    const auto main_t = torch::tensor(main_rows, torch::kInt64),
               extra_t = torch::tensor(extra_rows, torch::kInt64);
    const int64_t per_epoch = static_cast<int64_t>(main_rows.size()) + drawn;
    Progress bar(domain + " finetune", static_cast<int64_t>(opt.finetune_epochs) * per_epoch);
    for (int ep = 1; ep <= opt.finetune_epochs; ++ep) {
      net->train();
      head->train();
      // Without extra images the epoch is every train row in order, as before there were any.
      const torch::Tensor epoch =
          extra_rows.empty()
              ? tr
              : torch::cat({main_t, extra_t.index_select(
                                        0, torch::randperm(static_cast<int64_t>(extra_rows.size()),
                                                           torch::kInt64)
                                               .slice(0, 0, drawn))});
      auto r = run_epoch(
          optim, params,
          [&](const torch::Tensor& idx, const torch::Tensor& v, const torch::Tensor& m) {
            return taught_forward(
                net->pool(net->run_stages(cache.act.index({v, idx}), split, S_total)), idx, v, m);
          },
          &bar, epoch);
      work.image_forward += per_epoch;
      work.image_backward += per_epoch;
      work.flops += 3.0 * per_epoch * top_flops;  // forward + backward (2x)
      // Only the held-out rows pass the top stages (none on a zero-shot split, where no test
      // image has a learnt class).
      log_epoch(bar, "finetune", ep, r, res.val_count ? evaluate_val(pooled(1, va)[0]) : -1.0);
    }
    for (auto& p : top) p.set_requires_grad(false);
  }
  net->eval();
  head->eval();
  {
    auto params = net->parameters_from(split);
    for (const auto& p : head->parameters()) params.push_back(p);
    if (double dev = dist::divergence(params); dev != 0)
      fail("the ", dist::world(), " ranks trained different ", domain,
           " encoders (parameters differ by up to ", dev, ")");
    res.ranks = dist::world();
  }

  // Final accuracies, embeddings and posteriors for every sample: the mean over the first
  // `tta_views` cached views (the image, its mirror, then augmentations).
  {
    torch::NoGradGuard ng;
    auto feats = pooled(opt.tta_views, every_row);
    auto emb = head->embed(feats[0]);
    auto logits = head->forward(feats[0]);
    for (int v = 1; v < opt.tta_views; ++v) {
      emb += head->embed(feats[v]);
      logits += head->forward(feats[v]);
    }
    emb /= opt.tta_views;
    logits /= opt.tta_views;
    res.train_acc = accuracy(logits.index_select(0, tr), lab.index_select(0, tr));
    res.val_acc =
        res.val_count ? accuracy(logits.index_select(0, va), lab.index_select(0, va)) : -1;
    EncoderMeta meta{net->arch,  weights_id, domain,    res.classes,   split,
                     opt.hidden, kind,       opt.frame, opt.tta_views, opt.seed};
    if (out) save_encoder(*out, meta, *net, *head);  // rank 0 writes
    if (out && !emb_out.empty()) {
      auto to_emb = [&](const torch::Tensor& t, const std::string& what) {
        Embeddings e;
        auto c = t.contiguous();
        e.x = Matrix(c.size(0), c.size(1));
        std::copy(c.data_ptr<float>(), c.data_ptr<float>() + c.numel(), e.x.data.begin());
        for (const auto& s : all) e.rows.push_back({s.path, s.cls, s.domain});
        e.meta["source"] =
            "encoder:" + out_file.substr(out_file.find_last_of('/') + 1) + ":" + what;
        e.meta["domain"] = domain;
        return e;
      };
      write_embeddings(emb_out, to_emb(emb, "embedding"));
      auto probs = to_emb(torch::softmax(logits, 1), "posteriors");
      probs.meta["classes"] = join(res.classes, ',');
      write_embeddings(posteriors_path_for(emb_out), probs);
    }
  }
  Ledger l = scope.stop();
  l.image_forward = work.image_forward;
  l.image_backward = work.image_backward;
  l.flops = work.flops;
  res.ledger = l;
  return res;
}

Embeddings frozen_features(const Dataset& d, const std::string& domain,
                           const EncoderTrainOptions& opt, bool imagenet) {
  if (opt.tta_views < 1 || opt.tta_views > opt.views)
    fail("--tta-views must be between 1 and --views (", opt.views, "); got ", opt.tta_views);
  set_threads(opt.backbone.threads);
  auto all = d.select(domain);
  if (all.empty())
    fail("no ", domain, " samples in the dataset (domains: ", join(d.domains(), ','), ")");
  const DomainKind kind = opt.kind ? *opt.kind : decide_kinds(d, {domain}, {}).at(domain);
  auto net = open_backbone_net(opt.backbone.arch, opt.backbone.weights);
  const std::string weights_id = opt.backbone.weights.empty() ? "default" : opt.backbone.weights;
  const int S_total = net->num_stages();
  const int split =
      S_total - std::clamp(opt.finetune_stages, 0, S_total - 1);  // as train_encoder splits
  net->eval();
  Ledger work;
  TrunkCache cache =
      build_trunk_cache(*net, weights_id, d, all, split, opt.views, opt.seed, opt.frame, kind,
                        opt.cache_dir, resolve_threads(opt.backbone.threads), work);
  torch::NoGradGuard ng;
  const int64_t n = static_cast<int64_t>(all.size());
  // As train_encoder's first stage reads them (one file for both).
  auto sum = frozen_pooled(cache, *net, work).slice(0, 0, opt.tta_views).mean(0);
  if (imagenet) {
    if (net->num_classes < 2) fail("backbone ", net->arch, " has no ImageNet classifier");
    sum = torch::softmax(net->logits(sum), 1).contiguous();
  }
  Embeddings e;
  e.x = Matrix(n, sum.size(1));
  std::copy(sum.data_ptr<float>(), sum.data_ptr<float>() + sum.numel(), e.x.data.begin());
  for (const auto& s : all) e.rows.push_back({s.path, s.cls, s.domain});
  e.meta["source"] = std::string(imagenet ? "imagenet:" : "frozen:") + net->arch + ":" + weights_id;
  e.meta["domain"] = domain;
  return e;
}

}  // namespace duet
