// Encoder, mapper and bridge files with one bad value each, written by LibTorch's own archive
// writer: most of fuzz/regress/model/ (each behind fuzz_model's reader byte). Not built by default:
//   clang++-14 -std=c++17 -I/usr/include/torch/csrc/api/include fuzz/regress/make_model_inputs.cpp
//   \
//     -ltorch -ltorch_cpu -lc10 -o /tmp/make_model_inputs && /tmp/make_model_inputs
//     fuzz/regress/model
#include <torch/torch.h>

#include <fstream>
#include <functional>
#include <map>
using torch::serialize::OutputArchive;
void save(OutputArchive& ar, const std::string& name, char byte) {
  std::ostringstream os;
  ar.save_to(os);
  std::ofstream f(name, std::ios::binary);
  f.put(byte);
  f << os.str();
}
// A mapper of widths in -> hidden -> code, two branches; `tweak` changes it before saving.
void mapper(
    const std::string& name,
    std::function<void(std::map<std::string, c10::IValue>&, std::map<std::string, torch::Tensor>&)>
        tweak) {
  std::map<std::string, c10::IValue> v{{"format", std::string("duet-mapper-v2")},
                                       {"domains", std::string("sketch\nphoto")},
                                       {"in_dim", int64_t(4)},
                                       {"hidden", int64_t(3)},
                                       {"code", int64_t(2)},
                                       {"shared", false},
                                       {"normalize", false},
                                       {"loss", std::string("contrastive")}};
  std::map<std::string, torch::Tensor> t{{"prob", torch::tensor({0.5, 1.0}, torch::kFloat64)}};
  for (int b = 0; b < 2; ++b) {
    t["b" + std::to_string(b) + ".fc1.weight"] = torch::ones({3, 4});
    t["b" + std::to_string(b) + ".fc1.bias"] = torch::ones({3});
    t["b" + std::to_string(b) + ".fc2.weight"] = torch::ones({2, 3});
    t["b" + std::to_string(b) + ".fc2.bias"] = torch::ones({2});
  }
  tweak(v, t);
  OutputArchive ar;
  for (auto& [k, x] : v) ar.write(k, x);
  for (auto& [k, x] : t) ar.write(k, x);
  save(ar, name, 2);
}
// An encoder of mobilenet_v1_025 (feature_dim 256), split at the last stage (no top tensors),
// hidden 2, 2 classes.
void encoder(
    const std::string& name,
    std::function<void(std::map<std::string, c10::IValue>&, std::map<std::string, torch::Tensor>&)>
        tweak) {
  std::map<std::string, c10::IValue> v{{"format", std::string("duet-encoder-v2")},
                                       {"arch", std::string("mobilenet_v1_025")},
                                       {"weights", std::string("default")},
                                       {"domain", std::string("sketch")},
                                       {"classes", std::string("a\nb")},
                                       {"split", int64_t(27)},
                                       {"hidden", int64_t(2)},
                                       {"kind", std::string("drawing")},
                                       {"frame", int64_t(1)},
                                       {"tta_views", int64_t(1)},
                                       {"seed", int64_t(0)}};
  std::map<std::string, torch::Tensor> t{{"head.fc1.weight", torch::ones({2, 256})},
                                         {"head.fc1.bias", torch::ones({2})},
                                         {"head.fc2.weight", torch::ones({2, 2})},
                                         {"head.fc2.bias", torch::ones({2})}};
  tweak(v, t);
  OutputArchive ar;
  for (auto& [k, x] : v) ar.write(k, x);
  for (auto& [k, x] : t) ar.write(k, x);
  save(ar, name, 1);
}
void bridge(
    const std::string& name,
    std::function<void(std::map<std::string, c10::IValue>&, std::map<std::string, torch::Tensor>&)>
        tweak) {
  std::map<std::string, c10::IValue> v{{"format", std::string("duet-bridge-v1")},
                                       {"gallery", std::string("photo")},
                                       {"queries", std::string("sketch")}};
  std::map<std::string, torch::Tensor> t{{"mu", torch::zeros({1, 3})},
                                         {"mu.sketch", torch::zeros({1, 3})},
                                         {"w.sketch", torch::ones({5, 3})},
                                         {"c.sketch", torch::zeros({1, 3})}};
  tweak(v, t);
  OutputArchive ar;
  for (auto& [k, x] : v) ar.write(k, x);
  for (auto& [k, x] : t) ar.write(k, x);
  save(ar, name, 3);
}
int main(int argc, char** argv) {
  const std::string d = argv[1];
  auto none = [](auto&, auto&) {};
  mapper(d + "/mapper-ok.bin", none);
  mapper(d + "/mapper-domains-not-a-string.bin", [](auto& v, auto&) { v["domains"] = int64_t(7); });
  mapper(d + "/mapper-hidden-negative.bin", [](auto& v, auto&) { v["hidden"] = int64_t(-5); });
  mapper(d + "/mapper-widths-huge.bin", [](auto& v, auto&) {
    v["in_dim"] = int64_t(100000);
    v["hidden"] = int64_t(100000);
  });
  mapper(d + "/mapper-shared-not-bool.bin",
         [](auto& v, auto&) { v["shared"] = std::string("yes"); });
  mapper(d + "/mapper-prob-one-value.bin",
         [](auto&, auto& t) { t["prob"] = torch::tensor({0.5}, torch::kFloat64); });
  mapper(d + "/mapper-weight-int.bin", [](auto&, auto& t) {
    t["b0.fc1.weight"] = torch::ones({3, 4}, torch::kInt64);
  });
  mapper(d + "/mapper-weight-strided.bin", [](auto&, auto& t) {
    t["b0.fc1.weight"] = torch::ones({4, 3}).t();
  });
  encoder(d + "/encoder-ok.bin", none);
  encoder(d + "/encoder-split-past-stages.bin", [](auto& v, auto&) { v["split"] = int64_t(40); });
  encoder(d + "/encoder-hidden-huge.bin", [](auto& v, auto&) { v["hidden"] = int64_t(1) << 30; });
  encoder(d + "/encoder-tta-views-huge.bin",
          [](auto& v, auto&) { v["tta_views"] = int64_t(1) << 30; });
  encoder(d + "/encoder-split-not-int.bin", [](auto& v, auto&) { v["split"] = 2.5; });
  encoder(d + "/encoder-no-classes.bin", [](auto& v, auto&) { v["classes"] = std::string(""); });
  encoder(d + "/encoder-head-double.bin",
          [](auto&, auto& t) { t["head.fc2.bias"] = torch::ones({2}, torch::kFloat64); });
  bridge(d + "/bridge-ok.bin", none);
  bridge(d + "/bridge-gallery-not-a-string.bin", [](auto& v, auto&) { v["gallery"] = int64_t(1); });
  bridge(d + "/bridge-mean-empty.bin", [](auto&, auto& t) { t["mu"] = torch::zeros({0, 3}); });
  bridge(d + "/bridge-mean-int.bin", [](auto&, auto& t) {
    t["mu"] = torch::zeros({1, 3}, torch::kInt32);
  });
}
