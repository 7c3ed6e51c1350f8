// Phase II mapper files at query time: reading one, and embeddings through its branches. See
// duet/inference.h.
#include <torch/torch.h>

#include <algorithm>
#include <filesystem>
#include <limits>
#include <sstream>

#include "common/torch_archive.h"
#include "common/torch_matrix.h"
#include "duet/error.h"
#include "duet/fileio.h"
#include "duet/inference.h"
#include "model/mapper_file.h"

namespace duet {

namespace {

std::string join_names(const std::vector<std::string>& v) {
  std::string o;
  for (const auto& s : v) o += (o.empty() ? "" : ", ") + s;
  return o;
}

class TorchMapper : public Mapper {
 public:
  std::vector<std::string> domain_names;  // the query domains in order, the gallery domain last
  mutable std::vector<Branch> branch;     // forward() of a module is not const in LibTorch
  int64_t in = 0, code = 0;
  double a = 0, b = 0;
  int64_t in_dim() const override { return in; }
  int64_t code_dim() const override { return code; }
  const std::vector<std::string>& domains() const override { return domain_names; }
  const std::string& gallery_domain() const override { return domain_names.back(); }
  Matrix map(const std::string& domain, const Matrix& x) const override {
    auto it = std::find(domain_names.begin(), domain_names.end(), domain);
    if (it == domain_names.end())
      fail("the mapper has no branch for domain '", domain, "' (it has: ", join_names(domain_names),
           ")");
    if (x.cols != in)
      fail("embeddings are ", x.cols, "-d but the mapper expects ", in, "-d (another encoder?)");
    torch::NoGradGuard ng;
    return from_tensor(branch[it - domain_names.begin()]->forward(to_tensor(x)));
  }
  double prob_a() const override { return a; }
  double prob_b() const override { return b; }
};

}  // namespace

std::unique_ptr<Mapper> open_mapper(const std::string& file) {
  if (!file_exists(file)) fail(file, ": no such mapper file");
  torch::serialize::InputArchive ar;
  try {
    ar.load_from(file);
  } catch (const std::exception& e) {
    fail(file, ": not a duet mapper file (train one with `duet train-mapper`): ",
         std::string(e.what()).substr(0, 160));
  }
  c10::IValue v;
  if (!ar.try_read("format", v) || !v.isString() || v.toStringRef() != kMapperFormat) {
    const std::string f = v.isString() ? v.toStringRef() : "no format tag";
    if (f.rfind("duet-mapper-", 0) == 0)
      fail(file, ": a mapper from another duet version (", f, "; this one reads ", kMapperFormat,
           "): retrain it");
    fail(file, ": not a duet mapper file (", f, ")");
  }
  // Every value and tensor checked as it is read (common/torch_archive.h), and the widths bounded
  // by the file before any branch is built: a damaged or crafted file must not make the branches
  // allocate what it claims (a 4 KB file saying 100000 x 100000 asked for 37 GB).
  auto m = std::make_unique<TorchMapper>();
  try {
    std::istringstream names(archive::str(ar, "domains", file, "mapper"));
    for (std::string d; std::getline(names, d);) m->domain_names.push_back(d);
    if (m->domain_names.size() < 2) fail(file, ": a mapper needs a query and a gallery domain");
    constexpr int64_t kMaxWidth = std::numeric_limits<int>::max();  // torch::nn::Linear's
    m->in = archive::integer(ar, "in_dim", file, "mapper", 1, kMaxWidth);
    const int hidden =
        static_cast<int>(archive::integer(ar, "hidden", file, "mapper", 1, kMaxWidth));
    m->code = archive::integer(ar, "code", file, "mapper", 1, kMaxWidth);
    std::error_code ec;
    const auto bytes = std::filesystem::file_size(file, ec);
    if (static_cast<double>(hidden) * static_cast<double>(m->in + m->code) * sizeof(float) >
        static_cast<double>(bytes))
      fail(file, ": damaged mapper file (its widths ", m->in, " -> ", hidden, " -> ", m->code,
           " need more weights than its ", bytes, " bytes hold)");
    const bool shared = archive::boolean(ar, "shared", file, "mapper");
    const bool normalize = archive::boolean(ar, "normalize", file, "mapper");
    const torch::Tensor prob = archive::tensor(ar, "prob", file, "mapper", torch::kFloat64);
    if (prob.numel() != 2) fail(file, ": damaged mapper file (prob has ", prob.numel(), " values)");
    m->a = prob[0].item<double>();
    m->b = prob[1].item<double>();
    const int in = static_cast<int>(m->in), code = static_cast<int>(m->code);
    torch::NoGradGuard ng;
    for (size_t b = 0; b < m->domain_names.size(); ++b) {
      if (shared && b > 0) {
        m->branch.push_back(m->branch[0]);
        continue;
      }
      Branch br(in, hidden, code, normalize);
      for (auto& p : br->named_parameters()) {
        const std::string key = "b" + std::to_string(b) + "." + p.key();
        const torch::Tensor t = archive::tensor(ar, key, file, "mapper");
        if (t.sizes() != p.value().sizes()) fail(file, ": tensor ", key, " has the wrong shape");
        p.value().copy_(t);
      }
      m->branch.push_back(br);
    }
  } catch (const c10::Error& e) {
    fail(file, ": damaged mapper file (", archive::first_line(e), ")");
  }
  return m;
}

}  // namespace duet
