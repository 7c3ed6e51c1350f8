#include "duet/progress.h"

#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace duet {

namespace {
bool& quiet_flag() {
  static bool q = [] {
    const char* e = std::getenv("DUET_QUIET");
    return e && *e && std::strcmp(e, "0") != 0;
  }();
  return q;
}
}  // namespace

void set_quiet(bool q) { quiet_flag() = q; }
bool quiet() { return quiet_flag(); }

void log_line(const std::string& msg) {
  if (!quiet()) std::fprintf(stderr, "duet: %s\n", msg.c_str());
}

Progress::Progress(std::string label, int64_t total)
    : label_(std::move(label)), total_(total), tty_(::isatty(2) != 0) {
  start_ = last_draw_ = std::chrono::steady_clock::now();
}

Progress::~Progress() { finish(); }

void Progress::tick(int64_t n) {
  done_ += n;
  if (quiet()) return;
  auto now = std::chrono::steady_clock::now();
  if (tty_) {
    if (now - last_draw_ > std::chrono::milliseconds(100) || done_ >= total_) {
      last_draw_ = now;
      draw(false);
    }
  } else if (total_ > 0) {
    int decile = static_cast<int>(10 * done_ / total_);
    if (decile != last_decile_ && decile < 10) {
      last_decile_ = decile;
      draw(false);
    }
  }
}

void Progress::finish() {
  if (finished_) return;
  finished_ = true;
  if (!quiet()) draw(true);
}

void Progress::draw(bool final) {
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  double frac = total_ > 0 ? static_cast<double>(done_) / total_ : 1.0;
  double rate = secs > 0 ? done_ / secs : 0.0;
  double eta = rate > 0 && total_ > done_ ? (total_ - done_) / rate : 0.0;
  const int width = 30;
  int filled = static_cast<int>(frac * width + 0.5);
  std::string bar(filled, '#');
  bar.resize(width, '.');
  std::fprintf(stderr, "%s%s [%s] %lld/%lld %.1f/s %s %s%s", tty_ ? "\r" : "", label_.c_str(),
               bar.c_str(), static_cast<long long>(done_), static_cast<long long>(total_), rate,
               final ? ("in " + std::to_string(static_cast<int>(secs + 0.5)) + "s").c_str()
                     : ("eta " + std::to_string(static_cast<int>(eta + 0.5)) + "s").c_str(),
               suffix_.c_str(), (tty_ && !final) ? "\033[K" : "\n");
  std::fflush(stderr);
}

}  // namespace duet
