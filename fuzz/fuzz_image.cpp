// fuzz/fuzz_image.cpp — image decoding and stroke framing (duet/image.h) on arbitrary bytes: what
// `duet index` and `duet search` read from disk and the server from a request body.
//
// Checked beyond "returns or throws duet::Error": a decoded image is 8-bit RGB of exactly the
// pixels its header announced (the pixel cap rests on the header), within the cap; stroke framing
// gives an 8-bit RGB square of at most kMaxFrameSide a side, or the image itself.
#include <opencv2/core.hpp>

#include "duet/image.h"
#include "fuzz_util.h"

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  // A low cap (4 Mpx, 2048 x 2048) before max_image_pixels() first reads it: the fuzzer's time goes
  // to malformed files, not to decoding large well-formed ones. The caller's value wins.
  setenv("DUET_MAX_PIXELS", "4194304", 0);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string bytes = fuzz::bytes_of(data, size);
  bool header_ok = false;
  duet::ImageHeader h;
  try {
    h = duet::image_header(bytes, "input");
    header_ok = true;
    FUZZ_CHECK(h.format && h.width > 0 && h.height > 0, "header %s %lld x %lld",
               h.format ? h.format : "null", static_cast<long long>(h.width),
               static_cast<long long>(h.height));
  } catch (const duet::Error& e) {
    fuzz::refused(e);
  }
  cv::Mat rgb;
  try {
    rgb = duet::decode_rgb(bytes, "input");
  } catch (const duet::Error& e) {
    fuzz::refused(e);
    return 0;
  }
  const int64_t pixels = static_cast<int64_t>(rgb.rows) * rgb.cols;
  FUZZ_CHECK(header_ok, "decode_rgb decoded an image whose header image_header refuses");
  FUZZ_CHECK(rgb.type() == CV_8UC3 && pixels > 0, "decoded type %d, %d x %d", rgb.type(), rgb.cols,
             rgb.rows);
  FUZZ_CHECK(pixels == h.width * h.height, "decoded %d x %d, header says %lld x %lld", rgb.cols,
             rgb.rows, static_cast<long long>(h.width), static_cast<long long>(h.height));
  FUZZ_CHECK(pixels <= duet::max_image_pixels(), "decoded %lld pixels over the cap",
             static_cast<long long>(pixels));

  const bool ink = duet::has_ink(rgb);
  const cv::Mat framed = duet::frame_strokes(rgb);
  FUZZ_CHECK(framed.type() == CV_8UC3 && !framed.empty(), "framed type %d", framed.type());
  if (framed.data != rgb.data) {  // framed: a square no larger than the cap, with the ink in it
    FUZZ_CHECK(ink, "framed an image without ink");
    FUZZ_CHECK(framed.rows == framed.cols && framed.rows <= duet::kMaxFrameSide, "framed %d x %d",
               framed.cols, framed.rows);
  }
  return 0;
}
