// The Face record (btnet_edge/pipeline/face.py): insightface's attribute names, plus the branch used.
#pragma once

#include <array>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace btnet_edge {

struct Face {
  std::array<float, 4> bbox{};   // x1, y1, x2, y2 in frame pixels
  std::array<float, 10> kps{};   // 5 landmarks (x, y)
  float det_score = 0;
  float face_size = 0;           // px: the size that chose the branch
  int resolution = 0;            // the branch the face size chose: 7, 14, 28 or 112
  std::string route = "trunk";   // "branch", "upsample" (aligned at 112 for the trunk: branch untrained) or "trunk"
  std::vector<float> embedding;  // raw trunk output (flip TTA summed when the manifest asks for it)
  std::optional<std::string> identity;
  std::optional<float> identity_score;

  std::vector<float> normed_embedding() const;
  // The `btnet-edge run --json` face entry: bbox, kps, det_score, face_size, resolution, route, identity, score.
  nlohmann::json to_json() const;
};

}  // namespace btnet_edge
