// duet search — rank a gallery index for query images, with the score `duet run` measures.
#include <cstdio>
#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "duet/error.h"
#include "duet/image.h"
#include "duet/service.h"

namespace duet::cli {

namespace {
struct SearchArgs {
  std::string index, model, domain, k = "10";
  std::vector<std::string> queries;
  int threads = 0;
  bool json = false;
};

int64_t parse_k(const std::string& s) {
  if (s == "all") return 0;
  size_t used = 0;
  long long v = -1;
  try {
    v = std::stoll(s, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (used != s.size() || used == 0 || v < 0)
    fail("-k: '", s, "' is not a count (a whole number >= 0, or all)");
  return v;
}

void run_search(const SearchArgs& a) {
  const int64_t k = parse_k(a.k);
  auto svc = SearchService::open(a.index, a.model, a.threads);
  // Each query goes through the service as the server's do (the same bytes, the same ranking), and
  // every one is answered before anything is printed: a bad one fails the command, not half of it.
  std::vector<Retrieval::Answer> answers;
  for (const std::string& q : a.queries)
    answers.push_back(svc->search_image(read_image_file(q), q, a.domain, k, Deadline{}));
  const GalleryIndex& g = svc->gallery();
  for (size_t q = 0; q < answers.size(); ++q) {
    const Retrieval::Answer& r = answers[q];
    if (a.json) {
      nlohmann::json j;
      j["query"] = a.queries[q];
      j["unseen"] = r.unseen;
      j["results"] = nlohmann::json::array();
      for (const Retrieval::Hit& h : r.hits)
        j["results"].push_back({{"path", g.abs_path(h.id)}, {"score", h.score}});
      std::printf("%s\n", j.dump().c_str());
      continue;
    }
    std::printf("%s%s\n", a.queries[q].c_str(),
                r.unseen ? "  (no learnt class fits: ranked by resemblance)" : "");
    for (size_t i = 0; i < r.hits.size(); ++i)
      std::printf("%5zu  %12.6g  %s\n", i + 1, r.hits[i].score, g.abs_path(r.hits[i].id).c_str());
  }
}
}  // namespace

void register_search(CLI::App& app) {
  auto a = std::make_shared<SearchArgs>();
  auto* c = app.add_subcommand(
      "search", "rank an indexed gallery for query images (sketches, or any model domain)");
  c->add_option("--index", a->index, "gallery index from `duet index`")->required();
  c->add_option("queries", a->queries, "query image files")->required();
  c->add_option("-k", a->k, "results per query (0 or all: the whole gallery)")
      ->capture_default_str();
  c->add_option("--domain", a->domain,
                "the queries' domain (default: the model's first query domain)");
  c->add_option("--model", a->model, "model folder (default: the one the index was built with)");
  c->add_option("-t,--threads", a->threads, "threads (0 = all cores)")->capture_default_str();
  c->add_flag(
      "--json", a->json,
      "one JSON line per query: {\"query\", \"unseen\", \"results\": [{\"path\", \"score\"}]}");
  c->callback([a] { run_search(*a); });
}

}  // namespace duet::cli
