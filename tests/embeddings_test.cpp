// .npy and manifest files: round trips, numpy's header layout, and rejected bad files.
#include "duet/embeddings.h"

#include <gtest/gtest.h>

#include <fstream>

#include "duet/error.h"
#include "duet/fileio.h"
#include "test_util.h"

using namespace duet;

TEST(Embeddings, NpyRoundTripAndHeaderAlignment) {
  test::TempDir t;
  Matrix m(3, 5);
  for (size_t i = 0; i < m.data.size(); ++i) m.data[i] = 0.5f * i - 1;
  write_npy(t / "a.npy", m);
  std::string bytes = read_file(t / "a.npy");
  EXPECT_EQ(bytes.size() % 64, (3 * 5 * 4) % 64);  // header padded to 64 bytes as numpy does
  EXPECT_NE(bytes.find("'descr': '<f4'"), std::string::npos);
  Matrix r = read_npy(t / "a.npy");
  EXPECT_EQ(r.rows, 3);
  EXPECT_EQ(r.cols, 5);
  EXPECT_EQ(r.data, m.data);
}

TEST(Embeddings, RejectsBadNpy) {
  test::TempDir t;
  std::ofstream(t / "junk.npy") << "hello";
  EXPECT_THROW(read_npy(t / "junk.npy"), Error);
  EXPECT_THROW(read_npy(t / "missing.npy"), Error);
  Matrix m(4, 4);
  write_npy(t / "ok.npy", m);
  std::string b = read_file(t / "ok.npy");
  std::ofstream(t / "short.npy", std::ios::binary) << b.substr(0, b.size() - 3);
  EXPECT_THROW(read_npy(t / "short.npy"), Error);
  std::string f8 = b;
  f8.replace(f8.find("<f4"), 3, "<f8");
  std::ofstream(t / "f8.npy", std::ios::binary) << f8;
  try {
    read_npy(t / "f8.npy");
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("float32"), std::string::npos);
  }
}

TEST(Embeddings, ManifestRoundTripAndMismatch) {
  test::TempDir t;
  Embeddings e;
  e.x = Matrix(2, 3);
  e.rows = {{"photo/cat/1.jpg", "cat", "photo"}, {"photo/dog/2.jpg", "dog", "photo"}};
  e.meta["source"] = "test";
  write_embeddings(t / "e.npy", e);
  Embeddings r = read_embeddings(t / "e.npy");
  EXPECT_EQ(r.rows.size(), 2u);
  EXPECT_EQ(r.rows[1].cls, "dog");
  EXPECT_EQ(r.meta["source"], "test");
  EXPECT_EQ(r.meta["dim"], "3");
  // A matrix from another run with a different row count no longer matches the manifest.
  write_npy(t / "e.npy", Matrix(5, 3));
  EXPECT_THROW(read_embeddings(t / "e.npy"), Error);
  write_npy(t / "lonely.npy", Matrix(1, 1));
  EXPECT_THROW(read_embeddings(t / "lonely.npy"), Error);
}

TEST(Embeddings, AtomicWriteKeepsOldFileOnFailure) {
  test::TempDir t;
  write_file_atomic(t / "f.txt", "old");
  {
    AtomicFile f(t / "f.txt");
    f.write("new but never committed");
  }  // destroyed without commit()
  EXPECT_EQ(read_file(t / "f.txt"), "old");
  EXPECT_THROW(write_file_atomic(t / "no/such/dir/f.txt", "x"), Error);
}

TEST(Embeddings, LabelFiles) {
  test::TempDir t;
  std::ofstream(t / "l.txt") << "cat\ndog\n";
  EXPECT_EQ(read_label_file(t / "l.txt"), (std::vector<std::string>{"cat", "dog"}));
  std::ofstream(t / "bad.txt") << "cat\n\ndog\n";
  EXPECT_THROW(read_label_file(t / "bad.txt"), Error);
}
