// bench/tsne_speed — how long a t-SNE map takes as the point count grows (duet/tsne.h), and how
// trustworthy it is. Prints a table and writes JSON.
//
//   tsne_speed [--sizes 1000,10000] [--emb E.npy] [--iterations 1000] [--json out.json]
//
// Points: the rows of --emb (the first N of each size), or synthetic 1024-d rows of 125 Gaussian
// classes (the shape of Phase I embeddings). Trustworthiness (k = 10) is measured on up to 3000
// points (it is exact and quadratic).
#include <CLI/CLI.hpp>
#include <chrono>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <random>

#include "duet/embeddings.h"
#include "duet/error.h"
#include "duet/fileio.h"
#include "duet/runtime.h"
#include "duet/tsne.h"

using namespace duet;

int main(int argc, char** argv) {
  init_runtime();
  CLI::App app{"bench/tsne_speed: t-SNE time and trustworthiness by point count"};
  std::vector<int64_t> sizes = {1000, 10000};
  std::string emb, json_out;
  TsneOptions opt;
  app.add_option("--sizes", sizes, "point counts")->delimiter(',');
  app.add_option("--emb", emb, "embeddings .npy to map (default: synthetic 1024-d classes)");
  app.add_option("--iterations", opt.iterations, "gradient steps")->capture_default_str();
  app.add_option("--json", json_out, "write the rows here");
  CLI11_PARSE(app, argc, argv);
  try {
    nlohmann::json rows = nlohmann::json::array();
    std::printf("%-8s %-10s %-10s %-16s\n", "points", "dims", "seconds", "trustworthiness");
    for (int64_t n : sizes) {
      Matrix x;
      if (!emb.empty()) {
        Matrix all = read_npy(emb);
        if (all.rows < n) fail(emb, " has ", all.rows, " rows, fewer than ", n);
        x = Matrix(n, all.cols);
        std::copy(all.data.begin(), all.data.begin() + n * all.cols, x.data.begin());
      } else {
        std::mt19937 r(1);
        std::normal_distribution<float> n01(0.f, 1.f);
        const int dim = 1024, classes = 125;
        std::vector<float> centre(static_cast<size_t>(classes) * dim);
        for (auto& v : centre) v = 0.5f * n01(r);
        x = Matrix(n, dim);
        for (int64_t i = 0; i < n; ++i)
          for (int d = 0; d < dim; ++d)
            x.row(i)[d] = centre[(i % classes) * dim + d] + 0.3f * n01(r);
      }
      auto t0 = std::chrono::steady_clock::now();
      const Matrix y = tsne(x, opt);
      const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      double trust = -1;
      if (n <= 3000) trust = trustworthiness(x, y, 10);
      std::printf("%-8lld %-10lld %-10.1f %-16s\n", static_cast<long long>(n),
                  static_cast<long long>(x.cols), s,
                  trust < 0 ? "-" : std::to_string(trust).substr(0, 5).c_str());
      rows.push_back(
          {{"points", n},
           {"dims", x.cols},
           {"seconds", s},
           {"iterations", opt.iterations},
           {"trustworthiness_k10", trust < 0 ? nlohmann::json() : nlohmann::json(trust)}});
    }
    if (!json_out.empty())
      write_file_atomic(json_out, nlohmann::json{{"rows", rows}}.dump(2) + "\n");
  } catch (const Error& e) {
    std::fprintf(stderr, "tsne_speed: error: %s\n", e.what());
    return 1;
  }
  return 0;
}
