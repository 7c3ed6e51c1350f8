#include "duet/fusion.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "duet/error.h"

namespace duet {

void sharpen_row(const float* p, int64_t C, double t, float* out) {
  if (t == 1.0) {
    std::copy(p, p + C, out);
    return;
  }
  // The default t = 2 as a product: pow's own result for a float's square (exact in double), at
  // a fraction of its cost in the compressed tier, which sharpens every row it scores.
  double sum = 0;
  for (int64_t j = 0; j < C; ++j) {
    const double x = std::max(p[j], 0.f);
    sum += out[j] = static_cast<float>(t == 2.0 ? x * x : std::pow(x, t));
  }
  if (sum > 0)
    for (int64_t j = 0; j < C; ++j) out[j] = static_cast<float>(out[j] / sum);
}

void profile_row(const float* p, int64_t C, float* out) {
  double mean = 0;
  for (int64_t j = 0; j < C; ++j) mean += out[j] = std::log(std::max(p[j], 1e-6f));
  mean /= static_cast<double>(C);
  double norm2 = 0;
  for (int64_t j = 0; j < C; ++j) {
    out[j] = static_cast<float>(out[j] - mean);
    norm2 += static_cast<double>(out[j]) * out[j];
  }
  const float n2 = static_cast<float>(norm2);
  const float inv = n2 > 0 ? 1.0f / std::sqrt(n2) : 1.0f;
  for (int64_t j = 0; j < C; ++j) out[j] *= inv;
}

Matrix profiles(const Matrix& post) {
  Matrix out(post.rows, post.cols);
  for (int64_t i = 0; i < post.rows; ++i) profile_row(post.row(i), post.cols, out.row(i));
  return out;
}

namespace {
Matrix sharpened(const Matrix& post, double t) {
  Matrix out(post.rows, post.cols);
  for (int64_t i = 0; i < post.rows; ++i) sharpen_row(post.row(i), post.cols, t, out.row(i));
  return out;
}
}  // namespace

FusedScore::FusedScore(Matrix code_g, Matrix post_g, std::function<double(double)> same_prob,
                       const FusionOptions& opt, bool derive_rows, Matrix bridge_g)
    : ng_(code_g.rows), same_prob_(std::move(same_prob)), opt_(opt) {
  if (code_g.rows != post_g.rows)
    fail("fusion needs one code and one posterior per gallery item: ", code_g.rows, " codes, ",
         post_g.rows, " posteriors");
  if (opt.photo_power <= 0 || opt.unseen_gate < 0 || opt.unseen_post < 0 ||
      opt.unseen_profile < 0 || opt.bridge < 0 || opt.unseen_bridge < 0)
    fail("fusion options must be non-negative (photo power positive)");
  if (opt.uses_bridge()) {
    if (bridge_g.rows != code_g.rows || bridge_g.cols < 1)
      fail("the bridge term needs one bridge row per gallery item: ", bridge_g.rows, " rows of ",
           bridge_g.cols, " for ", code_g.rows,
           " items (a model without a bridge cannot weigh it)");
    bridge_p_ = prepare_gallery(std::move(bridge_g), Metric::Dot);
  }
  // The prepared arrays are what score_rows reads too. The profiles are at unit length already,
  // so their cosine is their dot product.
  if (!derive_rows) {
    sharp_p_ = prepare_gallery(sharpened(post_g, opt.photo_power), Metric::Dot);
    if (opt.unseen_gate > 0) profile_p_ = prepare_gallery(profiles(post_g), Metric::Dot);
  }
  code_p_ = prepare_gallery(std::move(code_g), Metric::Euclidean);
  post_p_ = prepare_gallery(std::move(post_g), Metric::Dot);
}

void FusedScore::sharpened_rows(int64_t i0, int64_t i1, float* out) const {
  const int64_t C = post_p_.g->cols;
  for (int64_t i = i0; i < i1; ++i, out += C) {
    if (sharp_p_.g)
      std::copy(sharp_p_.g->row(i), sharp_p_.g->row(i) + C, out);
    else
      sharpen_row(post_p_.g->row(i), C, opt_.photo_power, out);
  }
}

void FusedScore::profile_rows(int64_t i0, int64_t i1, float* out) const {
  if (!(opt_.unseen_gate > 0)) fail("internal: profiles are kept only with the unseen-class gate");
  const int64_t C = post_p_.g->cols;
  for (int64_t i = i0; i < i1; ++i, out += C) {
    if (profile_p_.g)
      std::copy(profile_p_.g->row(i), profile_p_.g->row(i) + C, out);
    else
      profile_row(post_p_.g->row(i), C, out);
  }
}

float FusedScore::gate_evidence(const float* post_q) const {
  const int64_t C = post_p_.g->cols;
  Matrix one(1, C);
  std::copy(post_q, post_q + C, one.data.begin());
  std::vector<float> row(static_cast<size_t>(ng_));
  embedding_scorer(one, post_p_)(0, 1, row.data());
  return ng_ > 0 ? *std::max_element(row.begin(), row.end()) : 0.f;
}

FusedScorer FusedScore::scorer(const Matrix& code_q, const Matrix& post_q,
                               const std::vector<char>* unseen, const Matrix& bridge_q) const {
  if (code_q.rows != post_q.rows)
    fail("fusion needs one code and one posterior per query: ", code_q.rows, " codes, ",
         post_q.rows, " posteriors");
  if (post_q.cols != post_p_.g->cols)
    fail("query posteriors cover ", post_q.cols, " classes but gallery posteriors ",
         post_p_.g->cols, "; both encoders must be trained on the same classes");
  if (bridge_p_.g && (bridge_q.rows != code_q.rows || bridge_q.cols != bridge_p_.g->cols))
    fail("the bridge term needs one ", bridge_p_.g->cols,
         "-d bridge row per query: ", bridge_q.rows, " rows of ", bridge_q.cols, " for ",
         code_q.rows, " queries");
  const int64_t ng = ng_;
  const FusionOptions opt = opt_;
  FusedScorer f;
  f.unseen.assign(static_cast<size_t>(code_q.rows), 0);
  if (unseen && unseen->size() != f.unseen.size())
    fail("internal: one unseen-gate decision per query");
  ScoreBlockFn profile;
  if (opt.unseen_gate > 0) {
    if (unseen) f.unseen = *unseen;
    for (int64_t q = 0; q < code_q.rows && ng > 0 && !unseen; ++q)
      f.unseen[q] = gate_evidence(post_q.row(q)) < opt.unseen_gate;
    if (profile_p_.g) profile = embedding_scorer(profiles(post_q), profile_p_);
  }
  if (!sharp_p_.g) {
    // Rows derived when scored: every row through score_rows, a block of rows at a time. The
    // lambda's copy of this object shares its arrays.
    f.score = [self = *this, zq = code_q, pq = post_q, bq = bridge_q, unseen = f.unseen](
                  int64_t q0, int64_t q1, float* out) {
      constexpr int64_t kBlock = 65536;
      std::vector<int64_t> rows;
      for (int64_t q = q0; q < q1; ++q)
        for (int64_t r0 = 0; r0 < self.ng_; r0 += kBlock) {
          rows.resize(static_cast<size_t>(std::min(kBlock, self.ng_ - r0)));
          std::iota(rows.begin(), rows.end(), r0);
          self.score_rows(zq.row(q), pq.row(q), unseen[q], rows, out + (q - q0) * self.ng_ + r0,
                          self.bridge_p_.g ? bq.row(q) : nullptr);
        }
    };
    return f;
  }
  auto code = embedding_scorer(code_q, code_p_);  // -||zq - zg||^2
  auto post = embedding_scorer(post_q, sharp_p_);
  ScoreBlockFn bridge;
  if (bridge_p_.g) bridge = embedding_scorer(bridge_q, bridge_p_);
  f.score = [code, post, profile, bridge, same_prob = same_prob_, unseen = f.unseen, opt, ng](
                int64_t q0, int64_t q1, float* out) {
    const size_t n = static_cast<size_t>((q1 - q0) * ng);
    std::vector<float> pp(n), prof, br;
    code(q0, q1, out);
    post(q0, q1, pp.data());
    if (profile) {
      prof.resize(n);
      profile(q0, q1, prof.data());
    }
    if (bridge) {
      br.resize(n);
      bridge(q0, q1, br.data());
    }
    for (int64_t q = q0; q < q1; ++q) {
      const bool u = unseen[q];
      const double wp = u ? opt.unseen_post : 1.0;
      for (int64_t j = 0; j < ng; ++j) {
        const size_t i = static_cast<size_t>((q - q0) * ng + j);
        const double p_code = same_prob(std::sqrt(std::max(0.f, -out[i])));
        double s = std::log(std::max(p_code, 1e-30)) + wp * std::log(std::max(pp[i], 1e-30f));
        if (u) s += opt.unseen_profile * prof[i];
        if (bridge) s += (u ? opt.unseen_bridge : opt.bridge) * br[i];
        out[i] = static_cast<float>(s);
      }
    }
  };
  return f;
}

namespace {
// Sums of products in 8 float lanes: the candidate path scores a few thousand scattered rows per
// query, and double sums one term at a time made that most of its latency.
inline float dot(const float* a, const float* b, int64_t n) {
  float s = 0;
#pragma omp simd reduction(+ : s)
  for (int64_t j = 0; j < n; ++j) s += a[j] * b[j];
  return s;
}
inline float dist2(const float* a, const float* b, int64_t n) {
  float s = 0;
#pragma omp simd reduction(+ : s)
  for (int64_t j = 0; j < n; ++j) s += (a[j] - b[j]) * (a[j] - b[j]);
  return s;
}
// The rows are scattered over a gallery far larger than the caches: ask for the next rows early.
constexpr size_t kAhead = 8;
inline void prefetch_row(const Matrix& m, int64_t g) {
  const char* p = reinterpret_cast<const char*>(m.row(g));
  for (int64_t b = 0; b < m.cols * 4; b += 64) __builtin_prefetch(p + b);
}
}  // namespace

float FusedScore::gate_evidence_among(const float* pq, const std::vector<int64_t>& rows) const {
  const Matrix& post = *post_p_.g;
  float best = 0;
  for (size_t r = 0; r < rows.size(); ++r) {
    if (r + kAhead < rows.size()) prefetch_row(post, rows[r + kAhead]);
    best = std::max(best, dot(pq, post.row(rows[r]), post.cols));
  }
  return best;
}

bool FusedScore::unseen_among(const float* pq, const std::vector<int64_t>& rows) const {
  return opt_.unseen_gate > 0 && gate_evidence_among(pq, rows) < opt_.unseen_gate;
}

void FusedScore::score_rows(const float* zq, const float* pq, bool unseen,
                            const std::vector<int64_t>& rows, float* out, const float* bq) const {
  // Each row's sharpened posterior and profile are read where stored, else derived from its
  // posterior (the same functions, so the same numbers).
  const Matrix& code = *code_p_.g;
  const Matrix& sharp = sharp_p_.g ? *sharp_p_.g : *post_p_.g;
  const int64_t d = code.cols, C = sharp.cols;
  const bool profile = unseen && opt_.unseen_gate > 0;
  std::vector<float> lq(profile ? static_cast<size_t>(C) : 0);  // the query's profile
  if (profile) profile_row(pq, C, lq.data());
  const double wp = unseen ? opt_.unseen_post : 1.0;
  const Matrix* bridge = bridge_p_.g.get();
  if (bridge && !bq) fail("internal: the bridge term needs the query's bridge row");
  const double wb = unseen ? opt_.unseen_bridge : opt_.bridge;
  const int64_t m = static_cast<int64_t>(rows.size());
#pragma omp parallel if (m >= 2048)
  {
    std::vector<float> sharp_g(static_cast<size_t>(C)), prof_g(static_cast<size_t>(C));
#pragma omp for schedule(static)
    for (int64_t r = 0; r < m; ++r) {
      if (r + static_cast<int64_t>(kAhead) < m) {
        const int64_t next = rows[static_cast<size_t>(r) + kAhead];
        prefetch_row(code, next);
        prefetch_row(sharp, next);
        if (profile && profile_p_.g) prefetch_row(*profile_p_.g, next);
        if (bridge) prefetch_row(*bridge, next);
      }
      const int64_t g = rows[static_cast<size_t>(r)];
      const float* sg = sharp.row(g);
      if (!sharp_p_.g) {
        sharpen_row(sg, C, opt_.photo_power, sharp_g.data());
        sg = sharp_g.data();
      }
      const double dist = dist2(zq, code.row(g), d), pp = dot(pq, sg, C);
      double s = std::log(std::max(same_prob_(std::sqrt(dist)), 1e-30)) +
                 wp * std::log(std::max(pp, 1e-30));
      if (profile) {
        const float* lg = profile_p_.g ? profile_p_.g->row(g) : prof_g.data();
        if (!profile_p_.g) profile_row(post_p_.g->row(g), C, prof_g.data());
        s += opt_.unseen_profile * dot(lq.data(), lg, C);
      }
      if (bridge) s += wb * dot(bq, bridge->row(g), bridge->cols);
      out[r] = static_cast<float>(s);
    }
  }
}

FusedScorer fused_scorer(const Matrix& code_q, const Matrix& code_g,
                         std::function<double(double)> same_prob, const Matrix& post_q,
                         const Matrix& post_g, const FusionOptions& opt, const Matrix& bridge_q,
                         const Matrix& bridge_g) {
  if (code_q.rows != post_q.rows || code_g.rows != post_g.rows)
    fail("fusion needs one code and one posterior per item: ", code_q.rows, " query codes, ",
         post_q.rows, " query posteriors, ", code_g.rows, " gallery codes, ", post_g.rows,
         " gallery posteriors");
  return FusedScore(code_g, post_g, std::move(same_prob), opt, false, bridge_g)
      .scorer(code_q, post_q, nullptr, bridge_q);
}

}  // namespace duet
