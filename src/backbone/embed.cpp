#include "duet/embed.h"

#include <future>
#include <opencv2/core.hpp>

#include "duet/augment.h"
#include "duet/error.h"
#include "duet/image.h"
#include "duet/progress.h"

namespace duet {

namespace {
struct Batch {
  std::vector<float>
      x;  // [n * views, 3, S, S]: image i's views are rows i*views .. i*views+views-1
  std::vector<size_t> idx;  // sample index of each image
};

Batch decode(const Dataset& d, const std::vector<Sample>& s, size_t b, size_t e, int size,
             bool frame, DomainKind kind, int views, uint64_t seed, bool skip_bad) {
  Batch out;
  const size_t per = 3 * static_cast<size_t>(size) * size;
  out.x.reserve((e - b) * per * views);
  for (size_t i = b; i < e; ++i) {
    cv::Mat img;
    uint64_t hash = 0;
    try {
      img = load_rgb(d.abs_path(s[i]), &hash);
      if (frame) img = frame_strokes(img);
    } catch (const Error& err) {
      if (!skip_bad) throw;
      log_line(std::string("warning: skipped ") + err.what());
      continue;
    }
    // The same views, in the same order, as Phase I training cached for this image.
    const size_t at = out.x.size();
    out.x.resize(at + per * views);
    view_inputs(img, kind, views, view_seed(seed, hash), size, out.x.data() + at);
    out.idx.push_back(i);
  }
  return out;
}
}  // namespace

Embeddings embed_samples(Encoder& enc, const Dataset& d, const std::vector<Sample>& samples,
                         const EmbedOptions& opt, const std::string& label) {
  if (opt.batch <= 0) fail("--batch must be positive, got ", opt.batch);
  if (opt.views < 0 || opt.views > 16) fail("--views must be between 0 and 16, got ", opt.views);
  const int views = opt.views > 0 ? opt.views : enc.tta_views();
  const int S = enc.input_size();
  const int64_t D = enc.dim();
  std::vector<float> rows;
  std::vector<size_t> kept;
  Progress bar(label, static_cast<int64_t>(samples.size()));
  auto launch = [&](size_t b) {
    size_t e = std::min(samples.size(), b + static_cast<size_t>(opt.batch));
    return std::async(std::launch::async, decode, std::cref(d), std::cref(samples), b, e, S,
                      enc.frames_input(), enc.kind(), views, enc.view_seed(), opt.skip_bad);
  };
  std::future<Batch> next;
  if (!samples.empty()) next = launch(0);
  for (size_t b = 0; b < samples.size(); b += opt.batch) {
    Batch cur = next.get();
    if (b + opt.batch < samples.size()) next = launch(b + opt.batch);
    const int64_t n = static_cast<int64_t>(cur.idx.size());
    if (n > 0) {
      std::vector<float> y(static_cast<size_t>(views * n * D)),
          mean(static_cast<size_t>(n * D), 0.f);
      enc.encode(views * n, cur.x.data(), y.data());
      for (int64_t i = 0; i < n; ++i)
        for (int v = 0; v < views; ++v)
          for (int64_t k = 0; k < D; ++k) mean[i * D + k] += y[(i * views + v) * D + k] / views;
      rows.insert(rows.end(), mean.begin(), mean.end());
      kept.insert(kept.end(), cur.idx.begin(), cur.idx.end());
    }
    bar.tick(static_cast<int64_t>(std::min(samples.size(), b + opt.batch) - b));
  }
  bar.finish();
  Embeddings e;
  e.x.rows = static_cast<int64_t>(kept.size());
  e.x.cols = D;
  e.x.data = std::move(rows);
  for (size_t i : kept) e.rows.push_back({samples[i].path, samples[i].cls, samples[i].domain});
  e.meta["source"] = enc.source();
  if (kept.size() < samples.size())
    log_line("skipped " + std::to_string(samples.size() - kept.size()) + " unreadable images");
  return e;
}

}  // namespace duet
