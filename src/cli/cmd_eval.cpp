// duet eval — retrieval metrics for query/gallery embedding files.
#include <cstdio>

#include "cli/commands.h"
#include "duet/embeddings.h"
#include "duet/error.h"
#include "duet/metrics.h"

namespace duet::cli {

namespace {
struct EvalArgs {
  std::string query_emb, query_labels, gallery_emb, gallery_labels, metric = "cosine";
  std::vector<int> ks = {100, 200};
  bool json = false;
};

// One side's matrix and labels: labels from a file, or from the manifest beside the .npy (read
// together with the matrix, so the matrix is read once either way).
struct Side {
  Matrix x;
  std::vector<std::string> labels;
};
Side load_side(const std::string& emb_path, const std::string& label_file) {
  Side s;
  if (!label_file.empty()) {
    s.x = read_npy(emb_path);
    s.labels = read_label_file(label_file);
    return s;
  }
  Embeddings e = read_embeddings(emb_path);
  s.x = std::move(e.x);
  for (const auto& r : e.rows) s.labels.push_back(r.cls);
  return s;
}

void run_eval(const EvalArgs& a) {
  EvalOptions opt;
  opt.metric = parse_metric(a.metric);
  opt.ks = a.ks;
  Side qs = load_side(a.query_emb, a.query_labels), gs = load_side(a.gallery_emb, a.gallery_labels);
  const Matrix &q = qs.x, &g = gs.x;
  const auto &ql = qs.labels, &gl = gs.labels;
  if (q.cols != g.cols)
    fail(a.query_emb, " is ", q.cols, "-d but ", a.gallery_emb, " is ", g.cols,
         "-d; query and gallery must come from the same embedding space");
  if (static_cast<int64_t>(ql.size()) != q.rows)
    fail(a.query_labels.empty() ? a.query_emb : a.query_labels, ": ", ql.size(), " labels for ",
         q.rows, " query rows");
  if (static_cast<int64_t>(gl.size()) != g.rows)
    fail(a.gallery_labels.empty() ? a.gallery_emb : a.gallery_labels, ": ", gl.size(),
         " labels for ", g.rows, " gallery rows");
  RetrievalMetrics m = evaluate(q, g, ql, gl, opt);
  if (a.json) {
    std::printf("%s\n", m.to_json().c_str());
    return;
  }
  std::printf("%-10s %10s\n", "metric", "value");
  std::printf("%-10s %10.4f\n", "map_all", m.map_all);
  for (const auto& [k, v] : m.map_at)
    std::printf("%-10s %10.4f\n", ("map@" + std::to_string(k)).c_str(), v);
  for (const auto& [k, v] : m.p_at)
    std::printf("%-10s %10.4f\n", ("p@" + std::to_string(k)).c_str(), v);
  std::printf("%-10s %10lld\n%-10s %10lld\n", "queries", static_cast<long long>(m.queries),
              "skipped", static_cast<long long>(m.skipped));
}
}  // namespace

void register_eval(CLI::App& app) {
  auto a = std::make_shared<EvalArgs>();
  auto* c = app.add_subcommand(
      "eval", "retrieval metrics (mAP@all, mAP@K, P@K) of query vs gallery embeddings");
  c->add_option("--query-emb", a->query_emb, "query embeddings (.npy, N x D float32)")
      ->required()
      ->check(CLI::ExistingFile);
  c->add_option("--query-labels", a->query_labels,
                "query class per line (default: the .tsv manifest)")
      ->check(CLI::ExistingFile);
  c->add_option("--gallery-emb", a->gallery_emb, "gallery embeddings (.npy, M x D float32)")
      ->required()
      ->check(CLI::ExistingFile);
  c->add_option("--gallery-labels", a->gallery_labels,
                "gallery class per line (default: the .tsv manifest)")
      ->check(CLI::ExistingFile);
  c->add_option("--metric", a->metric, "similarity")
      ->check(CLI::IsMember({"cosine", "euclidean", "dot"}))
      ->capture_default_str();
  c->add_option("-k,--k", a->ks, "cut-offs K for map@K and p@K")
      ->capture_default_str()
      ->check(positive);
  c->add_flag("--json", a->json, "print one JSON object on stdout");
  c->callback([a] { run_eval(*a); });
}

}  // namespace duet::cli
