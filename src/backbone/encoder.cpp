// Backbone encoders and the ImageNet classifier behind the torch-free duet/encoder.h.
#include "duet/encoder.h"

#include <algorithm>
#include <cstdlib>
#include <sstream>
#include <thread>

#include "backbone/nets.h"
#include "duet/dist.h"
#include "duet/error.h"
#include "duet/fileio.h"

namespace duet {

int resolve_threads(int threads) {
  if (threads > 0) return threads;
  // Data-parallel workers on one machine (duet/dist.h) split its cores.
  return std::max(1, static_cast<int>(std::thread::hardware_concurrency()) / dist::local_world());
}

int set_threads(int threads) {
  int n = resolve_threads(threads);
  torch::set_num_threads(n);
  return n;
}

std::vector<std::string> backbone_archs() { return {"mobilenet_v2", "mobilenet_v1_025", "vgg16"}; }

namespace {

// Inputs go in channels-last: LibTorch's CPU convolutions (mkldnn) run faster on NHWC here.
torch::Tensor input_tensor(int64_t n, const float* x, int s, bool channels_last) {
  auto t = torch::from_blob(const_cast<float*>(x), {n, 3, s, s}, torch::kFloat32);
  return channels_last ? t.contiguous(torch::MemoryFormat::ChannelsLast) : t;
}

class BackboneEncoder : public Encoder {
 public:
  BackboneEncoder(std::shared_ptr<BackboneNetImpl> net, std::string source, bool channels_last,
                  int workers)
      : net_(std::move(net)),
        source_(std::move(source)),
        channels_last_(channels_last),
        workers_(workers) {}
  int input_size() const override { return net_->input_size; }
  int64_t dim() const override { return net_->feature_dim; }
  void encode(int64_t n, const float* x, float* out) override {
    const int S = net_->input_size;
    const int64_t D = net_->feature_dim;
    for_each_image(n, workers_, [&](int64_t i) {
      auto f = net_->features(input_tensor(1, x + i * 3 * S * S, S, channels_last_)).contiguous();
      std::copy(f.data_ptr<float>(), f.data_ptr<float>() + D, out + i * D);
    });
  }
  std::string source() const override { return source_; }

 private:
  std::shared_ptr<BackboneNetImpl> net_;
  std::string source_;
  bool channels_last_;
  int workers_;
};

class BackboneClassifier : public Classifier {
 public:
  BackboneClassifier(std::shared_ptr<BackboneNetImpl> net, std::vector<std::string> labels)
      : net_(std::move(net)), labels_(std::move(labels)) {}
  int input_size() const override { return net_->input_size; }
  std::vector<std::vector<Prediction>> classify(int64_t n, const float* x, int k) override {
    torch::NoGradGuard ng;
    auto p =
        torch::softmax(net_->logits(net_->features(input_tensor(n, x, net_->input_size, true))), 1);
    auto top = p.topk(std::min<int64_t>(k, p.size(1)), 1);
    auto vals = std::get<0>(top), idx = std::get<1>(top);
    std::vector<std::vector<Prediction>> out(n);
    for (int64_t i = 0; i < n; ++i)
      for (int64_t j = 0; j < vals.size(1); ++j) {
        Prediction pr;
        pr.index = static_cast<int>(idx[i][j].item<int64_t>());
        pr.prob = vals[i][j].item<float>();
        pr.label = pr.index < static_cast<int>(labels_.size()) ? labels_[pr.index]
                                                               : std::to_string(pr.index);
        out[i].push_back(pr);
      }
    return out;
  }

 private:
  std::shared_ptr<BackboneNetImpl> net_;
  std::vector<std::string> labels_;
};

}  // namespace

std::unique_ptr<Encoder> open_backbone(const BackboneOptions& opt) {
  auto net = open_backbone_net(opt.arch, opt.weights);
  std::string w = opt.weights.empty() ? "default" : opt.weights;
  return std::make_unique<BackboneEncoder>(net, opt.arch + ":" + w.substr(w.find_last_of('/') + 1),
                                           opt.channels_last, resolve_threads(opt.threads));
}

std::unique_ptr<Classifier> open_classifier(const BackboneOptions& opt,
                                            const std::string& labels_file) {
  set_threads(opt.threads);
  auto net = open_backbone_net(opt.arch, opt.weights);
  std::vector<std::string> labels;
  std::istringstream in(read_file(labels_file));
  for (std::string line; std::getline(in, line);) labels.push_back(line);
  if (static_cast<int>(labels.size()) != net->num_classes)
    fail(labels_file, " has ", labels.size(), " labels but ", opt.arch, " outputs ",
         net->num_classes, " classes");
  return std::make_unique<BackboneClassifier>(net, std::move(labels));
}

}  // namespace duet
