#include "btnet_edge/detect.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <numeric>

#include <opencv2/imgproc.hpp>

#include "btnet_edge/errors.hpp"
#include "detectors.hpp"

namespace btnet_edge {
namespace {

constexpr size_t kMaxCandidates = 5000;  // before NMS: bounds its cost on pathological frames
const char* kKinds[] = {"retinaface", "scrfd", "yunet"};

// Intersection over union, or over the smaller box's area when over_min (_nms.py _overlap).
double overlap(const std::array<float, 4>& a, const std::array<float, 4>& b, bool over_min) {
  const double ix = std::max(0.0, static_cast<double>(std::min(a[2], b[2])) - std::max(a[0], b[0]));
  const double iy = std::max(0.0, static_cast<double>(std::min(a[3], b[3])) - std::max(a[1], b[1]));
  const double inter = ix * iy;
  const double area_a = std::max(0.0, static_cast<double>(a[2] - a[0])) * std::max(0.0, static_cast<double>(a[3] - a[1]));
  const double area_b = std::max(0.0, static_cast<double>(b[2] - b[0])) * std::max(0.0, static_cast<double>(b[3] - b[1]));
  return inter / std::max(over_min ? std::min(area_a, area_b) : area_a + area_b - inter, 1e-9);
}

float side_of(const Detection& det) { return std::max(det.bbox[2] - det.bbox[0], det.bbox[3] - det.bbox[1]); }

void shift_and_scale(Detection& det, float factor, float dx, float dy) {
  for (int i = 0; i < 4; ++i) det.bbox[i] = det.bbox[i] * factor + (i % 2 ? dy : dx);
  for (int i = 0; i < 10; ++i) det.kps[i] = det.kps[i] * factor + (i % 2 ? dy : dx);
}

std::vector<size_t> by_score(const std::vector<Detection>& found) {
  std::vector<size_t> order(found.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return found[a].score > found[b].score; });
  return order;
}

}  // namespace

cv::Mat resize_for(const cv::Mat& img, double scale) {
  if (std::abs(scale - 1.0) < 1e-6) return img;
  // Python's round() rounds half to even, as std::nearbyint does.
  const cv::Size size(std::max(1, static_cast<int>(std::nearbyint(img.cols * scale))),
                      std::max(1, static_cast<int>(std::nearbyint(img.rows * scale))));
  cv::Mat out;
  cv::resize(img, out, size, 0, 0, scale < 1.0 ? cv::INTER_AREA : cv::INTER_LINEAR);
  return out;
}

std::vector<size_t> nms(const std::vector<Detection>& found, float iou_threshold, std::optional<double> containment) {
  std::vector<size_t> order = by_score(found), keep;
  while (!order.empty()) {
    const size_t best = order.front();
    keep.push_back(best);
    std::vector<size_t> rest;
    for (size_t i = 1; i < order.size(); ++i) {
      const auto& a = found[best].bbox;
      const auto& b = found[order[i]].bbox;
      const bool drop = overlap(a, b, false) > iou_threshold || (containment && overlap(a, b, true) > *containment);
      if (!drop) rest.push_back(order[i]);
    }
    order.swap(rest);
  }
  return keep;
}

std::vector<bool> fragments(const std::vector<Detection>& found) {
  const size_t n = found.size();
  std::vector<bool> out(n, false);
  if (n < 2) return out;
  for (size_t i = 0; i < n; ++i) {
    const auto& b = found[i].bbox;
    const float side = side_of(found[i]);
    const float area = std::max((b[2] - b[0]) * (b[3] - b[1]), 1e-9f);
    for (size_t j = 0; j < n && !out[i]; ++j) {
      const float other = side_of(found[j]);
      if (!(other >= kFragmentSideRatio * side)) continue;
      const float grow = other * kFragmentMargin;
      const auto& g = found[j].bbox;
      const float ix = std::max(std::min(b[2], g[2] + grow) - std::max(b[0], g[0] - grow), 0.0f);
      const float iy = std::max(std::min(b[3], g[3] + grow) - std::max(b[1], g[1] - grow), 0.0f);
      out[i] = ix * iy / area > kFragmentOverlap;
    }
  }
  return out;
}

FaceDetector::FaceDetector(DetectorOptions options, float default_threshold)
    : options_(std::move(options)), score_threshold_(options_.score_threshold.value_or(default_threshold)) {
  if (!(score_threshold_ >= 0 && score_threshold_ <= 1))
    throw ConfigError("score_threshold=" + std::to_string(score_threshold_) + " is outside 0..1");
  if (!(options_.nms_threshold > 0 && options_.nms_threshold <= 1))
    throw ConfigError("nms_threshold=" + std::to_string(options_.nms_threshold) + " is outside (0, 1]; 0.4 is the usual value");
  options_.plan.validate();
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
  const cv::Mat img = image.isContinuous() ? image : image.clone();
  const std::vector<DetectPass> passes = options_.plan.passes(img.rows, img.cols);
  std::vector<Detection> found;
  bool merged = passes.size() > 1;
  for (const DetectPass& step : passes) {
    const auto start = std::chrono::steady_clock::now();
    const std::vector<Detection> part = run_pass(img, step);
    pass_seconds[step.name] += std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    found.insert(found.end(), part.begin(), part.end());
    merged = merged || step.tile.has_value();
  }
  if (found.size() > kMaxCandidates) {
    std::vector<size_t> order = by_score(found);
    std::vector<Detection> best;
    for (size_t i = 0; i < kMaxCandidates; ++i) best.push_back(found[order[i]]);
    found.swap(best);
  }
  std::vector<Detection> kept;
  for (size_t index : nms(found, options_.nms_threshold, merged ? std::optional<double>(kTileContainment) : std::nullopt))
    kept.push_back(found[index]);
  if (!merged) return kept;
  const std::vector<bool> pieces = fragments(kept);
  std::vector<Detection> out;
  for (size_t i = 0; i < kept.size(); ++i)
    if (!pieces[i]) out.push_back(kept[i]);
  return out;
}

std::vector<Detection> FaceDetector::run_pass(const cv::Mat& img, const DetectPass& step) {
  const cv::Mat scaled = resize_for(img, step.scale);
  const int height = scaled.rows, width = scaled.cols;
  std::vector<Detection> found;
  if (!step.tile || std::max(height, width) <= *step.tile) {
    found = candidates(scaled);
  } else {
    // Each face is kept from the one tile whose core holds its centre and that no inner edge of cuts it.
    const float m = static_cast<float>(kTileEdgeMarginPx);
    for (const TileSpan& ys : tile_spans(height, *step.tile, step.overlap))
      for (const TileSpan& xs : tile_spans(width, *step.tile, step.overlap)) {
        const cv::Mat part = scaled(cv::Rect(xs.start, ys.start, xs.end - xs.start, ys.end - ys.start)).clone();
        for (Detection det : candidates(part)) {
          shift_and_scale(det, 1.0f, static_cast<float>(xs.start), static_cast<float>(ys.start));
          const auto& b = det.bbox;
          const float cx = (b[0] + b[2]) / 2, cy = (b[1] + b[3]) / 2;
          const bool keep = cx >= static_cast<float>(xs.core_start) && cx < static_cast<float>(xs.core_end) &&
                            cy >= static_cast<float>(ys.core_start) && cy < static_cast<float>(ys.core_end) &&
                            (xs.start == 0 || b[0] > xs.start + m) && (ys.start == 0 || b[1] > ys.start + m) &&
                            (xs.end == width || b[2] < xs.end - m) && (ys.end == height || b[3] < ys.end - m);
          if (keep) found.push_back(det);
        }
      }
  }
  const float factor = static_cast<float>(1.0 / step.scale);
  const float low = static_cast<float>(step.min_face_px), high = static_cast<float>(step.max_face_px);
  const float doubt = static_cast<float>(step.doubt_above_px);
  std::vector<Detection> out;
  for (Detection det : found) {
    shift_and_scale(det, factor, 0.0f, 0.0f);
    const float side = side_of(det);
    if (side >= low && side < high && (side <= doubt || det.score >= kDoubtScore)) out.push_back(det);
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
