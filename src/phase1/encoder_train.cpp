// Phase I training: frozen-backbone head training on cached features, then fine-tuning of the top
// backbone stages from the cached trunk activations. See duet/phase1.h.
#include <torch/torch.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <limits>
#include <map>
#include <set>
#include <sstream>

#include "backbone/nets.h"
#include "common/torch_archive.h"
#include "dist/collectives.h"
#include "duet/augment.h"
#include "duet/embeddings.h"
#include "duet/error.h"
#include "duet/fileio.h"
#include "duet/image.h"
#include "duet/phase1.h"
#include "duet/progress.h"
#include "phase1/preserve.h"
#include "phase1/trunk_cache.h"

namespace duet {

namespace {

constexpr const char* kFormat = "duet-encoder-v2";  // v2: the domain kind

// FC-hidden (+ReLU, dropout) -> FC-C. embed() is the domain embedding.
struct HeadImpl : torch::nn::Module {
  torch::nn::Linear fc1{nullptr}, fc2{nullptr};
  HeadImpl(int in, int hidden, int classes) {
    fc1 = register_module("fc1", torch::nn::Linear(in, hidden));
    fc2 = register_module("fc2", torch::nn::Linear(hidden, classes));
  }
  torch::Tensor embed(torch::Tensor f) { return torch::relu(fc1(f)); }  // [N, in] -> [N, hidden]
  // [N, in] -> logits [N, C]; in training, the hidden units times `dropout` (dropout_mask's
  // rows of these samples; undefined: none).
  torch::Tensor forward(torch::Tensor f, const torch::Tensor& dropout = {}) {
    auto h = embed(f);
    return fc2(is_training() && dropout.defined() ? h * dropout : h);
  }
};
TORCH_MODULE(Head);

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
std::vector<std::string> split_str(const std::string& s, char sep) {
  std::vector<std::string> out;
  std::stringstream ss(s);
  for (std::string t; std::getline(ss, t, sep);) out.push_back(t);
  return out;
}

// Everything an encoder file holds besides tensors.
struct EncoderMeta {
  std::string arch, weights, domain;
  std::vector<std::string> classes;
  int split = 0, hidden = 0;
  DomainKind kind = DomainKind::Image;
  bool frame = false;  // trained on images cropped to their strokes
  int tta_views = 1;   // views its written embeddings average, drawn with augment_view from seed
  uint64_t seed = 0;   // the seed of its augmented views (the training seed)
};

void save_encoder(AtomicFile& out, const EncoderMeta& m, BackboneNetImpl& net, HeadImpl& head) {
  torch::serialize::OutputArchive ar;
  ar.write("format", c10::IValue(std::string(kFormat)));
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

std::string ivalue_str(torch::serialize::InputArchive& ar, const char* key,
                       const std::string& path) {
  c10::IValue v;
  if (!ar.try_read(key, v) || !v.isString())
    fail(path, ": not a duet encoder file (no '", key, "')");
  return v.toStringRef();
}

struct LoadedEncoder {
  EncoderMeta meta;
  std::shared_ptr<BackboneNetImpl> net;
  std::shared_ptr<BackboneNetImpl>
      frozen;  // the backbone as loaded, for frozen features (null: not asked for)
  Head head{nullptr};
  std::string weights_file;  // what its frozen stages were loaded from ("": the arch's default)
};

LoadedEncoder load_encoder(const std::string& path, const std::string& weights_override,
                           bool frozen_features) {
  if (!file_exists(path)) fail(path, ": no such encoder file");
  torch::serialize::InputArchive ar;
  try {
    ar.load_from(path);
  } catch (const std::exception&) {
    fail(path, ": not a duet encoder file (train one with `duet train-encoder`)");
  }
  if (std::string f = ivalue_str(ar, "format", path); f != kFormat) {
    if (f.rfind("duet-encoder-", 0) == 0)
      fail(path, ": an encoder from another duet version (", f, "; this one reads ", kFormat,
           "): retrain it");
    fail(path, ": not a duet encoder file (it is a ", f,
         " file); train one with `duet train-encoder`");
  }
  // Every value and tensor checked as it is read (common/torch_archive.h), the split within the
  // backbone's stages, and the head's widths bounded by the file before it is built: a damaged or
  // crafted file must not index past the stages or make the head allocate what it claims.
  LoadedEncoder e;
  try {
    constexpr int64_t kMaxInt = std::numeric_limits<int>::max(),
                      kMax64 = std::numeric_limits<int64_t>::max();
    e.meta.arch = archive::str(ar, "arch", path, "encoder");
    e.meta.weights = archive::str(ar, "weights", path, "encoder");
    e.meta.domain = archive::str(ar, "domain", path, "encoder");
    e.meta.classes = split_str(archive::str(ar, "classes", path, "encoder"), '\n');
    if (e.meta.classes.empty()) fail(path, ": damaged encoder file (no classes)");
    e.meta.split = static_cast<int>(archive::integer(ar, "split", path, "encoder", 0, kMaxInt));
    e.meta.hidden = static_cast<int>(archive::integer(ar, "hidden", path, "encoder", 1, kMaxInt));
    e.meta.kind = parse_kind(archive::str(ar, "kind", path, "encoder"));
    e.meta.frame = archive::integer(ar, "frame", path, "encoder", 0, 1) != 0;
    // At most the 16 views train-encoder's --tta-views allows: each is an input per image.
    e.meta.tta_views = static_cast<int>(archive::integer(ar, "tta_views", path, "encoder", 1, 16));
    e.meta.seed =
        static_cast<uint64_t>(archive::integer(ar, "seed", path, "encoder", -kMax64 - 1, kMax64));
    const std::string weights = !weights_override.empty()     ? weights_override
                                : e.meta.weights == "default" ? ""
                                                              : e.meta.weights;
    e.net = open_backbone_net(e.meta.arch, weights);
    e.weights_file = weights;
    if (e.meta.split > e.net->num_stages())
      fail(path, ": damaged encoder file (split at stage ", e.meta.split, " of ",
           e.net->num_stages(), ")");
    if (frozen_features) {
      e.frozen = open_backbone_net(e.meta.arch, weights);
      e.frozen->eval();
    }
    torch::NoGradGuard ng;
    auto top = e.net->parameters_from(e.meta.split);
    for (size_t i = 0; i < top.size(); ++i) {
      const torch::Tensor t = archive::tensor(ar, "top." + std::to_string(i), path, "encoder");
      if (t.sizes() != top[i].sizes())
        fail(path, ": tensor top.", i, " does not fit backbone ", e.meta.arch);
      top[i].copy_(t);
    }
    const double classes = static_cast<double>(e.meta.classes.size());
    std::error_code ec;
    const auto bytes = std::filesystem::file_size(path, ec);
    if (static_cast<double>(e.meta.hidden) * (static_cast<double>(e.net->feature_dim) + classes) *
            sizeof(float) >
        static_cast<double>(bytes))
      fail(path, ": damaged encoder file (its head of ", e.meta.hidden, " x ",
           e.meta.classes.size(), " needs more weights than its ", bytes, " bytes hold)");
    e.head = Head(e.net->feature_dim, e.meta.hidden, static_cast<int>(e.meta.classes.size()));
    for (auto& p : e.head->named_parameters()) {
      const torch::Tensor t = archive::tensor(ar, "head." + p.key(), path, "encoder");
      if (t.sizes() != p.value().sizes())
        fail(path, ": head tensor ", p.key(), " has the wrong shape");
      p.value().copy_(t);
    }
  } catch (const c10::Error& err) {
    fail(path, ": damaged encoder file (", archive::first_line(err), ")");
  }
  e.net->eval();
  e.head->eval();
  return e;
}

class TrainedEncoder : public PhaseOneEncoder {
 public:
  TrainedEncoder(LoadedEncoder e, std::string path, int workers)
      : e_(std::move(e)), path_(std::move(path)), workers_(workers) {}
  int input_size() const override { return e_.net->input_size; }
  int64_t dim() const override { return e_.meta.hidden; }
  bool frames_input() const override { return e_.meta.frame; }
  DomainKind kind() const override { return e_.meta.kind; }
  int tta_views() const override { return e_.meta.tta_views; }
  uint64_t view_seed() const override { return e_.meta.seed; }
  const std::string& domain() const override { return e_.meta.domain; }
  const std::string& arch() const override { return e_.meta.arch; }
  const std::string& weights() const override { return e_.meta.weights; }
  const std::vector<std::string>& classes() const override { return e_.meta.classes; }
  void encode(int64_t n, const float* x, float* out) override {
    encode_logits(n, x, out, nullptr, nullptr);
  }
  int64_t frozen_dim() const override { return e_.net->feature_dim; }
  void encode_logits(int64_t n, const float* x, float* emb, float* logits, float* frozen) override {
    const int64_t per = 3 * static_cast<int64_t>(input_size()) * input_size();
    for_each_image(n, workers_,
                   [&](int64_t i) { finish(lower(x + i * per), i, emb, logits, frozen); });
  }
  // The frozen lower stages' activations of one input [3, S, S].
  torch::Tensor lower(const float* x) {
    const int S = input_size();
    auto in = torch::from_blob(const_cast<float*>(x), {1, 3, S, S})
                  .contiguous(torch::MemoryFormat::ChannelsLast);
    return e_.net->run_stages(in, 0, e_.meta.split);
  }
  // Whether `o`'s lower stages are this encoder's, input for input.
  bool same_lower(const TrainedEncoder& o) const {
    return e_.meta.arch == o.e_.meta.arch && e_.meta.split == o.e_.meta.split &&
           e_.weights_file == o.e_.weights_file && e_.meta.frame == o.e_.meta.frame &&
           e_.meta.kind == o.e_.meta.kind;
  }
  // Row i of encode_logits' outputs from its input's lower-stage activations.
  void finish(const torch::Tensor& trunk, int64_t i, float* emb, float* logits, float* frozen) {
    const int top = e_.net->num_stages(), split = e_.meta.split;
    const int64_t D = e_.meta.hidden, C = static_cast<int64_t>(e_.meta.classes.size()),
                  F = frozen_dim();
    if (frozen) {
      if (!e_.frozen) fail("internal: ", path_, " was opened without its frozen features");
      auto f = e_.frozen->pool(e_.frozen->run_stages(trunk, split, top)).contiguous();
      std::copy(f.data_ptr<float>(), f.data_ptr<float>() + F, frozen + i * F);
    }
    if (!emb && !logits) return;
    auto y = e_.head->embed(e_.net->pool(e_.net->run_stages(trunk, split, top))).contiguous();
    if (emb) std::copy(y.data_ptr<float>(), y.data_ptr<float>() + D, emb + i * D);
    if (!logits) return;
    auto l = e_.head->fc2(y).contiguous();  // forward() without dropout: the head is in eval mode
    std::copy(l.data_ptr<float>(), l.data_ptr<float>() + C, logits + i * C);
  }
  int workers() const { return workers_; }
  std::string source() const override {
    return "encoder:" + path_.substr(path_.find_last_of('/') + 1) + ":" + e_.meta.domain;
  }

 private:
  LoadedEncoder e_;
  std::string path_;
  int workers_;
};

// A teacher's rows (by path) for `samples`, [N, cols]; zero rows for samples it has none of.
// Error when its width is not `cols`, or when it has a row for no train sample.
torch::Tensor teacher_rows(const Embeddings& t, const std::vector<Sample>& samples, int64_t cols,
                           const std::string& what) {
  if (t.x.cols != cols) fail(what, " has ", t.x.cols, " outputs, not ", cols);
  std::map<std::string, size_t> row_of;
  for (size_t i = 0; i < t.rows.size(); ++i) row_of.emplace(t.rows[i].path, i);
  auto out = torch::zeros({static_cast<int64_t>(samples.size()), cols});
  int64_t taught = 0;
  for (size_t i = 0; i < samples.size(); ++i)
    if (auto it = row_of.find(samples[i].path); it != row_of.end()) {
      std::copy_n(t.x.row(static_cast<int64_t>(it->second)), cols,
                  out[static_cast<int64_t>(i)].data_ptr<float>());
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
                               "the " + domain + " class teacher"),
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
  auto run_epoch = [&](torch::optim::Optimizer& optim, const std::vector<torch::Tensor>& params,
                       const Forward& forward, Progress* per_sample) {
    auto perm = tr.index_select(0, torch::randperm(res.train_count, torch::kInt64));
    auto view = torch::randint(cache.views, {res.train_count}, torch::kInt64);
    double loss_sum = 0, correct = 0;
    for (int64_t b0 = 0; b0 < res.train_count; b0 += opt.batch) {
      const int64_t e0 = std::min<int64_t>(res.train_count, b0 + opt.batch);
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
    return std::make_pair(t[0] / res.train_count, t[1] / res.train_count);
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
          nullptr);
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
    Progress bar(domain + " finetune", static_cast<int64_t>(opt.finetune_epochs) * res.train_count);
    for (int ep = 1; ep <= opt.finetune_epochs; ++ep) {
      net->train();
      head->train();
      auto r = run_epoch(
          optim, params,
          [&](const torch::Tensor& idx, const torch::Tensor& v, const torch::Tensor& m) {
            return taught_forward(
                net->pool(net->run_stages(cache.act.index({v, idx}), split, S_total)), idx, v, m);
          },
          &bar);
      work.image_forward += res.train_count;
      work.image_backward += res.train_count;
      work.flops += 3.0 * res.train_count * top_flops;  // forward + backward (2x)
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

void encode_members(const std::vector<PhaseOneEncoder*>& members, int64_t n,
                    const std::vector<MemberRows>& rows) {
  if (members.empty() || members.size() != rows.size())
    fail("internal: encode_members needs one set of rows per member");
  std::vector<TrainedEncoder*> enc;
  for (auto* m : members) {
    enc.push_back(dynamic_cast<TrainedEncoder*>(m));
    if (!enc.back()) fail("internal: encode_members takes encoders from open_encoder");
  }
  // Member by member, a task per row (a single query still keeps every worker busy); member 0
  // keeps its seedless views' lower stages for the others.
  const int views0 = enc[0]->tta_views(), kept = std::min(views0, kSeedlessViews);
  std::vector<torch::Tensor> seedless(static_cast<size_t>(n * kept));
  for (size_t m = 0; m < enc.size(); ++m) {
    TrainedEncoder& e = *enc[m];
    const MemberRows& r = rows[m];
    const int views = e.tta_views();
    const int64_t per = 3 * static_cast<int64_t>(e.input_size()) * e.input_size();
    const bool share = m > 0 && e.same_lower(*enc[0]);
    for_each_image(n * views, e.workers(), [&](int64_t row) {
      const int64_t i = row / views;
      const int v = static_cast<int>(row % views);
      const bool seedless_view = v < kept;
      torch::Tensor trunk =
          share && seedless_view ? seedless[i * kept + v] : e.lower(r.x + row * per);
      if (m == 0 && seedless_view) seedless[i * kept + v] = trunk;
      e.finish(trunk, row, r.emb, r.logits, r.frozen);
    });
  }
}

std::unique_ptr<PhaseOneEncoder> open_encoder(const std::string& file, int threads,
                                              const std::string& weights, bool frozen_features) {
  return std::make_unique<TrainedEncoder>(load_encoder(file, weights, frozen_features), file,
                                          resolve_threads(threads));
}

}  // namespace duet
