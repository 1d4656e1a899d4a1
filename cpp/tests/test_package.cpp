// Bad packages give the same clear errors as the Python loader: the message names the field or the fix.
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>

#include "btnet_edge/errors.hpp"
#include "btnet_edge/package.hpp"
#include "check.hpp"

using namespace btnet_edge;
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

void write(const fs::path& path, const std::string& text) { std::ofstream(path, std::ios::binary) << text; }

json valid_manifest(const fs::path& folder) {
  write(folder / "trunk.onnx", "trunk bytes");
  write(folder / "branch_14.onnx", "branch bytes");
  return {{"format", "btnet-edge-package"},
          {"schema_version", 1},
          {"name", "t"}, {"architecture", "test_btnet"}, {"family", "iresnet"}, {"weights", "random"},
          {"embedding_size", 8},
          {"preprocess", {{"color_order", "RGB"}, {"mean", {127.5, 127.5, 127.5}}, {"std", {127.5, 127.5, 127.5}}}},
          {"trunk", {{"file", "trunk.onnx"},
                     {"inputs", {{{"name", "image_112"}, {"shape", {3, 112, 112}}}, {{"name", "implant_14"}, {"shape", {4, 14, 14}}}}},
                     {"entry_resolutions", {112, 14}},
                     {"output", {{"name", "embedding"}, {"shape", {8}}}}}},
          {"branches", {{{"resolution", 14}, {"file", "branch_14.onnx"},
                         {"input", {{"name", "image_14"}, {"shape", {3, 14, 14}}}},
                         {"output", {{"name", "implant_14"}, {"shape", {4, 14, 14}}}},
                         {"implant_after", "layer3.0"}, {"resume_at", "layer3.1"}}}},
          {"dispatch", {{"indicator", "max"}, {"rounding", "ceil"}}},
          {"files", {{"trunk.onnx", sha256_of(folder / "trunk.onnx")}, {"branch_14.onnx", sha256_of(folder / "branch_14.onnx")}}}};
}

void save(const fs::path& folder, const json& manifest) { write(folder / "manifest.json", manifest.dump()); }

}  // namespace

int main() {
  const fs::path folder = fs::temp_directory_path() / ("btnet_cpp_test_package_" + std::to_string(::getpid()));
  fs::remove_all(folder);
  fs::create_directories(folder);
  write(folder / "abc", "abc");
  CHECK(sha256_of(folder / "abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");

  const json good = valid_manifest(folder);
  save(folder, good);
  const ModelPackage package = load_package(folder);
  CHECK(package.manifest.embedding_size == 8);
  CHECK((package.manifest.resolutions() == std::vector<int>{112, 14}));
  CHECK(package.manifest.branch(14).input.name == "image_14");
  CHECK(gallery_model_id(package.manifest).rfind("test_btnet:model-sha256:", 0) == 0);
  CHECK(gallery_model_id(package.manifest).size() == std::string("test_btnet:model-sha256:").size() + 16);
  CHECK(model_id_text(package.manifest).find("graph trunk.onnx " + good["files"]["trunk.onnx"].get<std::string>()) !=
        std::string::npos);

  EXPECT_ERROR(PackageError, load_package(folder / "nowhere"), "is not a model package folder");
  fs::create_directories(folder / "empty");
  EXPECT_ERROR(PackageError, load_package(folder / "empty"), "has no manifest.json");

  auto expect_manifest_error = [&](json manifest, const std::string& needle) {
    save(folder, manifest);
    EXPECT_ERROR(ManifestError, load_package(folder), needle);
  };
  write(folder / "manifest.json", "{not json");
  EXPECT_ERROR(ManifestError, load_package(folder), "is not valid JSON");
  json m = good; m["format"] = "other";
  expect_manifest_error(m, "manifest field format should be 'btnet-edge-package'");
  m = good; m["schema_version"] = 2;
  expect_manifest_error(m, "schema_version 2 is not supported");
  m = good; m.erase("embedding_size");
  expect_manifest_error(m, "manifest field embedding_size is missing");
  m = good; m["embedding_size"] = "8";
  expect_manifest_error(m, "manifest field embedding_size should be int, found str");
  m = good; m["preprocess"]["color_order"] = "YUV";
  expect_manifest_error(m, "preprocess.color_order should be RGB or BGR");
  m = good; m["preprocess"]["std"] = {1, 0, 1};
  expect_manifest_error(m, "preprocess.std should be positive");
  m = good; m["trunk"]["inputs"][1]["shape"] = {4, -14, 14};
  expect_manifest_error(m, "trunk.inputs[1].shape should hold positive integers");
  m = good; m["branches"][0]["resolution"] = 28;
  expect_manifest_error(m, "branch 28 px has no trunk input");
  m = good; m["dispatch"]["rounding"] = "round";
  expect_manifest_error(m, "manifest field dispatch should use");
  m = good; m["files"].erase("branch_14.onnx");
  expect_manifest_error(m, "lacks a sha256 for [\"branch_14.onnx\"]");
  m = good; m["fused"] = {{{"resolution", 14}, {"file", "fused_14.onnx"}, {"input", {{"name", "image_14"}}}}};
  expect_manifest_error(m, "manifest field fused[0].input.shape is missing");
  m["fused"][0]["input"]["shape"] = {3, 14, 14};
  m["fused"][0]["output"] = {{"name", "embedding"}, {"shape", {8}}};
  expect_manifest_error(m, "lacks a sha256 for [\"fused_14.onnx\"]");
  m = good; m["files"]["../escape.onnx"] = "00";
  expect_manifest_error(m, "is not a plain file name");

  save(folder, good);
  write(folder / "branch_14.onnx", "tampered bytes");
  EXPECT_ERROR(PackageError, load_package(folder), "does not match its sha256 in the manifest");
  CHECK(load_package(folder, false).manifest.name == "t");  // verify=false skips the hashes only
  fs::remove(folder / "branch_14.onnx");
  EXPECT_ERROR(PackageError, load_package(folder), "lacks branch_14.onnx, listed in its manifest");
  fs::remove_all(folder);
  return TEST_MAIN_RETURN;
}
