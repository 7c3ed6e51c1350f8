#include "duet/image.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include "duet/error.h"
#include "duet/fileio.h"

namespace duet {

namespace {

uint32_t be16(const unsigned char* p) { return (uint32_t{p[0]} << 8) | p[1]; }
uint32_t be32(const unsigned char* p) { return (be16(p) << 16) | be16(p + 2); }
uint32_t le16(const unsigned char* p) { return (uint32_t{p[1]} << 8) | p[0]; }
uint32_t le24(const unsigned char* p) { return (uint32_t{p[2]} << 16) | le16(p); }
uint32_t le32(const unsigned char* p) { return (uint32_t{p[3]} << 24) | le24(p); }

// The frame size of a JPEG: the first start-of-frame segment, as libjpeg reads it (a second one,
// or a scan before any, is an error there too).
ImageHeader jpeg_header(const unsigned char* b, size_t n, const std::string& name) {
  size_t i = 2;
  while (i + 4 <= n) {
    if (b[i] != 0xFF) fail(name, ": malformed JPEG (no marker at byte ", i, ")");
    const unsigned char m = b[i + 1];
    if (m == 0xFF) {  // fill byte before a marker
      ++i;
      continue;
    }
    if (m == 0x01 || (m >= 0xD0 && m <= 0xD7)) {  // markers without a length
      i += 2;
      continue;
    }
    if (m == 0xD9 || m == 0xDA) break;  // end of image, or a scan before any frame header
    const size_t len = be16(b + i + 2);
    if (len < 2) fail(name, ": malformed JPEG (segment length ", len, ")");
    const bool sof = m >= 0xC0 && m <= 0xCF && m != 0xC4 && m != 0xC8 && m != 0xCC;
    if (sof) {
      if (len < 7 || i + 9 > n) break;
      ImageHeader h{"JPEG", be16(b + i + 7), be16(b + i + 5)};
      if (h.width == 0 || h.height == 0)
        fail(name, ": JPEG of ", h.width, " x ", h.height, " pixels");
      return h;
    }
    i += 2 + len;
  }
  fail(name, ": malformed JPEG (no frame header)");
}

}  // namespace

ImageHeader image_header(const std::string& bytes, const std::string& name) {
  const auto* b = reinterpret_cast<const unsigned char*>(bytes.data());
  const size_t n = bytes.size();
  auto starts = [&](const char* magic, size_t at = 0) {
    const size_t m = std::strlen(magic);
    return n >= at + m && std::memcmp(b + at, magic, m) == 0;
  };
  ImageHeader h;
  if (n == 0) fail(name, ": empty file (not an image)");
  if (starts("\xFF\xD8\xFF")) return jpeg_header(b, n, name);
  if (starts("\x89PNG\r\n\x1A\n")) {
    // The first chunk is IHDR: width and height, 4 bytes each, big-endian.
    if (n < 24 || !starts("IHDR", 12)) fail(name, ": malformed PNG (no IHDR chunk first)");
    h = {"PNG", be32(b + 16), be32(b + 20)};
  } else if (starts("BM")) {
    // BITMAPINFOHEADER and its successors: signed 32-bit width and height (negative height: rows
    // top-down); the OS/2 core header: unsigned 16-bit ones. OpenCV reads the same two cases.
    if (n < 26) fail(name, ": malformed BMP (header cut short)");
    const uint32_t size = le32(b + 14);
    if (size >= 36) {
      const int64_t w = static_cast<int32_t>(le32(b + 18)), hh = static_cast<int32_t>(le32(b + 22));
      h = {"BMP", w < 0 ? -w : w, hh < 0 ? -hh : hh};
    } else if (size == 12) {
      h = {"BMP", le16(b + 18), le16(b + 20)};
    } else {
      fail(name, ": malformed BMP (info header of ", size, " bytes)");
    }
  } else if (starts("RIFF") && starts("WEBPVP8", 8)) {
    // The first chunk: VP8X (extended: a 24-bit canvas size less one), VP8L (lossless: 14-bit
    // sizes less one after a 0x2F byte) or "VP8 " (lossy: 14-bit sizes after the key frame's
    // start code 9D 01 2A).
    if (n < 30) fail(name, ": malformed WebP (header cut short)");
    if (b[15] == 'X') {
      h = {"WebP", int64_t{le24(b + 24)} + 1, int64_t{le24(b + 27)} + 1};
    } else if (b[15] == 'L') {
      if (b[20] != 0x2F) fail(name, ": malformed WebP (lossless signature)");
      const uint32_t bits = le32(b + 21);
      h = {"WebP", int64_t{bits & 0x3FFF} + 1, int64_t{(bits >> 14) & 0x3FFF} + 1};
    } else if (b[15] == ' ') {
      if (b[23] != 0x9D || b[24] != 0x01 || b[25] != 0x2A)
        fail(name, ": malformed WebP (no key frame)");
      h = {"WebP", le16(b + 26) & 0x3FFF, le16(b + 28) & 0x3FFF};
    } else {
      fail(name, ": malformed WebP (unknown first chunk)");
    }
  } else {
    fail(name, ": cannot decode image: not a format duet reads (JPEG, PNG, BMP or WebP)");
  }
  if (h.width <= 0 || h.height <= 0)
    fail(name, ": ", h.format, " of ", h.width, " x ", h.height, " pixels");
  return h;
}

ImageHeader checked_header(const std::string& bytes, const std::string& name) {
  const ImageHeader h = image_header(bytes, name);
  // By division: a PNG may claim 2^32 - 1 a side, whose product overflows 64 bits.
  if (h.width > max_image_pixels() / h.height)
    throw ImageTooLarge(name + ": a " + h.format + " of " + std::to_string(h.width) + " x " +
                        std::to_string(h.height) + " pixels is larger than the limit of " +
                        std::to_string(max_image_pixels()) +
                        " (refused before decoding; DUET_MAX_PIXELS raises it)");
  return h;
}

int64_t max_image_pixels() {
  static const int64_t cap = [] {
    const char* e = std::getenv("DUET_MAX_PIXELS");
    if (!e || !*e) return kDefaultMaxImagePixels;
    char* end = nullptr;
    const long long v = std::strtoll(e, &end, 10);
    if (*end != '\0' || v < 1 || v > kMostMaxImagePixels)
      fail("DUET_MAX_PIXELS: '", e, "' is not a whole number of pixels from 1 to ",
           kMostMaxImagePixels);
    return static_cast<int64_t>(v);
  }();
  return cap;
}

std::string read_image_file(const std::string& path) {
  if (!file_exists(path)) fail(path, ": no such image file");
  std::error_code ec;
  const auto size = std::filesystem::file_size(path, ec);
  if (!ec && size > static_cast<uint64_t>(max_image_pixels()) * 8 + (1 << 20))
    throw ImageTooLarge(path + ": a file of " + std::to_string(size) + " bytes, more than " +
                        std::to_string(max_image_pixels()) +
                        " pixels can take (DUET_MAX_PIXELS raises the limit)");
  return read_file(path);
}

cv::Mat load_rgb(const std::string& path, uint64_t* content_hash) {
  const std::string bytes = read_image_file(path);
  if (content_hash) *content_hash = fnv1a(bytes);
  return decode_rgb(bytes, path);
}

cv::Mat decode_rgb(const std::string& bytes, const std::string& path) {
  const auto* b = reinterpret_cast<const unsigned char*>(bytes.data());
  const size_t n = bytes.size();
  // The pixel cap is checked here, from the header: OpenCV's own (OPENCV_IO_MAX_IMAGE_PIXELS) is
  // read when its library loads, before main can set it, and defaults to a gigapixel.
  const ImageHeader h = checked_header(bytes, path);
  if (n > static_cast<size_t>(INT32_MAX))
    fail(path, ": a file of ", n, " bytes (OpenCV decodes at most 2 GB)");
  // libjpeg pads a cut-off JPEG with grey and calls it a warning; its end marker (FF D9) cannot
  // occur inside the entropy-coded data, so its absence near the end means the file was cut.
  const bool jpeg = h.format[0] == 'J';
  if (jpeg) {
    bool eoi = false;
    for (size_t i = n - std::min<size_t>(n, 1024); i + 1 < n && !eoi; ++i)
      eoi = b[i] == 0xFF && b[i + 1] == 0xD9;
    if (!eoi) fail(path, ": truncated JPEG (no end-of-image marker)");
  }
  // A JPEG is decoded as colour, which makes OpenCV turn it upright by its EXIF orientation (phones
  // store photos sideways with such a tag; IMREAD_UNCHANGED ignores it). A JPEG has no alpha and 8
  // bits, so nothing is lost; other formats keep their alpha and depth.
  cv::Mat raw;
  try {
    raw = cv::imdecode(cv::Mat(1, static_cast<int>(n), CV_8U, const_cast<unsigned char*>(b)),
                       jpeg ? cv::IMREAD_COLOR : cv::IMREAD_UNCHANGED);
  } catch (const cv::Exception&) {
    // A decoder's exception leaves `raw` empty: the one message below.
  }
  // The decoder must have read the header as image_header did (the pixel cap rests on it).
  if (!raw.empty() && static_cast<int64_t>(raw.rows) * raw.cols != h.width * h.height)
    fail(path, ": decoded ", raw.cols, " x ", raw.rows, " pixels, but its header says ", h.width,
         " x ", h.height);
  if (raw.empty() || raw.rows == 0 || raw.cols == 0)
    fail(path, ": cannot decode image (corrupt, truncated or not an image)");
  if (raw.depth() != CV_8U) {
    cv::Mat tmp;
    raw.convertTo(tmp, CV_8U, raw.depth() == CV_16U ? 1.0 / 257.0 : 1.0);
    raw = tmp;
  }
  cv::Mat rgb;
  switch (raw.channels()) {
    case 1:
      cv::cvtColor(raw, rgb, cv::COLOR_GRAY2RGB);
      break;
    case 3:
      cv::cvtColor(raw, rgb, cv::COLOR_BGR2RGB);
      break;
    case 4:
      // Composite on white (sketches are often black strokes on a transparent background), in
      // integers and in place of the channel swap: c * a / 255 + (255 - a), rounded. No float
      // copies: a 64-megapixel image costs its 8-bit pixels and nothing more.
      rgb.create(raw.rows, raw.cols, CV_8UC3);
      for (int y = 0; y < raw.rows; ++y) {
        const uint8_t* p = raw.ptr<uint8_t>(y);
        uint8_t* q = rgb.ptr<uint8_t>(y);
        for (int x = 0; x < raw.cols; ++x, p += 4, q += 3) {
          const unsigned a = p[3], white = 255 * (255 - a) + 127;
          for (int c = 0; c < 3; ++c) q[c] = static_cast<uint8_t>((p[2 - c] * a + white) / 255);
        }
      }
      break;
    default:
      fail(path, ": unsupported image with ", raw.channels(), " channels");
  }
  return rgb;
}

namespace {
// The strokes of a drawing: 255 where grey <= 200 (JPEG noise on white stays out), else 0.
cv::Mat ink_mask(const cv::Mat& rgb) {
  cv::Mat grey, ink;
  cv::cvtColor(rgb, grey, cv::COLOR_RGB2GRAY);
  cv::threshold(grey, ink, 200, 255, cv::THRESH_BINARY_INV);
  return ink;
}
}  // namespace

bool has_ink(const cv::Mat& rgb) { return cv::countNonZero(ink_mask(rgb)) > 0; }

cv::Mat frame_strokes(const cv::Mat& rgb) {
  const cv::Mat ink = ink_mask(rgb);
  const cv::Rect box = cv::boundingRect(ink);
  if (box.width < 2 || box.height < 2) return rgb;
  const double want = std::max(box.width, box.height) * kFrameMargin + 2;
  cv::Mat strokes = rgb(box);
  int side = static_cast<int>(want);
  if (side > kMaxFrameSide) {
    const double f = (kMaxFrameSide - 2) / (want - 2);
    cv::Mat small;
    cv::resize(strokes, small,
               cv::Size(std::max(1, cvRound(box.width * f)), std::max(1, cvRound(box.height * f))),
               0, 0, cv::INTER_AREA);
    strokes = small;
    side = kMaxFrameSide;
  }
  cv::Mat out(side, side, rgb.type(), cv::Scalar(255, 255, 255));
  strokes.copyTo(out(
      cv::Rect((side - strokes.cols) / 2, (side - strokes.rows) / 2, strokes.cols, strokes.rows)));
  return out;
}

void to_chw(const cv::Mat& rgb, int size, float* out) {
  cv::Mat resized;
  if (rgb.rows != size || rgb.cols != size)
    cv::resize(rgb, resized, cv::Size(size, size), 0, 0, cv::INTER_LINEAR);
  else
    resized = rgb;
  const int plane = size * size;
  for (int y = 0; y < size; ++y) {
    const uint8_t* p = resized.ptr<uint8_t>(y);
    for (int x = 0; x < size; ++x)
      for (int c = 0; c < 3; ++c) out[c * plane + y * size + x] = (p[3 * x + c] - 128.0f) / 128.0f;
  }
}

}  // namespace duet
