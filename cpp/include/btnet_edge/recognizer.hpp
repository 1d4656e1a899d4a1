// Recognizer: detect -> measure -> dispatch -> align at the branch's size -> branches -> trunk -> gallery
// (btnet_edge/pipeline/recognizer.py). The faces of a frame are grouped per branch: each used branch runs
// once and the trunk runs once for all of them.
#pragma once

#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <opencv2/core.hpp>

#include "btnet_edge/detect.hpp"
#include "btnet_edge/errors.hpp"
#include "btnet_edge/face.hpp"
#include "btnet_edge/gallery.hpp"
#include "btnet_edge/package.hpp"
#include "btnet_edge/runner.hpp"

namespace btnet_edge {

inline constexpr double kMinFacePx = 2.0;  // smaller boxes carry no identity: skipped, not embedded

struct RecognizerOptions {
  SessionOptions session;           // device and threads for the package's graphs
  std::string indicator, rounding;  // empty: the manifest's dispatch policy
  std::string align = "landmarks";  // or "box": a square box crop for unreliable landmarks
  std::string branches = "trained";  // trained: faces of untrained branches are upsampled for the trunk; all; none
};

struct StageTimes {  // seconds per stage since construction: what the benchmark reports
  double detect = 0, align = 0, branches = 0, trunk = 0, gallery = 0, total = 0;
  int frames = 0;
};

class Recognizer {
 public:
  Recognizer(const std::filesystem::path& package, std::unique_ptr<FaceDetector> detector,
             const RecognizerOptions& options = {});
  // Faces of one BGR uint8 frame, with embeddings (and identities when a gallery is attached).
  std::vector<Face> get(const cv::Mat& frame);
  // Raw embeddings (N x D, row-major) of faces already aligned to resolution px (BGR uint8).
  std::vector<float> embed(const std::vector<cv::Mat>& aligned, int resolution);
  void set_gallery(std::shared_ptr<const Gallery> gallery) { gallery_ = std::move(gallery); }
  const Manifest& manifest() const { return package_.manifest; }
  const DispatchPolicy& dispatch() const { return dispatch_; }
  // Branch resolution -> "branch" or "upsample" under the branches policy.
  const std::map<int, std::string>& routes() const { return routes_; }
  std::map<std::string, int64_t> runs() const { return runner_->runs(); }
  const FaceDetector& detector() const { return *detector_; }
  StageTimes times;

 private:
  std::map<int, std::vector<float>> embed_groups(const std::map<int, std::vector<cv::Mat>>& groups);

  ModelPackage package_;
  DispatchPolicy dispatch_;
  bool box_crop_ = false;
  std::map<int, std::string> routes_;
  std::unique_ptr<PackageRunner> runner_;
  std::unique_ptr<FaceDetector> detector_;
  std::shared_ptr<const Gallery> gallery_;
};

// Read a photo as BGR uint8 (grayscale and alpha converted, 16-bit rejected), as pipeline/image.py does.
cv::Mat read_image(const std::filesystem::path& path);

}  // namespace btnet_edge
