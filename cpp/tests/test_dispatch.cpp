// The dispatch rules reproduce the authors' ranges for 7/14/28/112 (DESIGN.md, pipeline/dispatch.py).
#include "btnet_edge/dispatch.hpp"
#include "btnet_edge/errors.hpp"
#include "check.hpp"

using namespace btnet_edge;

int main() {
  const std::vector<int> rs{112, 28, 14, 7};
  struct Range { const char* rounding; int low; int high; int resolution; };
  const Range ranges[] = {
      {"floor", 112, 400, 112}, {"floor", 28, 111, 28}, {"floor", 14, 27, 14}, {"floor", 1, 13, 7},
      {"near", 71, 400, 112},   {"near", 22, 70, 28},   {"near", 11, 21, 14},  {"near", 1, 10, 7},
      {"ceil", 29, 400, 112},   {"ceil", 15, 28, 28},   {"ceil", 8, 14, 14},   {"ceil", 1, 7, 7},
  };
  for (const Range& range : ranges)
    for (int size = range.low; size <= range.high; ++size) CHECK(choose_resolution(size, rs, range.rounding) == range.resolution);
  CHECK(choose_resolution(14.5, rs, "ceil") == 28);
  CHECK(choose_resolution(7.5, rs, "ceil") == 14);
  CHECK(face_size(10, 30, "max") == 30);
  CHECK(face_size(10, 30, "avg") == 20);
  CHECK(face_size(10, 30, "min") == 10);
  EXPECT_ERROR(ConfigError, face_size(1, 1, "median"), "unknown size indicator");
  EXPECT_ERROR(ConfigError, choose_resolution(10, rs, "round"), "unknown rounding");
  EXPECT_ERROR(ConfigError, choose_resolution(10, {}, "ceil"), "no resolutions");
  return TEST_MAIN_RETURN;
}
