// bench/embed_speed — images/second of MobileNetV2 feature extraction: duet (LibTorch) against
// OpenCV DNN running the same network (rebuilt layer by layer from the same dequantized TFLite
// weights), side by side in one run. Prints a table and writes JSON.
//
//   embed_speed [--images N] [--json out.json] [--data DIR] [--weights FILE]
//
// Both sides get the same pre-decoded, preprocessed tensors: this times the networks, not JPEG
// decoding (the end-to-end `duet embed` row adds decoding, overlapped with inference).
#include <CLI/CLI.hpp>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <opencv2/dnn.hpp>
#include <thread>

#include "duet/dataset.h"
#include "duet/embed.h"
#include "duet/encoder.h"
#include "duet/error.h"
#include "duet/image.h"
#include "duet/paths.h"
#include "duet/progress.h"
#include "duet/runtime.h"
#include "duet/tflite.h"

using namespace duet;
using Clock = std::chrono::steady_clock;

namespace {

// Rebuilds the TFLite graph (conv, depthwise conv, add, average pool) as an OpenCV DNN network
// whose output is the pooled feature vector.
cv::dnn::Net opencv_net(const std::string& path) {
  tflite::Model m = tflite::read(path);
  cv::dnn::Net net;
  net.setInputsNames({"data"});
  std::map<int, int> producer;  // tensor index -> layer id
  producer[m.inputs[0]] = 0;
  int n = 0;
  for (const auto& op : m.ops) {
    std::string name = "op" + std::to_string(n++);
    if (op.type == "CONV_2D" || op.type == "DEPTHWISE_CONV_2D") {
      const auto& w = m.tensors[op.inputs[1]];
      const auto& b = m.tensors[op.inputs[2]];
      bool dw = op.type == "DEPTHWISE_CONV_2D";
      int o = dw ? w.shape[3] : w.shape[0], kh = w.shape[1], kw = w.shape[2],
          in = dw ? 1 : w.shape[3];
      cv::Mat wt({o, in, kh, kw}, CV_32F);
      float* dst = wt.ptr<float>();
      for (int a = 0; a < o; ++a)
        for (int c = 0; c < in; ++c)
          for (int y = 0; y < kh; ++y)
            for (int x = 0; x < kw; ++x)
              dst[((a * in + c) * kh + y) * kw + x] =
                  dw ? w.data[(y * kw + x) * o + a] : w.data[((a * kh + y) * kw + x) * in + c];
      cv::Mat bias(1, o, CV_32F);
      std::copy(b.data.begin(), b.data.end(), bias.ptr<float>());
      cv::dnn::LayerParams lp;
      lp.name = name;
      lp.type = "Convolution";
      lp.set("kernel_h", kh);
      lp.set("kernel_w", kw);
      lp.set("stride_h", op.stride_h);
      lp.set("stride_w", op.stride_w);
      lp.set("num_output", o);
      lp.set("group", dw ? o : 1);
      lp.set("bias_term", true);
      // TF 'SAME' for the even input sizes of this network: the odd pixel of padding goes
      // bottom/right, which OpenCV's convolution cannot express: a Padding layer does it.
      int total = op.padding == tflite::Padding::Same ? std::max(kh - op.stride_h, 0) : 0;
      int src = producer.at(op.inputs[0]);
      if (total % 2) {
        cv::dnn::LayerParams pp;
        const int pads[8] = {
            0, 0, 0, 0, total / 2, total - total / 2, total / 2, total - total / 2};
        pp.set("paddings", cv::dnn::DictValue::arrayInt(pads, 8));
        int pid = net.addLayer(name + "_pad", "Padding", pp);
        net.connect(src, 0, pid, 0);
        src = pid;
        total = 0;
      }
      lp.set("pad", total / 2);
      lp.blobs = {wt, bias};
      int id = net.addLayer(name, "Convolution", lp);
      net.connect(src, 0, id, 0);
      if (op.activation == tflite::Activation::Relu6) {
        cv::dnn::LayerParams r;
        r.set("min_value", 0.0f);
        r.set("max_value", 6.0f);
        int rid = net.addLayer(name + "_relu6", "ReLU6", r);
        net.connect(id, 0, rid, 0);
        id = rid;
      }
      producer[op.outputs[0]] = id;
    } else if (op.type == "ADD") {
      cv::dnn::LayerParams lp;
      lp.set("operation", "sum");
      int id = net.addLayer(name, "Eltwise", lp);
      net.connect(producer.at(op.inputs[0]), 0, id, 0);
      net.connect(producer.at(op.inputs[1]), 0, id, 1);
      producer[op.outputs[0]] = id;
    } else if (op.type == "AVERAGE_POOL_2D") {
      cv::dnn::LayerParams lp;
      lp.set("pool", "ave");
      lp.set("global_pooling", true);
      int id = net.addLayer(name, "Pooling", lp);
      net.connect(producer.at(op.inputs[0]), 0, id, 0);
      break;  // pooled features: the embedding
    }
  }
  net.setPreferableBackend(cv::dnn::DNN_BACKEND_OPENCV);
  net.setPreferableTarget(cv::dnn::DNN_TARGET_CPU);
  return net;
}

struct Row {
  std::string method;
  int threads, batch;
  double images_per_s;
};

}  // namespace

int main(int argc, char** argv) {
  init_runtime();
  CLI::App app{
      "MobileNetV2 embedding speed: duet (LibTorch) vs OpenCV DNN, same weights, same inputs"};
  int images = 256, repeat = 2;
  std::string json_out = "embed_speed.json", data, weights;
  app.add_option("--images", images, "images to embed per configuration")->capture_default_str();
  app.add_option("--repeat", repeat, "timings per configuration; the best counts")
      ->capture_default_str();
  app.add_option("--json", json_out, "where to write the JSON results")->capture_default_str();
  app.add_option("--data", data, "dataset folder (default: shared Sketchy subset)");
  app.add_option("--weights", weights, "MobileNetV2 .tflite (default: shared weights)");
  CLI11_PARSE(app, argc, argv);
  try {
    set_quiet(true);
    if (data.empty()) data = default_data_dir();
    if (weights.empty()) weights = default_weights_file("mobilenet_v2_1.0_224_quant.tflite");
    Dataset d = load_folder(data);
    auto photos = d.select("photo");
    if (static_cast<int>(photos.size()) > images) photos.resize(images);
    const int n = static_cast<int>(photos.size()), S = 224, per = 3 * S * S;
    std::vector<float> x(static_cast<size_t>(n) * per);
    for (int i = 0; i < n; ++i)
      to_chw(load_rgb(d.abs_path(photos[i])), S, x.data() + static_cast<size_t>(i) * per);
    std::fprintf(stderr, "%d images decoded\n", n);

    std::vector<Row> rows;
    std::vector<float> ref;  // duet features, to check OpenCV computes the same thing
    for (int threads : {1, 2}) {
      for (bool cl : {true, false}) {
        BackboneOptions bo;
        bo.weights = weights;
        bo.threads = threads;
        bo.channels_last = cl;
        auto enc = open_backbone(bo);
        for (int batch : {32}) {  // duet encodes image by image inside, `threads` images at once
          std::vector<float> y(static_cast<size_t>(n) * enc->dim());
          enc->encode(std::min(batch, n), x.data(), y.data());  // warm-up
          double s = 1e30;  // best of `repeat` timings: this machine is noisy
          for (int r = 0; r < repeat; ++r) {
            auto t0 = Clock::now();
            for (int i = 0; i < n; i += batch)
              enc->encode(std::min(batch, n - i), x.data() + static_cast<size_t>(i) * per,
                          y.data() + static_cast<size_t>(i) * enc->dim());
            s = std::min(s, std::chrono::duration<double>(Clock::now() - t0).count());
          }
          rows.push_back(
              {std::string("duet libtorch") + (cl ? " NHWC" : " NCHW"), threads, 1, n / s});
          std::fprintf(stderr, "%-22s threads=%d batch=%2d %7.2f img/s\n",
                       rows.back().method.c_str(), threads, batch, n / s);
          if (ref.empty()) ref = y;
        }
      }
    }
    auto net = opencv_net(weights);
    for (int threads : {1, 2}) {
      cv::setNumThreads(threads);
      for (int batch : {1, 8}) {
        std::vector<float> y(static_cast<size_t>(n) * 1280);
        auto run = [&](int i, int b) {
          cv::Mat blob({b, 3, S, S}, CV_32F, x.data() + static_cast<size_t>(i) * per);
          net.setInput(blob);
          cv::Mat out = net.forward();
          std::copy(out.ptr<float>(), out.ptr<float>() + static_cast<size_t>(b) * 1280,
                    y.data() + static_cast<size_t>(i) * 1280);
        };
        run(0, std::min(batch, n));  // warm-up
        double s = 1e30;
        for (int r = 0; r < repeat; ++r) {
          auto t0 = Clock::now();
          for (int i = 0; i < n; i += batch) run(i, std::min(batch, n - i));
          s = std::min(s, std::chrono::duration<double>(Clock::now() - t0).count());
        }
        rows.push_back({"opencv dnn", threads, batch, n / s});
        std::fprintf(stderr, "%-22s threads=%d batch=%2d %7.2f img/s\n", "opencv dnn", threads,
                     batch, n / s);
        double maxdiff = 0;
        for (size_t i = 0; i < y.size(); ++i)
          maxdiff = std::max(maxdiff, static_cast<double>(std::abs(y[i] - ref[i])));
        if (maxdiff > 1e-2)
          fail("OpenCV DNN features differ from duet's by ", maxdiff, ": the rebuild is wrong");
      }
    }
    // End to end: `duet embed`'s path (decode + preprocess overlapped with inference).
    {
      BackboneOptions bo;
      bo.weights = weights;
      auto enc = open_backbone(bo);
      auto t0 = Clock::now();
      embed_samples(*enc, d, photos, EmbedOptions{});
      double s = std::chrono::duration<double>(Clock::now() - t0).count();
      rows.push_back({"duet embed (with decoding)", 0, 32, n / s});
    }
    auto best = [&](const std::string& prefix) {
      double b = 0;
      for (const auto& r : rows)
        if (r.method.rfind(prefix, 0) == 0) b = std::max(b, r.images_per_s);
      return b;
    };
    std::printf("%-28s %7s %5s %10s\n", "method", "threads", "batch", "images/s");
    for (const auto& r : rows)
      std::printf("%-28s %7d %5d %10.2f\n", r.method.c_str(), r.threads, r.batch, r.images_per_s);
    double ratio = best("duet libtorch") / best("opencv dnn");
    std::printf("best duet / best opencv dnn: %.2fx (%d images, %u hardware threads)\n", ratio, n,
                std::thread::hardware_concurrency());
    nlohmann::json j;
    j["images"] = n;
    j["repeat"] = repeat;
    j["ratio_best_duet_over_best_opencv"] = ratio;
    for (const auto& r : rows)
      j["rows"].push_back({{"method", r.method},
                           {"threads", r.threads},
                           {"batch", r.batch},
                           {"images_per_s", r.images_per_s}});
    std::ofstream(json_out) << j.dump(2) << "\n";
    std::printf("wrote %s\n", json_out.c_str());
  } catch (const Error& e) {
    std::fprintf(stderr, "embed_speed: error: %s\n", e.what());
    return 1;
  }
  return 0;
}
