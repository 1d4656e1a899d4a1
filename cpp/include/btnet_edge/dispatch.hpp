// Branch dispatch: which resolution a face of w x h px is recognized at (btnet_edge/pipeline/dispatch.py).
// Size indicator (max, avg or min of the box sides), then a rounding rule over the package's resolutions.
#pragma once

#include <string>
#include <vector>

namespace btnet_edge {

// The size the dispatch rule compares: max, mean or min of the box sides, in px.
double face_size(double width, double height, const std::string& indicator = "max");

// floor: the largest resolution not above the size; ceil: the smallest not below it; near: the closest,
// ties to the smaller. Outside the range the nearest end is used.
int choose_resolution(double size, std::vector<int> resolutions, const std::string& rounding = "ceil");

}  // namespace btnet_edge
