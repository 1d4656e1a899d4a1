// The model package: manifest.json parsed and validated as btnet_edge/package/manifest.py does
// (same fields, same checks, same messages), and every file's sha256 checked before a graph loads.
#pragma once

#include <array>
#include <cstdint>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "btnet_edge/branch_status.hpp"

namespace btnet_edge {

inline constexpr int kSchemaVersion = 1;
inline constexpr const char* kPackageFormat = "btnet-edge-package";
inline constexpr const char* kManifestName = "manifest.json";
inline constexpr int kTrunkResolution = 112;

struct TensorInfo {  // a graph input or output: name and shape without the batch axis
  std::string name;
  std::vector<int64_t> shape;
};

struct Preprocess {  // how an aligned BGR uint8 crop becomes the network input
  std::string color_order;     // "RGB" or "BGR": the order the network expects
  std::array<float, 3> mean{};  // pixel units (0..255), in color_order
  std::array<float, 3> std{};
  bool flip_tta = false;  // add the embedding of the horizontally flipped face
};

struct BranchInfo {
  int resolution = 0;
  std::string file;
  TensorInfo input, output;
  std::string implant_after, resume_at;
};

struct TrunkInfo {
  std::string file;
  std::vector<TensorInfo> inputs;
  std::vector<int> entry_resolutions;  // resolution of each input, same order (the output order too)
  TensorInfo output;
};

struct FusedInfo {  // a per-resolution graph (branch + trunk tail) for single-face latency; not run by C++ yet
  int resolution = 0;
  std::string file;
  TensorInfo input, output;
};

struct DispatchPolicy {
  std::string indicator = "max";
  std::string rounding = "ceil";
};

struct Manifest {
  int schema_version = 0;
  std::string name, architecture, family, weights;
  int embedding_size = 0;
  Preprocess preprocess;
  TrunkInfo trunk;
  std::vector<BranchInfo> branches;  // largest resolution first
  std::vector<FusedInfo> fused;
  DispatchPolicy dispatch;
  std::map<std::string, std::string> files;  // file name -> sha256
  std::vector<BranchStatus> branch_training;  // per branch, largest first (branch_status.hpp)

  std::vector<int> resolutions() const;  // 112 then the branches', largest first
  const BranchInfo& branch(int resolution) const;
};

// Validate parsed JSON; errors name the field (ManifestError).
Manifest manifest_from_json(const nlohmann::json& data);
// Parse and validate folder/manifest.json without touching the graphs.
Manifest read_manifest(const std::filesystem::path& folder);
std::string sha256_of(const std::filesystem::path& path);

struct ModelPackage {
  std::filesystem::path folder;
  Manifest manifest;
  std::filesystem::path path(const std::string& name) const { return folder / name; }
};

// Open a package; with verify every file must exist and match its recorded sha256.
ModelPackage load_package(const std::filesystem::path& folder, bool verify = true);

// What the model id digests: preprocessing (float32 bits) and the sha256 of the trunk and branch graphs, one
// fact a line, byte for byte as btnet_edge.package.manifest.model_id_text writes it.
std::string model_id_text(const Manifest& manifest);
// "<architecture>:model-sha256:<16 hex of sha256(model_id_text)>": the id a gallery records
// (btnet_edge.package.manifest.model_id).
std::string gallery_model_id(const Manifest& manifest);

}  // namespace btnet_edge
