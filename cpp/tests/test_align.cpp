// Alignment maps the landmarks onto the template at the branch's size, and shrinks without aliasing.
#include <opencv2/imgproc.hpp>

#include "btnet_edge/align.hpp"
#include "btnet_edge/detect.hpp"
#include "btnet_edge/preprocess.hpp"
#include "check.hpp"

using namespace btnet_edge;

int main() {
  // A known similarity (scale 0.5, rotation 30 degrees, shift) is recovered exactly from 5 points.
  const double angle = 30.0 * CV_PI / 180.0, scale = 0.5, tx = 3.0, ty = -7.0;
  std::array<double, 10> src{}, dst{};
  for (int i = 0; i < 5; ++i) {
    src[2 * i] = kArcfaceTemplate112[2 * i] * 3 + 40, src[2 * i + 1] = kArcfaceTemplate112[2 * i + 1] * 3 + 11;
    dst[2 * i] = scale * (std::cos(angle) * src[2 * i] - std::sin(angle) * src[2 * i + 1]) + tx;
    dst[2 * i + 1] = scale * (std::sin(angle) * src[2 * i] + std::cos(angle) * src[2 * i + 1]) + ty;
  }
  const cv::Mat m = similarity_transform(src, dst);
  CHECK_NEAR(m.at<double>(0, 0), scale * std::cos(angle), 1e-9);
  CHECK_NEAR(m.at<double>(1, 0), scale * std::sin(angle), 1e-9);
  CHECK_NEAR(m.at<double>(0, 2), tx, 1e-9);
  CHECK_NEAR(m.at<double>(1, 2), ty, 1e-9);

  // A face drawn as 5 white dots at 4x the 14 px template lands at the template's 14 px points.
  cv::Mat frame(200, 200, CV_8UC3, cv::Scalar(0, 0, 0));
  std::array<float, 10> kps{};
  const std::array<double, 10> t14 = template_for(14);
  for (int i = 0; i < 10; ++i) kps[i] = static_cast<float>(t14[i] * 4 + 50);
  for (int i = 0; i < 5; ++i) cv::circle(frame, cv::Point2f(kps[2 * i], kps[2 * i + 1]), 3, cv::Scalar(255, 255, 255), -1);
  const cv::Mat crop = align_face(frame, kps, 14);
  CHECK(crop.rows == 14 && crop.cols == 14 && crop.type() == CV_8UC3);
  for (int i = 0; i < 5; ++i) {  // each dot is the brightest thing near its template point
    const int x = static_cast<int>(t14[2 * i]), y = static_cast<int>(t14[2 * i + 1]);
    CHECK(crop.at<cv::Vec3b>(y, x)[0] > 60);
  }
  CHECK(crop.at<cv::Vec3b>(1, 1)[0] == 0);

  // Preprocess: RGB order, (x - mean) / std, NCHW.
  cv::Mat pixel(1, 1, CV_8UC3, cv::Scalar(10, 20, 30));  // B, G, R
  Preprocess spec{"RGB", {1, 2, 3}, {2, 2, 2}, false};
  const std::vector<float> x = preprocess({pixel}, spec, 1);
  CHECK(x.size() == 3);
  CHECK_NEAR(x[0], (30.0f - 1) / 2, 1e-6f);
  CHECK_NEAR(x[2], (10.0f - 3) / 2, 1e-6f);

  return TEST_MAIN_RETURN;
}
