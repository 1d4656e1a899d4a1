// Same arithmetic as btnet_edge/pipeline/detect_plan.py (float64 for scales, Python's round half to even).
#include "btnet_edge/detect_plan.hpp"

#include <algorithm>
#include <cmath>

#include "btnet_edge/errors.hpp"

namespace btnet_edge {

void DetectPlan::validate() const {
  if (det_size < 64) throw ConfigError("det_size=" + std::to_string(det_size) + " must be an int >= 64 (px; 640 is the usual value)");
  if (min_face_px && !(*min_face_px >= 0))
    throw ConfigError("min_face_px=" + std::to_string(*min_face_px) + " must be >= 0 (px; 0 skips the enlarged pass)");
  if (upscale && !(*upscale >= 1.0 && *upscale <= kMaxUpscale))
    throw ConfigError("upscale=" + std::to_string(*upscale) + " must be between 1 and 4, or absent to derive it from min_face_px");
  if (tile && *tile < 256) throw ConfigError("tile=" + std::to_string(*tile) + " must be an int >= 256 (px, e.g. 1920), or none for no tiling");
  if (max_side && *max_side < 64) throw ConfigError("max_side=" + std::to_string(*max_side) + " must be an int >= 64 (px), or none for no cap");
}

std::vector<DetectPass> DetectPlan::passes(int height, int width) const {
  const double inf = std::numeric_limits<double>::infinity();
  const double long_side = std::max(height, width);
  const double cap = max_side ? std::min(kMaxUpscale, *max_side / long_side) : kMaxUpscale;
  const double coarse = std::min(det_size / long_side, cap);
  const double wanted = min_face_px.value_or(0.0);
  if (wanted <= 0 || wanted * coarse >= kReliableFacePx) return {DetectPass{"coarse", coarse, std::nullopt, 0, 0.0, inf}};
  const double enlarged = std::min(upscale && *upscale != 0 ? *upscale : kReliableFacePx / wanted, cap);
  const double split = kCoarseMinFacePx / coarse;
  if (enlarged <= coarse * kRangeSlack) return {DetectPass{"coarse", coarse, std::nullopt, 0, 0.0, inf}};
  // Overlap: the largest face the enlarged pass owns fits whole in some tile.
  const int overlap = static_cast<int>(std::ceil(split * kRangeSlack * enlarged)) + 8;
  std::optional<int> tiles;
  if (tile) tiles = std::max(*tile, 2 * overlap + 32);
  // A face the coarse pass sees well above its reliable size but missed needs a confident enlarged-pass score.
  const double doubt = kRangeSlack * kReliableFacePx / coarse;
  return {DetectPass{"coarse", coarse, std::nullopt, 0, split / kRangeSlack, inf},
          DetectPass{"enlarged", enlarged, tiles, overlap, 0.0, split * kRangeSlack, doubt}};
}

std::vector<TileSpan> tile_spans(int length, int tile, int overlap) {
  if (length <= tile) return {TileSpan{0, length}};
  const int count = static_cast<int>(std::ceil(static_cast<double>(length - overlap) / (tile - overlap)));
  const int size = static_cast<int>(std::ceil(static_cast<double>(length + (count - 1) * overlap) / count));
  std::vector<TileSpan> spans(count);
  for (int i = 0; i < count; ++i) {
    spans[i].start = static_cast<int>(std::nearbyint(static_cast<double>(i) * (length - size) / (count - 1)));
    spans[i].end = spans[i].start + size;
  }
  for (int i = 0; i < count; ++i) {
    if (i > 0) spans[i].core_start = (spans[i].start + spans[i - 1].end) / 2.0;
    if (i + 1 < count) spans[i].core_end = (spans[i + 1].start + spans[i].end) / 2.0;
  }
  return spans;
}

}  // namespace btnet_edge
