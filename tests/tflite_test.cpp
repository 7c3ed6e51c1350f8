// tflite_test.cpp — checks duet::tflite::read against the two shipped MobileNet models and
// against small synthetic models built with the generated FlatBuffers builders.
//
// The expected facts about the real models (op counts, shapes, raw quantized bytes) were taken
// from an independent dump of the files (`flatc --json --raw-binary`), not from the reader itself.
#include "duet/tflite.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "duet/error.h"
#include "tflite_schema_generated.h"

namespace fs = std::filesystem;
using duet::tflite::Activation;
using duet::tflite::Model;
using duet::tflite::Padding;

namespace {

std::string shared_dir() {
  const char* env = std::getenv("DUET_SHARED");
  if (env && *env) return env;
#ifdef DUET_DEFAULT_SHARED
  return DUET_DEFAULT_SHARED;
#else
  return "";
#endif
}

std::string weights(const std::string& name) { return shared_dir() + "/weights/" + name; }

#define REQUIRE_FILE(path)                                                               \
  do {                                                                                   \
    if (!fs::exists(path))                                                               \
      GTEST_SKIP() << "missing " << (path) << " (set DUET_SHARED to the shared folder)"; \
  } while (0)

const char* kV2 = "mobilenet_v2_1.0_224_quant.tflite";
const char* kV1 = "mobilenet_v1_0.25_128_quant.tflite";

int count_ops(const Model& m, const std::string& type) {
  return int(std::count_if(m.ops.begin(), m.ops.end(),
                           [&](const duet::tflite::Op& o) { return o.type == type; }));
}

const duet::tflite::Tensor& input(const Model& m, const duet::tflite::Op& op, size_t i) {
  return m.tensors.at(size_t(op.inputs.at(i)));
}

// Every dequantized UINT8 value must be (q - zp) * scale for an integer q in [0, 255].
void expect_uint8_grid(const duet::tflite::Tensor& t) {
  ASSERT_EQ(t.scale.size(), 1u) << t.name;
  ASSERT_EQ(t.zero_point.size(), 1u) << t.name;
  for (float v : t.data) {
    double q = double(v) / t.scale[0] + double(t.zero_point[0]);
    ASSERT_NEAR(q, std::round(q), 1e-3) << t.name;
    ASSERT_GE(std::round(q), 0.0) << t.name;
    ASSERT_LE(std::round(q), 255.0) << t.name;
  }
}

// A scratch folder for files the tests write, removed afterwards.
class TempDir : public ::testing::Test {
 protected:
  void SetUp() override {
    std::random_device rd;
    dir_ = fs::temp_directory_path() / ("duet_tflite_test_" + std::to_string(rd()));
    fs::create_directories(dir_);
  }
  void TearDown() override {
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }
  std::string write(const std::string& name, const std::string& bytes) {
    std::string p = (dir_ / name).string();
    std::ofstream(p, std::ios::binary).write(bytes.data(), std::streamsize(bytes.size()));
    return p;
  }
  fs::path dir_;
};

std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

}  // namespace

TEST(TfliteMobileNetV2, Structure) {
  std::string path = weights(kV2);
  REQUIRE_FILE(path);
  Model m = duet::tflite::read(path);

  EXPECT_EQ(m.tensors.size(), 174u);
  ASSERT_EQ(m.ops.size(), 66u);
  EXPECT_EQ(count_ops(m, "CONV_2D"), 36);
  EXPECT_EQ(count_ops(m, "DEPTHWISE_CONV_2D"), 17);
  EXPECT_EQ(count_ops(m, "ADD"), 10);
  EXPECT_EQ(count_ops(m, "AVERAGE_POOL_2D"), 1);

  ASSERT_EQ(m.inputs.size(), 1u);
  const auto& in = m.tensors.at(size_t(m.inputs[0]));
  EXPECT_EQ(in.shape, (std::vector<int32_t>{1, 224, 224, 3}));
  EXPECT_EQ(in.type, 3);  // UINT8 input, scale 1/128, zero point 128
  EXPECT_FLOAT_EQ(in.scale.at(0), 0.0078125f);
  EXPECT_EQ(in.zero_point.at(0), 128);
  EXPECT_FALSE(in.is_constant);
  ASSERT_EQ(m.outputs.size(), 1u);
  EXPECT_EQ(m.tensors.at(size_t(m.outputs[0])).shape, (std::vector<int32_t>{1, 1001}));

  const auto& conv0 = m.ops[0];
  EXPECT_EQ(conv0.type, "CONV_2D");
  EXPECT_EQ(input(m, conv0, 1).shape, (std::vector<int32_t>{32, 3, 3, 3}));
  EXPECT_EQ(conv0.stride_h, 2);
  EXPECT_EQ(conv0.stride_w, 2);
  EXPECT_EQ(conv0.padding, Padding::Same);
  EXPECT_EQ(conv0.activation, Activation::Relu6);

  const auto& dw0 = m.ops[1];
  EXPECT_EQ(dw0.type, "DEPTHWISE_CONV_2D");
  EXPECT_EQ(input(m, dw0, 1).shape, (std::vector<int32_t>{1, 3, 3, 32}));
  EXPECT_EQ(dw0.depth_multiplier, 1);
  EXPECT_EQ(dw0.activation, Activation::Relu6);
  // Projection convs are linear.
  EXPECT_EQ(m.ops[2].type, "CONV_2D");
  EXPECT_EQ(m.ops[2].activation, Activation::None);

  const auto& pool = m.ops[62];
  EXPECT_EQ(pool.type, "AVERAGE_POOL_2D");
  EXPECT_EQ(pool.filter_h, 7);
  EXPECT_EQ(pool.filter_w, 7);
  EXPECT_EQ(pool.padding, Padding::Valid);

  // The classifier is a 1x1 CONV_2D to 1001 classes, then RESHAPE and SOFTMAX.
  const auto& cls = m.ops[63];
  EXPECT_EQ(cls.type, "CONV_2D");
  EXPECT_EQ(cls.activation, Activation::None);
  EXPECT_EQ(input(m, cls, 1).shape, (std::vector<int32_t>{1001, 1, 1, 1280}));
  EXPECT_EQ(input(m, cls, 2).shape, (std::vector<int32_t>{1001}));
  EXPECT_EQ(m.ops[64].type, "RESHAPE");
  EXPECT_EQ(m.ops[65].type, "SOFTMAX");
  // The reshape target is a plain INT32 constant, converted as-is.
  EXPECT_EQ(input(m, m.ops[64], 1).data, (std::vector<float>{1.0f, 1001.0f}));
}

TEST(TfliteMobileNetV2, Dequantization) {
  std::string path = weights(kV2);
  REQUIRE_FILE(path);
  Model m = duet::tflite::read(path);

  // First conv filter: raw bytes start 107 97 113 101 87 113 116 112, end 120 118 121 122.
  const auto& w = input(m, m.ops[0], 1);
  ASSERT_TRUE(w.is_constant);
  ASSERT_EQ(w.data.size(), 864u);
  EXPECT_NEAR(w.scale.at(0), 0.033969, 1e-6);
  EXPECT_EQ(w.zero_point.at(0), 122);
  const float s = w.scale[0];
  EXPECT_FLOAT_EQ(w.data[0], (107 - 122) * s);
  EXPECT_FLOAT_EQ(w.data[1], (97 - 122) * s);
  EXPECT_FLOAT_EQ(w.data[4], (87 - 122) * s);
  EXPECT_FLOAT_EQ(w.data[863], 0.0f);  // q = 122 = zero point
  EXPECT_FLOAT_EQ(w.data[862], (121 - 122) * s);

  // First conv bias: INT32 8516 (bytes 68 33 0 0), zero point 0.
  const auto& b = input(m, m.ops[0], 2);
  EXPECT_EQ(b.type, 2);
  EXPECT_FLOAT_EQ(b.data.at(0), 8516 * b.scale.at(0));

  // Classifier bias starts -7125 -405 -5387 -5263; its weights end with q = 128 143 78, zp 113.
  const auto& cb = input(m, m.ops[63], 2);
  EXPECT_FLOAT_EQ(cb.data.at(0), -7125 * cb.scale.at(0));
  EXPECT_FLOAT_EQ(cb.data.at(3), -5263 * cb.scale.at(0));
  const auto& cw = input(m, m.ops[63], 1);
  EXPECT_EQ(cw.zero_point.at(0), 113);
  EXPECT_FLOAT_EQ(cw.data.back(), (78 - 113) * cw.scale.at(0));
  EXPECT_FLOAT_EQ(cw.data[cw.data.size() - 2], (143 - 113) * cw.scale.at(0));

  // Every UINT8 weight tensor lies on its quantization grid.
  for (const auto& op : m.ops) {
    if (op.type != "CONV_2D" && op.type != "DEPTHWISE_CONV_2D") continue;
    const auto& t = input(m, op, 1);
    ASSERT_EQ(t.type, 3) << t.name;
    ASSERT_TRUE(t.is_constant) << t.name;
    expect_uint8_grid(t);
  }
}

TEST(TfliteMobileNetV1, Structure) {
  std::string path = weights(kV1);
  REQUIRE_FILE(path);
  Model m = duet::tflite::read(path);

  ASSERT_EQ(m.ops.size(), 31u);
  EXPECT_EQ(count_ops(m, "CONV_2D"), 15);
  EXPECT_EQ(count_ops(m, "DEPTHWISE_CONV_2D"), 13);
  EXPECT_EQ(m.tensors.at(size_t(m.inputs.at(0))).shape, (std::vector<int32_t>{1, 128, 128, 3}));
  EXPECT_EQ(input(m, m.ops[0], 1).shape, (std::vector<int32_t>{8, 3, 3, 3}));
  EXPECT_EQ(m.ops[0].stride_h, 2);
  EXPECT_EQ(m.ops[0].padding, Padding::Same);
  // V1 applies ReLU6 after every conv, pointwise ones included.
  for (size_t k = 0; k < 27; ++k) EXPECT_EQ(m.ops[k].activation, Activation::Relu6) << k;

  const auto& pool = m.ops[27];
  EXPECT_EQ(pool.type, "AVERAGE_POOL_2D");
  EXPECT_EQ(pool.filter_h, 4);
  EXPECT_EQ(pool.stride_h, 2);
  EXPECT_EQ(pool.padding, Padding::Valid);
  EXPECT_EQ(m.ops[28].type, "CONV_2D");
  EXPECT_EQ(input(m, m.ops[28], 1).shape, (std::vector<int32_t>{1001, 1, 1, 256}));

  // First filter bytes start 160 159 159, zero point 157.
  const auto& w = input(m, m.ops[0], 1);
  EXPECT_EQ(w.zero_point.at(0), 157);
  EXPECT_FLOAT_EQ(w.data.at(0), (160 - 157) * w.scale.at(0));
  EXPECT_FLOAT_EQ(w.data.at(2), (159 - 157) * w.scale.at(0));
  expect_uint8_grid(w);
}

TEST_F(TempDir, RejectsGarbageTruncatedAndMissing) {
  EXPECT_THROW(duet::tflite::read((dir_ / "no_such.tflite").string()), duet::Error);
  EXPECT_THROW(duet::tflite::read(write("empty.tflite", "")), duet::Error);

  std::mt19937 rng(42);
  std::string junk(4096, '\0');
  for (char& c : junk) c = char(rng());
  EXPECT_THROW(duet::tflite::read(write("junk.tflite", junk)), duet::Error);
  // Garbage that carries the right identifier must be caught by the verifier instead.
  junk.replace(4, 4, "TFL3");
  try {
    duet::tflite::read(write("junk_id.tflite", junk));
    ADD_FAILURE() << "garbage with a TFL3 identifier was accepted";
  } catch (const duet::Error& e) {
    EXPECT_NE(std::string(e.what()).find("not a valid TFLite file"), std::string::npos) << e.what();
  }

  std::string path = weights(kV1);
  REQUIRE_FILE(path);
  std::string real = slurp(path);
  ASSERT_GT(real.size(), 400000u);
  // Cut inside the FlatBuffer: these files end with a zip of labels (TFLite metadata) after it,
  // so losing only the tail is harmless and legitimately accepted.
  for (size_t n : {size_t(6), size_t(64), size_t(4096), real.size() / 2, size_t(400000)}) {
    std::string p = write("trunc.tflite", real.substr(0, n));
    try {
      duet::tflite::read(p);
      ADD_FAILURE() << "truncated to " << n << " bytes but accepted";
    } catch (const duet::Error& e) {
      EXPECT_NE(std::string(e.what()).find(p), std::string::npos) << e.what();
    }
  }
}

// ---- Synthetic models: paths the MobileNets do not exercise ----

namespace {

// Knobs for breaking one thing at a time in the synthetic model.
struct Synth {
  std::vector<int32_t> bias_shape{3};
  std::vector<float> pc_scales{0.5f, 0.25f, 2.0f};
  int conv_input = 0;
  int dilation = 1;
};

// A tiny model: per-channel INT8 conv, UINT8 depthwise quantized along dim 3, a zero-point INT32
// bias, FLOAT32 / FLOAT16 / plain INT32 constants, and opcodes in both the old and new fields.
std::string build(const Synth& s) {
  namespace tfl = ::tflite;
  flatbuffers::FlatBufferBuilder fb;
  std::vector<flatbuffers::Offset<tfl::Buffer>> bufs{tfl::CreateBuffer(fb)};
  auto buffer = [&](const void* p, size_t n) {
    std::vector<uint8_t> v(static_cast<const uint8_t*>(p), static_cast<const uint8_t*>(p) + n);
    bufs.push_back(tfl::CreateBufferDirect(fb, &v));
    return uint32_t(bufs.size() - 1);
  };
  auto quant = [&](std::vector<float> sc, std::vector<int64_t> zp, int dim) {
    return tfl::CreateQuantizationParametersDirect(fb, nullptr, nullptr, &sc, &zp,
                                                   tfl::QuantizationDetails_NONE, 0, dim);
  };
  std::vector<flatbuffers::Offset<tfl::Tensor>> ts;
  auto tensor = [&](const char* name, std::vector<int32_t> shape, int8_t type, uint32_t buf,
                    flatbuffers::Offset<tfl::QuantizationParameters> q = 0) {
    ts.push_back(tfl::CreateTensorDirect(fb, &shape, type, buf, name, q));
  };

  const int8_t w[] = {1, -2, 3, 4, -1, 5};
  const int32_t bias[] = {12, -8, 2};
  const float f32[] = {1.5f, -2.25f};
  const int32_t shape[] = {1, 48};
  const uint8_t dw[] = {11, 22, 13, 18};
  const uint16_t f16[] = {0x3c00, 0xc000};
  tensor("in", {1, 4, 4, 2}, 0, 0);                                                        // 0
  tensor("w", {3, 1, 1, 2}, 9, buffer(w, sizeof w), quant(s.pc_scales, {0, 1, -2}, 0));    // 1
  tensor("bias", s.bias_shape, 2, buffer(bias, sizeof bias), quant({0.1f}, {2}, 0));       // 2
  tensor("out", {1, 4, 4, 3}, 0, 0);                                                       // 3
  tensor("f32", {2}, 0, buffer(f32, sizeof f32));                                          // 4
  tensor("shape", {2}, 2, buffer(shape, sizeof shape));                                    // 5
  tensor("dw", {1, 1, 2, 2}, 3, buffer(dw, sizeof dw), quant({1.0f, 2.0f}, {10, 20}, 3));  // 6
  tensor("f16", {2}, 1, buffer(f16, sizeof f16));                                          // 7

  std::vector<flatbuffers::Offset<tfl::OperatorCode>> codes{
      tfl::CreateOperatorCodeDirect(fb, 3),  // CONV_2D, old files: byte field only
      tfl::CreateOperatorCodeDirect(fb, 4, nullptr, 1, 4),
      tfl::CreateOperatorCodeDirect(fb, 17),                    // MAX_POOL_2D
      tfl::CreateOperatorCodeDirect(fb, 127, nullptr, 1, 150),  // beyond the byte range
      tfl::CreateOperatorCodeDirect(fb, 9),                     // FULLY_CONNECTED
  };
  std::vector<flatbuffers::Offset<tfl::Operator>> ops;
  auto op = [&](uint32_t code, std::vector<int32_t> in, std::vector<int32_t> out,
                tfl::BuiltinOptions type, flatbuffers::Offset<void> opts) {
    ops.push_back(tfl::CreateOperatorDirect(fb, code, &in, &out, type, opts));
  };
  op(0, {s.conv_input, 1, 2}, {3}, tfl::BuiltinOptions_Conv2DOptions,
     tfl::CreateConv2DOptions(fb, 1, 3, 2, 1, s.dilation, s.dilation).Union());
  op(1, {3, 6, -1}, {3}, tfl::BuiltinOptions_DepthwiseConv2DOptions,
     tfl::CreateDepthwiseConv2DOptions(fb, 0, 1, 1, 2, 3).Union());
  op(2, {3}, {3}, tfl::BuiltinOptions_Pool2DOptions,
     tfl::CreatePool2DOptions(fb, 0, 2, 2, 3, 2, 0).Union());
  op(3, {3}, {3}, tfl::BuiltinOptions_NONE, 0);
  op(4, {3, 4}, {3}, tfl::BuiltinOptions_FullyConnectedOptions,
     tfl::CreateFullyConnectedOptions(fb, 3).Union());

  std::vector<int32_t> sg_in{0}, sg_out{3};
  std::vector<flatbuffers::Offset<tfl::SubGraph>> sgs{
      tfl::CreateSubGraphDirect(fb, &ts, &sg_in, &sg_out, &ops, "main")};
  fb.Finish(tfl::CreateModelDirect(fb, 3, &codes, &sgs, "synthetic", &bufs),
            tfl::ModelIdentifier());
  return std::string(reinterpret_cast<const char*>(fb.GetBufferPointer()), fb.GetSize());
}

}  // namespace

TEST_F(TempDir, SyntheticModel) {
  Model m = duet::tflite::read(write("synth.tflite", build(Synth{})));
  ASSERT_EQ(m.tensors.size(), 8u);
  ASSERT_EQ(m.ops.size(), 5u);

  EXPECT_EQ(m.tensors[1].data, (std::vector<float>{0.5f, -1.0f, 0.5f, 0.75f, 2.0f, 14.0f}));
  const auto& bias = m.tensors[2].data;  // (q - 2) * 0.1
  ASSERT_EQ(bias.size(), 3u);
  EXPECT_FLOAT_EQ(bias[0], 1.0f);
  EXPECT_FLOAT_EQ(bias[1], -1.0f);
  EXPECT_FLOAT_EQ(bias[2], 0.0f);
  EXPECT_FALSE(m.tensors[3].is_constant);
  EXPECT_TRUE(m.tensors[3].data.empty());
  EXPECT_EQ(m.tensors[4].data, (std::vector<float>{1.5f, -2.25f}));
  EXPECT_EQ(m.tensors[5].data, (std::vector<float>{1.0f, 48.0f}));
  EXPECT_EQ(m.tensors[6].data, (std::vector<float>{1.0f, 4.0f, 3.0f, -4.0f}));
  EXPECT_EQ(m.tensors[6].quantized_dimension, 3);
  EXPECT_EQ(m.tensors[7].data, (std::vector<float>{1.0f, -2.0f}));

  const auto& conv = m.ops[0];
  EXPECT_EQ(conv.type, "CONV_2D");
  EXPECT_EQ(conv.padding, Padding::Valid);
  EXPECT_EQ(conv.stride_w, 3);
  EXPECT_EQ(conv.stride_h, 2);
  EXPECT_EQ(conv.activation, Activation::Relu);
  const auto& dw = m.ops[1];
  EXPECT_EQ(dw.type, "DEPTHWISE_CONV_2D");
  EXPECT_EQ(dw.inputs, (std::vector<int32_t>{3, 6, -1}));
  EXPECT_EQ(dw.padding, Padding::Same);
  EXPECT_EQ(dw.depth_multiplier, 2);
  EXPECT_EQ(dw.activation, Activation::Relu6);
  const auto& pool = m.ops[2];
  EXPECT_EQ(pool.type, "MAX_POOL_2D");
  EXPECT_EQ(pool.filter_w, 3);
  EXPECT_EQ(pool.filter_h, 2);
  EXPECT_EQ(pool.activation, Activation::None);
  EXPECT_EQ(m.ops[3].type, "BUILTIN_150");
  EXPECT_EQ(m.ops[4].type, "FULLY_CONNECTED");
  EXPECT_EQ(m.ops[4].activation, Activation::Relu6);
}

TEST_F(TempDir, SyntheticModelErrors) {
  auto expect_error = [&](const Synth& s, const std::string& needle) {
    try {
      duet::tflite::read(write("bad.tflite", build(s)));
      ADD_FAILURE() << "accepted; expected an error mentioning " << needle;
    } catch (const duet::Error& e) {
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
  };
  Synth s;
  s.bias_shape = {4};  // 12 bytes of data for 4 INT32 values
  expect_error(s, "'bias' has 12 bytes of data but shape [4]");
  s = Synth{};
  s.pc_scales = {0.5f, 0.25f};  // 2 scales for 3 output channels
  expect_error(s, "'w' has 2 per-channel scales");
  s = Synth{};
  s.conv_input = 99;
  expect_error(s, "refers to tensor 99");
  s = Synth{};
  s.dilation = 2;
  expect_error(s, "dilated");
}
