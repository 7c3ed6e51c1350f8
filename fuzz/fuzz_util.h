// fuzz/fuzz_util.h — what the libFuzzer targets share.
//
// The contract every target checks: a reader given any bytes either returns or throws duet::Error
// (the clean refusal the CLI and the server turn into a message). Any other exception escapes the
// target and aborts (libFuzzer saves the input as a crash), as do ASan/UBSan reports, leaks,
// timeouts and allocations over -malloc_limit_mb. FUZZ_CHECK states a property of what a reader
// returned; a false one aborts the same way.
#pragma once

#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

#include "duet/error.h"

namespace fuzz {

inline std::string bytes_of(const uint8_t* data, size_t size) {
  return std::string(reinterpret_cast<const char*>(data), size);
}

// A folder of this process's own for the readers that take a path, under $TMPDIR, else /dev/shm
// (a file written per input then costs no disk), else /tmp. Removed on a normal exit; a crash
// leaves it (scripts/fuzz.sh runs the targets in a temporary $TMPDIR that it removes).
inline const std::string& scratch() {
  // Allocated once, never freed: the exit handler that removes the folder runs after destructors.
  static const std::string* dir = [] {
    const char* tmp = std::getenv("TMPDIR");
    const std::string base = tmp && *tmp                     ? tmp
                             : access("/dev/shm", W_OK) == 0 ? "/dev/shm"
                                                             : "/tmp";
    std::string tmpl = base + "/duet-fuzz-XXXXXX";
    if (!mkdtemp(tmpl.data())) std::perror("mkdtemp"), std::abort();
    std::atexit([] {
      std::error_code ec;
      std::filesystem::remove_all(*dir, ec);
    });
    return new std::string(tmpl);
  }();
  return *dir;
}

// A clean refusal. DUET_FUZZ_VERBOSE=1 prints it: what a replayed input (fuzz_<target> FILE) was
// refused for.
inline void refused(const duet::Error& e) {
  static const bool verbose = std::getenv("DUET_FUZZ_VERBOSE") != nullptr;
  if (verbose) std::fprintf(stderr, "refused: %s\n", e.what());
}

inline void write_file(const std::string& path, const std::string& bytes) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  if (!f) std::perror(path.c_str()), std::abort();
}

}  // namespace fuzz

#define FUZZ_CHECK(cond, ...)                                                              \
  do {                                                                                     \
    if (!(cond)) {                                                                         \
      std::fprintf(stderr, "FUZZ_CHECK failed at %s:%d: %s: ", __FILE__, __LINE__, #cond); \
      std::fprintf(stderr, __VA_ARGS__);                                                   \
      std::fprintf(stderr, "\n");                                                          \
      std::abort();                                                                        \
    }                                                                                      \
  } while (0)
