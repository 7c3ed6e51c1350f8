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
  if (quiet()) return;
  timer_ = std::thread([this] {
    std::unique_lock<std::mutex> lock(mu_);
    while (!finished_) {
      // Wakes a second after the last draw (a tick may have drawn since), or at finish().
      wake_.wait_until(lock, last_draw_ + std::chrono::seconds(1));
      if (!finished_ && std::chrono::steady_clock::now() - last_draw_ >= std::chrono::seconds(1))
        draw(false);
    }
  });
}

Progress::~Progress() { finish(); }

void Progress::set_suffix(std::string suffix) {
  std::lock_guard<std::mutex> lock(mu_);
  suffix_ = std::move(suffix);
}

void Progress::tick(int64_t n) {
  std::lock_guard<std::mutex> lock(mu_);
  done_ += n;
  // On a terminal the bar follows the work closely; a log gets the timer's line a second.
  if (tty_ && !quiet() &&
      std::chrono::steady_clock::now() - last_draw_ > std::chrono::milliseconds(100))
    draw(false);
}

void Progress::finish() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (finished_) return;
    finished_ = true;
    if (!quiet()) draw(true);
  }
  wake_.notify_all();
  if (timer_.joinable()) timer_.join();
}

void Progress::draw(bool final) {
  last_draw_ = std::chrono::steady_clock::now();
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
               final        ? ("in " + std::to_string(static_cast<int>(secs + 0.5)) + "s").c_str()
               : done_ == 0 ? "eta ?"
                            : ("eta " + std::to_string(static_cast<int>(eta + 0.5)) + "s").c_str(),
               suffix_.c_str(), (tty_ && !final) ? "\033[K" : "\n");
  std::fflush(stderr);
}

}  // namespace duet
