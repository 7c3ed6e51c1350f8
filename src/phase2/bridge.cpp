// The bridge into the gallery's frozen feature space. See duet/bridge.h.
#include "duet/bridge.h"

#include <torch/torch.h>

#include <chrono>
#include <cmath>
#include <sstream>

#include "common/torch_archive.h"
#include "duet/error.h"
#include "duet/fileio.h"

namespace duet {

namespace {

// Each row minus mu (if given), then at unit length (a zero row stays zero).
void centre_unit(float* x, int64_t n, int64_t d, const float* mu) {
  for (int64_t i = 0; i < n; ++i) {
    float* r = x + i * d;
    double s = 0;
    for (int64_t j = 0; j < d; ++j) {
      if (mu) r[j] -= mu[j];
      s += static_cast<double>(r[j]) * r[j];
    }
    const float inv = s > 0 ? static_cast<float>(1.0 / std::sqrt(s)) : 0.f;
    for (int64_t j = 0; j < d; ++j) r[j] *= inv;
  }
}

Matrix column_mean(const Matrix& m) {
  Matrix mu(1, m.cols);
  std::vector<double> s(static_cast<size_t>(m.cols), 0.0);
  for (int64_t i = 0; i < m.rows; ++i)
    for (int64_t j = 0; j < m.cols; ++j) s[j] += m.row(i)[j];
  for (int64_t j = 0; j < m.cols; ++j)
    mu.data[j] = static_cast<float>(s[j] / static_cast<double>(m.rows));
  return mu;
}

// A query domain's regression input: [unit(a - mu_q), unit(e)].
Matrix query_input(const Matrix& frozen, const Matrix& emb, const Matrix& mu) {
  const int64_t n = frozen.rows, F = frozen.cols, D = emb.cols;
  Matrix x(n, F + D);
  for (int64_t i = 0; i < n; ++i) {
    std::copy(frozen.row(i), frozen.row(i) + F, x.row(i));
    std::copy(emb.row(i), emb.row(i) + D, x.row(i) + F);
    centre_unit(x.row(i), 1, F, mu.data.data());
    centre_unit(x.row(i) + F, 1, D, nullptr);
  }
  return x;
}

torch::Tensor to_tensor(const Matrix& m) {
  return torch::from_blob(const_cast<float*>(m.data.data()), {m.rows, m.cols}, torch::kFloat32)
      .clone();
}
Matrix from_tensor(const torch::Tensor& t) {
  auto c = t.to(torch::kFloat32).contiguous();
  Matrix m(c.size(0), c.size(1));
  std::copy(c.data_ptr<float>(), c.data_ptr<float>() + c.numel(), m.data.begin());
  return m;
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

Bridge::Bridge(std::string gallery_domain, Matrix mu_gallery)
    : gallery_(std::move(gallery_domain)), mu_g_(std::move(mu_gallery)) {}

void Bridge::add_query(const std::string& domain, Matrix mu, Matrix w, Matrix c) {
  if (domain == gallery_) fail("internal: the gallery domain has no query map");
  if (mu.cols != dim() || w.cols != dim() || c.cols != dim() || w.rows <= dim())
    fail("internal: a bridge map of the wrong shape for ", domain);
  q_[domain] = Query{std::move(mu), std::move(w), std::move(c)};
}

std::vector<std::string> Bridge::domains() const {
  std::vector<std::string> d{gallery_};
  for (const auto& [name, q] : q_) d.push_back(name);
  return d;
}

Matrix Bridge::map(const std::string& domain, const Matrix& frozen, const Matrix& emb) const {
  const int64_t F = dim();
  if (frozen.cols != F) fail("the bridge takes ", F, "-d frozen features, got ", frozen.cols, "-d");
  if (domain == gallery_) {
    Matrix g = frozen;
    centre_unit(g.data.data(), g.rows, F, mu_g_.data.data());
    return g;
  }
  auto it = q_.find(domain);
  if (it == q_.end()) fail("the bridge has no map for domain '", domain, "'");
  const Query& q = it->second;
  if (emb.rows != frozen.rows || emb.cols != q.w.rows - F)
    fail("the bridge's ", domain, " map takes ", q.w.rows - F, "-d embeddings, got ", emb.rows,
         " x ", emb.cols);
  const Matrix x = query_input(frozen, emb, q.mu);
  Matrix out(x.rows, F);
  for (int64_t i = 0; i < x.rows; ++i) {
    // One row at a time, in double: a row's result does not depend on the rows beside it.
    std::vector<double> acc(q.c.data.begin(), q.c.data.end());
    const float* xi = x.row(i);
    for (int64_t k = 0; k < x.cols; ++k) {
      const double v = xi[k];
      if (v == 0) continue;
      const float* wk = q.w.row(k);
      for (int64_t j = 0; j < F; ++j) acc[j] += v * wk[j];
    }
    for (int64_t j = 0; j < F; ++j) out.row(i)[j] = static_cast<float>(acc[j]);
  }
  centre_unit(out.data.data(), out.rows, F, nullptr);
  return out;
}

void Bridge::save(const std::string& file) const {
  torch::serialize::OutputArchive ar;
  ar.write("format", c10::IValue(std::string(kBridgeFormat)));
  ar.write("gallery", c10::IValue(gallery_));
  std::string names;
  for (const auto& [d, q] : q_) names += (names.empty() ? "" : "\n") + d;
  ar.write("queries", c10::IValue(names));
  ar.write("mu", to_tensor(mu_g_));
  for (const auto& [d, q] : q_) {
    ar.write("mu." + d, to_tensor(q.mu));
    ar.write("w." + d, to_tensor(q.w));
    ar.write("c." + d, to_tensor(q.c));
  }
  std::ostringstream bytes;
  ar.save_to(bytes);
  write_file_atomic(file, bytes.str());
}

std::unique_ptr<Bridge> open_bridge(const std::string& file) {
  if (!file_exists(file)) fail(file, ": no such bridge file");
  torch::serialize::InputArchive ar;
  try {
    ar.load_from(file);
  } catch (const std::exception&) {
    fail(file, ": not a duet bridge file (damaged?)");
  }
  c10::IValue v;
  if (!ar.try_read("format", v) || !v.isString() || v.toStringRef() != kBridgeFormat)
    fail(file, ": not a ", kBridgeFormat, " file");
  // Every value and tensor checked as it is read (common/torch_archive.h).
  std::unique_ptr<Bridge> b;
  try {
    auto read_matrix = [&](const std::string& key) {
      const torch::Tensor t = archive::tensor(ar, key, file, "bridge");
      if (t.dim() != 2) fail(file, ": no matrix '", key, "' (damaged?)");
      return from_tensor(t);
    };
    Matrix mu = read_matrix("mu");
    if (mu.rows != 1 || mu.cols < 1)
      fail(file, ": the gallery's mean has the wrong shape (damaged?)");
    b = std::make_unique<Bridge>(archive::str(ar, "gallery", file, "bridge"), std::move(mu));
    std::istringstream names(archive::str(ar, "queries", file, "bridge"));
    for (std::string d; std::getline(names, d);) {
      Matrix mu = read_matrix("mu." + d), w = read_matrix("w." + d), c = read_matrix("c." + d);
      if (mu.rows != 1 || c.rows != 1 || mu.cols != b->dim() || w.cols != b->dim() ||
          c.cols != b->dim() || w.rows <= b->dim())
        fail(file, ": the ", d, " map has the wrong shape");
      b->add_query(d, std::move(mu), std::move(w), std::move(c));
    }
  } catch (const c10::Error& e) {
    fail(file, ": damaged bridge file (", archive::first_line(e), ")");
  }
  return b;
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
    const Matrix x = query_input(fq, side.emb, mu);
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
