// Manifest validation mirrors btnet_edge/package/manifest.py and loader.py field by field.
#include "btnet_edge/package.hpp"

#include <algorithm>
#include <cstring>
#include <fstream>
#include <set>
#include <sstream>

#include <nlohmann/json.hpp>
#include <openssl/evp.h>

#include "btnet_edge/errors.hpp"

namespace btnet_edge {
namespace {

using nlohmann::json;

// The Python type name of a JSON value, so messages read the same from both runtimes.
std::string type_name(const json& value) {
  switch (value.type()) {
    case json::value_t::string: return "str";
    case json::value_t::boolean: return "bool";
    case json::value_t::number_integer:
    case json::value_t::number_unsigned: return "int";
    case json::value_t::number_float: return "float";
    case json::value_t::array: return "list";
    case json::value_t::object: return "dict";
    default: return "NoneType";
  }
}

enum class Kind { Str, Int, List, Dict };

const json& get(const json& data, const std::string& key, Kind kind, const std::string& where) {
  if (!data.is_object() || !data.contains(key)) throw ManifestError("manifest field " + where + key + " is missing");
  const json& value = data.at(key);
  bool ok = (kind == Kind::Str && value.is_string()) || (kind == Kind::Int && value.is_number_integer()) ||
            (kind == Kind::List && value.is_array()) || (kind == Kind::Dict && value.is_object());
  if (!ok) {
    static const char* names[] = {"str", "int", "list", "dict"};
    throw ManifestError("manifest field " + where + key + " should be " + names[static_cast<int>(kind)] +
                        ", found " + type_name(value));
  }
  return value;
}

std::string get_str(const json& data, const std::string& key, const std::string& where) {
  return get(data, key, Kind::Str, where).get<std::string>();
}

int get_int(const json& data, const std::string& key, const std::string& where) {
  return get(data, key, Kind::Int, where).get<int>();
}

TensorInfo tensor(const json& data, const std::string& where) {
  if (!data.is_object()) throw ManifestError("manifest field " + where + " should be an object with name and shape");
  const json& shape = get(data, "shape", Kind::List, where + ".");
  TensorInfo info{get_str(data, "name", where + "."), {}};
  for (const json& d : shape) {
    if (!d.is_number_integer() || d.get<int64_t>() <= 0)
      throw ManifestError("manifest field " + where + ".shape should hold positive integers, found " + shape.dump());
    info.shape.push_back(d.get<int64_t>());
  }
  return info;
}

std::array<float, 3> triple(const json& pre, const std::string& key) {
  const json& value = get(pre, key, Kind::List, "preprocess.");
  bool numbers = value.size() == 3 && std::all_of(value.begin(), value.end(), [](const json& v) {
                   return v.is_number();
                 });
  if (!numbers) throw ManifestError("manifest field preprocess." + key + " should be 3 numbers, found " + value.dump());
  std::array<float, 3> out{};
  for (int i = 0; i < 3; ++i) out[i] = value[i].get<float>();
  if (key == "std" && std::any_of(out.begin(), out.end(), [](float v) { return v <= 0; }))
    throw ManifestError("manifest field preprocess.std should be positive, found " + value.dump());
  return out;
}

bool is_one_of(const std::string& value, std::initializer_list<const char*> allowed) {
  return std::any_of(allowed.begin(), allowed.end(), [&](const char* a) { return value == a; });
}

}  // namespace

std::vector<int> Manifest::resolutions() const {
  std::vector<int> out{kTrunkResolution};
  for (const BranchInfo& b : branches) out.push_back(b.resolution);
  return out;
}

const BranchInfo& Manifest::branch(int resolution) const {
  for (const BranchInfo& b : branches)
    if (b.resolution == resolution) return b;
  throw ManifestError("package has no " + std::to_string(resolution) + " px branch");
}

Manifest manifest_from_json(const json& data) {
  if (!data.is_object()) throw ManifestError("manifest.json should hold a JSON object");
  if (!data.contains("format") || data["format"] != kPackageFormat)
    throw ManifestError(std::string("manifest field format should be '") + kPackageFormat + "', found " +
                        (data.contains("format") ? data["format"].dump() : "None"));
  Manifest m;
  m.schema_version = get_int(data, "schema_version", "");
  if (m.schema_version != kSchemaVersion)
    throw ManifestError("package schema_version " + std::to_string(m.schema_version) +
                        " is not supported by this btnet-edge (reads " + std::to_string(kSchemaVersion) +
                        "); re-export the package or upgrade btnet-edge");
  const json& pre = get(data, "preprocess", Kind::Dict, "");
  m.preprocess.color_order = get_str(pre, "color_order", "preprocess.");
  if (!is_one_of(m.preprocess.color_order, {"RGB", "BGR"}))
    throw ManifestError("manifest field preprocess.color_order should be RGB or BGR, found '" +
                        m.preprocess.color_order + "'");
  m.preprocess.mean = triple(pre, "mean");
  m.preprocess.std = triple(pre, "std");
  m.preprocess.flip_tta = pre.value("flip_tta", false);

  const json& trunk = get(data, "trunk", Kind::Dict, "");
  const json& inputs = get(trunk, "inputs", Kind::List, "trunk.");
  for (size_t i = 0; i < inputs.size(); ++i)
    m.trunk.inputs.push_back(tensor(inputs[i], "trunk.inputs[" + std::to_string(i) + "]"));
  for (const json& r : get(trunk, "entry_resolutions", Kind::List, "trunk.")) {
    if (!r.is_number_integer()) throw ManifestError("manifest field trunk.entry_resolutions should hold integers");
    m.trunk.entry_resolutions.push_back(r.get<int>());
  }
  if (m.trunk.entry_resolutions.size() != m.trunk.inputs.size())
    throw ManifestError("manifest fields trunk.inputs and trunk.entry_resolutions differ in length");
  m.trunk.file = get_str(trunk, "file", "trunk.");
  m.trunk.output = tensor(get(trunk, "output", Kind::Dict, "trunk."), "trunk.output");

  const json& branches = get(data, "branches", Kind::List, "");
  for (size_t i = 0; i < branches.size(); ++i) {
    const std::string where = "branches[" + std::to_string(i) + "].";
    const json& b = branches[i];
    BranchInfo info;
    info.resolution = get_int(b, "resolution", where);
    info.file = get_str(b, "file", where);
    info.input = tensor(get(b, "input", Kind::Dict, where), where + "input");
    info.output = tensor(get(b, "output", Kind::Dict, where), where + "output");
    info.implant_after = get_str(b, "implant_after", where);
    info.resume_at = get_str(b, "resume_at", where);
    m.branches.push_back(info);
  }
  const json fused = data.value("fused", json::array());
  for (size_t i = 0; fused.is_array() && i < fused.size(); ++i) {
    const std::string where = "fused[" + std::to_string(i) + "].";
    const json& f = fused[i];
    m.fused.push_back(FusedInfo{get_int(f, "resolution", where), get_str(f, "file", where),
                                tensor(get(f, "input", Kind::Dict, where), where + "input"),
                                tensor(get(f, "output", Kind::Dict, where), where + "output")});
  }
  const auto& entries = m.trunk.entry_resolutions;
  for (const BranchInfo& b : m.branches) {
    if (std::find(entries.begin(), entries.end(), b.resolution) == entries.end())
      throw ManifestError("branch " + std::to_string(b.resolution) + " px has no trunk input (trunk.entry_resolutions " +
                          json(entries).dump() + ")");
  }
  const json& dispatch = get(data, "dispatch", Kind::Dict, "");
  m.dispatch.indicator = get_str(dispatch, "indicator", "dispatch.");
  m.dispatch.rounding = get_str(dispatch, "rounding", "dispatch.");
  if (!is_one_of(m.dispatch.indicator, {"max", "avg", "min"}) || !is_one_of(m.dispatch.rounding, {"floor", "near", "ceil"}))
    throw ManifestError("manifest field dispatch should use indicator in ('max', 'avg', 'min') and rounding in "
                        "('floor', 'near', 'ceil'), found '" + m.dispatch.indicator + "'/'" + m.dispatch.rounding + "'");
  for (const auto& [name, digest] : get(data, "files", Kind::Dict, "").items()) {
    if (!digest.is_string()) throw ManifestError("manifest field files." + name + " should be a sha256 hex string");
    m.files[name] = digest.get<std::string>();
  }
  m.name = get_str(data, "name", "");
  m.architecture = get_str(data, "architecture", "");
  m.family = get_str(data, "family", "");
  m.embedding_size = get_int(data, "embedding_size", "");
  m.weights = get_str(data, "weights", "");
  std::sort(m.branches.begin(), m.branches.end(),
            [](const BranchInfo& a, const BranchInfo& b) { return a.resolution > b.resolution; });
  std::vector<int> branch_resolutions;
  for (const BranchInfo& b : m.branches) branch_resolutions.push_back(b.resolution);
  m.branch_training = branch_statuses(data, branch_resolutions, m.weights);
  return m;
}

Manifest read_manifest(const std::filesystem::path& folder) {
  namespace fs = std::filesystem;
  const fs::path path = folder / kManifestName;
  if (!fs::is_directory(folder))
    throw PackageError(folder.string() + " is not a model package folder; create one with `btnet-edge export`");
  if (!fs::is_regular_file(path))
    throw PackageError(folder.string() + " has no " + kManifestName +
                       ": not a model package (create one with `btnet-edge export`)");
  std::ifstream in(path);
  json data;
  try {
    data = json::parse(in);
  } catch (const json::exception& exc) {
    throw ManifestError(path.string() + " is not valid JSON (" + exc.what() + "); the package is corrupt, export it again");
  }
  return manifest_from_json(data);
}

std::string sha256_of(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw PackageError("cannot read " + path.string());
  std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> ctx(EVP_MD_CTX_new(), EVP_MD_CTX_free);
  EVP_DigestInit_ex(ctx.get(), EVP_sha256(), nullptr);
  std::vector<char> block(1 << 20);
  while (in) {
    in.read(block.data(), static_cast<std::streamsize>(block.size()));
    EVP_DigestUpdate(ctx.get(), block.data(), static_cast<size_t>(in.gcount()));
  }
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int length = 0;
  EVP_DigestFinal_ex(ctx.get(), digest, &length);
  std::ostringstream hex;
  for (unsigned int i = 0; i < length; ++i) {
    static const char* digits = "0123456789abcdef";
    hex << digits[digest[i] >> 4] << digits[digest[i] & 15];
  }
  return hex.str();
}

ModelPackage load_package(const std::filesystem::path& folder, bool verify) {
  namespace fs = std::filesystem;
  Manifest manifest = read_manifest(folder);
  std::vector<std::string> needed{manifest.trunk.file};
  for (const BranchInfo& b : manifest.branches) needed.push_back(b.file);
  for (const FusedInfo& f : manifest.fused) needed.push_back(f.file);
  std::vector<std::string> unlisted;
  for (const std::string& name : needed)
    if (!manifest.files.count(name)) unlisted.push_back(name);
  if (!unlisted.empty())
    throw ManifestError("manifest field files lacks a sha256 for " + json(unlisted).dump() +
                        "; the package is incomplete, export it again");
  for (const auto& [name, expected] : manifest.files) {
    if (fs::path(name).filename().string() != name)
      throw ManifestError("manifest field files names '" + name + "', which is not a plain file name");
    const fs::path path = folder / name;
    if (!fs::is_regular_file(path))
      throw PackageError("package " + folder.string() + " lacks " + name +
                         ", listed in its manifest; copy the whole folder again");
    if (verify) {
      const std::string actual = sha256_of(path);
      if (actual != expected)
        throw PackageError(path.string() + " does not match its sha256 in the manifest (expected " +
                           expected.substr(0, 12) + "..., found " + actual.substr(0, 12) +
                           "...): the file was changed or damaged. Re-export or re-copy the package; do not edit "
                           "its files by hand");
    }
  }
  return ModelPackage{folder, std::move(manifest)};
}

namespace {

std::string hex_of(const unsigned char* bytes, size_t length) {
  static const char* digits = "0123456789abcdef";
  std::string hex;
  for (size_t i = 0; i < length; ++i) {
    hex += digits[bytes[i] >> 4];
    hex += digits[bytes[i] & 15];
  }
  return hex;
}

std::string sha256_of_text(const std::string& text) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int length = 0;
  EVP_Digest(text.data(), text.size(), digest, &length, EVP_sha256(), nullptr);
  return hex_of(digest, length);
}

// float32 bits, big-endian hex: what Python's struct.pack(">f", v).hex() gives.
std::string float_bits(float value) {
  uint32_t bits = 0;
  std::memcpy(&bits, &value, sizeof bits);
  const unsigned char bytes[4] = {static_cast<unsigned char>(bits >> 24), static_cast<unsigned char>(bits >> 16),
                                  static_cast<unsigned char>(bits >> 8), static_cast<unsigned char>(bits)};
  return hex_of(bytes, 4);
}

std::string triple_bits(const std::array<float, 3>& values) {
  return float_bits(values[0]) + " " + float_bits(values[1]) + " " + float_bits(values[2]);
}

}  // namespace

std::string model_id_text(const Manifest& manifest) {
  const Preprocess& pre = manifest.preprocess;
  std::string text = "btnet-edge model id 2\narchitecture " + manifest.architecture + "\nembedding_size " +
                     std::to_string(manifest.embedding_size) + "\ncolor_order " + pre.color_order + "\nmean " +
                     triple_bits(pre.mean) + "\nstd " + triple_bits(pre.std) + "\nflip_tta " +
                     (pre.flip_tta ? "1" : "0") + "\n";
  std::set<std::string> graphs{manifest.trunk.file};
  for (const BranchInfo& branch : manifest.branches) graphs.insert(branch.file);
  for (const std::string& file : graphs) text += "graph " + file + " " + manifest.files.at(file) + "\n";
  return text;
}

std::string gallery_model_id(const Manifest& manifest) {
  return manifest.architecture + ":model-sha256:" + sha256_of_text(model_id_text(manifest)).substr(0, 16);
}

}  // namespace btnet_edge
