// Whether each branch of a package was trained (btnet_edge/package/branch_status.py): read from the manifest's
// branch_training records, else inferred from its import report, else unknown. The Recognizer routes faces
// around untrained branches by default (upsampled for the trunk), as the Python runtime does.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

namespace btnet_edge {

inline const std::vector<std::string> kRoutePolicies = {"trained", "all", "none"};

struct BranchStatus {
  int resolution = 0;
  std::optional<bool> trained;  // none: the manifest does not say (treated as untrained)
  std::string source;           // checkpoint, train-branches, trunk-init, random or unknown
};

// Per branch resolution (in the order given), from the manifest JSON and its weights field.
std::vector<BranchStatus> branch_statuses(const nlohmann::json& manifest, const std::vector<int>& resolutions,
                                          const std::string& weights);

// Resolution -> "branch" or "upsample" under policy: trained (only trained branches; random-weight packages keep
// theirs), all or none. ConfigError for another policy.
std::map<int, std::string> routes(const std::vector<BranchStatus>& statuses, const std::string& policy);

}  // namespace btnet_edge
