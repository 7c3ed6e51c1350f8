#include "duet/fusion.h"

#include <algorithm>
#include <cmath>

#include "duet/error.h"

namespace duet {

namespace {

// Each row p becomes p^t / sum(p^t): the softmax of t times the log-posterior.
Matrix sharpened(Matrix m, double t) {
  if (t == 1.0) return m;
  for (int64_t i = 0; i < m.rows; ++i) {
    float* r = m.row(i);
    double sum = 0;
    for (int64_t j = 0; j < m.cols; ++j)
      sum += r[j] = static_cast<float>(std::pow(std::max(r[j], 0.f), t));
    if (sum > 0)
      for (int64_t j = 0; j < m.cols; ++j) r[j] = static_cast<float>(r[j] / sum);
  }
  return m;
}

}  // namespace

// Each row p becomes log p minus its mean over the classes. The floor keeps a zero finite.
Matrix centred_log(Matrix m) {
  for (int64_t i = 0; i < m.rows; ++i) {
    float* r = m.row(i);
    double mean = 0;
    for (int64_t j = 0; j < m.cols; ++j) mean += r[j] = std::log(std::max(r[j], 1e-6f));
    mean /= static_cast<double>(m.cols);
    for (int64_t j = 0; j < m.cols; ++j) r[j] = static_cast<float>(r[j] - mean);
  }
  return m;
}

FusedScore::FusedScore(const Matrix& code_g, const Matrix& post_g,
                       std::function<double(double)> same_prob, const FusionOptions& opt)
    : ng_(code_g.rows), same_prob_(std::move(same_prob)), opt_(opt) {
  if (code_g.rows != post_g.rows)
    fail("fusion needs one code and one posterior per gallery item: ", code_g.rows, " codes, ",
         post_g.rows, " posteriors");
  if (opt.photo_power <= 0 || opt.unseen_gate < 0 || opt.unseen_post < 0 || opt.unseen_profile < 0)
    fail("fusion options must be non-negative (photo power positive)");
  // Euclidean and dot-product galleries are prepared as they are, and score_rows reads those
  // copies; the profiles are normalised for the cosine, so their raw rows are kept beside.
  code_p_ = prepare_gallery(code_g, Metric::Euclidean);
  post_p_ = prepare_gallery(post_g, Metric::Dot);
  sharp_p_ = prepare_gallery(duet::sharpened(post_g, opt.photo_power), Metric::Dot);
  if (opt.unseen_gate > 0) {
    profile_g_ = std::make_shared<Matrix>(centred_log(post_g));
    profile_p_ = prepare_gallery(*profile_g_, Metric::Cosine);
  }
}

FusedScorer FusedScore::scorer(const Matrix& code_q, const Matrix& post_q) const {
  if (code_q.rows != post_q.rows)
    fail("fusion needs one code and one posterior per query: ", code_q.rows, " codes, ", post_q.rows,
         " posteriors");
  if (post_q.cols != post_p_.g->cols)
    fail("query posteriors cover ", post_q.cols, " classes but gallery posteriors ", post_p_.g->cols,
         "; both encoders must be trained on the same classes");
  const int64_t ng = ng_;
  const FusionOptions opt = opt_;
  FusedScorer f;
  f.unseen.assign(static_cast<size_t>(code_q.rows), 0);
  ScoreBlockFn profile;
  if (opt.unseen_gate > 0) {
    auto raw = embedding_scorer(post_q, post_p_);
    std::vector<float> row(static_cast<size_t>(ng));
    for (int64_t q = 0; q < code_q.rows && ng > 0; ++q) {
      raw(q, q + 1, row.data());
      f.unseen[q] = *std::max_element(row.begin(), row.end()) < opt.unseen_gate;
    }
    profile = embedding_scorer(centred_log(post_q), profile_p_);
  }
  auto code = embedding_scorer(code_q, code_p_);  // -||zq - zg||^2
  auto post = embedding_scorer(post_q, sharp_p_);
  f.score = [code, post, profile, same_prob = same_prob_, unseen = f.unseen, opt, ng](
                int64_t q0, int64_t q1, float* out) {
    const size_t n = static_cast<size_t>((q1 - q0) * ng);
    std::vector<float> pp(n), prof;
    code(q0, q1, out);
    post(q0, q1, pp.data());
    if (profile) {
      prof.resize(n);
      profile(q0, q1, prof.data());
    }
    for (int64_t q = q0; q < q1; ++q) {
      const bool u = unseen[q];
      const double wp = u ? opt.unseen_post : 1.0;
      for (int64_t j = 0; j < ng; ++j) {
        const size_t i = static_cast<size_t>((q - q0) * ng + j);
        const double p_code = same_prob(std::sqrt(std::max(0.f, -out[i])));
        double s = std::log(std::max(p_code, 1e-30)) + wp * std::log(std::max(pp[i], 1e-30f));
        if (u) s += opt.unseen_profile * prof[i];
        out[i] = static_cast<float>(s);
      }
    }
  };
  return f;
}

void FusedScore::score_rows(const float* zq, const float* pq, bool unseen, const std::vector<int64_t>& rows,
                            float* out) const {
  const int64_t d = code_p_.g->cols, C = post_p_.g->cols;
  std::vector<float> lq;
  double nq = 0;
  if (unseen && profile_g_) {
    Matrix one(1, C);
    std::copy(pq, pq + C, one.data.begin());
    lq = centred_log(one).data;
    for (float v : lq) nq += static_cast<double>(v) * v;
  }
  const double wp = unseen ? opt_.unseen_post : 1.0;
  for (size_t r = 0; r < rows.size(); ++r) {
    const int64_t g = rows[r];
    const float* zg = code_p_.g->row(g);
    const float* sg = sharp_p_.g->row(g);
    double dist = 0, pp = 0;
    for (int64_t j = 0; j < d; ++j) dist += static_cast<double>(zq[j] - zg[j]) * (zq[j] - zg[j]);
    for (int64_t c = 0; c < C; ++c) pp += static_cast<double>(pq[c]) * sg[c];
    double s = std::log(std::max(same_prob_(std::sqrt(dist)), 1e-30)) + wp * std::log(std::max(pp, 1e-30));
    if (unseen && profile_g_) {
      const float* lg = profile_g_->row(g);
      double dot = 0, ng = 0;
      for (int64_t c = 0; c < C; ++c) dot += static_cast<double>(lq[c]) * lg[c], ng += static_cast<double>(lg[c]) * lg[c];
      s += opt_.unseen_profile * (nq > 0 && ng > 0 ? dot / std::sqrt(nq * ng) : 0.0);
    }
    out[r] = static_cast<float>(s);
  }
}

FusedScorer fused_scorer(const Matrix& code_q, const Matrix& code_g,
                         std::function<double(double)> same_prob, const Matrix& post_q,
                         const Matrix& post_g, const FusionOptions& opt) {
  if (code_q.rows != post_q.rows || code_g.rows != post_g.rows)
    fail("fusion needs one code and one posterior per item: ", code_q.rows, " query codes, ",
         post_q.rows, " query posteriors, ", code_g.rows, " gallery codes, ", post_g.rows,
         " gallery posteriors");
  return FusedScore(code_g, post_g, std::move(same_prob), opt).scorer(code_q, post_q);
}

}  // namespace duet
