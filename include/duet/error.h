// duet/error.h — the one error type of duet.
//
// User errors (bad file, bad flag, wrong shape) throw duet::Error with a message that names the
// offending file or value and, where there is one, the fix. The CLI turns it into one line on
// stderr and exit code 1; the server into a 4xx JSON body. Broken internal invariants are not
// Errors.
#pragma once

#include <sstream>
#include <stdexcept>
#include <string>

namespace duet {

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& what) : std::runtime_error(what) {}
};

// Something asked for by id or path that is not there (the server answers 404).
class NotFound : public Error {
 public:
  explicit NotFound(const std::string& what) : Error(what) {}
};

// A service this one relies on (a shard behind a front) did not answer (the server answers 503).
class Unavailable : public Error {
 public:
  explicit Unavailable(const std::string& what) : Error(what) {}
};

// A request's work outlasted its deadline and was stopped (the server answers 503).
class TimedOut : public Error {
 public:
  explicit TimedOut(const std::string& what) : Error(what) {}
};

namespace detail {
inline void append(std::ostringstream&) {}
template <typename T, typename... R>
void append(std::ostringstream& os, const T& v, const R&... rest) {
  os << v;
  append(os, rest...);
}
}  // namespace detail

// Builds a message from any streamable parts: fail("cannot read ", path, ": ", why).
template <typename... A>
[[noreturn]] void fail(const A&... parts) {
  std::ostringstream os;
  detail::append(os, parts...);
  throw Error(os.str());
}

}  // namespace duet
