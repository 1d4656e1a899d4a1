// Alignment straight to a branch's native size (btnet_edge/pipeline/align.py): the ArcFace 5-point
// template scaled to r x r; a face is never aligned at 112 and shrunk, nor upsampled to 112. Warps that
// shrink a lot first reduce the region with area interpolation, so small crops do not alias.
#pragma once

#include <array>

#include <opencv2/core.hpp>

namespace btnet_edge {

// Left eye, right eye, nose tip, left and right mouth corners for 112 x 112 (insightface arcface_dst).
inline constexpr std::array<double, 10> kArcfaceTemplate112 = {38.2946, 51.6963, 73.5318, 51.5014, 56.0252,
                                                               71.7366, 41.5493, 92.3655, 70.7299, 92.2041};
inline constexpr int kTemplateSize = 112;

// Least-squares similarity (Umeyama 1991) mapping 5 points src to dst: a 2x3 CV_64F matrix.
cv::Mat similarity_transform(const std::array<double, 10>& src, const std::array<double, 10>& dst);

// The ArcFace template scaled to size x size.
std::array<double, 10> template_for(int size);

// The face with landmarks kps (x0, y0, ..., x4, y4) warped onto the template at size px (BGR uint8).
cv::Mat align_face(const cv::Mat& image, const std::array<float, 10>& kps, int size);

// Box-crop mode for unreliable landmarks: the square around bbox (x1, y1, x2, y2) resized to size px.
cv::Mat crop_box(const cv::Mat& image, const std::array<float, 4>& bbox, int size);

}  // namespace btnet_edge
