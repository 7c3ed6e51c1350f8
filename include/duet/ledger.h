// duet/ledger.h — the compute ledger every training command writes into its JSON.
//
// Wall and CPU time, peak resident memory, image passes through a CNN (forward and backward) and
// an estimate of the floating-point operations (2 x multiply-adds; backward counted as 2 x
// forward).
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

namespace duet {

struct Ledger {
  double wall_s = 0, cpu_s = 0;
  double peak_rss_mib = 0;     // peak resident memory of the process during the measured span
  int64_t image_forward = 0;   // images through (part of) a CNN, forward
  int64_t image_backward = 0;  // images through (part of) a CNN, backward
  double flops = 0;            // estimated, forward + backward
  Ledger& operator+=(const Ledger& o);
  std::string to_json() const;
};

// Measures wall/CPU time and peak RSS from construction to stop(); counters are added by the
// caller.
class LedgerScope {
 public:
  LedgerScope();  // resets the kernel's peak-RSS mark (Linux /proc/self/clear_refs) when it can
  Ledger stop() const;

 private:
  std::chrono::steady_clock::time_point wall0_;
  double cpu0_;
};

double process_cpu_seconds();
double peak_rss_mib();  // VmHWM
// The process's peak resident memory since it started. Each LedgerScope resets the kernel's mark,
// which also lowers what the parent's wait4 (`/usr/bin/time`) reports: this one remembers.
double process_peak_rss_mib();

}  // namespace duet
