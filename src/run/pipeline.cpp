// The main job. See duet/pipeline.h.
#include "duet/pipeline.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

#include "duet/dataset.h"
#include "duet/diffusion.h"
#include "duet/dist.h"
#include "duet/domain.h"
#include "duet/embeddings.h"
#include "duet/error.h"
#include "duet/fileio.h"
#include "duet/fusion.h"
#include "duet/gallery.h"
#include "duet/inference.h"
#include "duet/ledger.h"
#include "duet/metrics.h"
#include "duet/model.h"
#include "duet/paths.h"
#include "duet/phase1.h"
#include "duet/phase2.h"
#include "duet/progress.h"
#include "duet/report.h"
#include "duet/search.h"

namespace duet {

namespace {

using json = nlohmann::json;

std::vector<std::string> paths_of(const Embeddings& e) {
  std::vector<std::string> p;
  for (const auto& r : e.rows) p.push_back(r.path);
  return p;
}

struct Config {
  EncoderTrainOptions enc;
  MapperOptions map;
  bool frame_drawings = false;  // Phase I sees drawing-kind domains cropped to their strokes
  int members = 1;              // Phase I encoders per domain, seeds s, s+1...; posteriors averaged
  // How the model ranks (its Phase II calibration filled in once trained).
  RankOptions rank;
  double preserve_source = 0;  // query domains' preservation weight, their source images' teacher
  double distill = 0;          // query domains distil their source images' gallery posteriors
  bool bridge = false;         // fit the bridge into the gallery's frozen features (duet/bridge.h)
  BridgeOptions bridge_opt;
  std::string describe;
};

}  // namespace

const char* recipe_name(Recipe r) { return r == Recipe::Paper ? "paper" : "default"; }

namespace {

Config make_config(const RunOptions& o) {
  Config c;
  c.enc.seed = c.map.seed = o.seed;
  c.enc.preserve = o.preserve;
  c.preserve_source = o.preserve_source;
  // Query encoders learn their source images' gallery posteriors at 0.5 in the default config:
  // chosen on the validation splits together with the unseen-class gate (docs/experiments.md,
  // "distillation and the gate on three held-out class sets"). The paper config is the reference
  // recipe.
  c.distill = o.distill >= 0 ? o.distill : o.config == Recipe::Paper ? 0.0 : 0.5;
  c.enc.backbone = o.backbone;
  c.enc.backbone.threads = c.map.threads = o.threads;
  if (o.config == Recipe::Paper) {
    c.rank.fuse = c.rank.diffusion = false;  // the code distance alone
    // The reference recipe: frozen then fine-tuned classifier, 1024-d embeddings, 1024-1024-125
    // mapper on 10+10 pairs per sketch, contrastive loss, Euclidean distance.
    c.map.loss = MapperLoss::Contrastive;
    // Unit-length embeddings into the mapper, Adam at 3e-4: chosen on validation splits carved
    // from the train parts (README "Choosing hyperparameters"). Raw embeddings at 1e-4 gave codes
    // with map_all 0.236 on category-val and 0.203 on zeroshot21-val; unit-length ones at 1e-4
    // 0.234 / 0.247, at 3e-4 0.269 / 0.249, at 1e-3 - / 0.219. (Raw at 1e-3 collapses.)
    c.map.normalize = true;
    c.map.lr = 3e-4;
    c.describe =
        "paper: frozen+finetuned classifier, 1024-d, mapper 1024-1024-125 on unit-length "
        "embeddings, 10+10 pairs, contrastive";
  } else {
    // Same two phases, better used: augmented views, test-time augmentation, triplet loss with hard
    // negatives, and the Phase I class posteriors fused with the Phase II code similarity.
    c.enc.views = 4;
    // Embeddings and posteriors average all 4 cached views (image, mirror, two augmentations):
    // chosen on the validation splits (README "Choosing hyperparameters"), like the fusion and
    // diffusion options (duet/fusion.h, duet/diffusion.h).
    c.enc.tta_views = 4;
    c.enc.label_smoothing = 0.1;
    c.frame_drawings = true;
    c.map.loss = MapperLoss::Triplet;
    c.map.margin = 0.5;
    c.map.hard_negatives = true;
    // Two Phase I encoders per domain, seeds s and s+1, their class posteriors averaged; the
    // first one's embeddings feed Phase II and the gallery graph. Chosen on the validation
    // splits (README "Choosing hyperparameters"): 0.561 / 0.398 and 0.545 / 0.367 for the two
    // seeds alone, 0.574 / 0.392 together, for twice the Phase I compute.
    c.members = 2;
    // With extra sources, a fine-tuning epoch passes the main dataset's images and a draw of the
    // extras' up to 6,000 in all: 10 epochs then see each of TU-Berlin's 12,680 sketches about 3
    // times for about twice the Sketchy-only fine-tuning time (docs/experiments.md, "Extra
    // sketches"); a time budget, not a tuned value.
    c.enc.finetune_samples = 6000;
    c.rank = o.rank;
    // Fitted only when the score weighs it or the graph is built over it: on the validation
    // splits it gained zeroshot21 at most 0.01 and cost category at every point, so the default
    // leaves it off (docs/experiments.md, "The bridge").
    c.bridge = o.rank.fusion.uses_bridge() || o.rank.graph != GraphSpace::Embedding;
    c.bridge_opt = o.bridge_opt;
    c.describe =
        "default: framed drawings, 4 views, label smoothing, 4-view TTA, 2 encoders per domain, "
        "triplet + hard negatives, posterior fusion with an unseen-class gate, gallery diffusion";
  }
  if (c.distill > 0) c.describe += ", query encoders distilled from their source images";
  if (o.quick) {
    if (c.enc.backbone.arch == "mobilenet_v2" && c.enc.backbone.weights.empty())
      c.enc.backbone.arch = "mobilenet_v1_025";
    c.enc.frozen_epochs = 20;
    c.enc.finetune_epochs = 2;
    c.enc.views = 2;
    c.enc.tta_views = std::min(c.enc.tta_views, c.enc.views);
    c.map.epochs = 15;
    c.describe += " (quick)";
  }
  return c;
}

// A --split value is a split file's path when it ends in .tsv, else a name under <data>/splits.
bool is_split_file(const std::string& split) {
  return split.size() > 4 && split.compare(split.size() - 4, 4, ".tsv") == 0;
}
// "category" -> "category"; "val/zs.tsv" -> "zs"
std::string split_name(const std::string& split) {
  return is_split_file(split) ? std::filesystem::path(split).stem().string() : split;
}

std::string hash_hex(const std::string& s) { return hex64(fnv1a(s)); }

// Runs `step` unless <dir>/<name>.json holds the same key and every output exists; returns the
// step's result JSON either way. Data-parallel ranks skip only when all of them find it up to
// date, run the step together, and wait for rank 0 to write its outputs and stamp before any
// of them reads them.
json stamped(const std::string& dir, const std::string& name, const std::string& key,
             const std::vector<std::string>& outputs, const std::function<json()>& step) {
  std::string stamp = dir + "/" + name + ".json";
  json done;
  if (file_exists(stamp)) {
    try {
      json j = json::parse(read_file(stamp));
      bool ok = j.value("key", "") == key;
      for (const auto& o : outputs) ok = ok && file_exists(o);
      if (ok) done = j["result"];
    } catch (const std::exception&) {
    }
  }
  if (dist::all_agree(!done.is_null())) {
    log_line(name + ": up to date, skipped");
    return done;
  }
  json r = step();
  if (dist::leader()) write_file_atomic(stamp, json{{"key", key}, {"result", r}}.dump(2));
  dist::barrier();
  return r;
}

// Two ledgers of one phase as one, added by Ledger::operator+= (the JSON is Ledger::to_json's).
json ledger_sum(const json& a, const json& b) {
  auto of = [](const json& j) {
    Ledger l;
    l.wall_s = j.at("wall_s").get<double>();
    l.cpu_s = j.at("cpu_s").get<double>();
    l.peak_rss_mib = j.at("peak_rss_mib").get<double>();
    l.image_forward = j.at("image_forward").get<int64_t>();
    l.image_backward = j.at("image_backward").get<int64_t>();
    l.flops = j.at("flops").get<double>();
    return l;
  };
  Ledger l = of(a);
  l += of(b);
  return json::parse(l.to_json());
}

// Top-1 accuracy of posteriors over the given rows whose class the encoder learnt (the file's
// "classes" line names the columns); -1 when there are none.
double top1(const Embeddings& post, const std::vector<size_t>& rows) {
  std::map<std::string, int64_t> col;
  std::istringstream names(post.meta.count("classes") ? post.meta.at("classes") : "");
  for (std::string c; std::getline(names, c, ',');)
    col.emplace(c, static_cast<int64_t>(col.size()));
  if (static_cast<int64_t>(col.size()) != post.x.cols)
    fail("posteriors name ", col.size(), " classes for ", post.x.cols, " columns");
  int64_t n = 0, right = 0;
  for (size_t r : rows) {
    auto it = col.find(post.rows[r].cls);
    if (it == col.end()) continue;
    const float* p = post.x.row(static_cast<int64_t>(r));
    ++n;
    right += std::max_element(p, p + post.x.cols) - p == it->second;
  }
  return n ? static_cast<double>(right) / static_cast<double>(n) : -1.0;
}

// What the training half of a split leaves: per domain, the Phase I report (member 0's, with the
// ledgers of all members summed) and the averaged posteriors of every sample; the Phase II report.
struct Trained {
  std::map<std::string, json> phase1;
  std::map<std::string, Embeddings> post;
  std::vector<json> member_acc;
  json phase2;
  json bridge;  // null without one
};

// Phase I for every domain (each alone) and member, then Phase II on d's train samples, into dir;
// then the model folder model_dir. `key` names the data (the split file's content), for stamps.
Trained train_split(const RunOptions& o, const Config& cfg, const Dataset& d, const Domains& doms,
                    const std::map<std::string, DomainKind>& kinds, const std::string& key,
                    const std::string& dir, const std::string& model_dir, const json& training) {
  // Member 0 writes to dir, member m (seed + m) to dir/member<m>: the same training as a run with
  // that seed.
  Trained t;
  // Query domains taught by their source images (--preserve-source) instead of themselves.
  auto from_source = [&](const std::string& domain) {
    return cfg.preserve_source > 0 && domain != doms.gallery;
  };
  auto encoder_options = [&](int m, const std::string& domain) {
    EncoderTrainOptions eo = cfg.enc;
    // Member m is the run at seed s+m, views included (members on member 0's views lost 0.011
    // on category-val: docs/experiments.md).
    eo.seed += static_cast<uint64_t>(m);
    eo.cache_dir = o.out + "/cache";
    eo.kind = kinds.at(domain);
    eo.frame = cfg.frame_drawings && kinds.at(domain) == DomainKind::Drawing;
    if (from_source(domain)) eo.preserve = cfg.preserve_source;
    return eo;
  };
  // The rows of gallery-domain outputs `g` that belong to each `domain` image's source image (a
  // sketch drawn from a photo), keyed by the query image: the teacher of --preserve-source and of
  // --distill. Empty when no image of the domain has a source in the gallery.
  auto source_teacher = [&](const std::string& domain, const Embeddings& g) {
    std::vector<std::string> images;
    for (const auto& s : d.samples)
      if (s.domain == domain) images.push_back(s.path);
    const std::vector<int64_t> rows = source_rows(d, images, paths_of(g));
    std::vector<size_t> src;
    Embeddings t;
    for (size_t i = 0; i < images.size(); ++i)
      if (rows[i] >= 0) {
        src.push_back(static_cast<size_t>(rows[i]));
        t.rows.push_back({images[i], "", domain});
      }
    t.x = take_rows(g, src).x;
    if (g.meta.count("classes")) t.meta["classes"] = g.meta.at("classes");  // its columns' names
    return t;
  };
  const std::string no_source = " image has a source image in " + doms.gallery +
                                " (a file named <" + doms.gallery +
                                " file's stem>-<n> in its class)";
  for (int m = 0; m < cfg.members; ++m) {
    const std::string mdir = m == 0 ? dir : dir + "/member" + std::to_string(m);
    make_dirs(mdir);
    json acc;
    // The gallery first: with --distill, its posteriors teach the query domains.
    std::string gallery_key;  // the gallery encoder's stamp: what a distilled encoder learnt from
    std::vector<std::string> order{doms.gallery};
    for (const auto& q : doms.query) order.push_back(q);
    for (const std::string& domain : order) {
      EncoderTrainOptions eo = encoder_options(m, domain);
      const bool distilled = cfg.distill > 0 && domain != doms.gallery;
      std::ostringstream k;
      k << key << "|" << eo.backbone.arch << "|" << eo.backbone.weights << "|" << eo.hidden << "|"
        << eo.frozen_epochs << "|" << eo.finetune_epochs << "|" << eo.finetune_stages << "|"
        << eo.views << "|" << eo.lr << "|" << eo.finetune_lr << "|" << eo.tta_views << "|"
        << eo.label_smoothing << "|" << eo.dropout << "|" << eo.seed << "|" << eo.seed
        << "|"  // training seed, views' seed (keys as before)
        << kind_name(kinds.at(domain)) << (eo.frame ? "|framed" : "");
      if (eo.preserve > 0)
        k << (from_source(domain) ? "|preserve-source" : "|preserve")
          << eo.preserve;  // (without it, keys as before)
      if (distilled) k << "|distill" << cfg.distill << "t" << eo.distill_t << "|" << gallery_key;
      if (!o.extra.empty()) k << "|samples" << eo.finetune_samples;
      if (domain == doms.gallery) gallery_key = hash_hex(k.str());
      std::string enc_file = mdir + "/" + domain + "_encoder.pt";
      std::string emb = mdir + "/" + domain + ".npy";
      json r = stamped(
          mdir, "phase1-" + domain, hash_hex(k.str()),
          {enc_file, emb, manifest_path_for(emb), posteriors_path_for(emb)}, [&] {
            // SAKE's teacher: the frozen backbone's ImageNet distribution of the
            // source image, seen at member m's views.
            if (from_source(domain)) {
              eo.teacher = source_teacher(
                  domain, frozen_features(d, doms.gallery, encoder_options(m, doms.gallery), true));
              if (eo.teacher.rows.empty()) fail("--preserve-source: no ", domain, no_source);
            }
            if (distilled) {
              eo.class_teacher = source_teacher(
                  domain, read_embeddings(posteriors_path_for(mdir + "/" + doms.gallery + ".npy")));
              if (eo.class_teacher.rows.empty())
                log_line("no " + domain + no_source + ": its Phase I learns without distillation");
              else
                eo.distill = cfg.distill;
            }
            return json::parse(train_encoder(d, domain, eo, enc_file, emb).to_json());
          });
      acc[domain] = r["val_acc"];
      Embeddings pm = read_embeddings(posteriors_path_for(emb));
      if (m == 0) {
        t.phase1[domain] = r;
        t.post[domain] = std::move(pm);
        continue;
      }
      // Members average row by row: same samples in the same order, same classes.
      Embeddings& p0 = t.post[domain];
      bool same = pm.x.rows == p0.x.rows && pm.x.cols == p0.x.cols &&
                  pm.meta["classes"] == p0.meta["classes"];
      for (size_t i = 0; same && i < pm.rows.size(); ++i) same = pm.rows[i].path == p0.rows[i].path;
      if (!same)
        fail(mdir, ": ", domain, " posteriors do not line up with member 0's in ", dir, "; delete ",
             mdir);
      for (size_t i = 0; i < p0.x.data.size(); ++i) p0.x.data[i] += pm.x.data[i];
      t.phase1[domain]["ledger"] = ledger_sum(t.phase1[domain]["ledger"], r["ledger"]);
    }
    t.member_acc.push_back(acc);
  }
  for (auto& [domain, pm] : t.post)
    for (float& v : pm.x.data) v /= static_cast<float>(cfg.members);

  // Phase II on the train rows: a branch per query domain and one for the gallery domain. Pairs
  // need images of a class in both domains, so it learns from the classes the gallery has (extra
  // sources may teach a query encoder more).
  std::set<std::string> train_paths, gallery_classes;
  for (const auto& s : d.samples)
    if (s.split == "train") {
      train_paths.insert(s.path);
      if (s.domain == doms.gallery) gallery_classes.insert(s.cls);
    }
  auto paired = [&](const ManifestRow& r) {
    return train_paths.count(r.path) && gallery_classes.count(r.cls);
  };
  auto train_rows = [&](const std::string& domain) {
    Embeddings e = read_embeddings(dir + "/" + domain + ".npy");
    std::vector<size_t> r;
    for (size_t i = 0; i < e.rows.size(); ++i)
      if (paired(e.rows[i])) r.push_back(i);
    return take_rows(e, r);
  };
  const std::string mapper_file = dir + "/mapper.pt";
  std::ostringstream mk;
  for (const auto& domain : doms.all()) mk << domain << ":" << t.phase1[domain].dump();
  mk << loss_name(cfg.map.loss) << cfg.map.shared << (cfg.map.normalize ? "n" : "")
     << cfg.map.hidden << cfg.map.code << cfg.map.pos << cfg.map.neg << cfg.map.hard_negatives
     << cfg.map.epochs << cfg.map.lr << cfg.map.margin << cfg.map.seed;
  t.phase2 = stamped(dir, "phase2", hash_hex(mk.str()), {mapper_file}, [&] {
    std::vector<Embeddings> queries;
    for (const auto& q : doms.query) queries.push_back(train_rows(q));
    return json::parse(
        train_mapper(queries, train_rows(doms.gallery), cfg.map, mapper_file).to_json());
  });

  // The bridge into the gallery's frozen features (duet/bridge.h), from member 0's views: the
  // frozen features come out of its trunk cache, the query embeddings from its rows.
  std::string bridge_file;
  if (cfg.bridge) {
    bridge_file = dir + "/bridge.pt";
    std::ostringstream bk;
    for (const auto& domain : doms.all()) bk << domain << ":" << t.phase1[domain].dump() << "|";
    bk << doms.gallery << "|" << cfg.bridge_opt.ridge << "|" << cfg.bridge_opt.source_weight;
    std::vector<std::string> outputs{bridge_file};
    for (const auto& domain : doms.all()) outputs.push_back(dir + "/" + domain + ".frozen.npy");
    t.bridge = stamped(dir, "bridge", hash_hex(bk.str()), outputs, [&] {
      auto side = [&](const std::string& domain, bool with_emb) {
        Embeddings fz = frozen_features(d, domain, encoder_options(0, domain));
        if (dist::leader())
          write_embeddings(dir + "/" + domain + ".frozen.npy", fz);  // what it learnt from
        Embeddings e;
        if (with_emb) {
          e = read_embeddings(dir + "/" + domain + ".npy");
          bool same = e.rows.size() == fz.rows.size();
          for (size_t i = 0; same && i < e.rows.size(); ++i)
            same = e.rows[i].path == fz.rows[i].path;
          if (!same)
            fail(dir, ": the ", domain, " embeddings do not line up with its trunk cache; delete ",
                 dir);
        }
        std::vector<size_t> r;
        for (size_t i = 0; i < fz.rows.size(); ++i)
          if (paired(fz.rows[i])) r.push_back(i);
        BridgeRows b;
        b.frozen = take_rows(fz, r);
        if (with_emb) b.emb = take_rows(e, r).x;
        return b;
      };
      const BridgeRows gallery = side(doms.gallery, false);
      std::map<std::string, BridgeRows> queries;
      for (const auto& q : doms.query)
        if (q != doms.gallery) {
          BridgeRows& b = queries[q] = side(q, true);
          b.source = source_rows(d, paths_of(b.frozen), paths_of(gallery.frozen));
        }
      return json::parse(
          train_bridge(doms.gallery, gallery, queries, cfg.bridge_opt, bridge_file).to_json());
    });
  }

  // The model folder: what `duet index` and `duet search` use, and what the metrics use.
  ModelSpec spec;
  spec.config = recipe_name(o.config);
  spec.query_domains = doms.query;
  spec.gallery_domain = doms.gallery;
  for (const auto& domain : doms.all())
    for (int m = 0; m < cfg.members; ++m)
      spec.encoders[domain].push_back((m == 0 ? dir : dir + "/member" + std::to_string(m)) + "/" +
                                      domain + "_encoder.pt");
  spec.mapper = mapper_file;
  spec.bridge = bridge_file;
  spec.rank = cfg.rank;
  spec.rank.diffusion = cfg.rank.fuse && cfg.rank.diffusion;
  {
    auto mp = open_mapper(mapper_file);
    spec.rank.prob_a = mp->prob_a();
    spec.rank.prob_b = mp->prob_b();
  }
  spec.training = training.dump();
  if (dist::leader()) write_model(model_dir, spec);
  dist::barrier();
  return t;
}

// The dataset of a run or a training: limited to --max-classes, then to the run's domains and
// the classes every one of them has (the others listed on stderr).
void select_for_run(const RunOptions& o, Dataset& d, const Domains& doms) {
  if (o.max_classes > 0) {
    auto cls = d.classes();
    std::set<std::string> keep(cls.begin(),
                               cls.begin() + std::min<size_t>(cls.size(), o.max_classes));
    std::vector<Sample> kept;
    for (auto& s : d.samples)
      if (keep.count(s.cls)) kept.push_back(s);
    d.samples = std::move(kept);
  }
  log_dropped(restrict_domains(d, doms.all()));
}

json samples_per_domain(const Dataset& d, const std::string& split) {
  json j = json::object();
  for (const auto& s : d.samples)
    if (split.empty() || s.split == split) j[s.domain] = j.value(s.domain, 0) + 1;
  return j;
}

// The class folders of the run's domains under a dataset root: with the split's own classes, every
// class the main dataset has (what held_out_classes needs).
std::vector<std::string> folder_classes(const std::string& data, const Domains& doms) {
  std::vector<std::string> c;
  for (const auto& dom : doms.all()) {
    const std::filesystem::path p = std::filesystem::path(data) / dom;
    if (!std::filesystem::is_directory(p)) continue;
    for (const auto& e : std::filesystem::directory_iterator(p))
      if (e.is_directory()) c.push_back(e.path().filename().string());
  }
  return c;
}

// "a/b/tu-berlin/" -> "tu-berlin": a source's name.
std::string folder_name(const std::string& root) {
  const std::filesystem::path p = std::filesystem::absolute(root).lexically_normal();
  return (p.has_filename() ? p.filename() : p.parent_path().filename()).string();
}

// Merges the run's extra sources into d, less `held_out`; returns what each gave (for the log, the
// stamps' key and the model's record of what it learnt from).
json merge_extras(const RunOptions& o, Dataset& d, const Domains& doms,
                  const std::set<std::string>& held_out) {
  json rec = json::array();
  for (const auto& root : o.extra) {
    const std::string name = folder_name(root);
    ExtraSource x = merge_extra(d, load_folder(root), name, doms.all(), held_out, o.max_classes);
    int64_t n = 0;
    for (const auto& [dom, k] : x.images) n += k;
    log_line("extra " + name + ": " + std::to_string(n) + " images of " +
             std::to_string(x.classes.size()) + " classes merged for training; " +
             std::to_string(x.held_out.size()) + " held-out classes left out" +
             (x.ignored_domains.empty()
                  ? std::string()
                  : "; domains the run lacks ignored: " + json(x.ignored_domains).dump()));
    rec.push_back({{"name", name},
                   {"root", x.root},
                   {"images", x.images},
                   {"classes", x.classes},
                   {"held_out", x.held_out}});
  }
  return rec;
}

// The classes each source taught, per domain: {"<source>": {"<domain>": [classes]}} ("" is the
// main dataset, named `main`).
json classes_by_source(const Dataset& d, const std::string& main) {
  std::map<std::string, std::map<std::string, std::set<std::string>>> by;
  for (const auto& s : d.samples)
    if (s.split == "train") by[s.source.empty() ? main : s.source][s.domain].insert(s.cls);
  json j = json::object();
  for (const auto& [src, doms] : by)
    for (const auto& [dom, cls] : doms)
      j[src][dom] = std::vector<std::string>(cls.begin(), cls.end());
  return j;
}

// `split` names <data>/splits/<split>.tsv, or is the path of a split file elsewhere (e.g. a
// validation split made with `duet split --from`); results go under its stem either way.
json run_split(const RunOptions& o, const Config& cfg, const std::string& data,
               const std::string& split) {
  const bool is_path = is_split_file(split);
  const std::string tsv = is_path ? split : data + "/splits/" + split + ".tsv";
  if (!file_exists(tsv))
    fail(tsv, ": no such split file",
         is_path ? std::string() : " (splits available under " + data + "/splits)");
  Dataset d = load_split(tsv, data);
  const Domains doms = resolve_domains(d, o.query_domains, o.gallery_domain);
  select_for_run(o, d, doms);
  // Every test class of a query domain needs gallery images in the test part, or its queries
  // cannot be scored.
  {
    std::set<std::string> gallery_cls;
    for (const auto& s : d.samples)
      if (s.domain == doms.gallery && s.split == "test") gallery_cls.insert(s.cls);
    for (const auto& s : d.samples)
      if (s.domain != doms.gallery && s.split == "test" && !gallery_cls.count(s.cls))
        fail(tsv, ": class '", s.cls, "' has test ", s.domain, " images but no test ", doms.gallery,
             " images");
  }
  const auto kinds = decide_kinds(d, doms.all(), o.kinds);
  // Extra sources train too, except on any class the split holds out.
  std::vector<std::string> all_classes = folder_classes(data, doms);
  const json extras = merge_extras(o, d, doms, held_out_classes(d, all_classes));
  const std::string dir = o.out + "/" + split_name(split);
  make_dirs(dir);
  // What Phase I and II train on, extra sources included: a record for the user and the tests.
  if (dist::leader()) {
    Dataset train = d;
    train.samples.clear();
    for (const auto& s : d.samples)
      if (s.split == "train") train.samples.push_back(s);
    write_split(dir + "/train.tsv", train);
  }
  const std::string split_key = hash_hex(read_file(tsv) + "|" + std::to_string(o.max_classes) +
                                         "|" + data + (extras.empty() ? "" : extras.dump()));
  json training = {{"data", data},
                   {"split", tsv},
                   {"samples", samples_per_domain(d, "train")},
                   {"classes", d.classes("train").size()},
                   {"held_out", "the split's test part"}};
  training["classes_by_source"] = classes_by_source(d, folder_name(data));
  if (!extras.empty()) training["extra"] = extras;
  Trained t = train_split(o, cfg, d, doms, kinds, split_key, dir, dir + "/model", training);
  auto model = Model::open(dir + "/model", o.threads);

  json out;
  out["config"] = cfg.describe;
  out["domains"] = {{"query", doms.query}, {"gallery", doms.gallery}, {"kinds", json::object()}};
  for (const auto& [dom, k] : kinds) out["domains"]["kinds"][dom] = kind_name(k);

  // Retrieval as a user gets it: the test gallery images indexed through the model
  // (embed_gallery, as `duet index` does), the test images of each query domain searched through
  // the same Searcher as `duet search`.
  auto t0 = std::chrono::steady_clock::now();
  std::vector<std::string> gpaths, gl;
  std::map<std::string, std::string> cls_of;
  for (const auto& s : d.samples)
    if (s.split == "test" && s.domain == doms.gallery) {
      cls_of[s.path] = s.cls;
      gpaths.push_back(s.path);
    }
  GalleryOptions go;
  go.thumb = 0;
  struct QueryImages {
    std::vector<std::string> files, cls;
    Features f;
  };
  std::map<std::string, QueryImages> qs;
  for (const auto& qd : doms.query) {
    QueryImages& q = qs[qd];
    for (const auto& s : d.samples)
      if (s.split == "test" && s.domain == qd) {
        q.files.push_back(std::filesystem::absolute(d.abs_path(s)).lexically_normal().string());
        q.cls.push_back(s.cls);
      }
    if (q.files.empty()) fail(tsv, ": no test ", qd, " images to query with");
  }
  // The test images' features depend on the model's trained files alone, not on its rank
  // options: they are kept beside the run as index files (test-<domain>.idx), so a run that
  // changes only retrieval settings re-scores without a CNN pass. Data-parallel ranks embed their
  // shares of the gallery and of each query domain's images; rank 0 gets them all and scores alone.
  GalleryIndex gallery;
  {
    const std::string files = json::parse(model->info().json).at("files").dump();
    auto idx = [&](const std::string& domain) { return dir + "/test-" + domain + ".idx"; };
    std::vector<std::string> outputs{idx(doms.gallery)};
    for (const auto& qd : doms.query) outputs.push_back(idx(qd));
    bool embedded = false;
    stamped(dir, "test-features", hash_hex(files + "|" + split_key), outputs, [&] {
      embedded = true;
      gallery = embed_gallery(*model, doms.gallery, d.root, gpaths, go);
      gallery.graph.reset();  // built at scoring time, with the run's graph options
      for (auto& [qd, q] : qs) q.f = embed_files(*model, qd, q.files);
      if (dist::leader()) {
        write_gallery(idx(doms.gallery), gallery);
        for (const auto& [qd, q] : qs) {
          GalleryIndex gq;
          gq.domain = qd;
          gq.model_hash = model->info().hash;
          for (const auto& f : q.files) gq.entries.push_back(GalleryEntry{f});
          gq.arrays = q.f;
          write_gallery(idx(qd), gq);
        }
      }
      return json{{"gallery", gpaths.size()}};
    });
    if (!dist::leader()) return json();
    if (!embedded) {
      gallery = read_gallery(idx(doms.gallery));
      for (auto& [qd, q] : qs) {
        GalleryIndex gq = read_gallery(idx(qd));
        if (gq.entries.size() != q.files.size()) fail(idx(qd), ": stale; delete it");
        q.f = std::move(gq.arrays);
      }
    }
  }
  if (gallery.entries.size() != gpaths.size())
    fail(tsv, ": some test ", doms.gallery, " images could not be read");
  for (const auto& e : gallery.entries) gl.push_back(cls_of.at(e.path));
  Searcher searcher = gallery_searcher(gallery, model->info().rank);
  // The options it ranked with, as the model folder records them, and the bridge's fit.
  const json rank = rank_to_json(model->info().rank);
  if (cfg.rank.fuse) {
    out["fusion"] = rank.at("fusion");
    out["fusion"]["bridge_ridge"] = cfg.bridge_opt.ridge;
    out["fusion"]["bridge_source"] = cfg.bridge_opt.source_weight;
  }
  if (searcher.graph()) {
    out["diffusion"] = rank.at("diffusion_options");
    out["diffusion"]["graph"] = rank.at("graph");
  }
  // What the report shows beyond the metrics (duet/report.h): curves, per-class AP, examples.
  json detail = {{"root", std::filesystem::absolute(d.root).lexically_normal().string()},
                 {"test", json::object()},
                 {"by_query", json::object()}};
  for (const auto& s : d.samples)
    if (s.split == "test") detail["test"][s.domain].push_back(s.path);
  for (const auto& qd : doms.query) {
    const std::vector<std::string>&qfiles = qs[qd].files, &ql = qs[qd].cls;
    const Features& qf = qs[qd].f;
    const QueryArrays queries{qf.post, qf.code, qf.bridge};
    std::vector<int> qi, gi;
    label_ids(ql, gl, qi, gi);
    EvalOptions eo;
    const int64_t nq = static_cast<int64_t>(qfiles.size()), ng = searcher.size();
    std::vector<char> unseen;
    std::vector<std::vector<int64_t>> ranks;
    json r;
    RetrievalMetrics m = evaluate_scores(nq, ng, searcher.scores(queries, false, &unseen), qi, gi,
                                         eo, searcher.graph() ? nullptr : &ranks);
    if (cfg.rank.fuse) r["unseen_queries"] = std::count(unseen.begin(), unseen.end(), 1);
    if (searcher.graph()) {
      // The gallery's own Phase I embeddings make the graph: no query is involved in it.
      r["retrieval_before_diffusion"] = json::parse(m.to_json());
      m = evaluate_scores(nq, ng, searcher.scores(queries, true), qi, gi, eo, &ranks);
    }
    r["retrieval"] = json::parse(m.to_json());
    r["queries"] = nq;
    out["by_query"][qd] = r;
    // The best, median and worst queries with their top 10, searched as a user would.
    json dq = json::parse(retrieval_detail(ranks, ql, ng));
    const std::vector<int64_t> ex = example_queries(ranks);
    QueryArrays sub{Matrix(static_cast<int64_t>(ex.size()), queries.post.cols),
                    Matrix(static_cast<int64_t>(ex.size()), queries.code.cols),
                    Matrix(static_cast<int64_t>(ex.size()), queries.bridge.cols)};
    for (size_t i = 0; i < ex.size(); ++i)
      for (auto [from, to] : {std::pair{&queries.post, &sub.post},
                              {&queries.code, &sub.code},
                              {&queries.bridge, &sub.bridge}})
        std::copy(from->row(ex[i]), from->row(ex[i]) + from->cols,
                  to->row(static_cast<int64_t>(i)));
    const auto top = searcher.search(sub, 10);
    const char* labels[] = {"best", "median", "worst"};
    dq["examples"] = json::array();
    for (size_t i = 0; i < ex.size(); ++i) {
      json e = {{"label", labels[std::min<size_t>(i, 2)]},
                {"query", qfiles[ex[i]]},
                {"class", ql[ex[i]]},
                {"ap", dq["ap"][static_cast<size_t>(ex[i])]},
                {"first_relevant", ranks[ex[i]].at(0)},
                {"results", json::array()}};
      for (const Hit& h : top[i].hits)
        e["results"].push_back({{"path", gallery.entries[h.row].path},
                                {"class", gl[h.row]},
                                {"ok", gl[h.row] == ql[ex[i]]}});
      dq["examples"].push_back(e);
    }
    detail["by_query"][qd] = dq;
  }
  write_file_atomic(dir + "/eval.json", detail.dump() + "\n");
  // The headline figures are the first query domain's.
  for (const auto& [key, v] : out["by_query"][doms.query[0]].items()) out[key] = v;
  out["retrieval_wall_s"] =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  out["gallery"] = searcher.size();
  // Accuracy of the averaged posteriors on the held-out rows of learnt classes (-1: none).
  std::set<std::string> test_paths;
  for (const auto& s : d.samples)
    if (s.split == "test") test_paths.insert(s.path);
  for (const auto& [domain, pm] : t.post) {
    std::vector<size_t> test_rows;
    for (size_t i = 0; i < pm.rows.size(); ++i)
      if (test_paths.count(pm.rows[i].path)) test_rows.push_back(i);
    out["accuracy"][domain] = top1(pm, test_rows);
    const json& p = t.phase1.at(domain);
    out["phase1"][domain] = {
        {"train_acc", p["train_acc"]}, {"val_acc", p["val_acc"]}, {"ledger", p["ledger"]}};
  }
  out["phase1_members"] = t.member_acc;
  out["phase2"] = {{"ledger", t.phase2["ledger"]}, {"final_loss", t.phase2["epoch_loss"].back()}};
  if (!t.bridge.is_null()) out["bridge"] = t.bridge;
  out["model"] = {{"dir", dir + "/model"}, {"hash", model->info().hash}};
  return out;
}

}  // namespace

std::string run_pipeline(const RunOptions& o) {
  Config cfg = make_config(o);
  const std::string data = o.data.empty() ? default_data_dir() : o.data;
  make_dirs(o.out);
  const auto t0 = std::chrono::steady_clock::now();
  json all;
  all["dataset"] = data;
  all["config"] = recipe_name(o.config);
  all["quick"] = o.quick;
  all["seed"] = o.seed;
  for (const auto& split : o.splits) {
    log_line("split " + split + " (" + cfg.describe + ")");
    all["splits"][split_name(split)] = run_split(o, cfg, data, split);
  }
  if (!dist::leader()) return "";
  all["wall_s"] = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  all["peak_rss_mib"] = process_peak_rss_mib();  // this rank's
  std::string text = all.dump(2);
  write_file_atomic(o.out + "/metrics.json", text + "\n");
  ReportOptions ro;
  ro.run = o.out;
  ro.seed = o.seed;
  log_line("report: " + write_report(ro));
  return text;
}

std::string train_model(const RunOptions& o, const std::string& model_dir) {
  Config cfg = make_config(o);
  if (o.data.empty()) fail("give the dataset folder with --data (<root>/<domain>/<class>/<image>)");
  Dataset d = load_folder(o.data);
  const Domains doms = resolve_domains(d, o.query_domains, o.gallery_domain);
  select_for_run(o, d, doms);
  if (d.classes().size() < 2)
    fail(o.data, ": needs at least two classes with images in every domain");
  for (auto& s : d.samples) s.split = "train";
  const auto kinds = decide_kinds(d, doms.all(), o.kinds);
  const json extras = merge_extras(o, d, doms, {});
  make_dirs(o.out);
  // The samples it trains on, as a split file: what the stamps key on, and a record for the user.
  const std::string tsv = o.out + "/train.tsv";
  if (dist::leader()) write_split(tsv, d);
  dist::barrier();
  log_line("train: " + std::to_string(d.samples.size()) + " images, " +
           std::to_string(d.classes().size()) + " classes (" + cfg.describe + "); work files in " +
           o.out);
  const std::string key = hash_hex(read_file(tsv) + "|" + o.data);
  json training = {{"data", o.data},
                   {"split", "every image (" + tsv + ")"},
                   {"samples", samples_per_domain(d, "")},
                   {"classes", d.classes().size()},
                   {"held_out",
                    "none: Phase I and II run fixed schedules (no early stopping), and Phase II "
                    "calibrates p(same | distance) on pairs resampled from the training images"}};
  training["classes_by_source"] = classes_by_source(d, folder_name(o.data));
  if (!extras.empty()) training["extra"] = extras;
  Trained t = train_split(o, cfg, d, doms, kinds, key, o.out, model_dir, training);
  if (!dist::leader()) return "";
  json r = {{"model", model_dir},
            {"hash", read_model_info(model_dir).hash},
            {"config", cfg.describe},
            {"domains", {{"query", doms.query}, {"gallery", doms.gallery}}},
            {"training", training}};
  for (const auto& [domain, p] : t.phase1)
    r["phase1"][domain] = {{"train_acc", p["train_acc"]}, {"ledger", p["ledger"]}};
  r["phase2"] = {{"ledger", t.phase2["ledger"]}, {"final_loss", t.phase2["epoch_loss"].back()}};
  return r.dump(2);
}

}  // namespace duet
