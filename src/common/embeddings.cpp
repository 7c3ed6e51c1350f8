// .npy reading/writing (numpy format 1.0/2.0) and the manifest TSV beside it.
#include "duet/embeddings.h"

#include <cstring>
#include <sstream>

#include "duet/error.h"
#include "duet/fileio.h"

namespace duet {

namespace {

// Extracts the value of 'key' from the npy header dict text, e.g. "'descr': '<f4'".
std::string header_value(const std::string& h, const std::string& key, const std::string& path) {
  auto k = h.find("'" + key + "'");
  if (k == std::string::npos) fail(path, ": .npy header has no '", key, "' entry");
  auto colon = h.find(':', k);
  if (colon == std::string::npos) fail(path, ": malformed .npy header");
  size_t b = h.find_first_not_of(' ', colon + 1);
  size_t e;
  if (h[b] == '(') {
    e = h.find(')', b);
    if (e == std::string::npos) fail(path, ": malformed .npy header");
    return h.substr(b, e - b + 1);
  }
  e = h.find_first_of(",}", b);
  return h.substr(b, e - b);
}

}  // namespace

Matrix read_npy(const std::string& path) {
  std::string bytes = read_file(path);
  if (bytes.size() < 10 || std::memcmp(bytes.data(), "\x93NUMPY", 6) != 0)
    fail(path, ": not a .npy file (no \\x93NUMPY magic)");
  int major = static_cast<unsigned char>(bytes[6]);
  size_t hlen, hstart;
  if (major == 1) {
    hlen = static_cast<unsigned char>(bytes[8]) | (static_cast<unsigned char>(bytes[9]) << 8);
    hstart = 10;
  } else if (major == 2 || major == 3) {
    if (bytes.size() < 12) fail(path, ": truncated .npy header");
    hlen = 0;
    for (int i = 0; i < 4; ++i)
      hlen |= static_cast<size_t>(static_cast<unsigned char>(bytes[8 + i])) << (8 * i);
    hstart = 12;
  } else {
    fail(path, ": unsupported .npy version ", major);
  }
  if (hstart + hlen > bytes.size()) fail(path, ": truncated .npy header");
  std::string h = bytes.substr(hstart, hlen);
  std::string descr = header_value(h, "descr", path);
  if (descr != "'<f4'" && descr != "'float32'")
    fail(path, ": dtype ", descr, " is not float32; save it with x.astype(np.float32)");
  if (header_value(h, "fortran_order", path) != "False")
    fail(path, ": Fortran-order arrays are not supported; save with np.ascontiguousarray(x)");
  std::string shape = header_value(h, "shape", path);  // "(3, 4)" or "(5,)"
  std::vector<int64_t> dims;
  {
    std::string s = shape.substr(1, shape.size() - 2);
    std::stringstream ss(s);
    std::string tok;
    while (std::getline(ss, tok, ',')) {
      size_t b = tok.find_first_not_of(' ');
      if (b == std::string::npos) continue;
      try {
        dims.push_back(std::stoll(tok.substr(b)));
      } catch (...) {
        fail(path, ": bad shape ", shape, " in .npy header");
      }
    }
  }
  Matrix m;
  if (dims.size() == 1) {
    m.rows = dims[0];
    m.cols = 1;
  } else if (dims.size() == 2) {
    m.rows = dims[0];
    m.cols = dims[1];
  } else {
    fail(path, ": expected a 2-D matrix, got shape ", shape);
  }
  if (m.rows < 0 || m.cols < 0) fail(path, ": bad shape ", shape);
  size_t want = static_cast<size_t>(m.rows * m.cols) * sizeof(float);
  size_t have = bytes.size() - hstart - hlen;
  if (have != want)
    fail(path, ": data is ", have, " bytes but shape ", shape, " needs ", want,
         " (truncated file?)");
  m.data.resize(static_cast<size_t>(m.rows * m.cols));
  if (want) std::memcpy(m.data.data(), bytes.data() + hstart + hlen, want);
  return m;
}

void write_npy(const std::string& path, const Matrix& m) {
  std::string dict = "{'descr': '<f4', 'fortran_order': False, 'shape': (" +
                     std::to_string(m.rows) + ", " + std::to_string(m.cols) + "), }";
  // Pad with spaces so that magic + len + header + '\n' is a multiple of 64 (numpy's alignment).
  size_t total = 10 + dict.size() + 1;
  dict.append((64 - total % 64) % 64, ' ');
  dict.push_back('\n');
  std::string head = "\x93NUMPY";
  head.push_back('\x01');
  head.push_back('\x00');
  head.push_back(static_cast<char>(dict.size() & 0xff));
  head.push_back(static_cast<char>((dict.size() >> 8) & 0xff));
  AtomicFile f(path);
  f.write(head);
  f.write(dict);
  f.write(m.data.data(), m.data.size() * sizeof(float));
  f.commit();
}

std::string npy_stem(const std::string& npy_path) {
  std::string p = npy_path;
  if (p.size() > 4 && p.compare(p.size() - 4, 4, ".npy") == 0) p.resize(p.size() - 4);
  return p;
}

std::string manifest_path_for(const std::string& npy_path) { return npy_stem(npy_path) + ".tsv"; }

Embeddings take_rows(const Embeddings& e, const std::vector<size_t>& rows) {
  Embeddings out;
  out.meta = e.meta;
  out.x = Matrix(static_cast<int64_t>(rows.size()), e.x.cols);
  for (size_t i = 0; i < rows.size(); ++i) {
    std::copy(e.x.row(rows[i]), e.x.row(rows[i]) + e.x.cols, out.x.row(i));
    out.rows.push_back(e.rows[rows[i]]);
  }
  return out;
}

void write_embeddings(const std::string& npy_path, const Embeddings& e) {
  if (static_cast<int64_t>(e.rows.size()) != e.x.rows)
    fail("internal: ", e.rows.size(), " manifest rows for ", e.x.rows, " embeddings");
  auto meta = e.meta;
  meta["format"] = "duet-embeddings-v1";
  meta["dim"] = std::to_string(e.x.cols);
  meta["rows"] = std::to_string(e.x.rows);
  std::ostringstream os;
  for (const auto& [k, v] : meta) os << "# " << k << "=" << v << "\n";
  os << "path\tclass\tdomain\n";
  for (const auto& r : e.rows) os << r.path << "\t" << r.cls << "\t" << r.domain << "\n";
  // Matrix first, manifest last: a manifest that exists always describes a complete matrix.
  write_npy(npy_path, e.x);
  write_file_atomic(manifest_path_for(npy_path), os.str());
}

Embeddings read_embeddings(const std::string& npy_path) {
  Embeddings e;
  e.x = read_npy(npy_path);
  std::string mpath = manifest_path_for(npy_path);
  if (!file_exists(mpath)) fail(npy_path, ": its manifest ", mpath, " is missing");
  std::istringstream in(read_file(mpath));
  std::string line;
  bool header = false;
  int lineno = 0;
  while (std::getline(in, line)) {
    ++lineno;
    if (line.empty()) continue;
    if (line[0] == '#') {
      auto eq = line.find('=');
      if (eq != std::string::npos) e.meta[line.substr(2, eq - 2)] = line.substr(eq + 1);
      continue;
    }
    if (!header) {
      if (line != "path\tclass\tdomain")
        fail(mpath, ":", lineno, ": expected header 'path<TAB>class<TAB>domain'");
      header = true;
      continue;
    }
    ManifestRow r;
    std::istringstream ls(line);
    if (!std::getline(ls, r.path, '\t') || !std::getline(ls, r.cls, '\t') ||
        !std::getline(ls, r.domain, '\t'))
      fail(mpath, ":", lineno, ": expected 3 tab-separated columns");
    e.rows.push_back(std::move(r));
  }
  if (!header) fail(mpath, ": empty manifest");
  if (static_cast<int64_t>(e.rows.size()) != e.x.rows)
    fail(mpath, " has ", e.rows.size(), " rows but ", npy_path, " has ", e.x.rows,
         "; they must come from the same `duet embed` run");
  auto dim = e.meta.find("dim");
  if (dim != e.meta.end() && dim->second != std::to_string(e.x.cols))
    fail(mpath, " says dim=", dim->second, " but ", npy_path, " has ", e.x.cols, " columns");
  return e;
}

std::vector<std::string> read_label_file(const std::string& path) {
  std::istringstream in(read_file(path));
  std::vector<std::string> out;
  std::string line;
  int lineno = 0;
  while (std::getline(in, line)) {
    ++lineno;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.empty()) {
      // A trailing newline is fine; an empty line in the middle is not.
      if (in.peek() == EOF) break;
      fail(path, ":", lineno, ": empty label");
    }
    out.push_back(line);
  }
  return out;
}

}  // namespace duet
