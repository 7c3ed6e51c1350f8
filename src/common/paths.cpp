#include "duet/paths.h"

#include <cstdlib>

#include "duet/error.h"
#include "duet/fileio.h"

namespace duet {

std::string shared_dir() {
  if (const char* e = std::getenv("DUET_SHARED"); e && *e) return e;
  if (dir_exists("../shared")) return "../shared";
#ifdef DUET_DEFAULT_SHARED
  if (dir_exists(DUET_DEFAULT_SHARED)) return DUET_DEFAULT_SHARED;
#endif
  return "";
}

std::string default_data_dir() {
  std::string s = shared_dir();
  std::string d = s + "/data/sketchy-subset";
  if (s.empty() || !dir_exists(d))
    fail(
        "no default dataset found: pass --data DIR, or set DUET_SHARED to a folder holding "
        "data/sketchy-subset (see README, 'Data and weights')");
  return d;
}

std::string default_weights_file(const std::string& file) {
  std::string s = shared_dir();
  std::string p = s + "/weights/" + file;
  if (s.empty() || !file_exists(p))
    fail("no weights file ", file,
         " found: pass --weights FILE, or set DUET_SHARED to a folder "
         "holding weights/",
         file, " (see README, 'Data and weights')");
  return p;
}

}  // namespace duet
