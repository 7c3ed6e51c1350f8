// duet/tflite.h — reads a TensorFlow Lite model file into plain float data.
//
// Only what duet needs to rebuild a CNN in LibTorch: the operators in execution order with their
// input/output tensor indices and conv/pool options, and every constant tensor dequantized to float
// ((q - zero_point) * scale, per tensor or per channel along quantized_dimension). Layouts are
// TFLite's own and are not changed here: CONV_2D filters [O, H, W, I], DEPTHWISE_CONV_2D filters
// [1, H, W, O], FULLY_CONNECTED weights [O, I], biases [O].
// Torch-free on purpose: the mapping onto modules lives in src/backbone.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace duet::tflite {

struct Tensor {
  std::string name;
  std::vector<int32_t> shape;
  int type = 0;              // TFLite TensorType: 0 FLOAT32, 2 INT32, 3 UINT8, 9 INT8, ...
  bool is_constant = false;  // has a non-empty buffer
  std::vector<float> data;   // dequantized values when constant, row-major in `shape`
  std::vector<float> scale;  // quantization scale(s), empty when not quantized
  std::vector<int64_t> zero_point;
  int quantized_dimension = 0;
};

enum class Padding { Same, Valid };
enum class Activation { None, Relu, Relu6, Other };

struct Op {
  std::string type;             // "CONV_2D", "DEPTHWISE_CONV_2D", "ADD", "AVERAGE_POOL_2D",
                                // "RESHAPE", "SOFTMAX", "FULLY_CONNECTED", "MAX_POOL_2D", ...
  std::vector<int32_t> inputs;  // tensor indices (-1 = optional input absent)
  std::vector<int32_t> outputs;
  // Conv / depthwise / pool options (defaults when the op has none):
  Padding padding = Padding::Valid;
  int stride_h = 1, stride_w = 1;
  int filter_h = 0, filter_w = 0;  // pools only
  int depth_multiplier = 1;
  Activation activation = Activation::None;
};

struct Model {
  std::vector<Tensor> tensors;
  std::vector<Op> ops;  // execution order of subgraph 0
  std::vector<int32_t> inputs, outputs;
};

// Parses and verifies the file; throws duet::Error naming the file on anything that is not a
// valid TFLite model, or on a constant tensor whose buffer size does not match its shape.
Model read(const std::string& path);

}  // namespace duet::tflite
