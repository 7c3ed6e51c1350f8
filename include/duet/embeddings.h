// duet/embeddings.h — the plain data that moves between phases.
//
// A Matrix is N x D float32, row-major: x[i * cols + j]. On disk it is a .npy file (numpy's
// format, C order, '<f4'), readable with numpy.load. Next to "E.npy" lives its manifest "E.tsv":
// comment lines "# key=value" (format, dim, source that made it, ...), a header "path class
// domain", then one row per matrix row in the same order. Both are written atomically.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace duet {

struct Matrix {
  int64_t rows = 0, cols = 0;
  std::vector<float> data;  // [rows * cols], row-major

  Matrix() = default;
  Matrix(int64_t r, int64_t c) : rows(r), cols(c), data(static_cast<size_t>(r * c), 0.f) {}
  float* row(int64_t i) { return data.data() + i * cols; }
  const float* row(int64_t i) const { return data.data() + i * cols; }
};

// Reads a 2-D float32 C-order .npy (1-D is read as N x 1); throws Error on any other dtype/layout.
Matrix read_npy(const std::string& path);
void write_npy(const std::string& path, const Matrix& m);

struct ManifestRow {
  std::string path, cls, domain;
};

struct Embeddings {
  Matrix x;                                 // [N, D]
  std::vector<ManifestRow> rows;            // [N]
  std::map<std::string, std::string> meta;  // "# key=value" lines: format, dim, source, ...
};

// "runs/a.npy" -> "runs/a.tsv"
std::string manifest_path_for(const std::string& npy_path);
// Writes E.npy and E.tsv; meta gets format/dim/rows filled in.
void write_embeddings(const std::string& npy_path, const Embeddings& e);
// Reads both files and checks that the manifest and the matrix agree.
Embeddings read_embeddings(const std::string& npy_path);
// The given rows of e, in that order, with their manifest rows and e's meta.
Embeddings take_rows(const Embeddings& e, const std::vector<size_t>& rows);
// "runs/a.npy" -> "runs/a" (the stem that sibling files are named from).
std::string npy_stem(const std::string& npy_path);

// One label per line (blank lines are errors); used by `duet eval`.
std::vector<std::string> read_label_file(const std::string& path);

}  // namespace duet
