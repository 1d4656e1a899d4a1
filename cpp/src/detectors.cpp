// Decoding follows btnet_edge/pipeline/detectors/{retinaface,scrfd,yunet}.py step by step, in float32.
#include "detectors.hpp"

#include <cmath>

#include <opencv2/core.hpp>

#include "btnet_edge/errors.hpp"

namespace btnet_edge {
namespace {

constexpr int kAlign = 32;  // the coarsest stride: padding to it makes every feature map size exact
constexpr float kRetinaMeanBgr[3] = {104.0f, 117.0f, 127.0f};
constexpr int kStrides[3] = {8, 16, 32};
constexpr int kRetinaMinSizes[3][2] = {{16, 32}, {64, 128}, {256, 512}};
constexpr float kVarianceCentre = 0.1f, kVarianceSize = 0.2f;
constexpr float kScrfdMean = 127.5f, kScrfdStd = 128.0f;
constexpr int kScrfdAnchors = 2;
constexpr int kYunetTopK = 5000;

int padded(int length) { return (length + kAlign - 1) / kAlign * kAlign; }
int cells(int length, int stride) { return (length + stride - 1) / stride; }

// 1 x 3 x padded_h x padded_w float32, zero padding, each pixel (value - mean) * factor in channel order.
Tensor blob(const cv::Mat& img, bool rgb, const float mean[3], float factor) {
  const int h = img.rows, w = img.cols, ph = padded(h), pw = padded(w);
  Tensor t{{1, 3, ph, pw}, std::vector<float>(static_cast<size_t>(3) * ph * pw, 0.0f)};
  for (int y = 0; y < h; ++y) {
    const uint8_t* row = img.ptr<uint8_t>(y);
    for (int x = 0; x < w; ++x)
      for (int c = 0; c < 3; ++c) {
        const int source = rgb ? 2 - c : c;
        t.data[(static_cast<size_t>(c) * ph + y) * pw + x] = (static_cast<float>(row[3 * x + source]) - mean[c]) * factor;
      }
  }
  return t;
}

}  // namespace

RetinaFaceDetector::RetinaFaceDetector(const std::filesystem::path& model, const DetectorOptions& options)
    : FaceDetector(options, 0.5f), session_(model, SessionOptions{options.device, options.threads}) {
  for (const char* name : {"loc", "conf", "landmarks"})
    if (std::find(session_.output_names().begin(), session_.output_names().end(), name) == session_.output_names().end())
      throw BackendError(model.filename().string() + " is not a RetinaFace graph this decoder knows: expected outputs "
                         "loc, conf, landmarks. Pass --detector-kind scrfd or yunet if it is one of those");
}

std::vector<Detection> RetinaFaceDetector::candidates(const cv::Mat& img) {
  Tensor input = blob(img, false, kRetinaMeanBgr, 1.0f);
  const int ph = static_cast<int>(input.shape[2]), pw = static_cast<int>(input.shape[3]);
  auto out = session_.run({{session_.input_names()[0], &input}});
  const std::vector<float>& loc = out.at("loc").data;
  const std::vector<float>& conf = out.at("conf").data;
  const std::vector<float>& landmarks = out.at("landmarks").data;
  std::vector<Detection> found;
  size_t prior = 0;
  for (int level = 0; level < 3; ++level) {
    const int stride = kStrides[level];
    for (int row = 0; row < cells(ph, stride); ++row)
      for (int col = 0; col < cells(pw, stride); ++col)
        for (int size_index = 0; size_index < 2; ++size_index, ++prior) {
          if (2 * prior + 1 >= conf.size()) break;
          const float score = conf[2 * prior + 1];
          if (score < score_threshold_) continue;
          const float cx = (static_cast<float>(col) + 0.5f) * stride, cy = (static_cast<float>(row) + 0.5f) * stride;
          const float size = static_cast<float>(kRetinaMinSizes[level][size_index]);
          const float* d = &loc[4 * prior];
          const float bx = cx + d[0] * kVarianceCentre * size, by = cy + d[1] * kVarianceCentre * size;
          const float bw = size * std::exp(d[2] * kVarianceSize), bh = size * std::exp(d[3] * kVarianceSize);
          Detection det;
          det.bbox = {bx - bw / 2, by - bh / 2, bx + bw / 2, by + bh / 2};
          for (int k = 0; k < 5; ++k) {
            det.kps[2 * k] = cx + landmarks[10 * prior + 2 * k] * kVarianceCentre * size;
            det.kps[2 * k + 1] = cy + landmarks[10 * prior + 2 * k + 1] * kVarianceCentre * size;
          }
          det.score = score;
          found.push_back(det);
        }
  }
  if (2 * prior != conf.size())
    throw BackendError("RetinaFace returned " + std::to_string(conf.size() / 2) + " anchors for a " +
                       std::to_string(pw) + "x" + std::to_string(ph) + " input, but strides 8/16/32 give " +
                       std::to_string(prior) + ": the graph has another anchor layout than this decoder");
  return found;
}

ScrfdDetector::ScrfdDetector(const std::filesystem::path& model, const DetectorOptions& options)
    : FaceDetector(options, 0.5f), session_(model, SessionOptions{options.device, options.threads}) {
  for (size_t i = 0; i < session_.output_names().size(); ++i) {
    const std::vector<int64_t> shape = session_.output_shape(i);
    const int64_t width = shape.empty() ? 0 : shape.back();
    if (width == 1 || width == 4 || width == 10) outputs_by_width_[static_cast<int>(width)].push_back(session_.output_names()[i]);
  }
  for (int width : {1, 4, 10})
    if (outputs_by_width_[width].size() != 3 || session_.input_names().size() != 1)
      throw BackendError(model.filename().string() + " does not look like an SCRFD graph with keypoints: expected one "
                         "input and, per stride (8, 16, 32), outputs of last dimension 1 (score), 4 (box) and 10 "
                         "(landmarks). SCRFD without keypoints cannot feed face alignment");
}

std::vector<Detection> ScrfdDetector::candidates(const cv::Mat& img) {
  const float mean[3] = {kScrfdMean, kScrfdMean, kScrfdMean};
  Tensor input = blob(img, true, mean, 1.0f / kScrfdStd);
  const int ph = static_cast<int>(input.shape[2]), pw = static_cast<int>(input.shape[3]);
  auto out = session_.run({{session_.input_names()[0], &input}});
  // Each output belongs to the stride whose anchor count equals its row count.
  auto level = [&](int width, int stride) -> const std::vector<float>& {
    const size_t rows = static_cast<size_t>(cells(ph, stride)) * cells(pw, stride) * kScrfdAnchors;
    for (const std::string& name : outputs_by_width_[width])
      if (out.at(name).data.size() == rows * width) return out.at(name).data;
    throw BackendError("SCRFD has no output of width " + std::to_string(width) + " with " + std::to_string(rows) +
                       " rows for stride " + std::to_string(stride) + "; this model has another anchor layout");
  };
  std::vector<Detection> found;
  for (int stride : kStrides) {
    const std::vector<float>& scores = level(1, stride);
    const std::vector<float>& boxes = level(4, stride);
    const std::vector<float>& kps = level(10, stride);
    const int cols = cells(pw, stride);
    for (size_t i = 0; i < scores.size(); ++i) {
      if (scores[i] < score_threshold_) continue;
      const size_t location = i / kScrfdAnchors;
      const float cx = static_cast<float>(location % cols) * stride, cy = static_cast<float>(location / cols) * stride;
      const float s = static_cast<float>(stride);
      Detection det;
      det.bbox = {cx - boxes[4 * i] * s, cy - boxes[4 * i + 1] * s, cx + boxes[4 * i + 2] * s, cy + boxes[4 * i + 3] * s};
      for (int k = 0; k < 5; ++k) {
        det.kps[2 * k] = cx + kps[10 * i + 2 * k] * s;
        det.kps[2 * k + 1] = cy + kps[10 * i + 2 * k + 1] * s;
      }
      det.score = scores[i];
      found.push_back(det);
    }
  }
  return found;
}

YuNetDetector::YuNetDetector(const std::filesystem::path& model, const DetectorOptions& options)
    : FaceDetector(options, 0.7f) {
  if (options.device != "cpu")
    throw ConfigError("YuNet runs through OpenCV's DNN on the CPU; device '" + options.device + "' is not supported");
  try {
    net_ = cv::dnn::readNet(model.string());
  } catch (const cv::Exception& exc) {
    throw BackendError("OpenCV cannot load " + model.string() + " as a YuNet model: " + exc.what());
  }
  if (options.threads > 0) cv::setNumThreads(options.threads);
}

std::vector<Detection> YuNetDetector::candidates(const cv::Mat& img) {
  static const std::vector<std::string> names = {"cls_8", "cls_16", "cls_32", "obj_8", "obj_16", "obj_32",
                                                 "bbox_8", "bbox_16", "bbox_32", "kps_8", "kps_16", "kps_32"};
  const int ph = padded(img.rows), pw = padded(img.cols);
  cv::Mat input;  // black padding at the bottom and right: coordinates stay those of the frame
  cv::copyMakeBorder(img, input, 0, ph - img.rows, 0, pw - img.cols, cv::BORDER_CONSTANT, cv::Scalar(0, 0, 0));
  std::vector<cv::Mat> out;
  try {
    net_.setInput(cv::dnn::blobFromImage(input));  // BGR, no scaling, no mean: YuNet's own convention
    net_.forward(out, names);
  } catch (const cv::Exception& exc) {
    throw BackendError(std::string("OpenCV's DNN cannot run this YuNet graph (it needs outputs cls/obj/bbox/kps "
                                   "per stride 8, 16, 32): ") + exc.what());
  }
  std::vector<Detection> found;
  std::vector<cv::Rect> boxes;
  std::vector<float> scores;
  for (int level = 0; level < 3; ++level) {
    const int stride = kStrides[level], cols = pw / stride, rows = ph / stride;
    const float* cls = out[level].ptr<float>();
    const float* obj = out[level + 3].ptr<float>();
    const float* box = out[level + 6].ptr<float>();
    const float* kps = out[level + 9].ptr<float>();
    if (out[level].total() != static_cast<size_t>(rows) * cols)
      throw BackendError("YuNet output " + names[level] + " has " + std::to_string(out[level].total()) +
                         " values for a " + std::to_string(cols) + "x" + std::to_string(rows) + " grid");
    for (int r = 0; r < rows; ++r)
      for (int c = 0; c < cols; ++c) {
        const size_t i = static_cast<size_t>(r) * cols + c;
        const float score = std::sqrt(std::clamp(cls[i], 0.0f, 1.0f) * std::clamp(obj[i], 0.0f, 1.0f));
        if (score < score_threshold_) continue;
        const float cx = (c + box[4 * i]) * stride, cy = (r + box[4 * i + 1]) * stride;
        const float w = std::exp(box[4 * i + 2]) * stride, h = std::exp(box[4 * i + 3]) * stride;
        const float x1 = cx - w / 2.0f, y1 = cy - h / 2.0f;
        Detection det;
        det.bbox = {x1, y1, x1 + w, y1 + h};
        for (int n = 0; n < 5; ++n) {
          det.kps[2 * n] = (kps[10 * i + 2 * n] + c) * stride;
          det.kps[2 * n + 1] = (kps[10 * i + 2 * n + 1] + r) * stride;
        }
        det.score = score;
        found.push_back(det);
        boxes.emplace_back(static_cast<int>(x1), static_cast<int>(y1), static_cast<int>(w), static_cast<int>(h));
        scores.push_back(score);
      }
  }
  if (found.size() <= 1) return found;
  std::vector<int> keep;
  cv::dnn::NMSBoxes(boxes, scores, score_threshold_, options_.nms_threshold, keep, 1.0f, kYunetTopK);
  std::vector<Detection> kept;
  for (int index : keep) kept.push_back(found[static_cast<size_t>(index)]);
  return kept;
}

}  // namespace btnet_edge
