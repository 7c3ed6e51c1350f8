// common/torch_archive.h — checked reads from the torch::serialize archives duet writes (encoder,
// mapper and bridge files).
//
// LibTorch hands back a value or a tensor as the archive has it: a value of another type throws
// c10::Error past duet's handlers, and a tensor may claim more elements than its storage holds
// (LibTorch 1.13 does not check), which copying it then reads past. Every read here checks the
// type, the range or the storage and fails with duet::Error naming the file. `what` names the kind
// of file in messages ("mapper").
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <string>

#include "duet/error.h"

namespace duet::archive {

inline c10::IValue value(torch::serialize::InputArchive& ar, const std::string& key,
                         const std::string& file, const char* what) {
  c10::IValue v;
  if (!ar.try_read(key, v)) fail(file, ": damaged ", what, " file (no '", key, "')");
  return v;
}

inline std::string str(torch::serialize::InputArchive& ar, const std::string& key,
                       const std::string& file, const char* what) {
  const c10::IValue v = value(ar, key, file, what);
  if (!v.isString()) fail(file, ": damaged ", what, " file ('", key, "' is not a string)");
  return v.toStringRef();
}

// A whole number in [lo, hi].
inline int64_t integer(torch::serialize::InputArchive& ar, const std::string& key,
                       const std::string& file, const char* what, int64_t lo, int64_t hi) {
  const c10::IValue v = value(ar, key, file, what);
  if (!v.isInt() || v.toInt() < lo || v.toInt() > hi)
    fail(file, ": damaged ", what, " file ('", key, "' is not a whole number from ", lo, " to ", hi,
         ")");
  return v.toInt();
}

inline bool boolean(torch::serialize::InputArchive& ar, const std::string& key,
                    const std::string& file, const char* what) {
  const c10::IValue v = value(ar, key, file, what);
  if (!v.isBool()) fail(file, ": damaged ", what, " file ('", key, "' is not true or false)");
  return v.toBool();
}

// A contiguous tensor of `dtype` whose elements lie within its storage.
inline torch::Tensor tensor(torch::serialize::InputArchive& ar, const std::string& key,
                            const std::string& file, const char* what,
                            torch::ScalarType dtype = torch::kFloat32) {
  torch::Tensor t;
  if (!ar.try_read(key, t) || !t.defined())
    fail(file, ": damaged ", what, " file (no tensor '", key, "')");
  const int64_t room =
      static_cast<int64_t>(t.storage().nbytes()) / static_cast<int64_t>(t.element_size());
  if (t.scalar_type() != dtype || !t.is_contiguous() || t.storage_offset() < 0 ||
      t.storage_offset() > room || t.numel() > room - t.storage_offset())
    fail(file, ": damaged ", what, " file (tensor '", key, "' is not what this duet wrote)");
  return t;
}

// The first line of a LibTorch error (its message, without the C++ stack that follows).
inline std::string first_line(const std::exception& e) {
  const std::string s = e.what();
  return s.substr(0, std::min<size_t>(s.find('\n'), 200));
}

}  // namespace duet::archive
