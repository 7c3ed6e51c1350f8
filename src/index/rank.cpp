// The one ranking: gate, best rows, the seeds' neighbours, diffusion, top k. See duet/search.h.
#include <algorithm>
#include <cmath>
#include <numeric>

#include "duet/error.h"
#include "duet/search.h"

namespace duet {

std::vector<size_t> best_first(const std::vector<int64_t>& rows, const std::vector<float>& s,
                               int64_t k) {
  std::vector<size_t> order(rows.size());
  std::iota(order.begin(), order.end(), 0);
  const size_t kk = std::min<size_t>(order.size(), static_cast<size_t>(std::max<int64_t>(k, 0)));
  std::partial_sort(order.begin(), order.begin() + kk, order.end(), [&](size_t a, size_t b) {
    return s[a] > s[b] || (s[a] == s[b] && rows[a] < rows[b]);
  });
  order.resize(kk);
  return order;
}

namespace {
// The diffusion over the m known rows (graph: their sub-graph, rows 0..m-1 in row order, s their
// scores): the best `shortlist` of them and the graph neighbours of the best `seeds` diffuse with
// p = exp(s - top) (rerank_subset, the blend term divided by the query's mass `total` over the
// whole gallery); the other known rows keep the blend term alone. Writes the final scores to out.
void diffuse(const GalleryGraph& graph, const DiffusionOptions& opt, const float* s, size_t m,
             float top, double total, float* out) {
  const size_t sl = opt.shortlist > 0 ? std::min<size_t>(m, static_cast<size_t>(opt.shortlist)) : m;
  const size_t seeds = std::min<size_t>(sl, static_cast<size_t>(opt.seeds));
  std::vector<size_t> order(m);
  std::iota(order.begin(), order.end(), 0);
  auto better = [&](size_t a, size_t b) { return s[a] > s[b] || (s[a] == s[b] && a < b); };
  if (sl < m) std::nth_element(order.begin(), order.begin() + sl, order.end(), better);
  order.resize(sl);
  std::sort(order.begin(), order.end(), better);  // the seeds first
  std::vector<int64_t> nodes(order.begin(), order.end());
  for (size_t i = 0; i < seeds; ++i)
    for (int64_t e = graph.csr_start()[order[i]]; e < graph.csr_start()[order[i] + 1]; ++e)
      nodes.push_back(graph.csr_col()[e]);
  std::sort(nodes.begin(), nodes.end());  // sorted and distinct, as rerank_subset needs them
  nodes.erase(std::unique(nodes.begin(), nodes.end()), nodes.end());
  std::vector<float> p(nodes.size()), diffused(nodes.size());
  for (size_t i = 0; i < nodes.size(); ++i) p[i] = std::exp(s[nodes[i]] - top);
  graph.rerank_subset(nodes, p.data(), diffused.data(), total);
  for (size_t i = 0; i < m; ++i)
    out[i] = static_cast<float>(opt.blend * std::exp(s[i] - top) / total);
  for (size_t i = 0; i < nodes.size(); ++i) out[nodes[i]] = diffused[i];
}
}  // namespace

Ranking rank(const RowSource& source, const RankOptions& opt, const QueryRow& q, int64_t k) {
  const int64_t n = source.size();
  const int64_t kk = k <= 0 || k > n ? n : k;
  std::unique_ptr<RowQuery> rows = source.query(q);
  Ranking r;
  // 1. The unseen-class gate, over the whole gallery.
  if (opt.fuse && opt.fusion.unseen_gate > 0)
    r.unseen = rows->gate_evidence() < opt.fusion.unseen_gate;
  // 2. The best rows: the shortlist's worth (whole: every row) and k.
  const bool diffuse_it = opt.fuse && opt.diffusion && source.has_graph();
  const bool whole = opt.diff.shortlist == 0 || n <= opt.diff.shortlist;
  const int64_t limit = diffuse_it ? std::max<int64_t>(whole ? n : opt.diff.shortlist, kk) : kk;
  ScoredRows best = rows->best(r.unseen, limit, diffuse_it);
  if (!diffuse_it) {
    for (size_t i = 0; i < best.rows.size() && static_cast<int64_t>(i) < kk; ++i)
      r.hits.push_back({best.rows[i], best.score[i]});
    return r;
  }
  // 3. The seeds' graph neighbours that are not among them.
  std::vector<int64_t> sorted = best.rows, more;
  std::sort(sorted.begin(), sorted.end());
  const size_t seeds = std::min<size_t>(best.rows.size(), static_cast<size_t>(opt.diff.seeds));
  for (size_t i = 0; i < seeds; ++i)
    for (int64_t e = best.adj_start[i]; e < best.adj_start[i + 1]; ++e)
      if (!std::binary_search(sorted.begin(), sorted.end(), best.adj_col[e]))
        more.push_back(best.adj_col[e]);
  std::sort(more.begin(), more.end());
  more.erase(std::unique(more.begin(), more.end()), more.end());
  const ScoredRows added = more.empty() ? ScoredRows() : rows->rows(r.unseen, more, true);
  // 4. The known rows in row order as rows 0..m-1 of their sub-graph, each with its edges among
  // them in the stored order.
  struct Known {
    int64_t row;
    const ScoredRows* from;
    size_t at;
  };
  std::vector<Known> known;
  for (const ScoredRows* sr : {static_cast<const ScoredRows*>(&best), &added})
    for (size_t i = 0; i < sr->rows.size(); ++i) known.push_back({sr->rows[i], sr, i});
  std::sort(known.begin(), known.end(),
            [](const Known& a, const Known& b) { return a.row < b.row; });
  const size_t m = known.size();
  std::vector<int64_t> row(m), start{0}, col;
  std::vector<float> s(m), w;
  for (size_t i = 0; i < m; ++i) row[i] = known[i].row, s[i] = known[i].from->score[known[i].at];
  for (const Known& kn : known) {
    const ScoredRows& sr = *kn.from;
    for (int64_t e = sr.adj_start[kn.at]; e < sr.adj_start[kn.at + 1]; ++e) {
      auto it = std::lower_bound(row.begin(), row.end(), sr.adj_col[e]);
      if (it == row.end() || *it != sr.adj_col[e]) continue;
      col.push_back(it - row.begin());
      w.push_back(sr.adj_w[e]);
    }
    start.push_back(static_cast<int64_t>(col.size()));
  }
  // 5. Diffusion. Whole: every row is known, and the mass is summed over them in row order.
  double total = best.mass;
  if (whole) {
    total = 0;
    for (float v : s) total += std::exp(v - best.top);
  }
  std::vector<float> out(m);
  if (m >= 2) {
    const GalleryGraph sub(static_cast<int64_t>(m), opt.diff, std::move(start), std::move(col),
                           std::move(w));
    diffuse(sub, opt.diff, s.data(), m, best.top, total, out.data());
  } else {
    for (size_t i = 0; i < m; ++i)
      out[i] = static_cast<float>(opt.diff.blend * std::exp(s[i] - best.top) / total);
  }
  // 6. The top k.
  for (size_t i : best_first(row, out, kk)) r.hits.push_back({row[i], out[i]});
  return r;
}

}  // namespace duet
