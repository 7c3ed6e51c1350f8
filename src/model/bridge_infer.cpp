// The bridge at query time: its maps, its file. See duet/inference.h (and duet/bridge.h, which
// fits it).
#include <torch/torch.h>

#include <cmath>
#include <sstream>

#include "common/torch_archive.h"
#include "common/torch_matrix.h"
#include "duet/error.h"
#include "duet/fileio.h"
#include "duet/inference.h"

namespace duet {

namespace {

constexpr const char* kBridgeFormat = "duet-bridge-v1";

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

}  // namespace

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

Matrix Bridge::query_input(const Matrix& frozen, const Matrix& emb, const Matrix& mu) {
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

}  // namespace duet
