#include "btnet_edge/detect.hpp"

#include <algorithm>
#include <cmath>
#include <numeric>

#include <opencv2/imgproc.hpp>

#include "btnet_edge/errors.hpp"
#include "detectors.hpp"

namespace btnet_edge {
namespace {

constexpr size_t kMaxCandidates = 5000;  // before NMS: bounds its cost on pathological frames
const char* kKinds[] = {"retinaface", "scrfd", "yunet"};

double iou(const std::array<float, 4>& a, const std::array<float, 4>& b) {
  const double ix = std::max(0.0, static_cast<double>(std::min(a[2], b[2])) - std::max(a[0], b[0]));
  const double iy = std::max(0.0, static_cast<double>(std::min(a[3], b[3])) - std::max(a[1], b[1]));
  const double inter = ix * iy;
  const double area_a = std::max(0.0, static_cast<double>(a[2] - a[0])) * std::max(0.0, static_cast<double>(a[3] - a[1]));
  const double area_b = std::max(0.0, static_cast<double>(b[2] - b[0])) * std::max(0.0, static_cast<double>(b[3] - b[1]));
  return inter / std::max(area_a + area_b - inter, 1e-9);
}

std::vector<size_t> by_score(const std::vector<Detection>& found) {
  std::vector<size_t> order(found.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return found[a].score > found[b].score; });
  return order;
}

}  // namespace

double detection_scale(int width, int height, const DetectorOptions& options) {
  const int longest = std::max(width, height);
  if (options.max_side && longest > *options.max_side) return static_cast<double>(*options.max_side) / longest;
  if (options.min_side && longest < *options.min_side)
    return std::min(static_cast<double>(*options.min_side) / longest, kMaxUpscale);
  return 1.0;
}

std::vector<size_t> nms(const std::vector<Detection>& found, float iou_threshold) {
  std::vector<size_t> order = by_score(found), keep;
  while (!order.empty()) {
    const size_t best = order.front();
    keep.push_back(best);
    std::vector<size_t> rest;
    for (size_t i = 1; i < order.size(); ++i)
      if (iou(found[best].bbox, found[order[i]].bbox) <= iou_threshold) rest.push_back(order[i]);
    order.swap(rest);
  }
  return keep;
}

FaceDetector::FaceDetector(DetectorOptions options, float default_threshold)
    : options_(std::move(options)), score_threshold_(options_.score_threshold.value_or(default_threshold)) {
  if (!(score_threshold_ >= 0 && score_threshold_ <= 1))
    throw ConfigError("score_threshold=" + std::to_string(score_threshold_) + " is outside 0..1");
  if (!(options_.nms_threshold > 0 && options_.nms_threshold <= 1))
    throw ConfigError("nms_threshold=" + std::to_string(options_.nms_threshold) + " is outside (0, 1]; 0.4 is the usual value");
  if (options_.max_side && *options_.max_side < 32)
    throw ConfigError("max_side=" + std::to_string(*options_.max_side) + " must be >= 32 (pixels)");
  if (options_.min_side && *options_.min_side < 32)
    throw ConfigError("min_side=" + std::to_string(*options_.min_side) + " must be >= 32 (pixels)");
}

std::vector<Detection> FaceDetector::detect(const cv::Mat& image) {
  if (image.empty())
    throw InputImageError("image is empty; expected an OpenCV BGR image (CV_8UC3). cv::imread returns an empty "
                          "Mat for a missing or unreadable file: use btnet_edge::read_image(path) to get an error "
                          "naming it");
  if (image.type() != CV_8UC3)
    throw InputImageError("image should be an OpenCV BGR image (CV_8UC3, height and width > 0), found type " +
                          std::to_string(image.type()) + " of " + std::to_string(image.cols) + "x" +
                          std::to_string(image.rows));
  const double scale = detection_scale(image.cols, image.rows, options_);
  cv::Mat img = image.isContinuous() ? image : image.clone();
  if (scale != 1.0) {
    // Python's round() rounds half to even, as std::nearbyint does.
    const cv::Size size(std::max(1, static_cast<int>(std::nearbyint(image.cols * scale))),
                        std::max(1, static_cast<int>(std::nearbyint(image.rows * scale))));
    cv::resize(image, img, size, 0, 0, scale < 1.0 ? cv::INTER_AREA : cv::INTER_LINEAR);
  }
  std::vector<Detection> found = candidates(img);
  if (found.size() > kMaxCandidates) {
    std::vector<size_t> order = by_score(found);
    std::vector<Detection> best;
    for (size_t i = 0; i < kMaxCandidates; ++i) best.push_back(found[order[i]]);
    found.swap(best);
  }
  const float factor = static_cast<float>(1.0 / scale);
  std::vector<Detection> out;
  for (size_t index : nms(found, options_.nms_threshold)) {
    Detection det = found[index];
    for (float& v : det.bbox) v *= factor;
    for (float& v : det.kps) v *= factor;
    out.push_back(det);
  }
  return out;
}

std::unique_ptr<FaceDetector> create_detector(const std::filesystem::path& model, std::string kind,
                                              const DetectorOptions& options) {
  if (!std::filesystem::is_regular_file(model))
    throw ConfigError("detector model not found: " + model.string() +
                      " (write the default RetinaFace with `python cpp/scripts/write_retinaface_onnx.py retinaface.onnx`)");
  if (kind.empty()) {
    std::string lower = model.filename().string();
    std::transform(lower.begin(), lower.end(), lower.begin(), ::tolower);
    int named = 0;
    for (const char* k : kKinds)
      if (lower.find(k) != std::string::npos) kind = k, ++named;
    if (named != 1)
      throw ConfigError("cannot tell which detector family " + model.filename().string() +
                        " is from its name; declare it with --detector-kind retinaface | scrfd | yunet");
  }
  if (kind == "retinaface") return std::make_unique<RetinaFaceDetector>(model, options);
  if (kind == "scrfd") return std::make_unique<ScrfdDetector>(model, options);
  if (kind == "yunet") return std::make_unique<YuNetDetector>(model, options);
  throw ConfigError("unknown detector kind '" + kind + "'; use one of retinaface, scrfd, yunet");
}

}  // namespace btnet_edge
