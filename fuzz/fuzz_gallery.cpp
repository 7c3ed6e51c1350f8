// fuzz/fuzz_gallery.cpp — the gallery index reader (parse_gallery, duet/gallery.h) on arbitrary
// bytes: `duet search` and `duet serve` open index files they did not write.
//
// Beyond "returns or throws duet::Error": an index the reader accepts is consistent enough to use.
// Its arrays have a row per entry, it writes back to bytes the reader accepts and writes the same
// again, and a small one can be sharded and searched with one of its own rows, as `duet shard` and
// GET /api/search?like=ID do.
#include <algorithm>

#include "duet/gallery.h"
#include "fuzz_util.h"

namespace {

// Row r of an index's arrays as one query (what the server's ?like=ID searches with).
duet::QueryArrays row_query(const duet::GalleryArrays& a, int64_t r) {
  duet::QueryArrays q{duet::Matrix(1, a.post.cols), duet::Matrix(1, a.code.cols),
                      duet::Matrix(1, a.bridge.cols)};
  std::copy(a.post.row(r), a.post.row(r) + a.post.cols, q.post.data.begin());
  std::copy(a.code.row(r), a.code.row(r) + a.code.cols, q.code.data.begin());
  std::copy(a.bridge.row(r), a.bridge.row(r) + a.bridge.cols, q.bridge.data.begin());
  return q;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  duet::GalleryIndex g;
  try {
    g = duet::parse_gallery(fuzz::bytes_of(data, size), "input");
  } catch (const duet::Error& e) {
    fuzz::refused(e);
    return 0;
  }
  const int64_t n = static_cast<int64_t>(g.entries.size());
  for (const duet::Matrix* m : g.arrays.matrices())
    FUZZ_CHECK(m->rows == n && static_cast<int64_t>(m->data.size()) == m->rows * m->cols,
               "a matrix of %lld x %lld (%zu values) for %lld entries",
               static_cast<long long>(m->rows), static_cast<long long>(m->cols), m->data.size(),
               static_cast<long long>(n));
  // What the reader accepted, the writer writes and the reader reads back.
  const std::string rewritten = duet::gallery_bytes(g);
  try {
    FUZZ_CHECK(duet::gallery_bytes(duet::parse_gallery(rewritten, "rewritten")) == rewritten,
               "a rewritten index reads back as another");
  } catch (const duet::Error& e) {
    FUZZ_CHECK(false, "an accepted index does not survive a rewrite: %s", e.what());
  }
  if (n < 1 || n > 64)
    return 0;  // searching costs the rows; a few show the reader's output is usable
  try {
    if (!g.shard && n >= 2) duet::shard_of(g, 1, 2);
    const duet::Searcher s = duet::gallery_searcher(g, duet::RankOptions{});
    const auto hits = s.search(row_query(g.arrays, n - 1), 5);
    FUZZ_CHECK(hits.size() == 1, "%zu rankings for one query", hits.size());
    for (const auto& h : hits[0].hits)
      FUZZ_CHECK(h.row >= 0 && h.row < n, "hit row %lld", static_cast<long long>(h.row));
  } catch (const duet::Error& e) {
    fuzz::refused(e);
  }
  return 0;
}
