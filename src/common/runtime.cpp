#include "duet/runtime.h"

#include <malloc.h>

#include <cstdlib>
#include <string>

#include "duet/image.h"

namespace duet {

void init_runtime() {
  mallopt(M_MMAP_THRESHOLD, 32 << 20);
  mallopt(M_TRIM_THRESHOLD, 1 << 30);
  mallopt(M_TOP_PAD, 64 << 20);
  // Read once by OpenCV, at its first decode: it must be set before any image is read.
  setenv("OPENCV_IO_MAX_IMAGE_PIXELS", std::to_string(kMaxImagePixels).c_str(), 0);
}

}  // namespace duet
