// The retrieval path (Searcher), gallery index files, folder scans and image checks, on
// constructed data.
#include "duet/search.h"

#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <numeric>
#include <opencv2/imgcodecs.hpp>
#include <random>
#include <set>

#include "duet/error.h"
#include "duet/fileio.h"
#include "duet/gallery.h"
#include "duet/image.h"
#include "duet/runtime.h"
#include "duet/score.h"
#include "test_util.h"

namespace duet {
namespace {

using test::rows;

// n items in `classes` clusters: codes near their class centre, posteriors peaked on it.
GalleryArrays clustered(int64_t n, int classes, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> normal(0, 1);
  GalleryArrays g{Matrix(n, 8), Matrix(n, classes), Matrix(n, 6)};
  for (int64_t i = 0; i < n; ++i) {
    const int c = static_cast<int>(i % classes);
    for (int j = 0; j < 8; ++j) g.emb.row(i)[j] = (j == c % 8 ? 3.f : 0.f) + 0.3f * normal(rng);
    for (int j = 0; j < 6; ++j) g.code.row(i)[j] = (j == c % 6 ? 2.f : 0.f) + 0.5f * normal(rng);
    double z = 0;
    for (int j = 0; j < classes; ++j)
      z += g.post.row(i)[j] = std::exp((j == c ? 3.f : 0.f) + normal(rng));
    for (int j = 0; j < classes; ++j) g.post.row(i)[j] /= static_cast<float>(z);
  }
  return g;
}

// The share of each exact top k that the other rankings found, over all queries.
double overlap(const std::vector<Ranking>& got, const std::vector<Ranking>& exact) {
  double hit = 0, all = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    std::set<int64_t> want;
    for (const auto& h : exact[i].hits) want.insert(h.row);
    for (const auto& h : got[i].hits) hit += want.count(h.row);
    all += static_cast<double>(exact[i].hits.size());
  }
  return hit / all;
}

RankOptions fused() {
  RankOptions r;
  r.prob_a = 1.0;
  r.prob_b = 0.5;
  return r;
}

TEST(Searcher, SearchIsTheOrderOfItsScoresWithTiesByRow) {
  GalleryArrays g = clustered(40, 4, 1);
  // Rows 5 and 20 identical to row 0: equal scores, so they must come out by row.
  for (int64_t r : {5, 20}) {
    std::copy(g.code.row(0), g.code.row(0) + 6, g.code.row(r));
    std::copy(g.post.row(0), g.post.row(0) + 4, g.post.row(r));
  }
  RankOptions opt = fused();
  opt.diffusion = false;
  Searcher s(g, opt);
  QueryArrays q;
  q.post = Matrix(1, 4);
  q.code = Matrix(1, 6);
  std::copy(g.post.row(0), g.post.row(0) + 4, q.post.data.begin());
  std::copy(g.code.row(0), g.code.row(0) + 6, q.code.data.begin());
  std::vector<float> all(40);
  s.scores(q, false)(0, 1, all.data());
  auto r = s.search(q, 0)[0];
  ASSERT_EQ(r.hits.size(), 40u);
  for (size_t i = 0; i + 1 < r.hits.size(); ++i) {
    EXPECT_GE(r.hits[i].score, r.hits[i + 1].score);
    EXPECT_EQ(r.hits[i].score, all[r.hits[i].row]);
  }
  EXPECT_EQ(r.hits[0].row, 0);
  EXPECT_EQ(r.hits[1].row, 5);
  EXPECT_EQ(r.hits[2].row, 20);
  EXPECT_EQ(s.search(q, 3)[0].hits.size(), 3u);
  EXPECT_EQ(s.index_type(), "exact");
}

TEST(Searcher, PaperConfigRanksByCodeDistance) {
  GalleryArrays g{Matrix(), Matrix(), rows({{0, 0}, {3, 0}, {1, 1}, {0, 2}})};
  RankOptions opt;
  opt.fuse = false;
  Searcher s(g, opt);
  QueryArrays q{Matrix(), rows({{0.9f, 0.9f}})};
  auto r = s.search(q, 0)[0];
  // Squared distances: 1.62, 4.42, 0.02, 2.02.
  ASSERT_EQ(r.hits.size(), 4u);
  EXPECT_EQ(r.hits[0].row, 2);
  EXPECT_EQ(r.hits[1].row, 0);
  EXPECT_EQ(r.hits[2].row, 3);
  EXPECT_EQ(r.hits[3].row, 1);
  EXPECT_NEAR(r.hits[0].score, -0.02f, 1e-5);
}

TEST(Searcher, ScoresDoNotDependOnTheQueriesBesideThem) {
  GalleryArrays g = clustered(60, 5, 2);
  Searcher s(g, fused());
  GalleryArrays qa = clustered(7, 5, 3);
  QueryArrays all{qa.post, qa.code};
  std::vector<float> block(7 * 60), one(60);
  s.scores(all)(0, 7, block.data());
  for (int64_t i = 0; i < 7; ++i) {
    QueryArrays q{Matrix(1, 5), Matrix(1, 6)};
    std::copy(qa.post.row(i), qa.post.row(i) + 5, q.post.data.begin());
    std::copy(qa.code.row(i), qa.code.row(i) + 6, q.code.data.begin());
    s.scores(q)(0, 1, one.data());
    for (int64_t j = 0; j < 60; ++j) ASSERT_EQ(one[j], block[i * 60 + j]) << i << " " << j;
  }
}

// Above the exact limit, search() scores FAISS candidates, from IVF lists of the float rows or,
// in the compressed tier, of 8-bit rows (its scorer deriving the sharpened posteriors and
// profiles). Without diffusion the candidates hold nearly all of the exhaustive top ten; with it,
// the diffusion over the candidates' sub-graph approximates the whole graph's
// (bench/search_latency measures it at scale).
TEST(Searcher, CandidatePathFindsTheExhaustiveTopTen) {
  GalleryArrays g = clustered(3000, 10, 4);
  GalleryArrays qa = clustered(30, 10, 5);
  QueryArrays q{qa.post, qa.code};
  for (const IndexKind kind : {IndexKind::IvfFlat, IndexKind::IvfSq8}) {
    ScaleOptions small;
    small.exact_limit = 1000;
    small.candidates = 200;
    small.nprobe = 8;
    small.kind = kind;
    for (bool diffuse : {false, true}) {
      RankOptions ro = fused();
      ro.diffusion = diffuse;
      Searcher exact(g, ro);
      Searcher ann(g, ro, exact.graph(), small);  // the same graph: only the candidates differ
      EXPECT_EQ(ann.index_type(), kind == IndexKind::IvfFlat ? "ivf54,flat,nprobe8,cand200"
                                                             : "ivf54,sq8,nprobe8,cand200");
      EXPECT_GE(overlap(ann.search(q, 10), exact.search(q, 10)), diffuse ? 0.75 : 0.9)
          << static_cast<int>(kind) << " diffusion " << diffuse;
      EXPECT_EQ(ann.search(q, 0)[0].hits.size(), 3000u);  // the whole gallery: exhaustive
    }
  }
  // By size: IVF-Flat up to the flat limit, the compressed tier beyond.
  ScaleOptions sizes;
  sizes.exact_limit = 100;
  sizes.flat_limit = 1000;
  EXPECT_EQ(Searcher::index_type_for(100, sizes), "exact");
  EXPECT_EQ(Searcher::index_type_for(1000, sizes), "ivf31,flat,nprobe32,cand1000");
  EXPECT_EQ(Searcher::index_type_for(1001, sizes), "ivf31,sq8,nprobe32,cand1000");
  sizes.kind = IndexKind::IvfFlat;
  EXPECT_EQ(Searcher::index_type_for(1001, sizes), "ivf31,flat,nprobe32,cand1000");
}

// Above the exact limit with every item a candidate, the candidate path is the exhaustive
// ranking (up to the float rounding of scoring rows one by one), diffusion included: the
// shortlist is then the same items, and the query's mass needs no estimate. So in the compressed
// tier, whose scorer derives each row's sharpened posterior and profile, and whose exhaustive
// path (k = 0) scores every row so too.
TEST(Searcher, CandidatePathOverEveryItemIsTheExhaustiveRanking) {
  GalleryArrays g = clustered(800, 10, 8);
  GalleryArrays qa = clustered(12, 10, 9);
  QueryArrays q{qa.post, qa.code};
  RankOptions ro = fused();
  ro.diff.shortlist = 100;
  Searcher exact(g, ro);
  for (const IndexKind kind : {IndexKind::IvfFlat, IndexKind::IvfSq8}) {
    ScaleOptions every;
    every.exact_limit = 100;
    every.candidates = 800;
    every.lists = 4;
    every.nprobe = 4;
    every.kind = kind;
    Searcher ann(g, ro, exact.graph(), every);
    ASSERT_EQ(ann.index_type(), kind == IndexKind::IvfFlat ? "ivf4,flat,nprobe4,cand800"
                                                           : "ivf4,sq8,nprobe4,cand800");
    for (int64_t k : {10, 0}) {
      auto a = ann.search(q, k), e = exact.search(q, k);
      for (size_t i = 0; i < a.size(); ++i) {
        EXPECT_EQ(a[i].unseen, e[i].unseen) << i;
        ASSERT_EQ(a[i].hits.size(), k ? 10u : 800u);
        for (size_t j = 0; j < 10; ++j) {
          EXPECT_EQ(a[i].hits[j].row, e[i].hits[j].row)
              << static_cast<int>(kind) << " " << k << " " << i << " " << j;
          EXPECT_NEAR(a[i].hits[j].score, e[i].hits[j].score, 1e-5 * std::abs(e[i].hits[j].score))
              << i << " " << j;
        }
      }
    }
  }
}

// What rank() asks of a gallery's rows (duet/search.h): up to the exact limit, the best rows, best
// score and score mass are those of the scores before diffusion, worked out here from
// scores(q, false); above it the same from the candidates (every item a candidate: the same
// numbers up to rounding; 200 a query: the top ten nearly all there, the mass estimated within a
// few per cent).
TEST(Searcher, RowSourcesGiveTheBestRowsAndTheScoreMass) {
  GalleryArrays g = clustered(800, 10, 8);
  GalleryArrays qa = clustered(6, 10, 9);
  RankOptions ro = fused();
  Searcher exact(g, ro);
  ScaleOptions every;
  every.exact_limit = 100;
  every.candidates = 800;
  every.lists = 4;
  every.nprobe = 4;
  ScaleOptions some = every;
  some.candidates = 200;
  some.lists = 16;
  Searcher all_cand(g, ro, exact.graph(), every), few_cand(g, ro, exact.graph(), some);
  std::vector<float> base(800);
  std::vector<char> unseen;
  double overlap = 0;
  for (int64_t i = 0; i < 6; ++i) {
    QueryArrays q{Matrix(1, 10), Matrix(1, 6)};
    std::copy(qa.post.row(i), qa.post.row(i) + 10, q.post.data.begin());
    std::copy(qa.code.row(i), qa.code.row(i) + 6, q.code.data.begin());
    exact.scores(q, false, &unseen)(0, 1, base.data());
    const bool u = unseen[0] != 0;
    std::vector<int64_t> order(800);
    std::iota(order.begin(), order.end(), 0);
    std::sort(order.begin(), order.end(), [&](int64_t a, int64_t b) {
      return base[a] > base[b] || (base[a] == base[b] && a < b);
    });
    const float top = base[order[0]];
    double mass = 0;
    for (float v : base) mass += std::exp(v - top);
    const float* zq = q.code.row(0);
    const float* pq = q.post.row(0);
    const QueryRow row{zq, pq, nullptr};
    auto eq = exact.rows().query(row), aq = all_cand.rows().query(row);
    ScoredRows e = eq->best(u, 20, false), a = aq->best(u, 20, false);
    ASSERT_EQ(e.rows, std::vector<int64_t>(order.begin(), order.begin() + 20)) << i;
    EXPECT_EQ(e.top, top);
    EXPECT_NEAR(e.mass, mass, 1e-9 * mass);
    EXPECT_EQ(a.rows, e.rows) << i;
    EXPECT_NEAR(a.mass, mass, 1e-5 * mass);
    for (size_t j = 0; j < 20; ++j) {
      EXPECT_EQ(e.score[j], base[e.rows[j]]);
      EXPECT_NEAR(a.score[j], e.score[j], 1e-5 * std::abs(e.score[j]));
    }
    std::vector<int64_t> pick = {order[700], order[3], 5};
    std::sort(pick.begin(), pick.end());
    const auto er = eq->rows(u, pick, false).score, ar = aq->rows(u, pick, false).score;
    for (size_t j = 0; j < pick.size(); ++j) {
      EXPECT_EQ(er[j], base[pick[j]]);
      EXPECT_NEAR(ar[j], er[j], 1e-5 * std::abs(er[j]));
    }
    float best = 0;
    for (int64_t r = 0; r < 800; ++r) {
      float d = 0;
      for (int c = 0; c < 10; ++c) d += pq[c] * g.post.row(r)[c];
      best = std::max(best, d);
    }
    EXPECT_NEAR(exact.rows().query(row)->gate_evidence(), best, 1e-6);
    EXPECT_NEAR(all_cand.rows().query(row)->gate_evidence(), best, 1e-6);
    ScoredRows f = few_cand.rows().query(row)->best(u, 10, false);
    for (int64_t r : f.rows) overlap += std::count(e.rows.begin(), e.rows.begin() + 10, r);
    EXPECT_NEAR(f.mass, mass, 0.05 * mass) << i;
  }
  EXPECT_GE(overlap / 60, 0.9);
  const QueryRow first{qa.code.row(0), qa.post.row(0), nullptr};
  EXPECT_THROW(exact.rows().query(first)->rows(false, {800}, false), Error);
  EXPECT_THROW(all_cand.rows().query(first)->rows(false, {-1}, false), Error);
}

// The diffusion runs over a query's shortlist: its best `shortlist` items and the graph
// neighbours of its seeds. Built here by hand from the pre-diffusion scores and the graph.
TEST(Diffusion, ShortlistIsTheBestItemsAndTheSeedsNeighbours) {
  GalleryArrays g = clustered(300, 6, 10);
  GalleryArrays qa = clustered(3, 6, 11);
  RankOptions ro = fused();
  ro.diff.shortlist = 40;
  ro.diff.seeds = 5;
  Searcher s(g, ro);
  const GalleryGraph& graph = *s.graph();
  QueryArrays q{qa.post, qa.code};
  std::vector<float> before(3 * 300), after(3 * 300);
  s.scores(q, false)(0, 3, before.data());
  s.scores(q, true)(0, 3, after.data());
  for (int qi = 0; qi < 3; ++qi) {
    const float* b = before.data() + qi * 300;
    std::vector<int64_t> order(300);
    std::iota(order.begin(), order.end(), 0);
    std::sort(order.begin(), order.end(),
              [&](int64_t x, int64_t y) { return b[x] > b[y] || (b[x] == b[y] && x < y); });
    std::set<int64_t> nodes(order.begin(), order.begin() + 40);
    for (int i = 0; i < 5; ++i)
      for (int64_t e = graph.csr_start()[order[i]]; e < graph.csr_start()[order[i] + 1]; ++e)
        nodes.insert(graph.csr_col()[e]);
    ASSERT_LT(nodes.size(), 300u);
    const float top = b[order[0]];
    double total = 0;
    std::vector<float> p(300);
    for (int j = 0; j < 300; ++j) total += p[j] = std::exp(b[j] - top);
    std::vector<int64_t> list(nodes.begin(), nodes.end());
    std::vector<float> pn, want(list.size());
    for (int64_t r : list) pn.push_back(p[r]);
    graph.rerank_subset(list, pn.data(), want.data(), total);
    for (size_t i = 0; i < list.size(); ++i)
      EXPECT_EQ(after[qi * 300 + list[i]], want[i]) << qi << " " << list[i];
    for (int j = 0; j < 300; ++j)
      if (!nodes.count(j))
        EXPECT_FLOAT_EQ(after[qi * 300 + j], static_cast<float>(ro.diff.blend * p[j] / total))
            << qi << " " << j;
  }
  // A shortlist as large as the gallery is the whole graph's diffusion.
  RankOptions whole = ro, large = ro;
  whole.diff.shortlist = 0;
  large.diff.shortlist = 300;
  std::vector<float> w(3 * 300), l(3 * 300);
  Searcher(g, whole).scores(q)(0, 3, w.data());
  Searcher(g, large).scores(q)(0, 3, l.data());
  EXPECT_EQ(w, l);
  RankOptions bad = ro;
  bad.diff.shortlist = 3;  // fewer than the seeds
  EXPECT_THROW(Searcher(g, bad), Error);
}

TEST(Diffusion, SubsetOfEveryNodeIsTheWholeGraph) {
  GalleryArrays g = clustered(50, 5, 6);
  GalleryGraph graph(g.emb, DiffusionOptions{});
  std::vector<float> p(50), full(50), sub(50);
  for (int i = 0; i < 50; ++i) p[i] = static_cast<float>((i * 37) % 11) / 11.f;
  std::vector<int64_t> nodes(50);
  for (int i = 0; i < 50; ++i) nodes[i] = i;
  graph.rerank(p.data(), full.data());
  graph.rerank_subset(nodes, p.data(), sub.data());
  for (int i = 0; i < 50; ++i) EXPECT_EQ(full[i], sub[i]);
  // Given the query's mass over a larger gallery (here twice the nodes' own), only the blend
  // term changes: blend * p / total.
  double sum = 0;
  for (float v : p) sum += v;
  graph.rerank_subset(nodes, p.data(), sub.data(), 2 * sum);
  const double blend = DiffusionOptions{}.blend;
  for (int i = 0; i < 50; ++i) EXPECT_NEAR(full[i] - sub[i], blend * p[i] / (2 * sum), 1e-6) << i;
  // A stored graph (CSR) reranks as the one it came from.
  GalleryGraph again(50, DiffusionOptions{}, graph.csr_start(), graph.csr_col(),
                     graph.csr_weight());
  again.rerank(p.data(), sub.data());
  for (int i = 0; i < 50; ++i) EXPECT_EQ(full[i], sub[i]);
  EXPECT_THROW(GalleryGraph(50, DiffusionOptions{}, {0, 1}, {0}, {1.f}), Error);
}

TEST(GalleryFile, RoundTripAndDamage) {
  test::TempDir t;
  GalleryIndex g;
  g.model_hash = "00ff00ff00ff00ff";
  g.model_dir = "/models/m";
  g.root = "/photos";
  g.domain = "photo";
  g.arrays = clustered(12, 3, 7);
  g.graph = std::make_shared<const GalleryGraph>(g.arrays.emb, DiffusionOptions{});
  for (int i = 0; i < 12; ++i)
    g.entries.push_back({"c/" + std::to_string(i) + ".jpg", 100 + i, 1700000000000000000LL + i,
                         0xfedcba9876543210ull + i, std::string(static_cast<size_t>(i), 'x')});
  const std::string f = t / "g.idx";
  write_gallery(f, g);
  GalleryIndex r = read_gallery(f);
  EXPECT_EQ(r.model_hash, g.model_hash);
  EXPECT_EQ(r.root, "/photos");
  ASSERT_EQ(r.entries.size(), 12u);
  EXPECT_EQ(r.entries[11].hash, 0xfedcba9876543210ull + 11);
  EXPECT_EQ(r.entries[11].mtime_ns, 1700000000000000011LL);
  EXPECT_EQ(r.entries[5].thumb, "xxxxx");
  EXPECT_EQ(r.arrays.code.data, g.arrays.code.data);
  EXPECT_EQ(r.arrays.post.data, g.arrays.post.data);
  EXPECT_EQ(r.arrays.emb.data, g.arrays.emb.data);
  EXPECT_EQ(r.arrays.bridge.rows, 12);  // a model without a bridge: none stored, none read
  EXPECT_EQ(r.arrays.bridge.cols, 0);
  {
    GalleryIndex b = g;
    b.arrays.bridge = l2_normalized(g.arrays.emb);
    write_gallery(t / "b.idx", b);
    EXPECT_EQ(read_gallery(t / "b.idx").arrays.bridge.data, b.arrays.bridge.data);
  }
  ASSERT_TRUE(r.graph);
  EXPECT_EQ(r.graph->csr_weight(), g.graph->csr_weight());
  EXPECT_EQ(r.abs_path(3), "/photos/c/3.jpg");

  const std::string bytes = read_file(f);
  auto message = [&](const std::string& content) {
    write_file_atomic(t / "bad.idx", content);
    try {
      read_gallery(t / "bad.idx");
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  EXPECT_NE(message(bytes.substr(0, bytes.size() - 10)).find("truncated"), std::string::npos);
  std::string flipped = bytes;
  flipped[bytes.size() - 40] ^= 1;
  EXPECT_NE(message(flipped).find("damaged"), std::string::npos);
  EXPECT_NE(message("DUETGAL1").find("not a duet gallery index"), std::string::npos);
  EXPECT_NE(message(bytes + "zz").find("trailing"), std::string::npos);

  // The file is written and read blob by blob, the thumbnails piece by piece (0 to 11 bytes each,
  // so their checksum's 8-byte words straddle entries): the same bytes as in memory, and a flipped
  // bit anywhere in a blob (the embeddings, a thumbnail in the middle of a word) is found.
  EXPECT_EQ(bytes, gallery_bytes(g));
  EXPECT_EQ(parse_gallery(bytes, "mem").entries[7].thumb, "xxxxxxx");
  std::string emb_flip = bytes;
  const size_t header = 16 + [&] {
    uint64_t len;
    std::memcpy(&len, bytes.data() + 8, 8);
    return len;
  }();
  emb_flip[header + 5] ^= 4;
  EXPECT_NE(message(emb_flip).find("emb fails its checksum"), std::string::npos)
      << message(emb_flip);
  for (size_t back : {1, 13, 30, 61}) {
    std::string thumb_flip = bytes;
    thumb_flip[bytes.size() - back] ^= 1;
    EXPECT_NE(message(thumb_flip).find("thumbs fails its checksum"), std::string::npos) << back;
  }
}

TEST(ScanImages, RecursiveHiddenSkippedLinksOnce) {
  test::TempDir t;
  namespace fs = std::filesystem;
  fs::create_directories(t / "a/b");
  fs::create_directories(t / ".hidden");
  for (const char* f : {"a/1.jpg", "a/b/2.PNG", "a/b/3.webp", "a/4.Jpeg", "a/5.bmp", "a/notes.txt",
                        "a/.x.jpg", ".hidden/6.jpg", "7.gif"})
    write_file_atomic(t / f, "x");
  fs::create_directory_symlink(t.path(), t / "a/b/loop");
  fs::create_directory_symlink(t / "a/b", t / "linked");
  auto got = scan_images(t.path());
  // linked/ is the same real folder as a/b, visited once (under its first name in order).
  std::vector<std::string> want = {"a/1.jpg", "a/4.Jpeg", "a/5.bmp", "a/b/2.PNG", "a/b/3.webp"};
  EXPECT_EQ(got, want);
}

// With the bridge term on, the gallery's bridge rows are scored and indexed too: the candidate
// path still finds the exhaustive top ten, the graph can be built over them, and queries or
// galleries without them are refused.
TEST(Searcher, BridgeRowsAreScoredIndexedAndGraphed) {
  auto with_bridge = [](GalleryArrays g) {
    g.bridge = l2_normalized(g.emb);
    return g;
  };
  GalleryArrays g = with_bridge(clustered(3000, 10, 4));
  GalleryArrays qa = with_bridge(clustered(30, 10, 5));
  QueryArrays q{qa.post, qa.code, qa.bridge};
  RankOptions ro = fused();
  ro.fusion.bridge = 2;
  ro.fusion.unseen_bridge = 4;
  ro.diffusion = false;
  // The term moves the scores by exactly w b_q . g_p.
  RankOptions off = ro;
  off.fusion.bridge = off.fusion.unseen_bridge = 0;
  std::vector<char> unseen;
  std::vector<float> s_on(3000), s_off(3000);
  Searcher(g, ro).scores(q, false, &unseen)(0, 1, s_on.data());
  Searcher(g, off).scores(q, false)(0, 1, s_off.data());
  for (int64_t j = 0; j < 3000; j += 97) {
    double dot = 0;
    for (int64_t c = 0; c < g.bridge.cols; ++c) dot += q.bridge.row(0)[c] * g.bridge.row(j)[c];
    EXPECT_NEAR(s_on[j] - s_off[j], (unseen[0] ? 4 : 2) * dot, 1e-4);
  }
  ScaleOptions small;
  small.exact_limit = 1000;
  small.candidates = 200;
  small.nprobe = 8;
  Searcher exact(g, ro), ann(g, ro, nullptr, small);
  EXPECT_GE(overlap(ann.search(q, 10), exact.search(q, 10)), 0.9);
  // Graphs over the bridge rows, and over both spaces side by side.
  ro.diffusion = true;
  for (const GraphSpace space : {GraphSpace::Bridge, GraphSpace::Both}) {
    ro.graph = space;
    auto graph = gallery_graph(g, ro);
    ASSERT_TRUE(graph);
    EXPECT_EQ(graph->size(), 3000);
  }
  EXPECT_THROW(parse_graph_space("pixels"), Error);
  ro.graph = GraphSpace::Bridge;
  GalleryArrays none = clustered(50, 5, 6);
  EXPECT_THROW(gallery_graph(none, ro), Error);
  // No bridge rows where the score weighs them.
  EXPECT_THROW(Searcher(none, ro), Error);
  QueryArrays bare{qa.post, qa.code};
  EXPECT_THROW(exact.search(bare, 10), Error);
}

}  // namespace
}  // namespace duet
