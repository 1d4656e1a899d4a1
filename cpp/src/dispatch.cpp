#include "btnet_edge/dispatch.hpp"

#include <algorithm>
#include <cmath>

#include "btnet_edge/errors.hpp"

namespace btnet_edge {

double face_size(double width, double height, const std::string& indicator) {
  if (indicator == "max") return std::max(width, height);
  if (indicator == "avg") return (width + height) / 2.0;
  if (indicator == "min") return std::min(width, height);
  throw ConfigError("unknown size indicator '" + indicator + "'; use one of ('max', 'avg', 'min')");
}

int choose_resolution(double size, std::vector<int> resolutions, const std::string& rounding) {
  std::sort(resolutions.begin(), resolutions.end());
  resolutions.erase(std::unique(resolutions.begin(), resolutions.end()), resolutions.end());
  if (resolutions.empty()) throw ConfigError("no resolutions to dispatch to");
  if (rounding == "floor") {
    int chosen = resolutions.front();
    for (int r : resolutions)
      if (r <= size) chosen = r;
    return chosen;
  }
  if (rounding == "ceil") {
    for (int r : resolutions)
      if (r >= size) return r;
    return resolutions.back();
  }
  if (rounding == "near") {
    int chosen = resolutions.front();  // ascending order: the first of equal distances is the smaller
    for (int r : resolutions)
      if (std::abs(r - size) < std::abs(chosen - size)) chosen = r;
    return chosen;
  }
  throw ConfigError("unknown rounding '" + rounding + "'; use one of ('floor', 'near', 'ceil')");
}

}  // namespace btnet_edge
