#include "btnet_edge/align.hpp"

#include <algorithm>
#include <cmath>

#include <opencv2/imgproc.hpp>

namespace btnet_edge {
namespace {

constexpr double kAreaBelowScale = 0.8;  // warps shrinking more than this are pre-reduced with INTER_AREA

// Bilinear warp computed in float32 with a black constant border: what cv::warpAffine(INTER_LINEAR) computes
// since OpenCV 4.11/5 (the Python wheel's), while older builds (Debian's 4.6, JetPack's 4.5-4.8) use 5-bit
// fixed-point weights that move pixels by 1 and embeddings by ~1e-3 in cosine. Written out, the C++ crops
// do not depend on the OpenCV version they are built with.
cv::Mat bilinear_warp(const cv::Mat& image, const cv::Mat& matrix, int size) {
  cv::Mat inverse;
  cv::invertAffineTransform(matrix, inverse);
  const float m00 = static_cast<float>(inverse.at<double>(0, 0)), m01 = static_cast<float>(inverse.at<double>(0, 1));
  const float m02 = static_cast<float>(inverse.at<double>(0, 2)), m10 = static_cast<float>(inverse.at<double>(1, 0));
  const float m11 = static_cast<float>(inverse.at<double>(1, 1)), m12 = static_cast<float>(inverse.at<double>(1, 2));
  cv::Mat out(size, size, CV_8UC3);
  const int w = image.cols, h = image.rows;
  auto pixel = [&](int y, int x, int c) -> float {
    return (x < 0 || y < 0 || x >= w || y >= h) ? 0.0f : static_cast<float>(image.ptr<uint8_t>(y)[3 * x + c]);
  };
  for (int y = 0; y < size; ++y) {
    uint8_t* row = out.ptr<uint8_t>(y);
    for (int x = 0; x < size; ++x) {
      const float sx = m00 * x + m01 * y + m02, sy = m10 * x + m11 * y + m12;
      const float fx = std::floor(sx), fy = std::floor(sy);
      const int x0 = static_cast<int>(fx), y0 = static_cast<int>(fy);
      const float ax = sx - fx, ay = sy - fy;
      for (int c = 0; c < 3; ++c) {
        const float top = pixel(y0, x0, c) * (1 - ax) + pixel(y0, x0 + 1, c) * ax;
        const float bottom = pixel(y0 + 1, x0, c) * (1 - ax) + pixel(y0 + 1, x0 + 1, c) * ax;
        row[3 * x + c] = cv::saturate_cast<uint8_t>(top * (1 - ay) + bottom * ay);
      }
    }
  }
  return out;
}

cv::Mat warp(const cv::Mat& image, cv::Mat matrix, int size) {
  const double scale = std::sqrt(std::abs(cv::determinant(matrix.colRange(0, 2))));
  cv::Mat source = image;
  if (scale < kAreaBelowScale) {
    cv::Mat inverse;
    cv::invertAffineTransform(matrix, inverse);
    double xmin = 1e300, ymin = 1e300, xmax = -1e300, ymax = -1e300;
    for (const auto& [cx, cy] : {std::pair<int, int>{0, 0}, {size, 0}, {0, size}, {size, size}}) {
      const double x = inverse.at<double>(0, 0) * cx + inverse.at<double>(0, 1) * cy + inverse.at<double>(0, 2);
      const double y = inverse.at<double>(1, 0) * cx + inverse.at<double>(1, 1) * cy + inverse.at<double>(1, 2);
      xmin = std::min(xmin, x), xmax = std::max(xmax, x), ymin = std::min(ymin, y), ymax = std::max(ymax, y);
    }
    const int x0 = static_cast<int>(std::max(std::floor(xmin) - 2, 0.0));
    const int y0 = static_cast<int>(std::max(std::floor(ymin) - 2, 0.0));
    const int x1 = static_cast<int>(std::min(std::ceil(xmax) + 2, static_cast<double>(image.cols)));
    const int y1 = static_cast<int>(std::min(std::ceil(ymax) + 2, static_cast<double>(image.rows)));
    if (x1 - x0 >= 2 && y1 - y0 >= 2) {
      // std::nearbyint rounds half to even, as Python's round() does.
      const int new_w = std::max(1, static_cast<int>(std::nearbyint((x1 - x0) * scale)));
      const int new_h = std::max(1, static_cast<int>(std::nearbyint((y1 - y0) * scale)));
      cv::Mat reduced;
      cv::resize(image(cv::Rect(x0, y0, x1 - x0, y1 - y0)), reduced, cv::Size(new_w, new_h), 0, 0, cv::INTER_AREA);
      const double sx = static_cast<double>(new_w) / (x1 - x0), sy = static_cast<double>(new_h) / (y1 - y0);
      // p_image = p_reduced / s + origin  ->  matrix composed with that map
      cv::Mat to_image = (cv::Mat_<double>(3, 3) << 1 / sx, 0, x0, 0, 1 / sy, y0, 0, 0, 1);
      matrix = matrix * to_image;
      source = reduced;
    }
  }
  return bilinear_warp(source, matrix, size);
}

}  // namespace

cv::Mat similarity_transform(const std::array<double, 10>& src, const std::array<double, 10>& dst) {
  double src_mean[2] = {0, 0}, dst_mean[2] = {0, 0};
  for (int i = 0; i < 5; ++i)
    for (int k = 0; k < 2; ++k) src_mean[k] += src[2 * i + k] / 5, dst_mean[k] += dst[2 * i + k] / 5;
  cv::Mat covariance = cv::Mat::zeros(2, 2, CV_64F);
  double variance = 0;
  for (int i = 0; i < 5; ++i) {
    const double s[2] = {src[2 * i] - src_mean[0], src[2 * i + 1] - src_mean[1]};
    const double d[2] = {dst[2 * i] - dst_mean[0], dst[2 * i + 1] - dst_mean[1]};
    for (int r = 0; r < 2; ++r)
      for (int c = 0; c < 2; ++c) covariance.at<double>(r, c) += d[r] * s[c] / 5;
    variance += (s[0] * s[0] + s[1] * s[1]) / 5;
  }
  cv::Mat singular, u, vt;
  cv::SVD::compute(covariance, singular, u, vt);
  cv::Mat d = cv::Mat::eye(2, 2, CV_64F);
  if (cv::determinant(u) * cv::determinant(vt) < 0) d.at<double>(1, 1) = -1;
  const cv::Mat rotation = u * d * vt;
  const double scale = variance > 0 ? (singular.at<double>(0) * d.at<double>(0, 0) +
                                       singular.at<double>(1) * d.at<double>(1, 1)) / variance
                                    : 1.0;
  cv::Mat matrix(2, 3, CV_64F);
  for (int r = 0; r < 2; ++r) {
    matrix.at<double>(r, 0) = scale * rotation.at<double>(r, 0);
    matrix.at<double>(r, 1) = scale * rotation.at<double>(r, 1);
    matrix.at<double>(r, 2) = dst_mean[r] - scale * (rotation.at<double>(r, 0) * src_mean[0] +
                                                     rotation.at<double>(r, 1) * src_mean[1]);
  }
  return matrix;
}

std::array<double, 10> template_for(int size) {
  std::array<double, 10> out{};
  for (int i = 0; i < 10; ++i) out[i] = kArcfaceTemplate112[i] * (static_cast<double>(size) / kTemplateSize);
  return out;
}

cv::Mat align_face(const cv::Mat& image, const std::array<float, 10>& kps, int size) {
  std::array<double, 10> src{};
  std::copy(kps.begin(), kps.end(), src.begin());
  return warp(image, similarity_transform(src, template_for(size)), size);
}

cv::Mat crop_box(const cv::Mat& image, const std::array<float, 4>& bbox, int size) {
  const double x1 = bbox[0], y1 = bbox[1], x2 = bbox[2], y2 = bbox[3];
  const double side = std::max({x2 - x1, y2 - y1, 1.0});
  const double cx = (x1 + x2) / 2, cy = (y1 + y2) / 2, scale = size / side;
  cv::Mat matrix = (cv::Mat_<double>(2, 3) << scale, 0, size / 2.0 - scale * cx, 0, scale, size / 2.0 - scale * cy);
  return warp(image, matrix, size);
}

}  // namespace btnet_edge
