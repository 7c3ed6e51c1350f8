// t-SNE on data with known structure: well-separated Gaussian clusters come out separated, the
// map is trustworthy, and one seed gives one map.
#include "duet/tsne.h"

#include <gtest/gtest.h>

#include <random>

#include "duet/error.h"

using namespace duet;

namespace {
// `clusters` Gaussian blobs of `per` points in `dim` dimensions, centres 10 sigma apart.
Matrix blobs(int clusters, int per, int dim, std::vector<int>& label) {
  std::mt19937 r(3);
  std::normal_distribution<float> n01(0.f, 1.f);
  Matrix x(clusters * per, dim);
  std::vector<float> centre(static_cast<size_t>(clusters * dim));
  for (auto& v : centre) v = 10.f * n01(r);
  label.clear();
  for (int c = 0; c < clusters; ++c)
    for (int i = 0; i < per; ++i) {
      for (int d = 0; d < dim; ++d) x.row(c * per + i)[d] = centre[c * dim + d] + n01(r);
      label.push_back(c);
    }
  return x;
}

// Share of each point's k nearest map neighbours that are of its cluster.
double knn_purity(const Matrix& y, const std::vector<int>& label, int k) {
  double same = 0;
  for (int64_t i = 0; i < y.rows; ++i) {
    std::vector<std::pair<double, int64_t>> d;
    for (int64_t j = 0; j < y.rows; ++j)
      if (j != i)
        d.push_back(
            {std::pow(y.row(i)[0] - y.row(j)[0], 2) + std::pow(y.row(i)[1] - y.row(j)[1], 2), j});
    std::partial_sort(d.begin(), d.begin() + k, d.end());
    for (int m = 0; m < k; ++m) same += label[d[m].second] == label[i];
  }
  return same / (static_cast<double>(y.rows) * k);
}
}  // namespace

TEST(Tsne, SeparatedClustersStaySeparatedAndTheMapIsTrustworthy) {
  std::vector<int> label;
  const Matrix x = blobs(6, 80, 64, label);
  TsneOptions o;
  o.iterations = 500;
  const Matrix y = tsne(x, o);
  ASSERT_EQ(y.rows, x.rows);
  ASSERT_EQ(y.cols, 2);
  EXPECT_GT(knn_purity(y, label, 10), 0.98);
  EXPECT_GT(trustworthiness(x, y, 10), 0.95);
  // A random map of the same points is far less trustworthy: the measure can fail.
  Matrix noise(x.rows, 2);
  std::mt19937 r(1);
  for (auto& v : noise.data) v = std::uniform_real_distribution<float>(0, 1)(r);
  EXPECT_LT(trustworthiness(x, noise, 10), 0.7);
}

TEST(Tsne, OneSeedOneMap) {
  std::vector<int> label;
  const Matrix x = blobs(3, 40, 20, label);
  TsneOptions o;
  o.iterations = 500;
  const Matrix a = tsne(x, o), b = tsne(x, o);
  EXPECT_EQ(a.data, b.data);
  o.seed = 1;
  const Matrix c = tsne(x, o);
  EXPECT_NE(a.data, c.data);
  EXPECT_GT(knn_purity(c, label, 5), 0.98);
}

TEST(Tsne, BadInputIsAnError) {
  Matrix one(1, 4);
  EXPECT_THROW(tsne(one), Error);
  Matrix x(10, 3);
  x.data[4] = std::nanf("");
  EXPECT_THROW(tsne(x), Error);
  TsneOptions o;
  o.perplexity = 0;
  EXPECT_THROW(tsne(Matrix(10, 3), o), Error);
}
