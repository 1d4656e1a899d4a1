// ONNX Runtime sessions and the package runner (btnet_edge/backends/ort.py, pipeline/runner.py):
// one run per used branch, one trunk run for all faces; the branch outputs feed the trunk's implant inputs.
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <onnxruntime_cxx_api.h>

#include "btnet_edge/package.hpp"

namespace btnet_edge {

struct SessionOptions {
  std::string device = "cpu";  // cpu, cuda (CUDA execution provider) or tensorrt (TensorRT execution provider)
  int threads = 0;             // intra-op threads; 0: ONNX Runtime decides
};

// A float32 batch: shape (with the batch axis first) and values.
struct Tensor {
  std::vector<int64_t> shape;
  std::vector<float> data;
  int64_t batch() const { return shape.empty() ? 0 : shape[0]; }
};

// One Ort::Session with its input and output names; RAII, movable.
class Session {
 public:
  Session(const std::filesystem::path& model, const SessionOptions& options);
  std::map<std::string, Tensor> run(const std::map<std::string, const Tensor*>& feeds);
  const std::vector<std::string>& input_names() const { return inputs_; }
  const std::vector<std::string>& output_names() const { return outputs_; }
  // Shape of an output as the graph declares it (-1 for dynamic axes).
  std::vector<int64_t> output_shape(size_t index) const;
  std::vector<int64_t> input_shape(size_t index) const;
  int64_t runs = 0;

 private:
  std::filesystem::path model_;
  std::unique_ptr<Ort::Session> session_;
  std::vector<std::string> inputs_, outputs_;
};

// The process-wide ONNX Runtime environment (one per process, as ONNX Runtime asks).
Ort::Env& ort_env();

class PackageRunner {
 public:
  PackageRunner(const ModelPackage& package, const SessionOptions& options);
  // {resolution: N x 3 x r x r} -> {resolution: N x D raw embeddings (row-major)}, same order within each group.
  std::map<int, std::vector<float>> embed(const std::map<int, Tensor>& groups);
  std::map<std::string, int64_t> runs() const;  // graph executions so far, per graph
  double branch_s = 0, trunk_s = 0;            // cumulative seconds in branch and trunk runs

 private:
  const Manifest& manifest_;
  std::map<int, std::unique_ptr<Session>> branches_;
  std::unique_ptr<Session> trunk_;
};

}  // namespace btnet_edge
