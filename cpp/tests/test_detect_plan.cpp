// The detection plan equals Python's DetectPlan.passes() and tile_spans() (values printed by
// btnet_edge/pipeline/detect_plan.py for these frame sizes), and the fragment rule drops hair-sized boxes.
#include <cmath>
#include <limits>

#include "btnet_edge/detect.hpp"
#include "btnet_edge/detect_plan.hpp"
#include "btnet_edge/errors.hpp"
#include "check.hpp"

using namespace btnet_edge;

namespace {

const double kInf = std::numeric_limits<double>::infinity();

struct Expected {
  const char* name;
  double scale;
  int tile;  // 0: none
  int overlap;
  double min_face_px, max_face_px, doubt_above_px;
};

void check_passes(const DetectPlan& plan, int height, int width, const std::vector<Expected>& expected) {
  const std::vector<DetectPass> got = plan.passes(height, width);
  CHECK(got.size() == expected.size());
  for (size_t i = 0; i < std::min(got.size(), expected.size()); ++i) {
    const Expected& e = expected[i];
    CHECK(got[i].name == e.name);
    CHECK_NEAR(got[i].scale, e.scale, 1e-12);
    CHECK(got[i].tile.value_or(0) == e.tile);
    CHECK(got[i].overlap == e.overlap);
    CHECK_NEAR(got[i].min_face_px, e.min_face_px, 1e-9);
    CHECK(std::isinf(e.max_face_px) ? std::isinf(got[i].max_face_px) : std::abs(got[i].max_face_px - e.max_face_px) < 1e-9);
    CHECK(std::isinf(e.doubt_above_px) ? std::isinf(got[i].doubt_above_px)
                                       : std::abs(got[i].doubt_above_px - e.doubt_above_px) < 1e-9);
  }
}

Detection box(float x1, float y1, float x2, float y2) {
  Detection d;
  d.bbox = {x1, y1, x2, y2};
  d.score = 0.9f;
  return d;
}

}  // namespace

int main() {
  const DetectPlan plan;  // defaults: det_size 640, min_face_px 10, tile 1920, max_side 4800
  check_passes(plan, 720, 1280, {{"coarse", 0.5, 0, 0, 51.2, kInf, kInf}, {"enlarged", 2.5, 1920, 208, 0, 80, 62.5}});
  check_passes(plan, 1080, 1920,
               {{"coarse", 1.0 / 3, 0, 0, 76.8, kInf, kInf}, {"enlarged", 2.5, 1920, 308, 0, 120, 93.75}});
  check_passes(plan, 2160, 3840,
               {{"coarse", 1.0 / 6, 0, 0, 153.6, kInf, kInf}, {"enlarged", 1.25, 1920, 308, 0, 240, 187.5}});
  check_passes(plan, 480, 640, {{"coarse", 1.0, 0, 0, 25.6, kInf, kInf}, {"enlarged", 2.5, 1920, 108, 0, 40, 31.25}});
  check_passes(plan, 150, 200, {{"coarse", 3.2, 0, 0, 0, kInf, kInf}});  // the coarse pass already sees 10 px faces
  check_passes(plan, 3000, 4000,
               {{"coarse", 0.16, 0, 0, 160, kInf, kInf}, {"enlarged", 1.2, 1920, 308, 0, 250, 195.3125}});

  DetectPlan coarse_only;
  coarse_only.min_face_px.reset();
  check_passes(coarse_only, 1080, 1920, {{"coarse", 1.0 / 3, 0, 0, 0, kInf, kInf}});
  DetectPlan untiled;
  untiled.tile.reset();
  check_passes(untiled, 1080, 1920,
               {{"coarse", 1.0 / 3, 0, 0, 76.8, kInf, kInf}, {"enlarged", 2.5, 0, 308, 0, 120, 93.75}});
  DetectPlan fixed;
  fixed.upscale = 2.0;
  fixed.max_side.reset();
  check_passes(fixed, 2160, 3840,
               {{"coarse", 1.0 / 6, 0, 0, 153.6, kInf, kInf}, {"enlarged", 2.0, 1920, 488, 0, 240, 187.5}});

  // Tiles: Python's tile_spans(4320, 1920, 412) and (7680, 1920, 412); a short axis is one tile.
  const std::vector<TileSpan> three = tile_spans(4320, 1920, 412);
  CHECK(three.size() == 3);
  const int starts3[] = {0, 1302, 2605}, ends3[] = {1715, 3017, 4320};
  for (size_t i = 0; i < std::min<size_t>(3, three.size()); ++i) CHECK(three[i].start == starts3[i] && three[i].end == ends3[i]);
  CHECK(std::isinf(three[0].core_start) && three[0].core_end == 1508.5 && three[1].core_start == 1508.5);
  CHECK(three[1].core_end == 2811.0 && std::isinf(three[2].core_end));
  const std::vector<TileSpan> five = tile_spans(7680, 1920, 412);
  const int starts5[] = {0, 1454, 2907, 4360, 5814};
  CHECK(five.size() == 5);
  for (size_t i = 0; i < std::min<size_t>(5, five.size()); ++i) CHECK(five[i].start == starts5[i] && five[i].end == starts5[i] + 1866);
  CHECK(five[2].core_start == 3113.5 && five[2].core_end == 4566.5);
  const std::vector<TileSpan> one = tile_spans(1000, 1920, 100);
  CHECK(one.size() == 1 && one[0].start == 0 && one[0].end == 1000 && std::isinf(one[0].core_start));

  // Fragments: a 10 px box on the hairline of a 100 px face is a piece of it; one beside the face is not.
  const std::vector<bool> pieces = fragments({box(100, 100, 200, 200), box(95, 95, 105, 105), box(300, 100, 310, 110)});
  CHECK(!pieces[0] && pieces[1] && !pieces[2]);
  // Containment NMS: a box well inside a better one goes only when containment is asked for.
  const std::vector<Detection> nested = {box(0, 0, 100, 100), box(10, 10, 60, 60)};
  CHECK(nms(nested, 0.4f).size() == 2);
  CHECK(nms(nested, 0.4f, kTileContainment).size() == 1);

  DetectPlan bad;
  bad.det_size = 32;
  EXPECT_ERROR(ConfigError, bad.validate(), "det_size=32 must be an int >= 64");
  bad = DetectPlan{};
  bad.upscale = 5.0;
  EXPECT_ERROR(ConfigError, bad.validate(), "must be between 1 and 4");
  bad = DetectPlan{};
  bad.tile = 100;
  EXPECT_ERROR(ConfigError, bad.validate(), "tile=100 must be an int >= 256");
  return TEST_MAIN_RETURN;
}
