// Aligned BGR uint8 crops -> network input, as the manifest declares (btnet_edge/pipeline/preprocess.py).
#pragma once

#include <vector>

#include <opencv2/core.hpp>

#include "btnet_edge/package.hpp"

namespace btnet_edge {

// (N crops of size x size x 3 BGR uint8) -> N x 3 x size x size float32, in the colour order and scale of spec.
std::vector<float> preprocess(const std::vector<cv::Mat>& crops, const Preprocess& spec, int size);

// Unit-length copy (norm floored at 1e-12).
std::vector<float> l2_normalize(const std::vector<float>& vector);

}  // namespace btnet_edge
