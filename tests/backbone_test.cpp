// Imported networks against known outputs: ImageNet labels of the reference images, agreement of
// the LibTorch MobileNetV2 with an independent float evaluation of the same dequantized TFLite
// graph.
#include <gtest/gtest.h>

#include <opencv2/core.hpp>

#include "backbone/nets.h"
#include "duet/encoder.h"
#include "duet/error.h"
#include "duet/image.h"
#include "duet/tflite.h"
#include "test_util.h"

using namespace duet;

namespace {
std::string weights_dir() {
  std::string s = test::shared_or_empty();
  return s.empty() ? "" : s + "/weights";
}
}  // namespace

TEST(Backbone, MobileNetV2ClassifiesReferenceImages) {
  std::string w = weights_dir();
  if (w.empty()) GTEST_SKIP() << "no shared weights (set DUET_SHARED)";
  BackboneOptions opt;
  opt.arch = "mobilenet_v2";
  opt.weights = w + "/mobilenet_v2_1.0_224_quant.tflite";
  auto clf = open_classifier(opt, w + "/imagenet_labels.txt");
  const std::pair<const char*, const char*> cases[] = {
      {"cat.bmp", "Egyptian cat"}, {"parrot.jpg", "macaw"}, {"bird.bmp", "chickadee"}};
  for (const auto& [file, label] : cases) {
    std::vector<float> x(3 * 224 * 224);
    to_chw(load_rgb(w + "/" + file), 224, x.data());
    auto top = clf->classify(1, x.data(), 5)[0];
    EXPECT_EQ(top[0].label, label)
        << file << " top-1 was " << top[0].label << " (" << top[0].prob << ")";
    EXPECT_GT(top[0].prob, 0.3f) << file;
  }
}

TEST(Backbone, TinyMobileNetV1LoadsAndRuns) {
  std::string w = weights_dir();
  if (w.empty()) GTEST_SKIP() << "no shared weights (set DUET_SHARED)";
  BackboneOptions opt;
  opt.arch = "mobilenet_v1_025";
  opt.weights = w + "/mobilenet_v1_0.25_128_quant.tflite";
  auto enc = open_backbone(opt);
  EXPECT_EQ(enc->dim(), 256);
  EXPECT_EQ(enc->input_size(), 128);
  std::vector<float> x(2 * 3 * 128 * 128, 0.1f), y(2 * 256);
  enc->encode(2, x.data(), y.data());
  for (int j = 0; j < 256; ++j) EXPECT_FLOAT_EQ(y[j], y[256 + j]);  // same input, same output
  float sum = 0;
  for (float v : y) sum += std::abs(v);
  EXPECT_GT(sum, 0);
}

TEST(Backbone, WrongArchitectureOrFileFailsCleanly) {
  std::string w = weights_dir();
  if (w.empty()) GTEST_SKIP() << "no shared weights (set DUET_SHARED)";
  auto net = make_backbone("mobilenet_v2");
  EXPECT_THROW(load_backbone_weights(*net, w + "/mobilenet_v1_0.25_128_quant.tflite"), Error);
  EXPECT_THROW(load_backbone_weights(*net, w + "/imagenet_labels.txt"),
               Error);  // not TFLite, not TorchScript
  EXPECT_THROW(load_backbone_weights(*net, w + "/no-such-file.tflite"), Error);
  EXPECT_THROW(make_backbone("resnet9000"), Error);
}

// An independent float evaluation of the TFLite graph: walks the graph's ops (not our module) with
// plain torch functional calls on the dequantized tensors in NHWC, and compares pooled features.
TEST(Backbone, MobileNetV2MatchesIndependentGraphEvaluation) {
  std::string w = weights_dir();
  if (w.empty()) GTEST_SKIP() << "no shared weights (set DUET_SHARED)";
  const std::string path = w + "/mobilenet_v2_1.0_224_quant.tflite";
  tflite::Model m = tflite::read(path);
  torch::NoGradGuard ng;
  std::vector<float> x(2 * 3 * 224 * 224);
  to_chw(load_rgb(w + "/cat.bmp"), 224, x.data());
  to_chw(load_rgb(w + "/parrot.jpg"), 224, x.data() + 3 * 224 * 224);
  auto input = torch::from_blob(x.data(), {2, 3, 224, 224}).clone();

  std::map<int, torch::Tensor> val;  // tensor index -> NCHW value
  auto constant = [&](int i) {
    std::vector<int64_t> shape(m.tensors[i].shape.begin(), m.tensors[i].shape.end());
    return torch::from_blob(m.tensors[i].data.data(), shape).clone();
  };
  val[m.inputs[0]] = input;
  torch::Tensor pooled;
  for (const auto& op : m.ops) {
    auto act = [&](torch::Tensor t) {
      if (op.activation == tflite::Activation::Relu6) return t.clamp(0, 6);
      if (op.activation == tflite::Activation::Relu) return t.relu();
      return t;
    };
    auto same_pad = [&](torch::Tensor t, int k, int s) {
      auto p = [&](int64_t n) {
        int64_t out = (n + s - 1) / s, total = std::max<int64_t>((out - 1) * s + k - n, 0);
        return std::make_pair(total / 2, total - total / 2);
      };
      auto [h0, h1] = p(t.size(2));
      auto [w0, w1] = p(t.size(3));
      return torch::constant_pad_nd(t, {w0, w1, h0, h1});
    };
    if (op.type == "CONV_2D" || op.type == "DEPTHWISE_CONV_2D") {
      auto in = val.at(op.inputs[0]);
      auto f = constant(op.inputs[1]);
      auto b = constant(op.inputs[2]);
      bool dw = op.type == "DEPTHWISE_CONV_2D";
      auto wt = dw ? f.permute({3, 0, 1, 2}) : f.permute({0, 3, 1, 2});
      int k = static_cast<int>(wt.size(2));
      if (op.padding == tflite::Padding::Same) in = same_pad(in, k, op.stride_h);
      val[op.outputs[0]] = act(torch::conv2d(
          in, wt.contiguous(), b, std::vector<int64_t>{op.stride_h, op.stride_w},
          std::vector<int64_t>{0, 0}, std::vector<int64_t>{1, 1}, dw ? in.size(1) : 1));
    } else if (op.type == "ADD") {
      val[op.outputs[0]] = act(val.at(op.inputs[0]) + val.at(op.inputs[1]));
    } else if (op.type == "AVERAGE_POOL_2D") {
      pooled = val.at(op.inputs[0]).mean({2, 3});
      break;  // features end here
    }
  }
  ASSERT_TRUE(pooled.defined()) << "graph had no AVERAGE_POOL_2D";
  BackboneOptions opt;
  opt.weights = path;
  auto enc = open_backbone(opt);
  std::vector<float> y(2 * 1280);
  enc->encode(2, x.data(), y.data());
  auto ours = torch::from_blob(y.data(), {2, 1280});
  auto cos = torch::cosine_similarity(ours, pooled, 1);
  EXPECT_GE(cos.min().item<float>(), 0.999f);
  EXPECT_LT((ours - pooled).abs().max().item<float>(), 1e-3f);
}
