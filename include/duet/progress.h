// duet/progress.h — progress bars on stderr.
//
// A bar redraws at least once a second, with its rate and ETA, whether or not work was done since
// (a thread of its own redraws it): on a terminal in place, and also after each tick at most ten
// times a second; into a log file or pipe as one plain line a second. DUET_QUIET=1 (or set_quiet)
// silences all of it.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <string>
#include <thread>

namespace duet {

void set_quiet(bool quiet);
bool quiet();
// One line of log on stderr ("duet: ..."), unless quiet.
void log_line(const std::string& msg);

class Progress {
 public:
  Progress(std::string label, int64_t total);
  ~Progress();  // finishes the bar
  Progress(const Progress&) = delete;
  Progress& operator=(const Progress&) = delete;
  void tick(int64_t n = 1);  // thread-safe
  void set_suffix(std::string suffix);
  void finish();

 private:
  void draw(bool final);  // with mu_ held
  std::string label_, suffix_;
  int64_t total_, done_ = 0;
  bool tty_, finished_ = false;
  std::chrono::steady_clock::time_point start_, last_draw_;
  std::mutex mu_;
  std::condition_variable wake_;
  std::thread timer_;  // redraws every second until finish()
};

}  // namespace duet
