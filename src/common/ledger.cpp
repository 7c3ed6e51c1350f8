#include "duet/ledger.h"

#include <sys/resource.h>

#include <algorithm>
#include <fstream>
#include <mutex>
#include <sstream>
#include <string>

namespace duet {

Ledger& Ledger::operator+=(const Ledger& o) {
  wall_s += o.wall_s;
  cpu_s += o.cpu_s;
  peak_rss_mib = std::max(peak_rss_mib, o.peak_rss_mib);
  image_forward += o.image_forward;
  image_backward += o.image_backward;
  flops += o.flops;
  return *this;
}

std::string Ledger::to_json() const {
  std::ostringstream os;
  os << "{\"wall_s\": " << wall_s << ", \"cpu_s\": " << cpu_s
     << ", \"peak_rss_mib\": " << peak_rss_mib << ", \"image_forward\": " << image_forward
     << ", \"image_backward\": " << image_backward << ", \"flops\": " << flops << "}";
  return os.str();
}

double process_cpu_seconds() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return u.ru_utime.tv_sec + u.ru_stime.tv_sec + 1e-6 * (u.ru_utime.tv_usec + u.ru_stime.tv_usec);
}

double peak_rss_mib() {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind("VmHWM:", 0) == 0) return std::stod(line.substr(6)) / 1024.0;  // kB
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return u.ru_maxrss / 1024.0;
}

namespace {
std::mutex g_peak_mu;
double g_peak_before_reset = 0;  // the highest VmHWM a LedgerScope reset
}  // namespace

LedgerScope::LedgerScope()
    : wall0_(std::chrono::steady_clock::now()), cpu0_(process_cpu_seconds()) {
  std::lock_guard<std::mutex> lock(g_peak_mu);
  g_peak_before_reset = std::max(g_peak_before_reset, peak_rss_mib());
  std::ofstream("/proc/self/clear_refs") << "5";  // "5" resets VmHWM to the current RSS
}

double process_peak_rss_mib() {
  std::lock_guard<std::mutex> lock(g_peak_mu);
  return std::max(g_peak_before_reset, peak_rss_mib());
}

Ledger LedgerScope::stop() const {
  Ledger l;
  l.wall_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - wall0_).count();
  l.cpu_s = process_cpu_seconds() - cpu0_;
  l.peak_rss_mib = peak_rss_mib();
  return l;
}

}  // namespace duet
