// Data layer on deliberately constructed folders: layouts, bad input, split determinism and leaks.
#include "duet/dataset.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>
#include <set>

#include "duet/error.h"
#include "duet/image.h"
#include "test_util.h"

using namespace duet;
namespace fs = std::filesystem;

namespace {
void write_png(const std::string& path, int value = 200) {
  fs::create_directories(fs::path(path).parent_path());
  cv::Mat m(16, 16, CV_8UC3, cv::Scalar(value, value, value));
  ASSERT_TRUE(cv::imwrite(path, m));
}

// <root>/photo/<cls>/<cls>_<i>.jpg and <root>/sketch/<cls>/<cls>_<i>-<k>.png
void make_folder(const std::string& root, int classes, int photos, int sketches_per_photo) {
  for (int c = 0; c < classes; ++c) {
    std::string cls = "class" + std::to_string(c);
    for (int p = 0; p < photos; ++p) {
      std::string id = cls + "_" + std::to_string(p);
      write_png(root + "/photo/" + cls + "/" + id + ".png");
      for (int k = 1; k <= sketches_per_photo; ++k)
        write_png(root + "/sketch/" + cls + "/" + id + "-" + std::to_string(k) + ".png", 255);
    }
  }
}

}  // namespace

TEST(Dataset, ReadsImageFolder) {
  test::TempDir t;
  make_folder(t.path(), 3, 4, 2);
  Dataset d = load_folder(t.path());
  EXPECT_EQ(d.samples.size(), 3u * 4 + 3u * 4 * 2);
  EXPECT_EQ(d.classes().size(), 3u);
  EXPECT_EQ(d.domains(), (std::vector<std::string>{"photo", "sketch"}));
  auto sk = d.select("sketch");
  EXPECT_EQ(sk[0].path, "sketch/class0/class0_0-1.png");
  EXPECT_EQ(sk[0].instance, "class0_0");
  EXPECT_EQ(d.select("photo")[0].instance, "class0_0");
}

TEST(Dataset, ReadsSketchyReleaseAndHonoursInvalidLists) {
  test::TempDir t;
  make_folder(t / "tmp", 2, 2, 3);
  fs::create_directories(t / "photo/tx_000000000000");
  fs::create_directories(t / "sketch/tx_000000000000");
  fs::rename(t / "tmp/photo/class0", t / "photo/tx_000000000000/class0");
  fs::rename(t / "tmp/photo/class1", t / "photo/tx_000000000000/class1");
  fs::rename(t / "tmp/sketch/class0", t / "sketch/tx_000000000000/class0");
  fs::rename(t / "tmp/sketch/class1", t / "sketch/tx_000000000000/class1");
  fs::remove_all(t / "tmp");
  fs::create_directories(t / "info");
  std::ofstream(t / "info/invalid-ambiguous.txt") << "class0_0-2\n";
  std::ofstream(t / "info/invalid-error.txt") << "class1_1-3\nclass1_1-1\n";
  Dataset d = load_folder(t.path());
  EXPECT_EQ(d.select("photo").size(), 4u);
  auto sk = d.select("sketch");
  EXPECT_EQ(sk.size(), 12u - 3u);
  for (const auto& s : sk) {
    EXPECT_NE(s.path, "sketch/tx_000000000000/class0/class0_0-2.png");
    EXPECT_NE(s.path, "sketch/tx_000000000000/class1/class1_1-1.png");
  }
  EXPECT_EQ(sk[0].cls, "class0");
}

TEST(Dataset, BadLayoutsGiveClearErrors) {
  test::TempDir t;
  EXPECT_NE(test::error_of([&] { load_folder(t / "nope"); }).find("no such dataset folder"),
            std::string::npos);
  EXPECT_NE(test::error_of([&] { load_folder(t.path()); }).find("no images found"),
            std::string::npos);
  make_folder(t.path(), 2, 2, 1);
  fs::create_directories(t / "photo/empty_class");
  std::string msg = test::error_of([&] { load_folder(t.path()); });
  EXPECT_NE(msg.find("empty_class"), std::string::npos) << msg;
  LoadOptions skip;
  skip.skip_bad = true;
  EXPECT_EQ(load_folder(t.path(), skip).classes().size(), 2u);
}

TEST(Dataset, CorruptImagesAreNamedOrSkipped) {
  test::TempDir t;
  make_folder(t.path(), 2, 2, 1);
  std::ofstream(t / "photo/class0/broken.jpg") << "this is not a jpeg";
  std::string msg = test::error_of([&] { load_rgb(t / "photo/class0/broken.jpg"); });
  EXPECT_NE(msg.find("broken.jpg"), std::string::npos) << msg;
  LoadOptions check;
  check.check_images = true;
  EXPECT_NE(test::error_of([&] { load_folder(t.path(), check); }).find("broken.jpg"),
            std::string::npos);
  check.skip_bad = true;
  EXPECT_EQ(load_folder(t.path(), check).select("photo").size(), 4u);
  // An empty file says so in one line (no decoder's assertion text).
  std::ofstream(t / "empty.png").flush();
  msg = test::error_of([&] { load_rgb(t / "empty.png"); });
  EXPECT_EQ(msg, (t / "empty.png") + ": empty file (not an image)");
}

TEST(Dataset, SplitFileRoundTripAndMissingFiles) {
  test::TempDir t;
  make_folder(t / "ds", 2, 3, 2);
  Dataset d = load_folder(t / "ds");
  make_split(d, 1);
  fs::create_directories(t / "ds/splits");
  write_split(t / "ds/splits/mine.tsv", d);
  Dataset r = load_split(t / "ds/splits/mine.tsv");
  ASSERT_EQ(r.samples.size(), d.samples.size());
  for (size_t i = 0; i < r.samples.size(); ++i) {
    EXPECT_EQ(r.samples[i].path, d.samples[i].path);
    EXPECT_EQ(r.samples[i].split, d.samples[i].split);
  }
  fs::remove(t / "ds/photo/class1/class1_2.png");
  std::string msg = test::error_of([&] { load_split(t / "ds/splits/mine.tsv"); });
  EXPECT_NE(msg.find("class1_2.png"), std::string::npos) << msg;
  LoadOptions skip;
  skip.skip_bad = true;
  EXPECT_EQ(load_split(t / "ds/splits/mine.tsv", "", skip).samples.size(), d.samples.size() - 1);
  std::ofstream(t / "bad.tsv") << "path\tclass\n";
  EXPECT_NE(test::error_of([&] { load_split(t / "bad.tsv"); }).find("header"), std::string::npos);
}

TEST(Dataset, SplitIsDeterministicStratifiedAndLeakFree) {
  test::TempDir t;
  make_folder(t.path(), 5, 10, 3);
  Dataset a = load_folder(t.path()), b = a, c = a;
  make_split(a, 42);
  make_split(b, 42);
  make_split(c, 43);
  bool differs = false;
  for (size_t i = 0; i < a.samples.size(); ++i) {
    EXPECT_EQ(a.samples[i].split, b.samples[i].split);
    differs |= a.samples[i].split != c.samples[i].split;
  }
  EXPECT_TRUE(differs) << "another seed should give another split";
  std::map<std::string, std::set<std::string>> sides;  // instance -> splits it appears in
  std::map<std::string, int> test_photos;              // class -> test photos
  for (const auto& s : a.samples) {
    sides[s.cls + "/" + s.instance].insert(s.split);
    if (s.domain == "photo" && s.split == "test") ++test_photos[s.cls];
  }
  for (const auto& [inst, sp] : sides)
    EXPECT_EQ(sp.size(), 1u) << inst << " leaks across the split";
  for (int c2 = 0; c2 < 5; ++c2)
    EXPECT_EQ(test_photos["class" + std::to_string(c2)], 2);  // 20% of 10
}

// A sketch's source photo is the photo of its own class with its stem: stems repeat across classes.
TEST(Dataset, SourceRowsMatchClassAndInstance) {
  Dataset d;
  for (const char* p :
       {"photo/cat/1.jpg", "photo/dog/1.jpg", "photo/dog/2.jpg", "sketch/dog/1-1.png",
        "sketch/cat/1-2.png", "sketch/cat/3-1.png", "sketch/dog/2.png"}) {
    const std::string path = p;
    d.samples.push_back({path, fs::path(path).parent_path().filename().string(),
                         path.substr(0, path.find('/')), "", ""});
  }
  link_instances(d);
  const std::vector<std::string> photos{"photo/cat/1.jpg", "photo/dog/1.jpg", "photo/dog/2.jpg"};
  EXPECT_EQ(
      source_rows(
          d, {"sketch/dog/1-1.png", "sketch/cat/1-2.png", "sketch/cat/3-1.png", "sketch/dog/2.png"},
          photos),
      (std::vector<int64_t>{1, 0, -1,
                            2}));  // 3-1: no photo 3; dog/2.png: the same stem, one instance
  EXPECT_EQ(source_rows(d, {"sketch/dog/1-1.png"}, {"photo/cat/1.jpg"}),
            (std::vector<int64_t>{-1}));
  EXPECT_THROW(source_rows(d, {"sketch/elsewhere.png"}, photos), Error);
}

TEST(Dataset, ZeroShotSplitHoldsOutWholeClasses) {
  test::TempDir t;
  make_folder(t.path(), 10, 2, 1);
  Dataset d = load_folder(t.path());
  make_zeroshot_split(d, 5, 0.2);
  auto test = d.classes("test"), train = d.classes("train");
  EXPECT_EQ(test.size(), 2u);
  for (const auto& c : test) EXPECT_EQ(std::count(train.begin(), train.end(), c), 0);
}

// An extra source trains on every class but the ones the split holds out: a zero-shot split's
// unseen classes and the main dataset's classes the split leaves out, named by class alone.
TEST(Dataset, ExtraSourcesMergeByClassAndNeverTeachHeldOutClasses) {
  test::TempDir t;
  make_folder(t / "main", 4, 2, 1);  // class0..class3
  Dataset d = load_folder(t / "main");
  for (auto& s : d.samples) s.split = s.cls == "class3" ? "test" : "train";
  // class2 leaves the split altogether (as a validation split carved from a zero-shot one does).
  d.samples.erase(std::remove_if(d.samples.begin(), d.samples.end(),
                                 [](const Sample& s) { return s.cls == "class2"; }),
                  d.samples.end());
  const auto held = held_out_classes(d, load_folder(t / "main").classes());
  EXPECT_EQ(held, (std::set<std::string>{"class2", "class3"}));

  // The extra: sketches of a seen class, the unseen one, the one the split left out, a class the
  // main dataset lacks, and paintings (a domain the run does not have).
  for (const char* c : {"class0", "class2", "class3", "moon"})
    for (int i = 0; i < 3; ++i)
      write_png(t / ("extra/sketch/" + std::string(c) + "/" + std::to_string(i) + ".png"), 255);
  write_png(t / "extra/painting/moon/0.png");
  const size_t before = d.samples.size();
  ExtraSource x = merge_extra(d, load_folder(t / "extra"), "extra", {"photo", "sketch"}, held);
  EXPECT_EQ(x.classes, (std::vector<std::string>{"class0", "moon"}));
  EXPECT_EQ(x.held_out, (std::vector<std::string>{"class2", "class3"}));
  EXPECT_EQ(x.ignored_domains, std::vector<std::string>{"painting"});
  EXPECT_EQ(x.images.at("sketch"), 6);
  // The held-out classes' images stay, marked excluded, so that every split lists the same
  // images; they never train.
  ASSERT_EQ(d.samples.size(), before + 12);
  for (size_t i = before; i < d.samples.size(); ++i) {
    const Sample& s = d.samples[i];
    const bool held = s.cls == "class2" || s.cls == "class3";
    EXPECT_EQ(s.split, held ? kExcluded : "train") << s.cls;
    EXPECT_EQ(s.source, "extra");
    EXPECT_TRUE(held || s.cls == "class0" || s.cls == "moon") << s.cls;
    EXPECT_TRUE(fs::path(s.path).is_absolute()) << s.path;
    EXPECT_EQ(d.abs_path(s), s.path);  // read from its own folder, not the main root
    EXPECT_TRUE(fs::exists(d.abs_path(s)));
    EXPECT_EQ(s.instance.rfind("extra:", 0), 0u) << s.instance;  // never a main image's instance
  }
  // With a class limit only the extra's first classes it may teach; nothing left is an error.
  Dataset d2 = load_folder(t / "main");
  for (auto& s : d2.samples) s.split = "train";
  const auto train = d.classes("train");
  EXPECT_EQ(std::count(train.begin(), train.end(), "class3"), 0);
  EXPECT_EQ(merge_extra(d2, load_folder(t / "extra"), "extra", {"sketch"}, {}, 1).classes,
            std::vector<std::string>{"class0"});
  EXPECT_THROW(merge_extra(d2, load_folder(t / "extra"), "extra", {"photo"}, {}), Error);
}

TEST(Dataset, ImagePreprocessing) {
  test::TempDir t;
  cv::Mat m(4, 4, CV_8UC1, cv::Scalar(0));
  cv::imwrite(t / "grey.png", m);
  cv::Mat rgb = load_rgb(t / "grey.png");
  EXPECT_EQ(rgb.channels(), 3);
  std::vector<float> x(3 * 8 * 8);
  to_chw(rgb, 8, x.data());
  EXPECT_FLOAT_EQ(x[0], -1.0f);  // (0 - 128) / 128
  // Transparent pixels become white.
  cv::Mat bgra(4, 4, CV_8UC4, cv::Scalar(0, 0, 0, 0));
  cv::imwrite(t / "alpha.png", bgra);
  EXPECT_EQ(load_rgb(t / "alpha.png").at<cv::Vec3b>(0, 0)[0], 255);
}

// A phone stores a portrait photo as a landscape JPEG with EXIF orientation 6 (turn 90 degrees
// clockwise to view): an 80 x 40 image, red on its left half, with that tag (an APP1 block written
// by hand after the JPEG's start marker) decodes as 40 x 80, red on its top half.
TEST(Dataset, JpegExifOrientation) {
  test::TempDir t;
  cv::Mat img(40, 80, CV_8UC3, cv::Scalar(0, 0, 0));
  img(cv::Rect(0, 0, 40, 40)).setTo(cv::Scalar(0, 0, 255));  // BGR red
  std::vector<uchar> jpg;
  ASSERT_TRUE(cv::imencode(".jpg", img, jpg));
  // "Exif\0\0", then TIFF little-endian: header, IFD0 at 8 with one entry (0x0112 Orientation,
  // SHORT, count 1, value 6), no next IFD.
  const std::vector<uchar> exif = {'E',  'x',  'i', 'f', 0, 0, 'I', 'I', 42, 0, 8, 0, 0, 0, 1, 0,
                                   0x12, 0x01, 3,   0,   1, 0, 0,   0,   6,  0, 0, 0, 0, 0, 0, 0};
  std::vector<uchar> app1 = {0xFF, 0xE1, 0, static_cast<uchar>(exif.size() + 2)};
  app1.insert(app1.end(), exif.begin(), exif.end());
  jpg.insert(jpg.begin() + 2, app1.begin(), app1.end());
  std::ofstream(t / "portrait.jpg", std::ios::binary)
      .write(reinterpret_cast<const char*>(jpg.data()), static_cast<std::streamsize>(jpg.size()));
  cv::Mat rgb = load_rgb(t / "portrait.jpg");
  ASSERT_EQ(rgb.rows, 80);
  ASSERT_EQ(rgb.cols, 40);
  const cv::Vec3b top = rgb.at<cv::Vec3b>(10, 20), bottom = rgb.at<cv::Vec3b>(70, 20);
  EXPECT_GT(top[0], 240);  // RGB: red
  EXPECT_LT(top[2], 15);
  EXPECT_LT(bottom[0], 15);  // black
  // Without the tag, the same pixels stay as stored.
  jpg.erase(jpg.begin() + 2, jpg.begin() + 2 + static_cast<long>(app1.size()));
  std::ofstream(t / "plain.jpg", std::ios::binary)
      .write(reinterpret_cast<const char*>(jpg.data()), static_cast<std::streamsize>(jpg.size()));
  EXPECT_EQ(load_rgb(t / "plain.jpg").size(), cv::Size(80, 40));
}

// A 20 x 10 stroke box drawn off-centre in a 100 x 80 image comes back alone, centred on a white
// square of side floor(20 * kFrameMargin) + 2.
TEST(Dataset, FrameStrokes) {
  cv::Mat img(80, 100, CV_8UC3, cv::Scalar(255, 255, 255));
  cv::rectangle(img, cv::Rect(60, 5, 20, 10), cv::Scalar(0, 0, 0),
                1);                                      // outline: x 60..79, y 5..14
  img.at<cv::Vec3b>(70, 10) = cv::Vec3b(230, 230, 230);  // light noise: not a stroke
  cv::Mat f = frame_strokes(img);
  const int side = static_cast<int>(20 * kFrameMargin) + 2;
  ASSERT_EQ(f.rows, side);
  ASSERT_EQ(f.cols, side);
  const int x0 = (side - 20) / 2, y0 = (side - 10) / 2;
  EXPECT_EQ(f.at<cv::Vec3b>(y0, x0), cv::Vec3b(0, 0, 0));  // box corners where expected
  EXPECT_EQ(f.at<cv::Vec3b>(y0 + 9, x0 + 19), cv::Vec3b(0, 0, 0));
  EXPECT_EQ(f.at<cv::Vec3b>(y0 + 5, x0 + 10), cv::Vec3b(255, 255, 255));  // inside the outline
  EXPECT_EQ(f.at<cv::Vec3b>(0, 0), cv::Vec3b(255, 255, 255));             // margin
  EXPECT_EQ(f.at<cv::Vec3b>(side - 1, side - 1), cv::Vec3b(255, 255, 255));
  EXPECT_EQ(cv::countNonZero(f.reshape(1) == 0), 3 * (2 * 20 + 2 * 8));  // every stroke pixel kept
  // Nothing to frame: the image comes back as it was.
  cv::Mat blank(30, 40, CV_8UC3, cv::Scalar(255, 255, 255));
  EXPECT_EQ(frame_strokes(blank).size(), blank.size());
  // A 6000 x 3 stroke would ask for a 9002-pixel square: the box is shrunk by 2046 / 9000 first
  // (to 1364 x 1, rounded; INTER_AREA keeps it black) and centred on the kMaxFrameSide square.
  cv::Mat bar(3, 6000, CV_8UC3, cv::Scalar(0, 0, 0));
  cv::Mat g = frame_strokes(bar);
  ASSERT_EQ(g.rows, kMaxFrameSide);
  ASSERT_EQ(g.cols, kMaxFrameSide);
  const int w = 1364;  // (2048 - 2) / 1.5
  const int gx = (kMaxFrameSide - w) / 2, gy = (kMaxFrameSide - 1) / 2;
  EXPECT_EQ(g.at<cv::Vec3b>(gy, gx), cv::Vec3b(0, 0, 0));
  EXPECT_EQ(g.at<cv::Vec3b>(gy, gx + w - 1), cv::Vec3b(0, 0, 0));
  EXPECT_EQ(g.at<cv::Vec3b>(gy, gx - 1), cv::Vec3b(255, 255, 255));
  EXPECT_EQ(g.at<cv::Vec3b>(gy, gx + w), cv::Vec3b(255, 255, 255));
  EXPECT_EQ(cv::countNonZero(g.reshape(1) == 0), 3 * w);  // one row of ink, nothing else
}
