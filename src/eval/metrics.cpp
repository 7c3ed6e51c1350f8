// Retrieval metrics over any scoring. See duet/metrics.h.
#include "duet/metrics.h"

#include <algorithm>
#include <iomanip>
#include <sstream>
#include <unordered_map>

#include "duet/error.h"
#include "duet/progress.h"

namespace duet {

std::string RetrievalMetrics::to_json() const {
  std::ostringstream os;
  os << std::setprecision(9) << "{\"map_all\": " << map_all;
  for (const auto& [k, v] : map_at) os << ", \"map@" << k << "\": " << v;
  for (const auto& [k, v] : p_at) os << ", \"p@" << k << "\": " << v;
  os << ", \"queries\": " << queries << ", \"skipped\": " << skipped << "}";
  return os.str();
}

std::vector<int64_t> relevant_ranks(const float* s, const uint8_t* relevant, int64_t n) {
  std::vector<int64_t> rel;
  for (int64_t i = 0; i < n; ++i)
    if (relevant[i]) rel.push_back(i);
  // "a before b" in the ranking: higher score, then lower index.
  auto before = [s](int64_t a, int64_t b) { return s[a] > s[b] || (s[a] == s[b] && a < b); };
  std::sort(rel.begin(), rel.end(), before);
  const int64_t R = static_cast<int64_t>(rel.size());
  if (R == 0) return {};
  // beats[t] = number of irrelevant items ranked before rel[t] but not before rel[t-1].
  std::vector<int64_t> beats(R + 1, 0);
  const int64_t best = rel.front(), worst = rel.back();
  for (int64_t j = 0; j < n; ++j) {
    if (relevant[j]) continue;
    if (!before(j, worst)) continue;  // after every relevant item: changes no rank
    if (before(j, best)) {
      ++beats[0];
      continue;
    }
    // First relevant position t that j is ranked before.
    auto it =
        std::partition_point(rel.begin(), rel.end(), [&](int64_t r) { return !before(j, r); });
    ++beats[it - rel.begin()];
  }
  std::vector<int64_t> ranks(R);
  int64_t irrelevant_before = 0;
  for (int64_t t = 0; t < R; ++t) {
    irrelevant_before += beats[t];
    ranks[t] = t + 1 + irrelevant_before;
  }
  return ranks;
}

RetrievalMetrics evaluate_scores(int64_t nq, int64_t ng, const ScoreBlockFn& score,
                                 const std::vector<int>& qlab, const std::vector<int>& glab,
                                 const EvalOptions& opt,
                                 std::vector<std::vector<int64_t>>* relevant_out) {
  if (static_cast<int64_t>(qlab.size()) != nq || static_cast<int64_t>(glab.size()) != ng)
    fail("internal: label counts do not match the score matrix");
  for (int k : opt.ks)
    if (k <= 0) fail("K must be positive, got ", k);
  const int64_t block = std::max<int64_t>(1, opt.block);
  const size_t nk = opt.ks.size();
  std::vector<float> scores(static_cast<size_t>(std::min(block, std::max<int64_t>(nq, 1)) * ng));
  double sum_all = 0;
  std::vector<double> sum_map(nk, 0), sum_p(nk, 0);
  int64_t counted = 0, skipped = 0;
  if (relevant_out) relevant_out->assign(static_cast<size_t>(nq), {});
  Progress bar("rank", nq);
  for (int64_t q0 = 0; q0 < nq; q0 += block) {
    const int64_t q1 = std::min(nq, q0 + block);
    score(q0, q1, scores.data());
#pragma omp parallel for schedule(dynamic, 4) reduction(+ : sum_all, counted, skipped)
    for (int64_t q = q0; q < q1; ++q) {
      std::vector<uint8_t> rel(static_cast<size_t>(ng));
      for (int64_t g = 0; g < ng; ++g) rel[g] = glab[g] == qlab[q];
      auto ranks = relevant_ranks(scores.data() + (q - q0) * ng, rel.data(), ng);
      const int64_t R = static_cast<int64_t>(ranks.size());
      if (relevant_out) (*relevant_out)[q] = ranks;
      if (R == 0) {
        ++skipped;
        continue;
      }
      ++counted;
      double ap = 0;
      for (int64_t i = 0; i < R; ++i) ap += static_cast<double>(i + 1) / ranks[i];
      sum_all += ap / R;
      for (size_t j = 0; j < nk; ++j) {
        const int64_t K = opt.ks[j];
        double apk = 0;
        int64_t hits = 0;
        for (int64_t i = 0; i < R && ranks[i] <= K; ++i) {
          apk += static_cast<double>(i + 1) / ranks[i];
          ++hits;
        }
#pragma omp atomic
        sum_map[j] += apk / std::min(R, K);
#pragma omp atomic
        sum_p[j] += static_cast<double>(hits) / K;
      }
    }
    bar.tick(q1 - q0);
  }
  bar.finish();
  RetrievalMetrics m;
  m.queries = counted;
  m.skipped = skipped;
  if (counted > 0) {
    m.map_all = sum_all / counted;
    for (size_t j = 0; j < nk; ++j) {
      m.map_at[opt.ks[j]] = sum_map[j] / counted;
      m.p_at[opt.ks[j]] = sum_p[j] / counted;
    }
  } else {
    for (int k : opt.ks) m.map_at[k] = m.p_at[k] = 0;
  }
  return m;
}

RetrievalMetrics evaluate(const Matrix& q, const Matrix& g, const std::vector<std::string>& ql,
                          const std::vector<std::string>& gl, const EvalOptions& opt) {
  if (static_cast<int64_t>(ql.size()) != q.rows)
    fail(ql.size(), " query labels for ", q.rows, " query embeddings; they must match row for row");
  if (static_cast<int64_t>(gl.size()) != g.rows)
    fail(gl.size(), " gallery labels for ", g.rows,
         " gallery embeddings; they must match row for row");
  auto scorer = embedding_scorer(q, g, opt.metric);
  std::vector<int> gi, qi;
  label_ids(ql, gl, qi, gi);
  return evaluate_scores(q.rows, g.rows, scorer, qi, gi, opt);
}

void label_ids(const std::vector<std::string>& ql, const std::vector<std::string>& gl,
               std::vector<int>& qi, std::vector<int>& gi) {
  std::unordered_map<std::string, int> ids;
  auto id = [&ids](const std::string& s) {
    return ids.emplace(s, static_cast<int>(ids.size())).first->second;
  };
  gi.clear();
  qi.clear();
  for (const auto& s : gl) gi.push_back(id(s));
  for (const auto& s : ql) qi.push_back(id(s));
}

}  // namespace duet
