// duet index — a folder of images into a gallery index that `duet search` ranks.
#include <cstdio>

#include "cli/commands.h"
#include "duet/dist.h"
#include "duet/gallery.h"
#include "duet/model.h"

namespace duet::cli {

namespace {
struct IndexArgs {
  std::string model, images, out;
  GalleryOptions opt;
  int threads = 0, nproc = 1;
  bool json = false;
};

void run_index(IndexArgs a) {
  workers_or_join(a.nproc);
  auto model = Model::open(a.model, a.threads);
  a.opt.partial = a.out + ".partial";
  GalleryReport r = build_gallery_index(*model, a.model, a.images, a.out, a.opt);
  if (!dist::leader()) return;  // rank 0 writes and reports
  if (a.json)
    std::printf(
        "{\"index\": \"%s\", \"images\": %lld, \"embedded\": %lld, \"reused\": %lld, \"renamed\": "
        "%lld, "
        "\"dropped\": %lld, \"skipped\": %lld, \"seconds\": %.2f}\n",
        a.out.c_str(), static_cast<long long>(r.images), static_cast<long long>(r.embedded),
        static_cast<long long>(r.reused), static_cast<long long>(r.renamed),
        static_cast<long long>(r.dropped), static_cast<long long>(r.skipped), r.seconds);
  else
    std::printf(
        "%s: %lld images (%lld embedded, %lld unchanged, %lld renamed, %lld dropped, %lld skipped) "
        "in %.1f s\n",
        a.out.c_str(), static_cast<long long>(r.images - r.skipped),
        static_cast<long long>(r.embedded), static_cast<long long>(r.reused),
        static_cast<long long>(r.renamed), static_cast<long long>(r.dropped),
        static_cast<long long>(r.skipped), r.seconds);
}
}  // namespace

void register_index(CLI::App& app) {
  auto a = std::make_shared<IndexArgs>();
  auto* c = app.add_subcommand(
      "index", "embed every image under a folder into a gallery index (incremental)");
  c->add_option("--model", a->model, "model folder (<out>/<split>/model from `duet run`)")
      ->required();
  c->add_option("--images", a->images, "folder of images (recursive; jpg, jpeg, png, bmp, webp)")
      ->required();
  c->add_option("-o,--out", a->out, "index file to write or update")->required();
  c->add_flag("--strict", a->opt.strict,
              "an unreadable, truncated or oversized image is an error, not a skip");
  c->add_option("-b,--batch", a->opt.batch, "images per model call")
      ->check(positive)
      ->capture_default_str();
  c->add_option("--thumb", a->opt.thumb, "thumbnail size in pixels (longer side; 0 = none)")
      ->check(CLI::Range(0, 1024))
      ->capture_default_str();
  c->add_option("--checkpoint-every", a->opt.checkpoint_s,
                "seconds between checkpoints (<out>.partial) that an interrupted run resumes from")
      ->check(non_negative)
      ->capture_default_str();
  c->add_option("-t,--threads", a->threads, "threads (0 = all cores)")->capture_default_str();
  c->add_flag("--json", a->json, "print the summary as JSON");
  add_dist_options(c, a->nproc);
  c->callback([a] { run_index(*a); });
}

void register_shard(CLI::App& app) {
  struct Args {
    std::string index, out;
    int shards = 2;
  };
  auto a = std::make_shared<Args>();
  auto* c =
      app.add_subcommand("shard",
                         "split a gallery index into shards, each served by `duet serve --index`, "
                         "behind a `duet serve --shards` front");
  c->add_option("--index", a->index, "gallery index from `duet index`")
      ->required()
      ->check(CLI::ExistingFile);
  c->add_option("--shards", a->shards, "how many (contiguous, near-equal shares of the rows)")
      ->check(CLI::Range(1, 1024))
      ->capture_default_str();
  c->add_option("-o,--out", a->out,
                "shard files are <out>-<i>.idx (default: the index's path without .idx)");
  c->callback([a] {
    GalleryIndex g = read_gallery(a->index);
    std::string prefix = a->out;
    if (prefix.empty()) {
      prefix = a->index;
      if (prefix.size() > 4 && prefix.compare(prefix.size() - 4, 4, ".idx") == 0)
        prefix.resize(prefix.size() - 4);
    }
    for (int i = 0; i < a->shards; ++i) {
      GalleryIndex s = shard_of(g, i, a->shards);
      const std::string f = prefix + "-" + std::to_string(i) + ".idx";
      write_gallery(f, s);
      std::printf(
          "%s: rows %lld..%lld of %lld\n", f.c_str(), static_cast<long long>(s.shard->offset),
          static_cast<long long>(s.shard->offset + static_cast<int64_t>(s.entries.size()) - 1),
          static_cast<long long>(g.entries.size()));
    }
  });
}

}  // namespace duet::cli
