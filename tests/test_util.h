// tests/test_util.h — temporary folders and small fixtures shared by the tests.
#pragma once

#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include "duet/embeddings.h"
#include "duet/error.h"
#include "duet/paths.h"

namespace duet::test {

// A fresh folder under the system temp dir, removed with its contents on destruction.
class TempDir {
 public:
  TempDir() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "duet-test-XXXXXX").string();
    path_ = ::mkdtemp(tmpl.data());
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  const std::string& path() const { return path_; }
  std::string operator/(const std::string& rel) const { return path_ + "/" + rel; }

 private:
  std::string path_;
};

// The message of the duet::Error that f throws; a test failure when it throws none.
inline std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  ADD_FAILURE() << "expected duet::Error";
  return "";
}

// A matrix from its rows, written out: rows({{1, 0}, {0, 1}}).
inline Matrix rows(const std::vector<std::vector<float>>& v) {
  Matrix m(static_cast<int64_t>(v.size()), static_cast<int64_t>(v[0].size()));
  for (size_t i = 0; i < v.size(); ++i)
    for (size_t j = 0; j < v[i].size(); ++j) m.row(static_cast<int64_t>(i))[j] = v[i][j];
  return m;
}

// The shared folder with data/ and weights/, or "" (tests then skip).
inline std::string shared_or_empty() { return duet::shared_dir(); }

}  // namespace duet::test
