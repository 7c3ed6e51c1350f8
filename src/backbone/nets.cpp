#include "backbone/nets.h"

#include <torch/script.h>

#include <algorithm>
#include <atomic>
#include <fstream>
#include <mutex>
#include <thread>

#include "duet/error.h"
#include "duet/fileio.h"
#include "duet/paths.h"
#include "duet/tflite.h"

namespace duet {

namespace F = torch::nn::functional;

// ---- FLOP counting
// ----------------------------------------------------------------------------------

namespace {
thread_local FlopCount* g_flops = nullptr;
}
FlopCount::FlopCount() { g_flops = this; }
FlopCount::~FlopCount() { g_flops = nullptr; }
void FlopCount::add(double f) {
  if (g_flops) g_flops->flops += f;
}

// ---- TfConv ------------------------------------------------------------------------------------

TfConvImpl::TfConvImpl(int in_, int out_, int k, int s, int g, Act a, bool same_)
    : in(in_), out(out_), kernel(k), stride(s), groups(g), act(a), same(same_) {
  weight = register_parameter("weight", torch::empty({out, in / groups, k, k}));
  bias = register_parameter("bias", torch::zeros({out}));
  torch::nn::init::kaiming_normal_(weight, 0.0, torch::kFanOut);
}

torch::Tensor TfConvImpl::forward(torch::Tensor x) {
  int64_t ph0 = 0, ph1 = 0, pw0 = 0, pw1 = 0;
  if (same && (kernel > 1 || stride > 1)) {
    // TF 'SAME': output = ceil(input / stride); the odd pixel of padding goes after.
    auto pads = [&](int64_t n, int64_t& before, int64_t& after) {
      int64_t outn = (n + stride - 1) / stride;
      int64_t total = std::max<int64_t>((outn - 1) * stride + kernel - n, 0);
      before = total / 2;
      after = total - before;
    };
    pads(x.size(2), ph0, ph1);
    pads(x.size(3), pw0, pw1);
  }
  const std::vector<int64_t> st{stride, stride}, dil{1, 1};
  torch::Tensor y;
  if (ph0 == ph1 && pw0 == pw1) {
    y = torch::conv2d(x, weight, bias, st, std::vector<int64_t>{ph0, pw0}, dil, groups);
  } else {
    auto padded = F::pad(x, F::PadFuncOptions({pw0, pw1, ph0, ph1}));
    y = torch::conv2d(padded, weight, bias, st, std::vector<int64_t>{0, 0}, dil, groups);
  }
  FlopCount::add(2.0 * y.numel() * (in / groups) * kernel * kernel);
  if (act == kRelu6)
    return torch::clamp(y, 0, 6);  // hardtanh_ in place breaks autograd for fine-tuning
  if (act == kRelu) return torch::relu(y);
  return y;
}

namespace {

// ---- MobileNetV2 (width 1.0)
// ------------------------------------------------------------------------

struct MobileNetV2Impl : BackboneNetImpl {
  struct Block {
    std::vector<TfConv> convs;  // [expand,] depthwise, project
    bool residual;
  };
  TfConv stem{nullptr}, last{nullptr}, head{nullptr};
  std::vector<Block> blocks;

  MobileNetV2Impl() {
    arch = "mobilenet_v2";
    input_size = 224;
    feature_dim = 1280;
    num_classes = 1001;
    stem = register_module("stem", TfConv(3, 32, 3, 2, 1, TfConvImpl::kRelu6));
    // (expansion t, channels c, repeats n, first stride s), as in Sandler et al. 2018, Table 2.
    const int cfg[7][4] = {{1, 16, 1, 1}, {6, 24, 2, 2},  {6, 32, 3, 2}, {6, 64, 4, 2},
                           {6, 96, 3, 1}, {6, 160, 3, 2}, {6, 320, 1, 1}};
    int in = 32, id = 0;
    for (const auto& c : cfg) {
      for (int r = 0; r < c[2]; ++r, ++id) {
        int s = r == 0 ? c[3] : 1, hidden = in * c[0], out = c[1];
        Block b;
        std::string p = "block" + std::to_string(id) + "_";
        if (c[0] != 1)
          b.convs.push_back(
              register_module(p + "expand", TfConv(in, hidden, 1, 1, 1, TfConvImpl::kRelu6)));
        b.convs.push_back(
            register_module(p + "dw", TfConv(hidden, hidden, 3, s, hidden, TfConvImpl::kRelu6)));
        b.convs.push_back(
            register_module(p + "project", TfConv(hidden, out, 1, 1, 1, TfConvImpl::kNone)));
        b.residual = s == 1 && in == out;
        blocks.push_back(std::move(b));
        in = out;
      }
    }
    last = register_module("last", TfConv(320, 1280, 1, 1, 1, TfConvImpl::kRelu6));
    head = register_module("head", TfConv(1280, 1001, 1, 1, 1, TfConvImpl::kNone));
  }

  // Stages: stem, the 17 inverted-residual blocks, the 1x1 'last' conv.
  int num_stages() const override { return static_cast<int>(blocks.size()) + 2; }
  torch::Tensor run_stages(torch::Tensor x, int from, int to) override {
    for (int i = from; i < to; ++i) {
      if (i == 0) {
        x = stem(x);
      } else if (i <= static_cast<int>(blocks.size())) {
        auto& b = blocks[i - 1];
        torch::Tensor y = x;
        for (auto& c : b.convs) y = c(y);
        x = b.residual ? x + y : y;
      } else {
        x = last(x);
      }
    }
    return x;
  }
  torch::Tensor pool(torch::Tensor x) override { return x.mean({2, 3}); }
  torch::Tensor logits(torch::Tensor f) override {
    return head(f.reshape({f.size(0), f.size(1), 1, 1})).flatten(1);
  }
  std::vector<TfConv> layers() override {
    std::vector<TfConv> out{stem};
    for (auto& b : blocks) out.insert(out.end(), b.convs.begin(), b.convs.end());
    out.push_back(last);
    out.push_back(head);
    return out;
  }
  std::vector<torch::Tensor> parameters_from(int from) override {
    std::vector<torch::Tensor> p;
    for (int i = std::max(from, 0); i < num_stages(); ++i) {
      std::vector<TfConv> cs = i == 0                                 ? std::vector<TfConv>{stem}
                               : i <= static_cast<int>(blocks.size()) ? blocks[i - 1].convs
                                                                      : std::vector<TfConv>{last};
      for (auto& c : cs)
        for (auto& t : c->parameters()) p.push_back(t);
    }
    return p;
  }
};

// ---- MobileNetV1 (width 0.25, 128x128: the tiny test model)
// ---------------------------------------

struct MobileNetV1Impl : BackboneNetImpl {
  std::vector<TfConv> convs;  // stem, then (depthwise, pointwise) pairs
  TfConv head{nullptr};

  MobileNetV1Impl() {
    arch = "mobilenet_v1_025";
    input_size = 128;
    feature_dim = 256;
    num_classes = 1001;
    convs.push_back(register_module("stem", TfConv(3, 8, 3, 2, 1, TfConvImpl::kRelu6)));
    const int cfg[13][2] = {{16, 1},  {32, 2},  {32, 1},  {64, 2},  {64, 1},  {128, 2}, {128, 1},
                            {128, 1}, {128, 1}, {128, 1}, {128, 1}, {256, 2}, {256, 1}};
    int in = 8;
    for (int i = 0; i < 13; ++i) {
      std::string p = "block" + std::to_string(i) + "_";
      convs.push_back(
          register_module(p + "dw", TfConv(in, in, 3, cfg[i][1], in, TfConvImpl::kRelu6)));
      convs.push_back(
          register_module(p + "pw", TfConv(in, cfg[i][0], 1, 1, 1, TfConvImpl::kRelu6)));
      in = cfg[i][0];
    }
    head = register_module("head", TfConv(256, 1001, 1, 1, 1, TfConvImpl::kNone));
  }
  int num_stages() const override { return static_cast<int>(convs.size()); }
  torch::Tensor run_stages(torch::Tensor x, int from, int to) override {
    for (int i = from; i < to; ++i) x = convs[i](x);
    return x;
  }
  torch::Tensor pool(torch::Tensor x) override { return x.mean({2, 3}); }
  torch::Tensor logits(torch::Tensor f) override {
    return head(f.reshape({f.size(0), f.size(1), 1, 1})).flatten(1);
  }
  std::vector<TfConv> layers() override {
    auto out = convs;
    out.push_back(head);
    return out;
  }
  std::vector<torch::Tensor> parameters_from(int from) override {
    std::vector<torch::Tensor> p;
    for (int i = std::max(from, 0); i < num_stages(); ++i)
      for (auto& t : convs[i]->parameters()) p.push_back(t);
    return p;
  }
};

// ---- VGG16 (torchvision names: features.N, classifier.N)
// --------------------------------------------

struct VGG16Impl : BackboneNetImpl {
  torch::nn::Sequential features_seq{nullptr}, classifier{nullptr};
  VGG16Impl() {
    arch = "vgg16";
    input_size = 224;
    feature_dim = 4096;  // fc7, the reference paper's embedding source
    num_classes = 1000;
    features_seq = torch::nn::Sequential();
    const int cfg[] = {64, 64,  0,   128, 128, 0,   256, 256, 256,
                       0,  512, 512, 512, 0,   512, 512, 512, 0};
    int in = 3;
    for (int c : cfg) {
      if (c == 0) {
        features_seq->push_back(torch::nn::MaxPool2d(torch::nn::MaxPool2dOptions(2).stride(2)));
      } else {
        features_seq->push_back(torch::nn::Conv2d(torch::nn::Conv2dOptions(in, c, 3).padding(1)));
        features_seq->push_back(torch::nn::ReLU(torch::nn::ReLUOptions(true)));
        in = c;
      }
    }
    register_module("features", features_seq);
    classifier = register_module(
        "classifier", torch::nn::Sequential(torch::nn::Linear(25088, 4096), torch::nn::ReLU(true),
                                            torch::nn::Dropout(0.5), torch::nn::Linear(4096, 4096),
                                            torch::nn::ReLU(true), torch::nn::Dropout(0.5),
                                            torch::nn::Linear(4096, 1000)));
  }
  torch::nn::LinearImpl& fc(int i) { return *classifier->ptr(i)->as<torch::nn::LinearImpl>(); }
  // Stages: the 31 modules of torchvision's `features`; pool() is avgpool + fc6 + fc7.
  int num_stages() const override { return static_cast<int>(features_seq->size()); }
  torch::Tensor run_stages(torch::Tensor x, int from, int to) override {
    for (int i = from; i < to; ++i) {
      auto m = features_seq->ptr(i);
      if (auto* c = m->as<torch::nn::Conv2dImpl>()) {
        x = c->forward(x);
        FlopCount::add(2.0 * x.numel() * c->weight[0].numel());
      } else if (auto* mp = m->as<torch::nn::MaxPool2dImpl>())
        x = mp->forward(x);
      else
        x = torch::relu(x);
    }
    return x;
  }
  torch::Tensor pool(torch::Tensor x) override {
    x = F::adaptive_avg_pool2d(x, F::AdaptiveAvgPool2dFuncOptions(7)).flatten(1);
    FlopCount::add(2.0 * x.size(0) * (fc(0).weight.numel() + fc(3).weight.numel()));
    x = torch::dropout(torch::relu(fc(0).forward(x)), 0.5, is_training());
    return torch::dropout(torch::relu(fc(3).forward(x)), 0.5, is_training());
  }
  torch::Tensor logits(torch::Tensor f) override { return fc(6).forward(f); }
  std::vector<torch::Tensor> parameters_from(int from) override {
    std::vector<torch::Tensor> p;
    for (int i = std::max(from, 0); i < num_stages(); ++i)
      for (auto& t : features_seq->ptr(i)->parameters()) p.push_back(t);
    for (int i : {0, 3})
      for (auto& t : classifier->ptr(i)->parameters()) p.push_back(t);
    return p;
  }
};

std::vector<int64_t> to_i64(const std::vector<int32_t>& v) { return {v.begin(), v.end()}; }

std::string shape_str(at::IntArrayRef s) {
  std::string o = "[";
  for (size_t i = 0; i < s.size(); ++i) o += (i ? "," : "") + std::to_string(s[i]);
  return o + "]";
}

// Maps the TFLite graph's conv/depthwise/fully-connected ops, in execution order, onto the
// module's layers(), checking that every shape, stride and padding agrees.
void import_tflite(BackboneNetImpl& net, const std::string& path) {
  tflite::Model m = tflite::read(path);
  std::vector<const tflite::Op*> ops;
  for (const auto& op : m.ops) {
    if (op.type == "CONV_2D" || op.type == "DEPTHWISE_CONV_2D" || op.type == "FULLY_CONNECTED")
      ops.push_back(&op);
    else if (op.type != "ADD" && op.type != "AVERAGE_POOL_2D" && op.type != "RESHAPE" &&
             op.type != "SOFTMAX" && op.type != "SQUEEZE" && op.type != "MEAN" &&
             op.type != "QUANTIZE" && op.type != "DEQUANTIZE")
      fail(path, ": unsupported operator ", op.type, " for backbone ", net.arch,
           "; duet imports MobileNet-style graphs only");
  }
  auto layers = net.layers();
  if (ops.size() != layers.size())
    fail(path, ": has ", ops.size(), " conv/fc layers but ", net.arch, " has ", layers.size(),
         "; is this the right --backbone for these weights?");
  torch::NoGradGuard ng;
  for (size_t i = 0; i < ops.size(); ++i) {
    const auto& op = *ops[i];
    auto& L = *layers[i];
    if (op.inputs.size() < 2) fail(path, ": op ", i, " (", op.type, ") has no weights");
    const auto& w = m.tensors.at(op.inputs[1]);
    if (!w.is_constant) fail(path, ": op ", i, " weights are not constant");
    auto wt = torch::from_blob(const_cast<float*>(w.data.data()), to_i64(w.shape), torch::kFloat32);
    if (op.type == "CONV_2D")
      wt = wt.permute({0, 3, 1, 2});  // OHWI -> OIHW
    else if (op.type == "DEPTHWISE_CONV_2D")
      wt = wt.permute({3, 0, 1, 2});  // 1HWO -> O1HW
    else
      wt = wt.reshape({wt.size(0), wt.size(1), 1, 1});  // FC [O,I] -> 1x1 conv
    if (wt.sizes() != L.weight.sizes())
      fail(path, ": layer ", i, " (", op.type, " ", w.name, ") has weights ", shape_str(wt.sizes()),
           " but ", net.arch, " expects ", shape_str(L.weight.sizes()));
    if (op.type != "FULLY_CONNECTED" &&
        (op.stride_h != L.stride || op.stride_w != L.stride ||
         (op.padding == tflite::Padding::Same) != (L.same || L.kernel == 1)))
      fail(path, ": layer ", i, " (", w.name, ") stride/padding differ from ", net.arch);
    L.weight.copy_(wt);
    if (op.inputs.size() > 2 && op.inputs[2] >= 0) {
      const auto& b = m.tensors.at(op.inputs[2]);
      if (static_cast<int64_t>(b.data.size()) != L.bias.numel())
        fail(path, ": layer ", i, " bias has ", b.data.size(), " values, expected ",
             L.bias.numel());
      L.bias.copy_(
          torch::from_blob(const_cast<float*>(b.data.data()), {L.bias.numel()}, torch::kFloat32));
    } else {
      L.bias.zero_();
    }
  }
}

// Copies parameters and buffers of a TorchScript module into net by name.
void import_torchscript(BackboneNetImpl& net, const std::string& path) {
  torch::jit::Module src;
  try {
    src = torch::jit::load(path);
  } catch (const std::exception& e) {
    fail(path, ": not a TorchScript file (", std::string(e.what()).substr(0, 200),
         "); export with torch.jit.script(model).save(path)");
  }
  std::map<std::string, torch::Tensor> have;
  for (const auto& p : src.named_parameters()) have[p.name] = p.value;
  for (const auto& p : src.named_buffers()) have[p.name] = p.value;
  torch::NoGradGuard ng;
  int copied = 0;
  for (auto& p : net.named_parameters()) {
    auto it = have.find(p.key());
    if (it == have.end())
      fail(path, ": has no parameter '", p.key(), "' that ", net.arch,
           " needs (torchvision names expected)");
    if (it->second.sizes() != p.value().sizes())
      fail(path, ": parameter '", p.key(), "' is ", shape_str(it->second.sizes()), ", ", net.arch,
           " expects ", shape_str(p.value().sizes()));
    p.value().copy_(it->second.to(torch::kFloat32));
    ++copied;
  }
  if (copied == 0) fail(path, ": no parameters copied");
}

}  // namespace

void for_each_image(int64_t n, int workers, const std::function<void(int64_t)>& fn) {
  const int prev = torch::get_num_threads();
  torch::set_num_threads(1);
  workers = static_cast<int>(std::clamp<int64_t>(workers, 1, std::max<int64_t>(n, 1)));
  std::atomic<int64_t> next{0};
  std::exception_ptr error;
  std::mutex error_mu;
  auto work = [&] {
    torch::NoGradGuard ng;
    for (int64_t i; (i = next++) < n;) {
      try {
        fn(i);
      } catch (...) {
        std::lock_guard<std::mutex> lock(error_mu);
        if (!error) error = std::current_exception();
        next = n;
      }
    }
  };
  std::vector<std::thread> pool;
  for (int w = 1; w < workers; ++w) pool.emplace_back(work);
  work();
  for (auto& t : pool) t.join();
  torch::set_num_threads(prev);
  if (error) std::rethrow_exception(error);
}

std::shared_ptr<BackboneNetImpl> make_backbone(const std::string& arch) {
  if (arch == "mobilenet_v2") return std::make_shared<MobileNetV2Impl>();
  if (arch == "mobilenet_v1_025") return std::make_shared<MobileNetV1Impl>();
  if (arch == "vgg16") return std::make_shared<VGG16Impl>();
  fail("unknown backbone '", arch, "': choose mobilenet_v2, mobilenet_v1_025 or vgg16");
}

void load_backbone_weights(BackboneNetImpl& net, const std::string& path) {
  if (!file_exists(path)) fail(path, ": no such weights file");
  char head[8] = {0};
  std::ifstream(path, std::ios::binary).read(head, 8);
  if (std::string(head + 4, 4) == "TFL3")
    import_tflite(net, path);
  else
    import_torchscript(net, path);
}

std::string backbone_weights_file(const std::string& arch, const std::string& weights) {
  if (!weights.empty() && weights != "default") return weights;
  if (arch == "mobilenet_v2") return default_weights_file("mobilenet_v2_1.0_224_quant.tflite");
  if (arch == "mobilenet_v1_025") return default_weights_file("mobilenet_v1_0.25_128_quant.tflite");
  return "";
}

std::shared_ptr<BackboneNetImpl> open_backbone_net(const std::string& arch,
                                                   const std::string& weights) {
  auto net = make_backbone(arch);
  const std::string w = backbone_weights_file(arch, weights);
  if (!w.empty()) load_backbone_weights(*net, w);
  net->eval();
  return net;
}

}  // namespace duet
