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
    std::printf("{\"index\": \"%s\", \"images\": %lld, \"embedded\": %lld, \"reused\": %lld, \"renamed\": %lld, "
                "\"dropped\": %lld, \"skipped\": %lld, \"seconds\": %.2f}\n",
                a.out.c_str(), static_cast<long long>(r.images), static_cast<long long>(r.embedded),
                static_cast<long long>(r.reused), static_cast<long long>(r.renamed), static_cast<long long>(r.dropped),
                static_cast<long long>(r.skipped), r.seconds);
  else
    std::printf("%s: %lld images (%lld embedded, %lld unchanged, %lld renamed, %lld dropped, %lld skipped) in %.1f s\n",
                a.out.c_str(), static_cast<long long>(r.images - r.skipped), static_cast<long long>(r.embedded),
                static_cast<long long>(r.reused), static_cast<long long>(r.renamed), static_cast<long long>(r.dropped),
                static_cast<long long>(r.skipped), r.seconds);
}
}  // namespace

void register_index(CLI::App& app) {
  auto a = std::make_shared<IndexArgs>();
  auto* c = app.add_subcommand("index", "embed every image under a folder into a gallery index (incremental)");
  c->add_option("--model", a->model, "model folder (<out>/<split>/model from `duet run`)")->required();
  c->add_option("--images", a->images, "folder of images (recursive; jpg, jpeg, png, bmp, webp)")->required();
  c->add_option("-o,--out", a->out, "index file to write or update")->required();
  c->add_flag("--strict", a->opt.strict, "an unreadable, truncated or oversized image is an error, not a skip");
  c->add_option("-b,--batch", a->opt.batch, "images per model call")->check(positive)->capture_default_str();
  c->add_option("--thumb", a->opt.thumb, "thumbnail size in pixels (longer side; 0 = none)")
      ->check(CLI::Range(0, 1024))->capture_default_str();
  c->add_option("--checkpoint-every", a->opt.checkpoint_s,
                "seconds between checkpoints (<out>.partial) that an interrupted run resumes from")
      ->check(non_negative)->capture_default_str();
  c->add_option("-t,--threads", a->threads, "threads (0 = all cores)")->capture_default_str();
  c->add_flag("--json", a->json, "print the summary as JSON");
  add_dist_options(c, a->nproc);
  c->callback([a] { run_index(*a); });
}

}  // namespace duet::cli
