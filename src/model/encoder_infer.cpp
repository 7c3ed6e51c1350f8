// Phase I encoder files at query time: reading one, and images through it. See duet/inference.h.
#include <torch/torch.h>

#include <algorithm>
#include <filesystem>
#include <limits>
#include <sstream>

#include "backbone/nets.h"
#include "common/torch_archive.h"
#include "duet/augment.h"
#include "duet/error.h"
#include "duet/fileio.h"
#include "duet/inference.h"
#include "model/encoder_file.h"

namespace duet {

namespace {

std::vector<std::string> split_str(const std::string& s, char sep) {
  std::vector<std::string> out;
  std::stringstream ss(s);
  for (std::string t; std::getline(ss, t, sep);) out.push_back(t);
  return out;
}

std::string ivalue_str(torch::serialize::InputArchive& ar, const char* key,
                       const std::string& path) {
  c10::IValue v;
  if (!ar.try_read(key, v) || !v.isString())
    fail(path, ": not a duet encoder file (no '", key, "')");
  return v.toStringRef();
}

}  // namespace

struct PhaseOneEncoder::Impl {
  EncoderMeta meta;
  std::shared_ptr<BackboneNetImpl> net;
  std::shared_ptr<BackboneNetImpl>
      frozen;  // the backbone as loaded, for frozen features (null: not asked for)
  Head head{nullptr};
  std::string weights_file;  // what its frozen stages were loaded from ("": the arch's default)
  std::string path;
  int workers = 1;

  // Reads the encoder file `file` (weights_override, frozen_features: as open_encoder's).
  void load(const std::string& file, const std::string& weights_override, bool frozen_features);

  // The frozen lower stages' activations of one input [3, S, S].
  torch::Tensor lower(const float* x) {
    const int S = net->input_size;
    auto in = torch::from_blob(const_cast<float*>(x), {1, 3, S, S})
                  .contiguous(torch::MemoryFormat::ChannelsLast);
    return net->run_stages(in, 0, meta.split);
  }
  // Whether `o`'s lower stages are this encoder's, input for input.
  bool same_lower(const Impl& o) const {
    return meta.arch == o.meta.arch && meta.split == o.meta.split &&
           weights_file == o.weights_file && meta.frame == o.meta.frame && meta.kind == o.meta.kind;
  }
  // Row i of encode_logits' outputs from its input's lower-stage activations.
  void finish(const torch::Tensor& trunk, int64_t i, float* emb, float* logits, float* frozen_out) {
    const int top = net->num_stages(), split = meta.split;
    const int64_t D = meta.hidden, C = static_cast<int64_t>(meta.classes.size()),
                  F = net->feature_dim;
    if (frozen_out) {
      if (!frozen) fail("internal: ", path, " was opened without its frozen features");
      auto f = frozen->pool(frozen->run_stages(trunk, split, top)).contiguous();
      std::copy(f.data_ptr<float>(), f.data_ptr<float>() + F, frozen_out + i * F);
    }
    if (!emb && !logits) return;
    auto y = head->embed(net->pool(net->run_stages(trunk, split, top))).contiguous();
    if (emb) std::copy(y.data_ptr<float>(), y.data_ptr<float>() + D, emb + i * D);
    if (!logits) return;
    auto l = head->fc2(y).contiguous();  // forward() without dropout: the head is in eval mode
    std::copy(l.data_ptr<float>(), l.data_ptr<float>() + C, logits + i * C);
  }
};

void PhaseOneEncoder::Impl::load(const std::string& file, const std::string& weights_override,
                                 bool frozen_features) {
  if (!file_exists(file)) fail(file, ": no such encoder file");
  torch::serialize::InputArchive ar;
  try {
    ar.load_from(file);
  } catch (const std::exception&) {
    fail(file, ": not a duet encoder file (train one with `duet train-encoder`)");
  }
  if (std::string f = ivalue_str(ar, "format", file); f != kEncoderFormat) {
    if (f.rfind("duet-encoder-", 0) == 0)
      fail(file, ": an encoder from another duet version (", f, "; this one reads ", kEncoderFormat,
           "): retrain it");
    fail(file, ": not a duet encoder file (it is a ", f,
         " file); train one with `duet train-encoder`");
  }
  // Every value and tensor checked as it is read (common/torch_archive.h), the split within the
  // backbone's stages, and the head's widths bounded by the file before it is built: a damaged or
  // crafted file must not index past the stages or make the head allocate what it claims.
  path = file;
  try {
    constexpr int64_t kMaxInt = std::numeric_limits<int>::max(),
                      kMax64 = std::numeric_limits<int64_t>::max();
    EncoderMeta& m = meta;
    m.arch = archive::str(ar, "arch", file, "encoder");
    m.weights = archive::str(ar, "weights", file, "encoder");
    m.domain = archive::str(ar, "domain", file, "encoder");
    m.classes = split_str(archive::str(ar, "classes", file, "encoder"), '\n');
    if (m.classes.empty()) fail(file, ": damaged encoder file (no classes)");
    m.split = static_cast<int>(archive::integer(ar, "split", file, "encoder", 0, kMaxInt));
    m.hidden = static_cast<int>(archive::integer(ar, "hidden", file, "encoder", 1, kMaxInt));
    m.kind = parse_kind(archive::str(ar, "kind", file, "encoder"));
    m.frame = archive::integer(ar, "frame", file, "encoder", 0, 1) != 0;
    // At most the 16 views train-encoder's --tta-views allows: each is an input per image.
    m.tta_views = static_cast<int>(archive::integer(ar, "tta_views", file, "encoder", 1, 16));
    m.seed =
        static_cast<uint64_t>(archive::integer(ar, "seed", file, "encoder", -kMax64 - 1, kMax64));
    const std::string weights = !weights_override.empty() ? weights_override
                                : m.weights == "default"  ? ""
                                                          : m.weights;
    net = open_backbone_net(m.arch, weights);
    weights_file = weights;
    if (m.split > net->num_stages())
      fail(file, ": damaged encoder file (split at stage ", m.split, " of ", net->num_stages(),
           ")");
    if (frozen_features) {
      frozen = open_backbone_net(m.arch, weights);
      frozen->eval();
    }
    torch::NoGradGuard ng;
    auto top = net->parameters_from(m.split);
    for (size_t i = 0; i < top.size(); ++i) {
      const torch::Tensor t = archive::tensor(ar, "top." + std::to_string(i), file, "encoder");
      if (t.sizes() != top[i].sizes())
        fail(file, ": tensor top.", i, " does not fit backbone ", m.arch);
      top[i].copy_(t);
    }
    const double classes = static_cast<double>(m.classes.size());
    std::error_code ec;
    const auto bytes = std::filesystem::file_size(file, ec);
    if (static_cast<double>(m.hidden) * (static_cast<double>(net->feature_dim) + classes) *
            sizeof(float) >
        static_cast<double>(bytes))
      fail(file, ": damaged encoder file (its head of ", m.hidden, " x ", m.classes.size(),
           " needs more weights than its ", bytes, " bytes hold)");
    head = Head(net->feature_dim, m.hidden, static_cast<int>(m.classes.size()));
    for (auto& p : head->named_parameters()) {
      const torch::Tensor t = archive::tensor(ar, "head." + p.key(), file, "encoder");
      if (t.sizes() != p.value().sizes())
        fail(file, ": head tensor ", p.key(), " has the wrong shape");
      p.value().copy_(t);
    }
  } catch (const c10::Error& err) {
    fail(file, ": damaged encoder file (", archive::first_line(err), ")");
  }
  net->eval();
  head->eval();
}

PhaseOneEncoder::PhaseOneEncoder(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
PhaseOneEncoder::~PhaseOneEncoder() = default;

int PhaseOneEncoder::input_size() const { return impl_->net->input_size; }
int64_t PhaseOneEncoder::dim() const { return impl_->meta.hidden; }
bool PhaseOneEncoder::frames_input() const { return impl_->meta.frame; }
DomainKind PhaseOneEncoder::kind() const { return impl_->meta.kind; }
int PhaseOneEncoder::tta_views() const { return impl_->meta.tta_views; }
uint64_t PhaseOneEncoder::view_seed() const { return impl_->meta.seed; }
const std::string& PhaseOneEncoder::domain() const { return impl_->meta.domain; }
const std::string& PhaseOneEncoder::arch() const { return impl_->meta.arch; }
const std::string& PhaseOneEncoder::weights() const { return impl_->meta.weights; }
const std::vector<std::string>& PhaseOneEncoder::classes() const { return impl_->meta.classes; }
int64_t PhaseOneEncoder::frozen_dim() const { return impl_->net->feature_dim; }

std::string PhaseOneEncoder::source() const {
  const std::string& p = impl_->path;
  return "encoder:" + p.substr(p.find_last_of('/') + 1) + ":" + impl_->meta.domain;
}

void PhaseOneEncoder::encode(int64_t n, const float* x, float* out) {
  encode_logits(n, x, out, nullptr, nullptr);
}

void PhaseOneEncoder::encode_logits(int64_t n, const float* x, float* emb, float* logits,
                                    float* frozen) {
  const int64_t per = 3 * static_cast<int64_t>(input_size()) * input_size();
  for_each_image(n, impl_->workers, [&](int64_t i) {
    impl_->finish(impl_->lower(x + i * per), i, emb, logits, frozen);
  });
}

void encode_members(int64_t n, const std::vector<MemberRows>& members) {
  if (members.empty()) return;
  // Member by member, a task per row (a single query still keeps every worker busy); member 0
  // keeps its seedless views' lower stages for the others.
  const PhaseOneEncoder::Impl& first = *members[0].encoder->impl_;
  const int kept = std::min(first.meta.tta_views, kSeedlessViews);
  std::vector<torch::Tensor> seedless(static_cast<size_t>(n * kept));
  for (size_t m = 0; m < members.size(); ++m) {
    const MemberRows& r = members[m];
    PhaseOneEncoder::Impl& e = *r.encoder->impl_;
    const int views = e.meta.tta_views;
    const int64_t per = 3 * static_cast<int64_t>(e.net->input_size) * e.net->input_size;
    const bool share = m > 0 && e.same_lower(first);
    for_each_image(n * views, e.workers, [&](int64_t row) {
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
  auto impl = std::make_unique<PhaseOneEncoder::Impl>();
  impl->load(file, weights, frozen_features);
  impl->workers = resolve_threads(threads);
  return std::unique_ptr<PhaseOneEncoder>(new PhaseOneEncoder(std::move(impl)));
}

}  // namespace duet
