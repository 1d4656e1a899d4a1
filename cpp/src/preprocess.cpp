#include "btnet_edge/preprocess.hpp"

#include <algorithm>
#include <cmath>

#include "btnet_edge/errors.hpp"

namespace btnet_edge {

std::vector<float> preprocess(const std::vector<cv::Mat>& crops, const Preprocess& spec, int size) {
  const size_t plane = static_cast<size_t>(size) * size;
  std::vector<float> out(crops.size() * 3 * plane);
  const bool rgb = spec.color_order == "RGB";
  for (size_t n = 0; n < crops.size(); ++n) {
    const cv::Mat& crop = crops[n];
    if (crop.type() != CV_8UC3 || crop.rows != size || crop.cols != size)
      throw InputImageError("aligned faces should be " + std::to_string(size) + "x" + std::to_string(size) +
                            " BGR uint8, found " + std::to_string(crop.cols) + "x" + std::to_string(crop.rows) +
                            " of type " + std::to_string(crop.type()) + "; align them to " + std::to_string(size) +
                            " px first (align_face)");
    float* base = out.data() + n * 3 * plane;
    for (int y = 0; y < size; ++y) {
      const uint8_t* row = crop.ptr<uint8_t>(y);
      for (int x = 0; x < size; ++x) {
        for (int c = 0; c < 3; ++c) {  // c: channel in the network's order
          const int source = rgb ? 2 - c : c;
          base[c * plane + static_cast<size_t>(y) * size + x] =
              (static_cast<float>(row[3 * x + source]) - spec.mean[c]) / spec.std[c];
        }
      }
    }
  }
  return out;
}

std::vector<float> l2_normalize(const std::vector<float>& vector) {
  double sum = 0;
  for (float v : vector) sum += static_cast<double>(v) * v;
  const float norm = static_cast<float>(std::max(std::sqrt(sum), 1e-12));
  std::vector<float> out(vector.size());
  std::transform(vector.begin(), vector.end(), out.begin(), [norm](float v) { return v / norm; });
  return out;
}

}  // namespace btnet_edge
