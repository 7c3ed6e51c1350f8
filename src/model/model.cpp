// Model folders: writing, checking, and images -> features. See duet/model.h.
#include "duet/model.h"

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "common/json_whole.h"
#include "duet/augment.h"
#include "duet/error.h"
#include "duet/fileio.h"
#include "duet/image.h"
#include "duet/inference.h"

namespace duet {

namespace {

using json = nlohmann::json;
namespace fs = std::filesystem;

// The hash of a model: its manifest without the hash itself, which names every file's hash.
std::string model_hash(json manifest) {
  manifest.erase("hash");
  return hex64(fnv1a(manifest.dump()));
}

void copy_into(const std::string& from, const std::string& dir, const std::string& name,
               json& files) {
  const std::string bytes = read_file(from);
  write_file_atomic(dir + "/" + name, bytes);
  files[name] = {{"bytes", bytes.size()}, {"fnv1a", hex64(fnv1a(bytes))}};
}

}  // namespace

std::optional<std::vector<int64_t>> class_columns(const std::vector<std::string>& learnt,
                                                  const std::vector<std::string>& model) {
  std::map<std::string, int64_t> at;
  for (size_t c = 0; c < learnt.size(); ++c) at.emplace(learnt[c], static_cast<int64_t>(c));
  std::vector<int64_t> col;
  for (const auto& c : model) {
    auto it = at.find(c);
    if (it == at.end()) return std::nullopt;
    col.push_back(it->second);
  }
  return col;
}

void write_model(const std::string& dir, const ModelSpec& spec) {
  if (spec.query_domains.empty() || spec.gallery_domain.empty())
    fail("a model needs query and gallery domains");
  // The model's classes are the gallery encoders' (what a gallery image's posterior covers); a
  // query encoder may know more (extra training sources) but must know those. The backbone comes
  // from the encoders; they must agree.
  if (!spec.encoders.count(spec.gallery_domain) || spec.encoders.at(spec.gallery_domain).empty())
    fail("a model needs an encoder for its gallery domain ", spec.gallery_domain);
  const std::vector<std::string> classes =
      open_encoder(spec.encoders.at(spec.gallery_domain)[0], 1)->classes();
  std::string arch, weights;
  json kinds = json::object();
  for (const auto& [domain, files] : spec.encoders)
    for (const auto& f : files) {
      auto e = open_encoder(f, 1);
      if (e->domain() != domain)
        fail(f, ": an encoder of domain ", e->domain(), ", given for ", domain);
      if (kinds.contains(domain) && kinds[domain] != kind_name(e->kind()))
        fail(f, ": its domain kind differs from the other ", domain, " encoder's");
      kinds[domain] = kind_name(e->kind());
      if (domain == spec.gallery_domain ? e->classes() != classes
                                        : !class_columns(e->classes(), classes))
        fail(f, ": its classes do not cover the ", spec.gallery_domain,
             " encoders' (retrain them on one split)");
      const std::string w = backbone_weights_file(e->arch(), e->weights());
      if (arch.empty()) arch = e->arch(), weights = w;
      if (e->arch() != arch || w != weights)
        fail(f, ": its backbone (", e->arch(), ", ", w, ") differs from the other encoders' (",
             arch, ", ", weights, ")");
    }
  if (weights.empty())
    fail("the encoders' backbone ", arch, " has no weights file; a model must carry one");
  const fs::path target(dir);
  const std::string tmp = dir + ".tmp." + std::to_string(::getpid());
  std::error_code ec;
  fs::remove_all(tmp, ec);
  make_dirs(tmp);
  json m;
  m["format"] = kModelFormat;
  m["duet_version"] = DUET_VERSION;
  m["config"] = spec.config;
  m["query_domains"] = spec.query_domains;
  m["gallery_domain"] = spec.gallery_domain;
  m["kinds"] = kinds;
  m["classes"] = classes;
  m["training"] = json::parse(spec.training);
  json files = json::object();
  const std::string ext = fs::path(weights).extension().string();
  m["backbone"] = {{"arch", arch}, {"file", "backbone" + ext}};
  copy_into(weights, tmp, "backbone" + ext, files);
  json enc = json::object();
  for (const auto& [domain, list] : spec.encoders) {
    for (size_t i = 0; i < list.size(); ++i) {
      const std::string name = domain + "." + std::to_string(i) + ".pt";
      copy_into(list[i], tmp, name, files);
      enc[domain].push_back(name);
    }
  }
  m["encoders"] = enc;
  copy_into(spec.mapper, tmp, "mapper.pt", files);
  m["mapper"] = "mapper.pt";
  if (!spec.bridge.empty()) {
    copy_into(spec.bridge, tmp, "bridge.pt", files);
    m["bridge"] = "bridge.pt";
  }
  m["rank"] = rank_to_json(spec.rank);
  m["files"] = files;
  m["hash"] = model_hash(m);
  write_file_atomic(tmp + "/manifest.json",
                    m.dump(2) + "\n");  // last: it marks the folder complete
  // Swap in: the earlier model stays whole until the new one is in place.
  const std::string old = dir + ".old." + std::to_string(::getpid());
  if (fs::exists(target)) fs::rename(target, old, ec);
  if (ec) fail("cannot replace ", dir, ": ", ec.message());
  fs::rename(tmp, target, ec);
  if (ec) fail("cannot move the new model into ", dir, ": ", ec.message());
  fs::remove_all(old, ec);
}

ModelInfo read_model_info(const std::string& dir) {
  if (!dir_exists(dir)) fail(dir, ": no such model folder (`duet run` writes <out>/<split>/model)");
  const std::string mf = dir + "/manifest.json";
  if (!file_exists(mf))
    fail(dir, ": not a duet model folder (no manifest.json; a half-written model, or not a model)");
  // A manifest nests a few levels; one nested 100000 deep would overflow the stack of the
  // recursive dump below.
  constexpr int kMaxDepth = 32;
  json m;
  try {
    m = json::parse(read_file(mf), [&](int depth, json::parse_event_t, json&) {
      if (depth > kMaxDepth)
        fail(mf, ": not a duet manifest (nested deeper than ", kMaxDepth, " levels)");
      return true;
    });
  } catch (const json::exception&) {
    fail(mf, ": not valid JSON (a damaged model folder)");
  }
  ModelInfo info;
  info.dir = dir;
  info.json = m.dump(2);
  try {
    info.format = m.at("format").get<std::string>();
    info.duet_version = m.value("duet_version", std::string("?"));
    if (info.format != kModelFormat)
      fail(dir, ": a model in format '", info.format, "' (made by duet ", info.duet_version,
           "); this duet (", DUET_VERSION, ") reads ", kModelFormat,
           ": retrain it with this version or use the duet that made it");
    info.config = m.at("config").get<std::string>();
    info.hash = m.at("hash").get<std::string>();
    info.query_domains = m.at("query_domains").get<std::vector<std::string>>();
    info.gallery_domain = m.at("gallery_domain").get<std::string>();
    info.classes = m.at("classes").get<std::vector<std::string>>();
    info.encoders = m.at("encoders").get<std::map<std::string, std::vector<std::string>>>();
    for (const auto& [domain, kind] : m.at("kinds").get<std::map<std::string, std::string>>())
      info.kinds[domain] = parse_kind(kind);
    info.mapper = m.at("mapper").get<std::string>();
    info.bridge = m.value("bridge", std::string());
    info.backbone = m.at("backbone").at("file").get<std::string>();
    info.rank = rank_from_json(m.at("rank"));
    // Every file a model loads is a plain name in its folder, listed (so sized and hashed) under
    // "files": a manifest cannot point outside the folder or at an unchecked file.
    const json& files = m.at("files");
    auto plain = [&](const std::string& name) {
      if (name.empty() || name == "." || name == ".." || name.find('/') != std::string::npos)
        fail(mf, ": '", name.substr(0, 80),
             "' is not a file name in the model folder (damaged or edited)");
    };
    std::vector<std::string> used{info.mapper, info.backbone};
    if (!info.bridge.empty()) used.push_back(info.bridge);
    for (const auto& [domain, list] : info.encoders)
      used.insert(used.end(), list.begin(), list.end());
    for (const auto& name : used) {
      plain(name);
      if (!files.contains(name))
        fail(mf, ": model file ", name, " is not among its files (damaged or edited)");
    }
    for (const auto& [name, f] : files.items()) {
      plain(name);
      const std::string path = dir + "/" + name;
      if (!file_exists(path))
        fail(dir, ": model file ", name, " is missing (a half-written or damaged model)");
      std::error_code ec;
      const auto size = json_whole<uint64_t>(f.at("bytes"));
      if (fs::file_size(path, ec) != size ||
          hex64(fnv1a(read_file(path))) != f.at("fnv1a").get<std::string>())
        fail(dir, ": model file ", name, " does not match its manifest (changed or damaged)");
    }
  } catch (const json::exception& e) {
    fail(mf, ": missing or malformed field (", e.what(), ")");
  }
  if (model_hash(m) != info.hash)
    fail(mf, ": its hash does not match its content (edited or damaged)");
  for (const auto& d : info.query_domains)
    if (!info.encoders.count(d)) fail(mf, ": query domain ", d, " has no encoder");
  if (!info.encoders.count(info.gallery_domain))
    fail(mf, ": gallery domain ", info.gallery_domain, " has no encoder");
  return info;
}

namespace {

class FolderModel : public Model {
 public:
  FolderModel(ModelInfo info, int threads) : info_(std::move(info)) {
    const std::string backbone = info_.dir + "/" + info_.backbone;
    // Only member 0 gives frozen features (Features::bridge), and only for a model with a bridge.
    for (const auto& [domain, files] : info_.encoders)
      for (const auto& f : files) {
        auto e = open_encoder(info_.dir + "/" + f, threads, backbone,
                              !info_.bridge.empty() && f == files[0]);
        auto cols = class_columns(e->classes(), info_.classes);
        if (!cols || (domain == info_.gallery_domain && e->classes() != info_.classes))
          fail(info_.dir, ": encoder ", f, " does not have the model's classes");
        cols_[domain].push_back(std::move(*cols));
        if (info_.kinds.count(domain) == 0 || info_.kinds.at(domain) != e->kind())
          fail(info_.dir, ": encoder ", f, " is of kind ", kind_name(e->kind()),
               ", not the manifest's");
        enc_[domain].push_back(std::move(e));
      }
    mapper_ = open_mapper(info_.dir + "/" + info_.mapper);
    const auto& md = mapper_->domains();
    for (const auto& [domain, list] : enc_)
      if (std::find(md.begin(), md.end(), domain) == md.end())
        fail(info_.dir, ": the mapper has no branch for domain ", domain);
    if (mapper_->gallery_domain() != info_.gallery_domain)
      fail(info_.dir, ": the mapper's gallery domain is ", mapper_->gallery_domain(),
           ", the manifest's ", info_.gallery_domain);
    for (const auto& [domain, list] : enc_)
      for (const auto& e : list)
        if (e->dim() != mapper_->in_dim())
          fail(info_.dir, ": ", domain, " embeddings are ", e->dim(), "-d but the mapper takes ",
               mapper_->in_dim());
    if (!info_.bridge.empty()) {
      bridge_ = open_bridge(info_.dir + "/" + info_.bridge);
      if (bridge_->gallery_domain() != info_.gallery_domain)
        fail(info_.dir, ": the bridge's gallery domain is ", bridge_->gallery_domain(),
             ", the manifest's ", info_.gallery_domain);
      for (const auto& [domain, list] : enc_) {
        const auto bd = bridge_->domains();
        if (std::find(bd.begin(), bd.end(), domain) == bd.end())
          fail(info_.dir, ": the bridge has no map for ", domain);
        if (list[0]->frozen_dim() != bridge_->dim())
          fail(info_.dir, ": the bridge takes ", bridge_->dim(), "-d features, the backbone gives ",
               list[0]->frozen_dim());
      }
    }
  }

  const ModelInfo& info() const override { return info_; }

  std::vector<std::string> domains() const override {
    std::vector<std::string> d;
    for (const auto& [name, list] : enc_) d.push_back(name);
    return d;
  }

  Features features(const std::string& domain, const std::vector<cv::Mat>& images,
                    const std::vector<uint64_t>& hashes) const override {
    auto it = enc_.find(domain);
    if (it == enc_.end()) {
      std::string have;
      for (const auto& d : domains()) have += (have.empty() ? "" : ", ") + d;
      fail("the model has no encoder for domain '", domain, "' (it has: ", have, ")");
    }
    if (images.size() != hashes.size()) fail("internal: one content hash per image");
    const auto& members = it->second;
    const int64_t n = static_cast<int64_t>(images.size()),
                  C = static_cast<int64_t>(info_.classes.size());
    const int64_t D = members[0]->dim(), F = bridge_ ? members[0]->frozen_dim() : 0;
    Features f;
    Matrix frozen(n, F);
    f.emb = Matrix(n, D);
    f.post = Matrix(n, C);
    // Each member's views of the images, then all members at once (they share the seedless views'
    // lower stages).
    std::vector<std::vector<float>> x(members.size()), logits(members.size());
    std::vector<float> emb, fz;
    std::vector<MemberRows> rows;
    for (size_t m = 0; m < members.size(); ++m) {
      PhaseOneEncoder& e = *members[m];
      const int S = e.input_size(), views = e.tta_views();
      const size_t per = 3 * static_cast<size_t>(S) * S;
      x[m].resize(static_cast<size_t>(n * views) * per);
      for (int64_t i = 0; i < n; ++i) {
        cv::Mat img = e.frames_input() ? frame_strokes(images[i]) : images[i];
        view_inputs(img, e.kind(), views, view_seed(e.view_seed(), hashes[i]), S,
                    x[m].data() + i * views * per);
      }
      logits[m].resize(static_cast<size_t>(n * views) * e.classes().size());
      if (m == 0) {
        emb.resize(static_cast<size_t>(n * views * D));
        fz.resize(static_cast<size_t>(n * views * F));
      }
      rows.push_back({&e, x[m].data(), m == 0 ? emb.data() : nullptr, logits[m].data(),
                      m == 0 && F > 0 ? fz.data() : nullptr});
    }
    encode_members(n, rows);
    // As Phase I training wrote its rows: the mean embedding (member 0's), and per member the
    // softmax of the mean logits, averaged over members.
    for (size_t m = 0; m < members.size(); ++m) {
      const int views = members[m]->tta_views();
      // Row i of `out` [n, w]: the mean of image i's views in `all` [n * views, w].
      auto mean_views = [&](const std::vector<float>& all, int64_t w, Matrix& out, int64_t i) {
        for (int64_t j = 0; j < w; ++j) {
          float s = 0;
          for (int v = 0; v < views; ++v) s += all[(i * views + v) * w + j];
          out.row(i)[j] = s / static_cast<float>(views);
        }
      };
      for (int64_t i = 0; i < n; ++i) {
        if (m == 0) {
          mean_views(emb, D, f.emb, i);
          mean_views(fz, F, frozen, i);
        }
        // The softmax over the member's own classes, read at the model's: mass a query encoder
        // puts on classes the gallery never learnt is left out, not spread over the others.
        const int64_t Ce = static_cast<int64_t>(members[m]->classes().size());
        const std::vector<int64_t>& col = cols_.at(domain)[m];
        std::vector<double> l(static_cast<size_t>(Ce), 0.0);
        for (int v = 0; v < views; ++v)
          for (int64_t c = 0; c < Ce; ++c)
            l[c] += logits[m][(i * views + v) * Ce + c] / static_cast<double>(views);
        const double top = *std::max_element(l.begin(), l.end());
        double z = 0;
        for (double& v : l) z += v = std::exp(v - top);
        for (int64_t c = 0; c < C; ++c)
          f.post.row(i)[c] +=
              static_cast<float>(l[col[c]] / z / static_cast<double>(members.size()));
      }
    }
    // One row at a time, like the encoders: a row's code does not depend on its neighbours.
    f.code = Matrix(n, mapper_->code_dim());
    for (int64_t i = 0; i < n; ++i) {
      Matrix one(1, D);
      std::copy(f.emb.row(i), f.emb.row(i) + D, one.data.begin());
      Matrix c = mapper_->map(domain, one);
      std::copy(c.data.begin(), c.data.end(), f.code.row(i));
    }
    f.bridge = bridge_ ? bridge_->map(domain, frozen, f.emb) : Matrix(n, 0);
    return f;
  }

 private:
  ModelInfo info_;
  std::map<std::string, std::vector<std::unique_ptr<PhaseOneEncoder>>> enc_;
  // Per encoder, the column of each model class in its own posterior (class_columns).
  std::map<std::string, std::vector<std::vector<int64_t>>> cols_;
  std::unique_ptr<Mapper> mapper_;
  std::unique_ptr<Bridge> bridge_;
};

}  // namespace

std::unique_ptr<Model> Model::open(const std::string& dir, int threads) {
  return std::make_unique<FolderModel>(read_model_info(dir), threads);
}

}  // namespace duet
