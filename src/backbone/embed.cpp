#include "duet/embed.h"

#include <future>

#include <opencv2/core.hpp>

#include "duet/error.h"
#include "duet/image.h"
#include "duet/progress.h"

namespace duet {

namespace {
struct Batch {
  std::vector<float> x;     // [n, 3, S, S]
  std::vector<size_t> idx;  // sample index of each row
};

Batch decode(const Dataset& d, const std::vector<Sample>& s, size_t b, size_t e, int size, bool frame,
             bool hflip, bool skip_bad) {
  Batch out;
  const size_t per = 3 * static_cast<size_t>(size) * size;
  out.x.reserve((e - b) * per * (hflip ? 2 : 1));
  for (size_t i = b; i < e; ++i) {
    cv::Mat img;
    try {
      img = load_rgb(d.abs_path(s[i]));
      if (frame) img = frame_strokes(img);
    } catch (const Error& err) {
      if (!skip_bad) throw;
      log_line(std::string("warning: skipped ") + err.what());
      continue;
    }
    size_t at = out.x.size();
    out.x.resize(at + per);
    to_chw(img, size, out.x.data() + at);
    out.idx.push_back(i);
  }
  if (hflip) {  // mirrored copies appended after the originals: rows n..2n-1
    size_t n = out.idx.size();
    out.x.resize(2 * n * per);
    for (size_t i = 0; i < n; ++i)
      for (size_t c = 0; c < 3; ++c)
        for (int y = 0; y < size; ++y) {
          const float* src = out.x.data() + i * per + (c * size + y) * size;
          float* dst = out.x.data() + (n + i) * per + (c * size + y) * size;
          for (int xx = 0; xx < size; ++xx) dst[xx] = src[size - 1 - xx];
        }
  }
  return out;
}
}  // namespace

Embeddings embed_samples(Encoder& enc, const Dataset& d, const std::vector<Sample>& samples,
                         const EmbedOptions& opt, const std::string& label) {
  if (opt.batch <= 0) fail("--batch must be positive, got ", opt.batch);
  const int S = enc.input_size();
  const int64_t D = enc.dim();
  std::vector<float> rows;
  std::vector<size_t> kept;
  Progress bar(label, static_cast<int64_t>(samples.size()));
  auto launch = [&](size_t b) {
    size_t e = std::min(samples.size(), b + static_cast<size_t>(opt.batch));
    return std::async(std::launch::async, decode, std::cref(d), std::cref(samples), b, e, S,
                      enc.frames_input(), opt.hflip, opt.skip_bad);
  };
  std::future<Batch> next;
  if (!samples.empty()) next = launch(0);
  for (size_t b = 0; b < samples.size(); b += opt.batch) {
    Batch cur = next.get();
    if (b + opt.batch < samples.size()) next = launch(b + opt.batch);
    const int64_t n = static_cast<int64_t>(cur.idx.size());
    if (n > 0) {
      std::vector<float> y(static_cast<size_t>((opt.hflip ? 2 : 1) * n * D));
      enc.encode(opt.hflip ? 2 * n : n, cur.x.data(), y.data());
      if (opt.hflip)
        for (int64_t i = 0; i < n * D; ++i) y[i] = 0.5f * (y[i] + y[n * D + i]);
      rows.insert(rows.end(), y.begin(), y.begin() + n * D);
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
