// Domains as data, on constructed samples and images: instance links, the domains of a run, the
// classes every domain has, and the drawing/image kind rule.
#include "duet/domain.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <map>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>
#include <random>
#include <set>

#include "duet/dataset.h"
#include "duet/error.h"
#include "test_util.h"

using namespace duet;
namespace fs = std::filesystem;

namespace {
Dataset of(const std::vector<std::tuple<std::string, std::string, std::string>>&
               rows) {  // domain, class, file
  Dataset d;
  d.root = "/nonexistent";
  for (const auto& [dom, cls, file] : rows)
    d.samples.push_back({dom + "/" + cls + "/" + file, cls, dom, "", ""});
  return d;
}

// Black strokes on white: a line drawing.
cv::Mat drawing(int seed) {
  cv::Mat m(200, 160, CV_8UC3, cv::Scalar(255, 255, 255));
  std::mt19937 r(seed);
  for (int k = 0; k < 6; ++k)
    cv::line(m, cv::Point(r() % 160, r() % 200), cv::Point(r() % 160, r() % 200),
             cv::Scalar(0, 0, 0), 2);
  return m;
}
// A textured colour scene: not a drawing.
cv::Mat scene(int seed) {
  cv::Mat m(200, 160, CV_8UC3);
  cv::randu(m, cv::Scalar(0, 0, 0), cv::Scalar(255, 255, 255));
  cv::GaussianBlur(m, m, cv::Size(9, 9), 3);
  cv::circle(m, cv::Point(80, 100), 30 + seed % 20, cv::Scalar(20, 160, 60), -1);
  return m;
}
}  // namespace

TEST(Domains, InstancesLinkAFileToTheFileOfAnotherDomainItWasMadeFrom) {
  Dataset d = of({{"photo", "cat", "a.jpg"},
                  {"sketch", "cat", "a-1.png"},
                  {"sketch", "cat", "a-2.png"},
                  {"sketch", "cat", "b-1.png"},
                  {"photo", "cat", "IMG-2034.jpg"},
                  {"sketch", "dog", "a-3.png"},
                  {"sketch", "cat", "a-x.png"},
                  {"edges", "cat", "a-7.png"}});
  link_instances(d);
  std::vector<std::string> got;
  for (const auto& s : d.samples) got.push_back(s.instance);
  EXPECT_EQ(got,
            (std::vector<std::string>{"a", "a", "a",
                                      "b-1",       // no file b in another domain: its own instance
                                      "IMG-2034",  // a dash in a photo's own name links nothing
                                      "a-3",       // photo a is a cat, this sketch a dog
                                      "a-x",       // not "-<number>"
                                      "a"}));      // any domain links, not only one named "sketch"
  // The names of the domains play no part.
  Dataset r = of(
      {{"picture", "cat", "a.jpg"}, {"drawing", "cat", "a-1.png"}, {"drawing", "cat", "b-1.png"}});
  link_instances(r);
  EXPECT_EQ(r.samples[1].instance, "a");
  EXPECT_EQ(r.samples[2].instance, "b-1");
}

TEST(Domains, SplitKeepsAnInstanceOnOneSideInEveryDomain) {
  std::vector<std::tuple<std::string, std::string, std::string>> rows;
  for (int c = 0; c < 3; ++c)
    for (int i = 0; i < 10; ++i) {
      const std::string cls = "c" + std::to_string(c), id = cls + "_" + std::to_string(i);
      rows.push_back({"photo", cls, id + ".jpg"});
      rows.push_back({"sketch", cls, id + "-1.png"});
      rows.push_back({"edges", cls, id + "-2.png"});
    }
  Dataset d = of(rows);
  link_instances(d);
  make_split(d, 3);
  std::map<std::string, std::set<std::string>> sides;
  int test = 0;
  for (const auto& s : d.samples) {
    sides[s.instance].insert(s.split);
    test += s.split == "test";
  }
  EXPECT_EQ(sides.size(), 30u);
  for (const auto& [inst, sp] : sides) EXPECT_EQ(sp.size(), 1u) << inst << " is on both sides";
  EXPECT_EQ(test, 3 * 2 * 3);  // 20% of each class's 10 instances, with all 3 of their images
}

TEST(Domains, RestrictKeepsClassesWithImagesInEveryDomainAndListsTheOthers) {
  Dataset d = of({{"photo", "cat", "1.jpg"},
                  {"sketch", "cat", "1.png"},
                  {"art", "cat", "1.png"},
                  {"photo", "dog", "2.jpg"},
                  {"sketch", "dog", "2.png"},
                  {"photo", "owl", "3.jpg"},
                  {"art", "emu", "4.png"}});
  Dataset two = d;
  auto dropped = restrict_domains(two, {"sketch", "photo"});
  EXPECT_EQ(two.samples.size(), 4u);  // cat and dog, sketch and photo only
  ASSERT_EQ(dropped.size(), 2u);
  EXPECT_EQ(dropped[0].cls, "emu");
  EXPECT_EQ(dropped[0].missing,
            (std::vector<std::string>{"sketch", "photo"}));  // art only, not asked for
  EXPECT_EQ(dropped[1].cls, "owl");
  EXPECT_EQ(dropped[1].missing, (std::vector<std::string>{"sketch"}));
  Dataset three = d;
  dropped = restrict_domains(three, {"sketch", "art", "photo"});
  EXPECT_EQ(three.classes(), (std::vector<std::string>{"cat"}));
  EXPECT_EQ(dropped.size(), 3u);
  Dataset x = d;
  EXPECT_NE(test::error_of([&] {
              restrict_domains(x, {"sketch", "cartoon"});
            }).find("its domains: art, photo, sketch"),
            std::string::npos);
  Dataset y = of({{"photo", "cat", "1.jpg"}, {"sketch", "dog", "2.png"}});
  EXPECT_NE(test::error_of([&] {
              restrict_domains(y, {"sketch", "photo"});
            }).find("no class has images in every one"),
            std::string::npos);
}

TEST(Domains, ResolveFillsTheDefaultsAndNamesWhatTheDataHas) {
  Dataset sk = of({{"photo", "cat", "1.jpg"}, {"sketch", "cat", "1.png"}, {"art", "cat", "2.png"}});
  Domains d = resolve_domains(sk, {}, "");
  EXPECT_EQ(d.query, (std::vector<std::string>{kDefaultQueryDomain}));
  EXPECT_EQ(d.gallery, kDefaultGalleryDomain);
  d = resolve_domains(sk, {"art", "sketch"}, "photo");
  EXPECT_EQ(d.all(), (std::vector<std::string>{"art", "sketch", "photo"}));
  Dataset art = of({{"photo", "cat", "1.jpg"}, {"art", "cat", "1.png"}});
  std::string e = test::error_of([&] { resolve_domains(art, {}, ""); });
  EXPECT_NE(e.find("no domain 'sketch' (the default)"), std::string::npos) << e;
  EXPECT_NE(e.find("its domains are: art, photo"), std::string::npos) << e;
  EXPECT_NE(e.find("--query-domain"), std::string::npos) << e;
  EXPECT_NE(test::error_of([&] {
              resolve_domains(art, {"photo"}, "photo");
            }).find("both a query domain and the gallery"),
            std::string::npos);
  EXPECT_NE(test::error_of([&] {
              resolve_domains(sk, {"art", "art"}, "");
            }).find("named twice"),
            std::string::npos);
  Dataset one = of({{"photo", "cat", "1.jpg"}});
  EXPECT_NE(test::error_of([&] { resolve_domains(one, {"photo"}, "photo"); }).find("one domain"),
            std::string::npos);
}

TEST(Domains, KindRuleTellsLineDrawingsFromImages) {
  for (int i = 0; i < 5; ++i) {
    EXPECT_TRUE(looks_like_drawing(drawing(i))) << i;
    EXPECT_FALSE(looks_like_drawing(scene(i))) << i;
  }
  EXPECT_FALSE(looks_like_drawing(cv::Mat(64, 64, CV_8UC3, cv::Scalar(255, 255, 255))))
      << "a blank page has no strokes";
  cv::Mat product(200, 200, CV_8UC3, cv::Scalar(255, 255, 255));  // an object on white, filled
  cv::rectangle(product, cv::Rect(30, 30, 140, 140), cv::Scalar(40, 90, 200), -1);
  EXPECT_FALSE(looks_like_drawing(product)) << "half the pixels are not white";

  test::TempDir t;
  auto put = [&](const std::string& rel, const cv::Mat& m) {
    fs::create_directories(fs::path(t / rel).parent_path());
    ASSERT_TRUE(cv::imwrite(t / rel, m));
  };
  for (int i = 0; i < 6; ++i) {
    put("lines/c/" + std::to_string(i) + ".png", drawing(i));
    put("scenes/c/" + std::to_string(i) + ".png", i == 0 ? drawing(9) : scene(i));  // one odd image
  }
  Dataset d = load_folder(t.path());
  KindGuess g = detect_kind(d, "lines");
  EXPECT_EQ(g.kind, DomainKind::Drawing);
  EXPECT_EQ(g.looked, 6);
  EXPECT_EQ(g.drawings, 6);
  g = detect_kind(d, "scenes");
  EXPECT_EQ(g.kind, DomainKind::Image);
  EXPECT_EQ(g.drawings, 1);
  EXPECT_NE(g.describe("scenes").find("1 of 6"), std::string::npos);
  auto k = decide_kinds(d, {"lines", "scenes"}, parse_kind_overrides("scenes=drawing"));
  EXPECT_EQ(k.at("lines"), DomainKind::Drawing);
  EXPECT_EQ(k.at("scenes"), DomainKind::Drawing);  // the override wins over the rule
  EXPECT_NE(test::error_of([&] {
              decide_kinds(d, {"lines"}, parse_kind_overrides("art=image"));
            }).find("not a domain"),
            std::string::npos);
}

TEST(Domains, KindOverridesParse) {
  auto m = parse_kind_overrides("art=image,sketch=drawing");
  EXPECT_EQ(m.size(), 2u);
  EXPECT_EQ(m.at("art"), DomainKind::Image);
  EXPECT_EQ(m.at("sketch"), DomainKind::Drawing);
  EXPECT_EQ(std::string(kind_name(parse_kind("drawing"))), "drawing");
  EXPECT_NE(test::error_of([] { parse_kind_overrides("art"); }).find("DOMAIN=KIND"),
            std::string::npos);
  EXPECT_NE(test::error_of([] { parse_kind_overrides("=image"); }).find("DOMAIN=KIND"),
            std::string::npos);
  EXPECT_NE(test::error_of([] { parse_kind_overrides("art=paint"); }).find("drawing"),
            std::string::npos);
}
