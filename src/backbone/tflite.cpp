// tflite.cpp — duet::tflite::read: verifies a .tflite FlatBuffer and copies subgraph 0 into plain
// structs, dequantizing every constant tensor to float.
//
// Reads through the code flatc generates from the trimmed schema in tflite_schema.fbs. The whole
// buffer is checked by the generated verifier first, so every accessor below stays inside the
// file; the remaining checks are the semantic ones the verifier cannot know (indices in range,
// buffer sizes matching shapes).
#include "duet/tflite.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <sstream>

#include "duet/error.h"
#include "duet/fileio.h"
#include "tflite_schema_generated.h"

namespace duet::tflite {

namespace {

// TensorType values (real schema enum TensorType : byte).
enum : int {
  kFloat32 = 0,
  kFloat16 = 1,
  kInt32 = 2,
  kUint8 = 3,
  kInt64 = 4,
  kString = 5,
  kBool = 6,
  kInt16 = 7,
  kInt8 = 9,
  kFloat64 = 10,
};

const char* type_name(int t) {
  switch (t) {
    case kFloat32:
      return "FLOAT32";
    case kFloat16:
      return "FLOAT16";
    case kInt32:
      return "INT32";
    case kUint8:
      return "UINT8";
    case kInt64:
      return "INT64";
    case kString:
      return "STRING";
    case kBool:
      return "BOOL";
    case kInt16:
      return "INT16";
    case kInt8:
      return "INT8";
    case kFloat64:
      return "FLOAT64";
    default:
      return "unsupported type";
  }
}

// Bytes per element of the types we can turn into floats; 0 for the others.
size_t element_size(int t) {
  switch (t) {
    case kUint8:
    case kInt8:
    case kBool:
      return 1;
    case kFloat16:
    case kInt16:
      return 2;
    case kFloat32:
    case kInt32:
      return 4;
    case kInt64:
    case kFloat64:
      return 8;
    default:
      return 0;
  }
}

// Names from the real BuiltinOperator enum; the ones a CNN backbone may contain plus a few common
// neighbours. Anything else is reported as BUILTIN_<n> so an unsupported op is still identifiable.
std::string op_name(int code) {
  switch (code) {
    case 0:
      return "ADD";
    case 1:
      return "AVERAGE_POOL_2D";
    case 2:
      return "CONCATENATION";
    case 3:
      return "CONV_2D";
    case 4:
      return "DEPTHWISE_CONV_2D";
    case 6:
      return "DEQUANTIZE";
    case 9:
      return "FULLY_CONNECTED";
    case 14:
      return "LOGISTIC";
    case 17:
      return "MAX_POOL_2D";
    case 18:
      return "MUL";
    case 19:
      return "RELU";
    case 21:
      return "RELU6";
    case 22:
      return "RESHAPE";
    case 23:
      return "RESIZE_BILINEAR";
    case 25:
      return "SOFTMAX";
    case 28:
      return "TANH";
    case 32:
      return "CUSTOM";
    case 34:
      return "PAD";
    case 39:
      return "TRANSPOSE";
    case 40:
      return "MEAN";
    case 41:
      return "SUB";
    case 42:
      return "DIV";
    case 43:
      return "SQUEEZE";
    case 45:
      return "STRIDED_SLICE";
    case 60:
      return "PADV2";
    case 98:
      return "LEAKY_RELU";
    case 114:
      return "QUANTIZE";
    case 117:
      return "HARD_SWISH";
    default:
      return "BUILTIN_" + std::to_string(code);
  }
}

Padding to_padding(int8_t p) { return p == 0 ? Padding::Same : Padding::Valid; }

Activation to_activation(int8_t a) {
  switch (a) {
    case 0:
      return Activation::None;
    case 1:
      return Activation::Relu;
    case 3:
      return Activation::Relu6;
    default:
      return Activation::Other;
  }
}

// IEEE half -> float, for FLOAT16 constants (fp16-quantized models store weights this way).
float half_to_float(uint16_t h) {
  uint32_t sign = uint32_t(h >> 15) << 31, exp = (h >> 10) & 0x1f, mant = h & 0x3ff;
  uint32_t bits;
  if (exp == 0x1f) {
    bits = sign | 0x7f800000u | (mant << 13);  // inf / nan
  } else if (exp != 0) {
    bits = sign | ((exp + 112) << 23) | (mant << 13);  // normal: rebias 15 -> 127
  } else {
    float f = std::ldexp(float(mant), -24);  // subnormal or zero
    return sign ? -f : f;
  }
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

template <typename T>
T load(const uint8_t* p, size_t i) {
  T v;
  std::memcpy(&v, p + i * sizeof(T), sizeof(T));  // buffer data need not be aligned for T
  return v;
}

// Raw value i of a buffer of type t, as double so int32 / int64 survive until scaled.
double raw_value(const uint8_t* p, int t, size_t i) {
  switch (t) {
    case kFloat32:
      return load<float>(p, i);
    case kFloat16:
      return half_to_float(load<uint16_t>(p, i));
    case kInt32:
      return load<int32_t>(p, i);
    case kUint8:
      return p[i];
    case kInt64:
      return double(load<int64_t>(p, i));
    case kBool:
      return p[i] ? 1.0 : 0.0;
    case kInt16:
      return load<int16_t>(p, i);
    case kInt8:
      return load<int8_t>(p, i);
    case kFloat64:
      return load<double>(p, i);
    default:
      return 0;
  }
}

std::string shape_str(const std::vector<int32_t>& s) {
  std::ostringstream os;
  os << '[';
  for (size_t i = 0; i < s.size(); ++i) os << (i ? ", " : "") << s[i];
  os << ']';
  return os.str();
}

template <typename T>
std::vector<T> to_vec(const flatbuffers::Vector<T>* v) {
  return v ? std::vector<T>(v->begin(), v->end()) : std::vector<T>();
}

// Fills t.data from the buffer bytes; t's shape, type and quantization are already set.
void dequantize(const std::string& path, int index, Tensor& t, const uint8_t* bytes, size_t n) {
  const std::string who = path + ": tensor " + std::to_string(index) + " '" + t.name + "'";
  size_t esize = element_size(t.type);
  if (esize == 0)
    fail(who, " is a constant of ", type_name(t.type), " (type ", t.type,
         "), which duet cannot read");
  // `need` in double so that absurd shapes in a corrupt file cannot overflow the product.
  double need = double(esize);
  for (int32_t d : t.shape) {
    if (d < 0) fail(who, " has a negative dimension in shape ", shape_str(t.shape));
    need *= double(d);
  }
  if (need != double(n)) {
    std::string need_str = need < 1e18 ? std::to_string(uint64_t(need)) : "more than 10^18";
    fail(who, " has ", n, " bytes of data but shape ", shape_str(t.shape), " of ",
         type_name(t.type), " needs ", need_str, " (corrupt or unsupported file)");
  }
  const size_t count = n / esize;

  // Float constants are never rescaled; integer ones are when the tensor carries scales. A
  // non-quantized integer constant (a RESHAPE target shape, say) keeps its values as they are.
  bool quantized =
      !t.scale.empty() && t.type != kFloat32 && t.type != kFloat16 && t.type != kFloat64;
  size_t channels = 1, inner = 1;
  if (quantized && t.scale.size() > 1) {
    int qd = t.quantized_dimension;
    if (qd < 0 || size_t(qd) >= t.shape.size() || size_t(t.shape[qd]) != t.scale.size()) {
      fail(who, " has ", t.scale.size(), " per-channel scales along dimension ", qd, " but shape ",
           shape_str(t.shape));
    }
    channels = t.scale.size();
    for (size_t d = size_t(qd) + 1; d < t.shape.size(); ++d) inner *= size_t(t.shape[d]);
  }
  if (quantized && !t.zero_point.empty() && t.zero_point.size() != 1 &&
      t.zero_point.size() != t.scale.size()) {
    fail(who, " has ", t.scale.size(), " scales but ", t.zero_point.size(), " zero points");
  }

  t.data.resize(count);
  for (size_t i = 0; i < count; ++i) {
    double q = raw_value(bytes, t.type, i);
    if (!quantized) {
      t.data[i] = float(q);
      continue;
    }
    size_t c = channels > 1 ? (i / inner) % channels : 0;
    double zp = t.zero_point.empty() ? 0.0 : double(t.zero_point[t.zero_point.size() == 1 ? 0 : c]);
    t.data[i] = float((q - zp) * double(t.scale[c]));
  }
}

}  // namespace

Model read(const std::string& path) {
  const std::string file = read_file(path);
  const auto* buf = reinterpret_cast<const uint8_t*>(file.data());

  // Check the identifier ourselves first: it gives the clearer message for the common mistake of
  // passing some other file, while the verifier below catches truncation and corruption.
  if (file.size() < 8 || !::tflite::ModelBufferHasIdentifier(buf)) {
    fail(path, ": not a valid TFLite file (no \"TFL3\" identifier; ", file.size(), " bytes)");
  }
  flatbuffers::Verifier verifier(buf, file.size());
  if (!::tflite::VerifyModelBuffer(verifier)) {
    fail(path, ": not a valid TFLite file (FlatBuffer verification failed; truncated or corrupt)");
  }
  const ::tflite::Model* fm = ::tflite::GetModel(buf);

  const auto* subgraphs = fm->subgraphs();
  if (!subgraphs || subgraphs->size() == 0) fail(path, ": not a valid TFLite file (no subgraphs)");
  const ::tflite::SubGraph* sg = subgraphs->Get(0);
  const auto* fbuffers = fm->buffers();
  const auto* codes = fm->operator_codes();
  const int ntensors = sg->tensors() ? int(sg->tensors()->size()) : 0;

  auto check_index = [&](int32_t i, bool allow_absent, const char* what) {
    if ((allow_absent && i == -1) || (i >= 0 && i < ntensors)) return;
    fail(path, ": not a valid TFLite file (", what, " refers to tensor ", i, " of ", ntensors, ")");
  };

  Model m;
  m.tensors.resize(size_t(ntensors));
  for (int i = 0; i < ntensors; ++i) {
    const ::tflite::Tensor* ft = sg->tensors()->Get(flatbuffers::uoffset_t(i));
    Tensor& t = m.tensors[size_t(i)];
    t.name = ft->name() ? ft->name()->str() : std::string();
    t.shape = to_vec(ft->shape());
    t.type = ft->type();
    if (const auto* q = ft->quantization()) {
      t.scale = to_vec(q->scale());
      t.zero_point = to_vec(q->zero_point());
      t.quantized_dimension = q->quantized_dimension();
    }

    uint32_t b = ft->buffer();
    if (b == 0) continue;  // buffer 0 is the empty sentinel: a runtime tensor
    if (!fbuffers || b >= fbuffers->size()) {
      fail(path, ": not a valid TFLite file (tensor '", t.name, "' refers to buffer ", b, ")");
    }
    const ::tflite::Buffer* fb = fbuffers->Get(b);
    if (fb->offset() > 1) {
      fail(path, ": tensor '", t.name, "' keeps its data outside the FlatBuffer (a model over",
           " 2 GB), which duet does not support");
    }
    if (!fb->data() || fb->data()->size() == 0) continue;
    t.is_constant = true;
    dequantize(path, i, t, fb->data()->data(), fb->data()->size());
  }

  for (int32_t i : to_vec(sg->inputs())) check_index(i, false, "the model input list");
  for (int32_t i : to_vec(sg->outputs())) check_index(i, false, "the model output list");
  m.inputs = to_vec(sg->inputs());
  m.outputs = to_vec(sg->outputs());

  const auto* fops = sg->operators();
  const size_t nops = fops ? fops->size() : 0;
  m.ops.resize(nops);
  for (size_t k = 0; k < nops; ++k) {
    const ::tflite::Operator* fo = fops->Get(flatbuffers::uoffset_t(k));
    Op& op = m.ops[k];

    uint32_t ci = fo->opcode_index();
    if (!codes || ci >= codes->size()) {
      fail(path, ": not a valid TFLite file (operator ", k, " has opcode index ", ci, ")");
    }
    const ::tflite::OperatorCode* oc = codes->Get(ci);
    // Same rule as TFLite's GetBuiltinCode: old files set only the byte field.
    int code = std::max<int>(oc->deprecated_builtin_code(), oc->builtin_code());
    op.type = op_name(code);
    if (code == 32 && oc->custom_code()) op.type += ":" + oc->custom_code()->str();

    op.inputs = to_vec(fo->inputs());
    op.outputs = to_vec(fo->outputs());
    for (int32_t i : op.inputs) check_index(i, true, "an operator input");
    for (int32_t i : op.outputs) check_index(i, false, "an operator output");

    // The Op struct has no dilation: refuse dilated convs rather than rebuild them wrongly.
    auto check_dilation = [&](int dh, int dw) {
      if (dh != 1 || dw != 1) {
        fail(path, ": operator ", k, " (", op.type, ") is dilated (", dh, "x", dw,
             "), which duet does not support");
      }
    };
    // Conv, depthwise and pool options share padding / stride / activation.
    auto window = [&op](const auto* o) {
      op.padding = to_padding(o->padding());
      op.stride_h = o->stride_h();
      op.stride_w = o->stride_w();
      op.activation = to_activation(o->fused_activation_function());
    };
    if (const auto* c = fo->builtin_options_as_Conv2DOptions()) {
      check_dilation(c->dilation_h_factor(), c->dilation_w_factor());
      window(c);
    } else if (const auto* d = fo->builtin_options_as_DepthwiseConv2DOptions()) {
      check_dilation(d->dilation_h_factor(), d->dilation_w_factor());
      window(d);
      op.depth_multiplier = d->depth_multiplier();
    } else if (const auto* p = fo->builtin_options_as_Pool2DOptions()) {
      window(p);
      op.filter_h = p->filter_height();
      op.filter_w = p->filter_width();
    } else if (const auto* f = fo->builtin_options_as_FullyConnectedOptions()) {
      op.activation = to_activation(f->fused_activation_function());
    } else if (const auto* a = fo->builtin_options_as_AddOptions()) {
      op.activation = to_activation(a->fused_activation_function());
    }
  }
  return m;
}

}  // namespace duet::tflite
