// Detection plans (btnet_edge/pipeline/detect_plan.py): at which scales, and in which tiles, a frame is shown
// to a detector. A coarse pass at det_size (640 long side) finds the large faces; an enlarged, tiled pass finds
// faces down to min_face_px (10 px). Each pass keeps only the face sizes it owns; detect.cpp merges them.
#pragma once

#include <limits>
#include <optional>
#include <string>
#include <vector>

namespace btnet_edge {

inline constexpr double kReliableFacePx = 25.0;   // RetinaFace-0.25 finds most faces this big in pass px
inline constexpr double kCoarseMinFacePx = 32.0;  // the coarse pass owns faces from this size in its own px
inline constexpr double kMaxUpscale = 4.0;
inline constexpr double kRangeSlack = 1.25;       // each pass keeps faces this factor beyond its range
inline constexpr double kTileEdgeMarginPx = 2.0;
inline constexpr float kDoubtScore = 0.7f;        // enlarged-pass boxes the coarse pass should have seen need this
inline constexpr float kFragmentSideRatio = 4.0f; // a box this many times smaller than a face it overlaps ...
inline constexpr float kFragmentOverlap = 0.3f;   // ... by this share of its own area is a piece of that face
inline constexpr float kFragmentMargin = 0.1f;    // the larger face's box grown by this share of its side

// One pass: scale (pass px per frame px), optional tiles, and the face sizes (frame px) it keeps.
struct DetectPass {
  std::string name;
  double scale = 1.0;
  std::optional<int> tile;
  int overlap = 0;
  double min_face_px = 0.0;
  double max_face_px = std::numeric_limits<double>::infinity();
  double doubt_above_px = std::numeric_limits<double>::infinity();  // larger boxes need kDoubtScore
};

// The user controls, same names and defaults as Python's DetectPlan. min_face_px none or 0 skips the enlarged
// pass; upscale none derives it from min_face_px; tile none: one piece; max_side none: no cap on pass sizes.
struct DetectPlan {
  int det_size = 640;
  std::optional<double> min_face_px = 10.0;
  std::optional<double> upscale;
  std::optional<int> tile = 1920;
  std::optional<int> max_side = 4800;

  void validate() const;  // ConfigError naming the field and a usual value
  std::vector<DetectPass> passes(int height, int width) const;
};

struct TileSpan {  // along one axis: the tile's pixels [start, end) and the core that owns face centres
  int start = 0, end = 0;
  double core_start = -std::numeric_limits<double>::infinity();
  double core_end = std::numeric_limits<double>::infinity();
};

// As few tiles as fit `tile`, spread evenly so neighbours overlap by about `overlap`, all of one size.
std::vector<TileSpan> tile_spans(int length, int tile, int overlap);

}  // namespace btnet_edge
