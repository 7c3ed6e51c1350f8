// The compute ledger's memory figures on a deliberately made peak: a scope sees only its own span,
// the process figure every span since the start.
#include "duet/ledger.h"

#include <gtest/gtest.h>
#include <sys/mman.h>

#include <cstring>

using namespace duet;

TEST(Ledger, ProcessPeakOutlivesTheScopesReset) {
  const size_t bytes = size_t{256} << 20;
  {
    LedgerScope reset;
  }  // the kernel's mark at the current RSS, whatever ran before in this process
  const double before = peak_rss_mib();
  {
    // mmap, so that the pages are the kernel's again once unmapped (malloc may keep them).
    void* p = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    ASSERT_NE(p, MAP_FAILED);
    std::memset(p, 1, bytes);
    munmap(p, bytes);
  }
  const double high = peak_rss_mib();
  EXPECT_GE(high, before + 200);
  LedgerScope scope;  // resets the kernel's mark: this span's peak is well below the one before
  const Ledger l = scope.stop();
  EXPECT_LT(l.peak_rss_mib, high - 200);
  EXPECT_GE(process_peak_rss_mib(), high);
}
