#include "btnet_edge/runner.hpp"

#include <algorithm>
#include <chrono>
#include <numeric>

#include "btnet_edge/errors.hpp"

namespace btnet_edge {
namespace {

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

std::string available_providers() {
  std::string text;
  for (const std::string& name : Ort::GetAvailableProviders()) text += (text.empty() ? "" : ", ") + name;
  return text;
}

void add_provider(Ort::SessionOptions& options, const std::string& device) {
  const std::string wanted = device == "cuda" ? "CUDAExecutionProvider" : "TensorrtExecutionProvider";
  const std::vector<std::string> available = Ort::GetAvailableProviders();
  if (device != "cpu" && std::find(available.begin(), available.end(), wanted) == available.end() &&
      (device == "cuda" || device == "tensorrt"))
    throw BackendError("ONNX Runtime has no " + wanted + " here (available: " + available_providers() +
                       "); build against ONNX Runtime GPU (onnxruntime-gpu, or the Jetson build) or use --device cpu");
  try {
    if (device == "cuda") {
      OrtCUDAProviderOptions cuda{};
      options.AppendExecutionProvider_CUDA(cuda);
    } else if (device == "tensorrt") {
      OrtTensorRTProviderOptions trt{};
      trt.trt_fp16_enable = 1;
      trt.trt_engine_cache_enable = 1;
      trt.trt_engine_cache_path = "engines/built";
      options.AppendExecutionProvider_TensorRT(trt);
      OrtCUDAProviderOptions cuda{};
      options.AppendExecutionProvider_CUDA(cuda);
    } else if (device != "cpu") {
      throw ConfigError("unknown device '" + device + "'; use cpu, cuda or tensorrt");
    }
  } catch (const Ort::Exception& exc) {
    throw BackendError("ONNX Runtime has no " + device + " execution provider here (available: " +
                       available_providers() + "): " + exc.what() +
                       ". Build against ONNX Runtime GPU (onnxruntime-gpu, or the Jetson build) or use --device cpu");
  }
}

}  // namespace

Ort::Env& ort_env() {
  // A library older than the headers serves no API table for their version: say so instead of crashing.
  if (OrtGetApiBase()->GetApi(ORT_API_VERSION) == nullptr)
    throw BackendError(std::string("the ONNX Runtime library (") + OrtGetApiBase()->GetVersionString() +
                       ") is older than the headers this was built with (C API " + std::to_string(ORT_API_VERSION) +
                       "); rebuild with that library's own headers (cpp/scripts/make_ort_sdk.sh, ORT_HEADERS_DIR)");
  static Ort::Env env(ORT_LOGGING_LEVEL_ERROR, "btnet-edge");
  return env;
}

Session::Session(const std::filesystem::path& model, const SessionOptions& options) : model_(model) {
  Ort::Env& env = ort_env();  // first: it checks the library serves the headers' API version
  Ort::SessionOptions session_options;
  session_options.SetLogSeverityLevel(3);
  // Idle workers must not spin: the pipeline chains sessions (detector, branches, trunk) on few cores.
  session_options.AddConfigEntry("session.intra_op.allow_spinning", "0");
  session_options.AddConfigEntry("session.inter_op.allow_spinning", "0");
  if (options.threads > 0) {
    session_options.SetIntraOpNumThreads(options.threads);
    session_options.SetInterOpNumThreads(1);
  }
  add_provider(session_options, options.device);
  try {
    session_ = std::make_unique<Ort::Session>(env, model.c_str(), session_options);
  } catch (const Ort::Exception& exc) {
    throw BackendError("ONNX Runtime cannot load " + model.string() + ": " + exc.what());
  }
  Ort::AllocatorWithDefaultOptions allocator;
  for (size_t i = 0; i < session_->GetInputCount(); ++i)
    inputs_.push_back(session_->GetInputNameAllocated(i, allocator).get());
  for (size_t i = 0; i < session_->GetOutputCount(); ++i)
    outputs_.push_back(session_->GetOutputNameAllocated(i, allocator).get());
}

std::vector<int64_t> Session::output_shape(size_t index) const {
  return session_->GetOutputTypeInfo(index).GetTensorTypeAndShapeInfo().GetShape();
}

std::vector<int64_t> Session::input_shape(size_t index) const {
  return session_->GetInputTypeInfo(index).GetTensorTypeAndShapeInfo().GetShape();
}

std::map<std::string, Tensor> Session::run(const std::map<std::string, const Tensor*>& feeds) {
  static float empty_storage = 0.0f;  // a valid address for zero-size inputs
  Ort::MemoryInfo memory = Ort::MemoryInfo::CreateCpu(OrtArenaAllocator, OrtMemTypeDefault);
  std::vector<const char*> names;
  std::vector<Ort::Value> values;
  for (const std::string& name : inputs_) {
    auto found = feeds.find(name);
    if (found == feeds.end())
      throw BackendError(model_.filename().string() + " needs input '" + name + "', which was not fed");
    Tensor& tensor = const_cast<Tensor&>(*found->second);  // ONNX Runtime reads inputs only
    float* data = tensor.data.empty() ? &empty_storage : tensor.data.data();
    values.push_back(Ort::Value::CreateTensor<float>(memory, data, tensor.data.size(), tensor.shape.data(),
                                                     tensor.shape.size()));
    names.push_back(name.c_str());
  }
  std::vector<const char*> output_names;
  for (const std::string& name : outputs_) output_names.push_back(name.c_str());
  std::vector<Ort::Value> results;
  try {
    results = session_->Run(Ort::RunOptions{nullptr}, names.data(), values.data(), values.size(),
                            output_names.data(), output_names.size());
  } catch (const Ort::Exception& exc) {
    throw BackendError("ONNX Runtime failed to run " + model_.filename().string() + ": " + exc.what());
  }
  ++runs;
  std::map<std::string, Tensor> out;
  for (size_t i = 0; i < results.size(); ++i) {
    auto info = results[i].GetTensorTypeAndShapeInfo();
    Tensor tensor{info.GetShape(), {}};
    const float* data = results[i].GetTensorData<float>();
    tensor.data.assign(data, data + info.GetElementCount());
    out.emplace(outputs_[i], std::move(tensor));
  }
  return out;
}

PackageRunner::PackageRunner(const ModelPackage& package, const SessionOptions& options)
    : manifest_(package.manifest) {
  for (const BranchInfo& b : manifest_.branches)
    branches_[b.resolution] = std::make_unique<Session>(package.path(b.file), options);
  trunk_ = std::make_unique<Session>(package.path(manifest_.trunk.file), options);
}

std::map<std::string, int64_t> PackageRunner::runs() const {
  std::map<std::string, int64_t> counts;
  for (const auto& [r, session] : branches_) counts["branch_" + std::to_string(r)] = session->runs;
  counts["trunk"] = trunk_->runs;
  return counts;
}

std::map<int, std::vector<float>> PackageRunner::embed(const std::map<int, Tensor>& groups) {
  std::map<std::string, Tensor> owned;  // branch outputs and empty inputs
  std::map<std::string, const Tensor*> feeds;
  for (const TensorInfo& input : manifest_.trunk.inputs) {
    Tensor empty{{0}, {}};
    empty.shape.insert(empty.shape.end(), input.shape.begin(), input.shape.end());
    feeds[input.name] = &(owned[input.name] = std::move(empty));
  }
  std::map<int, int64_t> counts;
  int64_t total = 0;
  for (const auto& [resolution, batch] : groups) {
    if (resolution != kTrunkResolution && !branches_.count(resolution))
      throw ConfigError("package has no " + std::to_string(resolution) + " px entry");
    counts[resolution] = batch.batch();
    total += batch.batch();
    if (batch.batch() == 0) continue;
    if (resolution == kTrunkResolution) {
      feeds[manifest_.trunk.inputs[0].name] = &batch;
      continue;
    }
    const BranchInfo& info = manifest_.branch(resolution);
    const auto start = std::chrono::steady_clock::now();
    auto out = branches_[resolution]->run({{info.input.name, &batch}});
    branch_s += seconds_since(start);
    owned[info.output.name] = std::move(out.at(info.output.name));
    feeds[info.output.name] = &owned[info.output.name];
  }
  const size_t width = static_cast<size_t>(manifest_.embedding_size);
  std::map<int, std::vector<float>> out;
  if (total == 0) {
    for (const auto& [resolution, batch] : groups) out[resolution] = {};
    return out;
  }
  const auto start = std::chrono::steady_clock::now();
  Tensor embeddings = std::move(trunk_->run(feeds).at(manifest_.trunk.output.name));
  trunk_s += seconds_since(start);
  if (embeddings.batch() != total || embeddings.data.size() != static_cast<size_t>(total) * width)
    throw BackendError("trunk returned " + std::to_string(embeddings.batch()) + " embeddings for " +
                       std::to_string(total) + " faces");
  size_t row = 0;
  for (int resolution : manifest_.trunk.entry_resolutions) {  // the trunk's output order
    const size_t n = counts.count(resolution) ? static_cast<size_t>(counts[resolution]) : 0;
    if (groups.count(resolution))
      out[resolution].assign(embeddings.data.begin() + row * width, embeddings.data.begin() + (row + n) * width);
    row += n;
  }
  return out;
}

}  // namespace btnet_edge
