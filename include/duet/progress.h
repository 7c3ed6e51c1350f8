// duet/progress.h — progress bars on stderr.
//
// A bar redraws in place at most ten times a second when stderr is a terminal; otherwise it prints
// a plain line every 10% so logs stay readable. DUET_QUIET=1 (or set_quiet) silences all of it.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

namespace duet {

void set_quiet(bool quiet);
bool quiet();
// One line of log on stderr ("duet: ..."), unless quiet.
void log_line(const std::string& msg);

class Progress {
 public:
  Progress(std::string label, int64_t total);
  ~Progress();  // finishes the bar
  void tick(int64_t n = 1);
  void set_suffix(std::string suffix) { suffix_ = std::move(suffix); }
  void finish();

 private:
  void draw(bool final);
  std::string label_, suffix_;
  int64_t total_, done_ = 0;
  int last_decile_ = -1;
  bool tty_, finished_ = false;
  std::chrono::steady_clock::time_point start_, last_draw_;
};

}  // namespace duet
