#include "duet/runtime.h"

#include <malloc.h>

namespace duet {

void init_runtime() {
  mallopt(M_MMAP_THRESHOLD, 32 << 20);
  mallopt(M_TRIM_THRESHOLD, 1 << 30);
  mallopt(M_TOP_PAD, 64 << 20);
}

}  // namespace duet
