#include "btnet_edge/recognizer.hpp"

#include <chrono>
#include <cmath>

#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include "btnet_edge/align.hpp"
#include "btnet_edge/dispatch.hpp"
#include "btnet_edge/errors.hpp"
#include "btnet_edge/preprocess.hpp"

namespace btnet_edge {
namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

double round_to(double value, int digits) {
  const double scale = std::pow(10.0, digits);
  return std::nearbyint(value * scale) / scale;
}

}  // namespace

std::vector<float> Face::normed_embedding() const { return l2_normalize(embedding); }

nlohmann::json Face::to_json() const {
  nlohmann::json box = nlohmann::json::array(), points = nlohmann::json::array();
  for (float v : bbox) box.push_back(round_to(v, 2));
  for (int k = 0; k < 5; ++k) points.push_back({round_to(kps[2 * k], 2), round_to(kps[2 * k + 1], 2)});
  return {{"bbox", box},
          {"kps", points},
          {"det_score", round_to(det_score, 4)},
          {"face_size", round_to(face_size, 2)},
          {"resolution", resolution},
          {"route", route},
          {"identity", identity ? nlohmann::json(*identity) : nlohmann::json(nullptr)},
          {"score", identity_score ? nlohmann::json(round_to(*identity_score, 4)) : nlohmann::json(nullptr)}};
}

Recognizer::Recognizer(const std::filesystem::path& package, std::unique_ptr<FaceDetector> detector,
                       const RecognizerOptions& options)
    : package_(load_package(package)), detector_(std::move(detector)) {
  dispatch_ = package_.manifest.dispatch;
  if (!options.indicator.empty()) dispatch_.indicator = options.indicator;
  if (!options.rounding.empty()) dispatch_.rounding = options.rounding;
  face_size(1, 1, dispatch_.indicator);                         // validates the indicator
  choose_resolution(1, {kTrunkResolution}, dispatch_.rounding);  // validates the rounding
  if (options.align != "landmarks" && options.align != "box")
    throw ConfigError("align should be landmarks or box, found '" + options.align + "'");
  box_crop_ = options.align == "box";
  if (!detector_) throw ConfigError("Recognizer needs a face detector (create_detector)");
  routes_ = btnet_edge::routes(package_.manifest.branch_training, options.branches);
  runner_ = std::make_unique<PackageRunner>(package_, options.session);
}

std::vector<Face> Recognizer::get(const cv::Mat& frame) {
  const auto start = Clock::now();
  auto t = Clock::now();
  const std::vector<Detection> detections = detector_->detect(frame);
  times.detect += seconds_since(t);
  t = Clock::now();
  std::vector<Face> faces;
  std::map<int, std::vector<cv::Mat>> groups;
  std::vector<std::pair<int, size_t>> slots;  // (resolution, index in its group) per face
  for (const Detection& det : detections) {
    const double size = face_size(det.width(), det.height(), dispatch_.indicator);
    if (size < kMinFacePx) continue;
    const int r = choose_resolution(size, package_.manifest.resolutions(), dispatch_.rounding);
    Face face;
    face.bbox = det.bbox, face.kps = det.kps, face.det_score = det.score;
    face.face_size = static_cast<float>(size), face.resolution = r;
    if (routes_.count(r)) face.route = routes_.at(r);
    const int entry = face.route == "branch" ? r : kTrunkResolution;  // upsample: aligned at 112 from the frame
    slots.emplace_back(entry, groups[entry].size());
    groups[entry].push_back(box_crop_ ? crop_box(frame, det.bbox, entry) : align_face(frame, det.kps, entry));
    faces.push_back(face);
  }
  times.align += seconds_since(t);
  if (!faces.empty()) {
    const std::map<int, std::vector<float>> embeddings = embed_groups(groups);
    const size_t width = static_cast<size_t>(package_.manifest.embedding_size);
    for (size_t i = 0; i < faces.size(); ++i) {
      const std::vector<float>& group = embeddings.at(slots[i].first);
      faces[i].embedding.assign(group.begin() + slots[i].second * width, group.begin() + (slots[i].second + 1) * width);
    }
  }
  if (gallery_ && !faces.empty()) {
    t = Clock::now();
    for (Face& face : faces) {
      if (auto match = gallery_->identify(face.normed_embedding(), face.resolution)) {
        face.identity = match->name;
        face.identity_score = match->score;
      }
    }
    times.gallery += seconds_since(t);
  }
  times.total += seconds_since(start);
  times.frames += 1;
  return faces;
}

std::vector<float> Recognizer::embed(const std::vector<cv::Mat>& aligned, int resolution) {
  const std::vector<int> resolutions = package_.manifest.resolutions();
  if (std::find(resolutions.begin(), resolutions.end(), resolution) == resolutions.end())
    throw ConfigError("package has no " + std::to_string(resolution) + " px entry");
  return embed_groups({{resolution, aligned}}).at(resolution);
}

std::map<int, std::vector<float>> Recognizer::embed_groups(const std::map<int, std::vector<cv::Mat>>& groups) {
  auto t = Clock::now();
  const bool flip = package_.manifest.preprocess.flip_tta;
  std::map<int, Tensor> batches;
  for (const auto& [r, crops] : groups) {
    std::vector<cv::Mat> stack = crops;
    if (flip) {  // the flipped faces ride in the same batch
      for (const cv::Mat& crop : crops) {
        cv::Mat mirrored;
        cv::flip(crop, mirrored, 1);
        stack.push_back(mirrored);
      }
    }
    batches[r] = Tensor{{static_cast<int64_t>(stack.size()), 3, r, r}, preprocess(stack, package_.manifest.preprocess, r)};
  }
  times.align += seconds_since(t);
  const double branch_s = runner_->branch_s, trunk_s = runner_->trunk_s;
  std::map<int, std::vector<float>> out = runner_->embed(batches);
  times.branches += runner_->branch_s - branch_s;
  times.trunk += runner_->trunk_s - trunk_s;
  if (flip) {
    for (auto& [r, rows] : out) {
      const size_t half = rows.size() / 2;
      std::vector<float> summed(half);
      for (size_t i = 0; i < half; ++i) summed[i] = rows[i] + rows[half + i];
      rows.swap(summed);
    }
  }
  return out;
}

cv::Mat read_image(const std::filesystem::path& path) {
  if (!std::filesystem::is_regular_file(path))
    throw InputImageError("image file not found: " + path.string() +
                          (std::filesystem::is_directory(path) ? " (it is a directory)" : ""));
  // ANYDEPTH|ANYCOLOR (not UNCHANGED): 16-bit data stays visible to us and EXIF orientation is applied.
  cv::Mat img = cv::imread(path.string(), cv::IMREAD_ANYDEPTH | cv::IMREAD_ANYCOLOR);
  if (img.empty())
    throw InputImageError("cannot decode " + path.string() + " as an image (" +
                          std::to_string(std::filesystem::file_size(path)) +
                          " bytes): it is not a JPEG/PNG/BMP/TIFF/WebP file OpenCV can read, or it is truncated");
  if (img.depth() != CV_8U)
    throw InputImageError(path.string() + " holds 16-bit or float pixels; the detector needs 8-bit photos. "
                          "Convert the file to 8 bits first");
  if (img.channels() == 1) cv::cvtColor(img, img, cv::COLOR_GRAY2BGR);
  if (img.channels() == 4) cv::cvtColor(img, img, cv::COLOR_BGRA2BGR);
  return img;
}

}  // namespace btnet_edge
