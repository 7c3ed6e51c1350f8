// duet/fileio.h — small checked file helpers shared by every stage.
//
// Every file duet writes goes through AtomicFile: the bytes land in "<path>.tmp.<pid>" and are
// renamed over <path> only after a successful close, so a crash or an error never leaves a
// half-written file or destroys the previous one.
#pragma once

#include <cstdint>
#include <cstdio>
#include <string>

namespace duet {

class AtomicFile {
 public:
  explicit AtomicFile(std::string path);  // opens the temporary file; throws Error
  ~AtomicFile();                          // removes the temporary file unless commit() ran
  AtomicFile(const AtomicFile&) = delete;
  AtomicFile& operator=(const AtomicFile&) = delete;

  void write(const void* data, size_t n);
  void write(const std::string& s) { write(s.data(), s.size()); }
  void commit();  // flush, close, rename over the target; throws Error
  const std::string& path() const { return path_; }

 private:
  std::string path_, tmp_;
  std::FILE* f_ = nullptr;
};

// Writes the whole string atomically.
void write_file_atomic(const std::string& path, const std::string& content);
// Reads a whole file; throws Error naming the path when it cannot.
std::string read_file(const std::string& path);
bool file_exists(const std::string& path);
bool dir_exists(const std::string& path);
// Creates a directory and its parents; throws Error on failure.
void make_dirs(const std::string& path);
// 64-bit FNV-1a of a string: stable across runs and machines, for cache keys and per-file seeds.
uint64_t fnv1a(const std::string& s);
// 16 lower-case hex digits.
std::string hex64(uint64_t h);

}  // namespace duet
