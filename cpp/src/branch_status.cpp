// Mirrors branch_statuses() and routes() of btnet_edge/package/branch_status.py case by case.
#include "btnet_edge/branch_status.hpp"

#include <algorithm>
#include <set>

#include <nlohmann/json.hpp>

#include "btnet_edge/errors.hpp"

namespace btnet_edge {
namespace {

using nlohmann::json;

const std::set<std::string> kSources = {"checkpoint", "train-branches", "trunk-init", "random", "unknown"};

std::optional<int> as_int(const json& value) {
  if (value.is_number_integer()) return value.get<int>();
  if (value.is_string()) {
    try {
      size_t used = 0;
      const int parsed = std::stoi(value.get<std::string>(), &used);
      if (used == value.get<std::string>().size()) return parsed;
    } catch (const std::exception&) {
    }
  }
  return std::nullopt;
}

std::set<int> int_keys(const json& object) {
  std::set<int> out;
  if (object.is_object())
    for (const auto& [key, _] : object.items())
      if (auto r = as_int(json(key))) out.insert(*r);
  return out;
}

}  // namespace

std::vector<BranchStatus> branch_statuses(const json& manifest, const std::vector<int>& resolutions,
                                          const std::string& weights) {
  std::vector<BranchStatus> out;
  const json none;
  const json& recorded = manifest.contains("branch_training") ? manifest.at("branch_training") : none;
  if (recorded.is_array()) {
    std::map<int, json> by_resolution;
    for (const json& item : recorded)
      if (item.is_object() && item.contains("resolution"))
        if (auto r = as_int(item.at("resolution"))) by_resolution[*r] = item;
    for (int r : resolutions) {
      const json item = by_resolution.count(r) ? by_resolution[r] : json::object();
      BranchStatus status{r, std::nullopt, "unknown"};
      if (item.contains("trained") && item.at("trained").is_boolean()) status.trained = item.at("trained").get<bool>();
      if (item.contains("source") && item.at("source").is_string() && kSources.count(item.at("source").get<std::string>()))
        status.source = item.at("source").get<std::string>();
      out.push_back(status);
    }
    return out;
  }
  // An older manifest: only what its import report states for sure.
  const json report = manifest.contains("import_report") && manifest.at("import_report").is_object()
                          ? manifest.at("import_report") : json::object();
  const std::set<int> imported = int_keys(report.value("branches", json::object()));
  std::set<int> trained_by_run;
  const json training = report.value("training", json::object());
  if (training.is_object() && training.contains("resolutions") && training.at("resolutions").is_array())
    for (const json& r : training.at("resolutions"))
      if (auto value = as_int(r)) trained_by_run.insert(*value);
  for (int r : resolutions) {
    if (weights == "random") out.push_back({r, false, "random"});
    else if (trained_by_run.count(r)) out.push_back({r, true, "train-branches"});
    else if (imported.count(r)) out.push_back({r, true, "checkpoint"});
    else out.push_back({r, std::nullopt, "unknown"});
  }
  return out;
}

std::map<int, std::string> routes(const std::vector<BranchStatus>& statuses, const std::string& policy) {
  if (std::find(kRoutePolicies.begin(), kRoutePolicies.end(), policy) == kRoutePolicies.end())
    throw ConfigError("branches='" + policy + "': use one of trained, all, none (trained: only trained branches, "
                      "all: every branch, none: always upsample for the trunk)");
  std::map<int, std::string> out;
  for (const BranchStatus& s : statuses) {
    const bool use = policy == "all" || (policy == "trained" && (s.trained.value_or(false) || s.source == "random"));
    out[s.resolution] = use ? "branch" : "upsample";
  }
  return out;
}

}  // namespace btnet_edge
