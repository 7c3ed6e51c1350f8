// duet/runtime.h — process-wide settings every duet program makes first.
#pragma once

namespace duet {

// glibc returns large freed blocks to the kernel at once and maps new ones for each large
// allocation; LibTorch allocates and frees the same big buffers every step, so the process spends
// most of its time in page faults (measured: train-mapper 11.5 s -> 2.8 s with this). Keeps freed
// memory in the heap instead (M_MMAP_THRESHOLD 32 MiB, M_TRIM_THRESHOLD 1 GiB, M_TOP_PAD 64 MiB).
void init_runtime();

}  // namespace duet
