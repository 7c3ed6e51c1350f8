// common/json_whole.h — a whole number from a JSON file duet reads (index headers, manifests).
#pragma once

#include <nlohmann/json.hpp>

namespace duet {

// nlohmann's get<int64_t>() also converts 1e300, which is undefined behaviour: a damaged file's
// number that is not a whole one fails as any other damaged field (json::type_error).
template <typename T>
T json_whole(const nlohmann::json& j) {
  if (!j.is_number_integer())
    throw nlohmann::json::type_error::create(302, "a whole number, not " + j.dump().substr(0, 40),
                                             &j);
  return j.get<T>();
}

}  // namespace duet
