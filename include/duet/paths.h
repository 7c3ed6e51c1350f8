// duet/paths.h — where data and weights are found when the user does not say.
//
// Order: an explicit flag, then the environment variable DUET_SHARED (a folder holding data/ and
// weights/, laid out like this workplace's ../shared), then ./../shared, then the ../shared next to
// the source tree at build time. Users outside download the files (README, "Data and weights").
#pragma once

#include <string>

namespace duet {

// The shared folder, or "" when none of the candidates exists.
std::string shared_dir();
// <shared>/data/sketchy-subset; throws Error with the download hint when absent.
std::string default_data_dir();
// <shared>/weights/<file>; throws Error with the download hint when absent.
std::string default_weights_file(const std::string& file);

}  // namespace duet
