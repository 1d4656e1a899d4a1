// Branch training records and routes, case by case as btnet_edge/package/branch_status.py reads them.
#include <nlohmann/json.hpp>

#include "btnet_edge/branch_status.hpp"
#include "btnet_edge/errors.hpp"
#include "check.hpp"

using namespace btnet_edge;
using nlohmann::json;

int main() {
  const std::vector<int> rs{28, 14, 7};
  // Recorded: trained/untrained as written; a branch missing from the record, or a bad source, is unknown.
  const json recorded = {{"branch_training",
                          {{{"resolution", 28}, {"trained", true}, {"source", "checkpoint"}, {"file", "b28.pt"}},
                           {{"resolution", 14}, {"trained", false}, {"source", "trunk-init"}},
                           {{"resolution", 5}, {"trained", true}, {"source", "checkpoint"}}}}};
  std::vector<BranchStatus> s = branch_statuses(recorded, rs, "pretrained");
  CHECK(s.size() == 3);
  CHECK(s[0].resolution == 28 && s[0].trained == true && s[0].source == "checkpoint");
  CHECK(s[1].trained == false && s[1].source == "trunk-init");
  CHECK(!s[2].trained.has_value() && s[2].source == "unknown");
  std::map<int, std::string> r = routes(s, "trained");
  CHECK(r[28] == "branch" && r[14] == "upsample" && r[7] == "upsample");
  r = routes(s, "all");
  CHECK(r[28] == "branch" && r[14] == "branch" && r[7] == "branch");
  r = routes(s, "none");
  CHECK(r[28] == "upsample" && r[14] == "upsample" && r[7] == "upsample");

  // An older manifest: the import report tells which branches came from checkpoints or train-branches.
  const json older = {{"import_report", {{"branches", {{"14", {{"file", "b14.pt"}}}}}, {"training", {{"resolutions", {7}}}}}}};
  s = branch_statuses(older, rs, "pretrained");
  CHECK(!s[0].trained.has_value() && s[0].source == "unknown");
  CHECK(s[1].trained == true && s[1].source == "checkpoint");
  CHECK(s[2].trained == true && s[2].source == "train-branches");
  r = routes(s, "trained");
  CHECK(r[28] == "upsample" && r[14] == "branch" && r[7] == "branch");

  // Random weights keep their branches: they exist to time and test the branch path.
  s = branch_statuses(json::object(), rs, "random");
  CHECK(s[0].trained == false && s[0].source == "random");
  r = routes(s, "trained");
  CHECK(r[28] == "branch" && r[7] == "branch");

  EXPECT_ERROR(ConfigError, routes(s, "some"), "use one of trained, all, none");
  return TEST_MAIN_RETURN;
}
