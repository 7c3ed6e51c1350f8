// fuzz/fuzz_model.cpp — the readers of a model folder on arbitrary bytes: `duet index`, `duet
// search` and `duet serve` load model folders they did not write.
//
// One target for the folder: the input's first byte picks the file, the rest is its content.
//   0 manifest.json  read_model_info over the seed model's (DUET_FUZZ_MODEL) other files
//   1 encoder        open_encoder with the seed model's backbone, then one image through it
//   2 mapper         open_mapper, then one row through a branch
//   3 bridge         open_bridge, then one gallery row through it
//   4 backbone       open_backbone_net of the seed model's architecture (TFLite, else TorchScript)
// The manifest hashes every other file, so Model::open never hands a changed file to its reader;
// the readers are fuzzed here directly because a crafted folder carries a matching manifest.
#include <filesystem>
#include <nlohmann/json.hpp>
#include <vector>

#include "backbone/nets.h"
#include "duet/fileio.h"
#include "duet/inference.h"
#include "duet/model.h"
#include "fuzz_util.h"

namespace fs = std::filesystem;

namespace {

enum Reader { kManifest, kEncoder, kMapper, kBridge, kBackbone, kReaders };

struct Seed {
  std::string folder;    // the manifest's folder: links to the seed model's files
  std::string backbone;  // the seed model's backbone file ("": the arch's default one)
  std::string arch = "mobilenet_v1_025";
};
Seed seed;

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  seed.folder = fuzz::scratch() + "/model";
  fs::create_directories(seed.folder);
  const char* model = std::getenv("DUET_FUZZ_MODEL");
  if (!model || !fs::is_regular_file(std::string(model) + "/manifest.json")) {
    std::fprintf(
        stderr,
        "fuzz_model: DUET_FUZZ_MODEL names no model folder: no files beside the manifest\n");
    return 0;
  }
  for (const auto& e : fs::directory_iterator(model))
    if (e.path().filename() != "manifest.json")
      fs::create_symlink(fs::absolute(e.path()), seed.folder + "/" + e.path().filename().string());
  const auto m = nlohmann::json::parse(duet::read_file(std::string(model) + "/manifest.json"));
  seed.arch = m.at("backbone").at("arch").get<std::string>();
  seed.backbone = std::string(model) + "/" + m.at("backbone").at("file").get<std::string>();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const int reader = data[0] % kReaders;
  const std::string bytes = fuzz::bytes_of(data + 1, size - 1);
  const std::string file = fuzz::scratch() + "/input";
  try {
    switch (reader) {
      case kManifest: {
        fuzz::write_file(seed.folder + "/manifest.json", bytes);
        const duet::ModelInfo info = duet::read_model_info(seed.folder);
        FUZZ_CHECK(!info.query_domains.empty() && info.encoders.count(info.gallery_domain),
                   "a model without domains");
        break;
      }
      case kEncoder: {
        fuzz::write_file(file, bytes);
        auto e = duet::open_encoder(file, 1, seed.backbone);
        const int64_t S = e->input_size(), D = e->dim(),
                      C = static_cast<int64_t>(e->classes().size());
        FUZZ_CHECK(S > 0 && D > 0 && C > 0, "encoder of input %lld, dim %lld, %lld classes",
                   static_cast<long long>(S), static_cast<long long>(D), static_cast<long long>(C));
        std::vector<float> x(static_cast<size_t>(3 * S * S), 0.5f), emb(static_cast<size_t>(D)),
            logits(static_cast<size_t>(C));
        e->encode_logits(1, x.data(), emb.data(), logits.data());
        break;
      }
      case kMapper: {
        fuzz::write_file(file, bytes);
        auto m = duet::open_mapper(file);
        FUZZ_CHECK(m->domains().size() >= 2 && m->in_dim() > 0 && m->code_dim() > 0,
                   "mapper of %zu domains", m->domains().size());
        const duet::Matrix codes = m->map(m->domains().front(), duet::Matrix(1, m->in_dim()));
        FUZZ_CHECK(codes.rows == 1 && codes.cols == m->code_dim(), "codes of %lld x %lld",
                   static_cast<long long>(codes.rows), static_cast<long long>(codes.cols));
        break;
      }
      case kBridge: {
        fuzz::write_file(file, bytes);
        auto b = duet::open_bridge(file);
        const duet::Matrix g =
            b->map(b->gallery_domain(), duet::Matrix(1, b->dim()), duet::Matrix());
        FUZZ_CHECK(g.rows == 1 && g.cols == b->dim(), "bridge rows of %lld x %lld",
                   static_cast<long long>(g.rows), static_cast<long long>(g.cols));
        break;
      }
      case kBackbone: {
        fuzz::write_file(file, bytes);
        duet::open_backbone_net(seed.arch, file);
        break;
      }
    }
  } catch (const duet::Error& e) {
    fuzz::refused(e);
  }
  return 0;
}
