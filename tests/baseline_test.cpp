// The HOG baseline on a constructed dataset whose classes differ in stroke orientation: sketches
// of horizontal bars must retrieve the photos of horizontal bars first.
#include "duet/baseline.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include "duet/dataset.h"
#include "test_util.h"

using namespace duet;
namespace fs = std::filesystem;

TEST(Baseline, HogSeparatesStrokeOrientation) {
  test::TempDir t;
  Dataset d;
  d.root = t.path();
  for (int c = 0; c < 2; ++c) {
    const std::string cls = c ? "vertical" : "horizontal";
    for (int i = 0; i < 6; ++i) {
      for (const std::string dom : {"sketch", "photo"}) {
        // Sketch: black bars on white. Photo: a textured grey scene with the same bars in colour.
        cv::Mat img(128, 128, CV_8UC3,
                    dom == "sketch" ? cv::Scalar(255, 255, 255) : cv::Scalar(90, 140, 60));
        for (int k = 0; k < 5; ++k) {
          int p = 12 + k * 24 + i;
          cv::Point a = c ? cv::Point(p, 8) : cv::Point(8, p),
                    b = c ? cv::Point(p, 120) : cv::Point(120, p);
          cv::line(img, a, b, dom == "sketch" ? cv::Scalar(0, 0, 0) : cv::Scalar(240, 230, 250), 3);
        }
        std::string rel =
            dom + "/" + cls + "/" + cls + std::to_string(i) + (dom == "sketch" ? "-1.png" : ".png");
        fs::create_directories(fs::path(t / rel).parent_path());
        ASSERT_TRUE(cv::imwrite(t / rel, img));
        d.samples.push_back({rel, cls, dom, i < 2 ? "train" : "test", cls + std::to_string(i)});
      }
    }
  }
  fs::create_directories(t / "splits");
  write_split(t / "splits/s.tsv", d);
  BaselineOptions o;
  o.split_file = t / "splits/s.tsv";
  auto r = baseline_hog(o);
  EXPECT_EQ(r.metrics.queries, 8);
  EXPECT_GT(r.metrics.map_all, 0.95);
}
