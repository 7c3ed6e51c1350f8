// Fitting the bridge into the gallery's frozen feature space. See duet/bridge.h.
#include "duet/bridge.h"

#include <torch/torch.h>

#include <chrono>
#include <sstream>

#include "common/torch_matrix.h"
#include "duet/error.h"
#include "duet/inference.h"

namespace duet {

namespace {

Matrix column_mean(const Matrix& m) {
  Matrix mu(1, m.cols);
  std::vector<double> s(static_cast<size_t>(m.cols), 0.0);
  for (int64_t i = 0; i < m.rows; ++i)
    for (int64_t j = 0; j < m.cols; ++j) s[j] += m.row(i)[j];
  for (int64_t j = 0; j < m.cols; ++j)
    mu.data[j] = static_cast<float>(s[j] / static_cast<double>(m.rows));
  return mu;
}

}  // namespace

std::string BridgeTrainResult::to_json() const {
  std::ostringstream os;
  os << "{\"gallery_rows\": " << gallery_rows << ", \"seconds\": " << seconds
     << ", \"query_rows\": {";
  bool first = true;
  for (const auto& [d, n] : query_rows) {
    os << (first ? "" : ", ") << "\"" << d << "\": " << n;
    first = false;
  }
  os << "}, \"with_source\": {";
  first = true;
  for (const auto& [d, n] : with_source) {
    os << (first ? "" : ", ") << "\"" << d << "\": " << n;
    first = false;
  }
  os << "}}";
  return os.str();
}

BridgeTrainResult train_bridge(const std::string& gallery_domain, const BridgeRows& gallery,
                               const std::map<std::string, BridgeRows>& queries,
                               const BridgeOptions& opt, const std::string& out_file) {
  const auto t0 = std::chrono::steady_clock::now();
  if (opt.ridge <= 0 || opt.source_weight < 0 || opt.source_weight > 1)
    fail("bridge options: the ridge must be positive and the source weight within [0, 1]");
  const Matrix& fg = gallery.frozen.x;
  if (fg.rows < 2) fail("the bridge needs gallery train images (", fg.rows, " given)");
  const int64_t F = fg.cols;
  BridgeTrainResult res;
  res.gallery_rows = fg.rows;
  Bridge bridge(gallery_domain, column_mean(fg));
  Matrix g = bridge.map(gallery_domain, fg, Matrix());
  // The class means of g.
  std::map<std::string, std::vector<double>> cls_sum;
  std::map<std::string, int64_t> cls_n;
  for (int64_t i = 0; i < g.rows; ++i) {
    const auto& r = gallery.frozen.rows[static_cast<size_t>(i)];
    auto& s = cls_sum[r.cls];
    s.resize(static_cast<size_t>(F), 0.0);
    for (int64_t j = 0; j < F; ++j) s[j] += g.row(i)[j];
    ++cls_n[r.cls];
  }
  for (const auto& [domain, side] : queries) {
    const Matrix& fq = side.frozen.x;
    if (fq.rows < 2) fail("the bridge needs ", domain, " train images (", fq.rows, " given)");
    if (fq.cols != F)
      fail("the ", domain, " frozen features are ", fq.cols, "-d, the gallery's ", F, "-d");
    if (side.emb.rows != fq.rows)
      fail("the ", domain, " embeddings and frozen features differ in rows");
    if (side.source.size() != static_cast<size_t>(fq.rows))
      fail("the ", domain, " rows need one source row each (-1: none)");
    Matrix mu = column_mean(fq);
    const Matrix x = Bridge::query_input(fq, side.emb, mu);
    Matrix t(fq.rows, F);
    int64_t with_source = 0;
    for (int64_t i = 0; i < fq.rows; ++i) {
      const auto& r = side.frozen.rows[static_cast<size_t>(i)];
      auto cs = cls_sum.find(r.cls);
      if (cs == cls_sum.end())
        fail("the bridge: ", domain, " class '", r.cls, "' has no gallery train images");
      const double n = static_cast<double>(cls_n.at(r.cls));
      const int64_t src = side.source[static_cast<size_t>(i)];
      if (src >= g.rows)
        fail("internal: the bridge's source row ", src, " is past the gallery's ", g.rows);
      const double s = src >= 0 ? opt.source_weight : 0.0;
      with_source += src >= 0;
      for (int64_t j = 0; j < F; ++j)
        t.row(i)[j] =
            static_cast<float>((1 - s) * cs->second[j] / n + (src >= 0 ? s * g.row(src)[j] : 0.0));
    }
    // W = (Xc' Xc + lambda I)^-1 Xc' Tc, c = mean(T) - mean(X) W; in double.
    torch::NoGradGuard ng;
    auto X = to_tensor(x).to(torch::kFloat64), T = to_tensor(t).to(torch::kFloat64);
    auto xm = X.mean(0, true), tm = T.mean(0, true);
    auto Xc = X - xm, Tc = T - tm;
    auto A = Xc.t().mm(Xc) + opt.ridge * torch::eye(X.size(1), torch::kFloat64);
    auto W = torch::linalg_solve(A, Xc.t().mm(Tc));
    auto c = tm - xm.mm(W);
    bridge.add_query(domain, std::move(mu), from_tensor(W), from_tensor(c));
    res.query_rows[domain] = fq.rows;
    res.with_source[domain] = with_source;
  }
  bridge.save(out_file);
  res.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return res;
}

}  // namespace duet
