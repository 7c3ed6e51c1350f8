// Decoding untrusted image files: the pixel cap read from each format's header before any pixel
// is decoded, the formats OpenCV would decode but duet refuses, compositing and empty drawings.
#include "duet/image.h"

#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <cstring>
#include <opencv2/imgcodecs.hpp>

#include "duet/error.h"
#include "duet/fileio.h"
#include "test_util.h"

namespace duet {
namespace {

std::string encode(const std::string& ext, const cv::Mat& img, std::vector<int> params = {}) {
  std::vector<uchar> buf;
  try {
    if (!cv::imencode(ext, img, buf, params)) return "";
  } catch (const cv::Exception&) {
    return "";  // an encoder this OpenCV lacks
  }
  return std::string(buf.begin(), buf.end());
}

cv::Mat picture(int w, int h) {
  cv::Mat img(h, w, CV_8UC3);
  cv::randu(img, 0, 255);
  return img;
}

void put_be16(std::string& s, size_t at, uint32_t v) { s[at] = char(v >> 8), s[at + 1] = char(v); }
void put_le(std::string& s, size_t at, uint32_t v, int bytes) {
  for (int i = 0; i < bytes; ++i) s[at + i] = char(v >> (8 * i));
}

// The message decode_rgb gives `bytes`, and how long it took to give it.
std::pair<std::string, double> refusal(const std::string& bytes, bool too_large) {
  const auto t = std::chrono::steady_clock::now();
  std::string msg;
  try {
    decode_rgb(bytes, "bomb");
    ADD_FAILURE() << "decoded";
  } catch (const ImageTooLarge& e) {
    EXPECT_TRUE(too_large) << e.what();
    msg = e.what();
  } catch (const Error& e) {
    EXPECT_FALSE(too_large) << e.what();
    msg = e.what();
  }
  return {msg, std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count()};
}

// Each of the four formats: a real file's header reads as the encoder wrote it, and the same file
// with its size fields patched to claim a huge image is refused from the header, before decoding
// (within milliseconds: libpng and libjpeg would otherwise allocate gigabytes).
TEST(Image, PixelCapFromEachFormatsHeader) {
  const cv::Mat img = picture(64, 48);
  struct Case {
    const char* name;
    std::string bytes;
    std::function<void(std::string&)> claim_huge;
  };
  std::vector<Case> cases;
  cases.push_back({"JPEG", encode(".jpg", img), [](std::string& s) {
                     // The first start-of-frame segment (FF C0), behind JFIF and the tables.
                     const size_t sof = s.find("\xFF\xC0");
                     ASSERT_NE(sof, std::string::npos);
                     put_be16(s, sof + 5, 60000), put_be16(s, sof + 7, 60000);
                   }});
  cases.push_back({"PNG", encode(".png", img), [](std::string& s) {
                     put_le(s, 16, 0x00000100, 4),
                         put_le(s, 20, 0x00000100, 4);  // 65536 x 65536, big-endian
                   }});
  cases.push_back({"BMP", encode(".bmp", img), [](std::string& s) {
                     put_le(s, 18, 30000, 4),
                         put_le(s, 22, static_cast<uint32_t>(-30000), 4);  // top-down
                   }});
  cases.push_back(
      {"WebP", encode(".webp", img, {cv::IMWRITE_WEBP_QUALITY, 80}), [](std::string& s) {
         ASSERT_EQ(s.substr(12, 4), "VP8 ");
         put_le(s, 26, 16383, 2), put_le(s, 28, 16383, 2);
       }});
  cases.push_back(
      {"WebP", encode(".webp", img, {cv::IMWRITE_WEBP_QUALITY, 101}), [](std::string& s) {
         ASSERT_EQ(s.substr(12, 4), "VP8L");
         put_le(s, 21, 0xFFFFFFF, 4);  // 14 + 14 bits of width and height less one: 16384 x 16384
       }});
  for (auto& c : cases) {
    ASSERT_FALSE(c.bytes.empty()) << c.name;
    const ImageHeader h = image_header(c.bytes, "real");
    EXPECT_STREQ(h.format, c.name);
    EXPECT_EQ(h.width, 64) << c.name;
    EXPECT_EQ(h.height, 48) << c.name;
    EXPECT_EQ(decode_rgb(c.bytes, "real").size(), cv::Size(64, 48)) << c.name;
    c.claim_huge(c.bytes);
    const auto [msg, secs] = refusal(c.bytes, true);
    EXPECT_NE(msg.find("bomb: a " + std::string(c.name) + " of "), std::string::npos) << msg;
    EXPECT_NE(msg.find("larger than the limit of " + std::to_string(kDefaultMaxImagePixels)),
              std::string::npos)
        << msg;
    EXPECT_LT(secs, 0.05) << c.name;
  }
  // Sides whose product overflows 64 bits: refused, not wrapped below the cap.
  std::string png = encode(".png", img);
  put_le(png, 16, 0xFFFFFFFF, 4), put_le(png, 20, 0xFFFFFFFF, 4);
  EXPECT_NE(refusal(png, true).first.find("PNG of 4294967295 x 4294967295"), std::string::npos);
  // The OS/2 BMP header (16-bit sizes) and WebP's extended header (24-bit canvas sizes), by hand.
  std::string bmp(26, '\0');
  bmp.replace(0, 2, "BM"), put_le(bmp, 14, 12, 4), put_le(bmp, 18, 65535, 2),
      put_le(bmp, 20, 65535, 2);
  EXPECT_NE(refusal(bmp, true).first.find("BMP of 65535 x 65535"), std::string::npos);
  std::string vp8x = "RIFF" + std::string(4, '\0') + "WEBPVP8X" + std::string(18, '\0');
  put_le(vp8x, 24, 0xFFFFFF, 3), put_le(vp8x, 27, 0xFFFFFF, 3);
  EXPECT_NE(refusal(vp8x, true).first.find("WebP of 16777216 x 16777216"), std::string::npos);
  // Headers cut short or without a frame: refused as malformed, not read past their end.
  EXPECT_NE(refusal(std::string("\xFF\xD8\xFF\xE0\x00\x10", 6), false).first.find("malformed JPEG"),
            std::string::npos);
  EXPECT_NE(refusal(std::string("\x89PNG\r\n\x1A\n\0\0", 10), false).first.find("malformed PNG"),
            std::string::npos);
  EXPECT_NE(refusal("BM\x01", false).first.find("malformed BMP"), std::string::npos);
}

// Formats OpenCV decodes but duet does not: each is refused by its magic bytes before a decoder
// sees it, also when OpenCV itself would decode it (shown for those OpenCV can write).
TEST(Image, OtherFormatsAreRefusedBeforeOpenCV) {
  const cv::Mat img = picture(64, 64), grey = cv::Mat(64, 64, CV_8U, cv::Scalar(90));
  cv::Mat hdr;
  img.convertTo(hdr, CV_32FC3, 1.0 / 255);
  const std::vector<std::pair<const char*, std::string>> opencv_writes = {
      {"TIFF", encode(".tiff", img)},        {"PPM", encode(".ppm", img)},
      {"PGM", encode(".pgm", grey)},         {"PBM", encode(".pbm", grey)},
      {"PAM", encode(".pam", img)},          {"Sun raster", encode(".ras", img)},
      {"Radiance HDR", encode(".hdr", hdr)}, {"PFM", encode(".pfm", hdr)},
      {"JPEG 2000", encode(".jp2", img)}};
  int decodable = 0;
  for (const auto& [name, bytes] : opencv_writes) {
    if (bytes.empty()) continue;
    const std::vector<uchar> buf(bytes.begin(), bytes.end());
    decodable += !cv::imdecode(buf, cv::IMREAD_UNCHANGED).empty();
    EXPECT_NE(refusal(bytes, false).first.find("not a format duet reads"), std::string::npos)
        << name;
  }
  EXPECT_GE(decodable, 8);
  // Bombs in those formats' own words, and formats OpenCV cannot write: the same refusal.
  const std::vector<std::string> magic = {
      "P6\n100000 100000\n255\n",
      "P7\nWIDTH 100000\nHEIGHT 100000\nDEPTH 3\nMAXVAL 255\nENDHDR\n",
      std::string("II*\0\x08\0\0\0", 8),
      "MM\0*",
      std::string("\x59\xA6\x6A\x95", 4),
      "#?RADIANCE\nFORMAT=32-bit_rle_rgbe\n\n-Y 100000 +X 100000\n",
      "PF\n100000 100000\n-1.0\n",
      std::string("\0\0\0\x0CjP  \r\n\x87\n", 12),
      std::string("\xFF\x4F\xFF\x51", 4),
      std::string("\x76\x2F\x31\x01", 4),
      std::string(128, '\0') + "DICM",
      "GIF89a\xFF\xFF\xFF\xFF"};
  for (const auto& m : magic)
    EXPECT_NE(refusal(m, false).first.find("not a format duet reads"), std::string::npos) << m;
}

// Compositing on white in integers gives what the float formula c * a / 255 + (255 - a) rounds
// to, for every colour and alpha.
TEST(Image, AlphaCompositedOnWhiteExactly) {
  cv::Mat bgra(256, 256, CV_8UC4);
  for (int a = 0; a < 256; ++a)
    for (int c = 0; c < 256; ++c)
      bgra.at<cv::Vec4b>(a, c) = {uchar(c), uchar(255 - c), uchar(c / 2), uchar(a)};
  const cv::Mat rgb = decode_rgb(encode(".png", bgra), "alpha.png");
  ASSERT_EQ(rgb.type(), CV_8UC3);
  auto want = [](int c, int a) { return static_cast<int>(std::lround(c * a / 255.0 + 255 - a)); };
  for (int a = 0; a < 256; ++a)
    for (int c = 0; c < 256; ++c) {
      const cv::Vec3b p = rgb.at<cv::Vec3b>(a, c);  // RGB: the BGRA's channels 2, 1, 0
      ASSERT_EQ(p[0], want(c / 2, a)) << a << " " << c;
      ASSERT_EQ(p[1], want(255 - c, a)) << a << " " << c;
      ASSERT_EQ(p[2], want(c, a)) << a << " " << c;
    }
  // 16-bit RGBA is scaled to 8 bits first: 65535 -> 255.
  cv::Mat deep(4, 4, CV_16UC4, cv::Scalar(0, 0, 65535, 65535));
  EXPECT_EQ(decode_rgb(encode(".png", deep), "deep.png").at<cv::Vec3b>(0, 0), cv::Vec3b(255, 0, 0));
}

TEST(Image, InkIsWhatFramingTakesAsStrokes) {
  cv::Mat page(50, 80, CV_8UC3, cv::Scalar(255, 255, 255));
  EXPECT_FALSE(has_ink(page));
  page(cv::Rect(10, 10, 30, 20)).setTo(cv::Scalar(230, 230, 230));  // light grey: paper, JPEG noise
  EXPECT_FALSE(has_ink(page));
  page.at<cv::Vec3b>(40, 70) = {200, 200, 200};  // one stroke pixel
  EXPECT_TRUE(has_ink(page));
}

TEST(Image, TruncatedAndUnreadableAreRefused) {
  test::TempDir t;
  const std::string whole = encode(".jpg", cv::Mat(64, 64, CV_8UC3, cv::Scalar(10, 200, 30)));
  EXPECT_EQ(decode_rgb(whole, "ok.jpg").rows, 64);
  EXPECT_NE(test::error_of([&] {
              decode_rgb(whole.substr(0, whole.size() / 2), "cut.jpg");
            }).find("truncated JPEG"),
            std::string::npos);
  EXPECT_NE(test::error_of([&] { decode_rgb("", "e.png"); }).find("e.png: empty file"),
            std::string::npos);
  EXPECT_NE(test::error_of([&] { load_rgb(t / "none.png"); }).find("no such image file"),
            std::string::npos);
  uint64_t h1 = 0, h2 = 0;
  write_file_atomic(t / "a.jpg", whole);
  write_file_atomic(t / "b.jpg", whole);
  load_rgb(t / "a.jpg", &h1);
  load_rgb(t / "b.jpg", &h2);
  EXPECT_EQ(h1, h2);  // content, not name
  EXPECT_EQ(h1, fnv1a(whole));
}

}  // namespace
}  // namespace duet
