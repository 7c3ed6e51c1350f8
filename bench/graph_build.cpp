// bench/graph_build — how long the diffusion's gallery graph takes to build as the gallery grows,
// all pairs (exact) against the inverted-list neighbours used above kGraphExactLimit
// (duet/diffusion.h), and how many of each row's exact k nearest the list graph keeps (500 rows
// checked against all pairs). Prints a table and writes JSON.
//
//   graph_build [--sizes 20000,100000] [--exact-up-to 20000] [--emb E.npy] [--json out.json]
//
// Rows: the first N of --emb, or synthetic 1024-d rows of 125 classes shaped like Phase I
// embeddings (ReLU of a class centre plus noise of the same scale).
#include <faiss/IndexFlat.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <random>

#include "duet/diffusion.h"
#include "duet/embeddings.h"
#include "duet/error.h"
#include "duet/fileio.h"
#include "duet/runtime.h"
#include "duet/score.h"

using namespace duet;

int main(int argc, char** argv) {
  init_runtime();
  CLI::App app{"bench/graph_build: gallery graph build time and neighbour recall by gallery size"};
  std::vector<int64_t> sizes = {20000, 100000};
  int64_t exact_up_to = 20000;
  std::string emb, json_out;
  app.add_option("--sizes", sizes, "gallery sizes")->delimiter(',');
  app.add_option("--exact-up-to", exact_up_to, "also time the all-pairs graph up to this size")
      ->capture_default_str();
  app.add_option("--emb", emb, "embeddings .npy (default: synthetic 1024-d classes)");
  app.add_option("--json", json_out, "write the rows here");
  CLI11_PARSE(app, argc, argv);
  try {
    Embeddings file;
    if (!emb.empty()) file = read_embeddings(emb);
    nlohmann::json rows = nlohmann::json::array();
    std::printf("%-9s %-10s %-10s %-10s %-10s\n", "gallery", "exact_s", "lists_s", "recall@10",
                "edges");
    for (int64_t n : sizes) {
      Matrix x;
      if (!emb.empty()) {
        if (n > file.x.rows) fail(emb, " has ", file.x.rows, " rows, fewer than ", n);
        x = Matrix(n, file.x.cols);
        std::copy(file.x.data.begin(), file.x.data.begin() + n * file.x.cols, x.data.begin());
      } else {
        const int64_t d = 1024, C = 125;
        std::mt19937 rng(1);
        std::normal_distribution<float> g;
        Matrix centre(C, d);
        for (float& v : centre.data) v = g(rng);
        x = Matrix(n, d);
        for (int64_t i = 0; i < n; ++i)
          for (int64_t j = 0; j < d; ++j)
            x.row(i)[j] = std::max(0.f, centre.row(i % C)[j] + g(rng));
      }
      DiffusionOptions o;
      double exact_s = -1;
      if (n <= exact_up_to) {
        auto t = std::chrono::steady_clock::now();
        GalleryGraph exact(x, o, n);
        exact_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
      }
      auto t = std::chrono::steady_clock::now();
      GalleryGraph lists(x, o, 0);
      const double lists_s =
          std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
      // Each checked row's exact k nearest (itself aside) among its list-graph neighbours.
      const Matrix u = l2_normalized(x);
      faiss::IndexFlatIP all(u.cols);
      all.add(n, u.data.data());
      const int64_t m = std::min<int64_t>(500, n), k = o.k;
      Matrix q(m, u.cols);
      for (int64_t i = 0; i < m; ++i)
        std::copy(u.row(i * (n / m)), u.row(i * (n / m)) + u.cols, q.row(i));
      std::vector<float> sim(static_cast<size_t>(m * (k + 1)));
      std::vector<faiss::Index::idx_t> nb(sim.size());
      all.search(m, q.data.data(), k + 1, sim.data(), nb.data());
      int64_t hit = 0, want = 0;
      for (int64_t i = 0; i < m; ++i) {
        const int64_t r = i * (n / m);
        const auto b = lists.csr_col().begin() + lists.csr_start()[r],
                   e = lists.csr_col().begin() + lists.csr_start()[r + 1];
        for (int64_t j = 0, taken = 0; j <= k && taken < k; ++j) {
          if (nb[i * (k + 1) + j] == r || nb[i * (k + 1) + j] < 0) continue;
          ++taken, ++want;
          hit += std::find(b, e, nb[i * (k + 1) + j]) != e;
        }
      }
      const double recall = static_cast<double>(hit) / static_cast<double>(want);
      std::printf("%-9lld %-10.1f %-10.1f %-10.3f %-10zu\n", static_cast<long long>(n), exact_s,
                  lists_s, recall, lists.csr_col().size());
      std::fflush(stdout);
      rows.push_back({{"gallery", n},
                      {"exact_s", exact_s},
                      {"lists_s", lists_s},
                      {"recall@10", recall},
                      {"edges", lists.csr_col().size()},
                      {"data", emb.empty() ? "synthetic" : emb}});
    }
    if (!json_out.empty())
      write_file_atomic(json_out, nlohmann::json{{"rows", rows}}.dump(2) + "\n");
  } catch (const Error& e) {
    std::fprintf(stderr, "graph_build: error: %s\n", e.what());
    return 1;
  }
  return 0;
}
