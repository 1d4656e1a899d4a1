// The SQLite gallery the Python side writes (btnet_edge/pipeline/gallery.py), opened read-only:
// float32 little-endian blobs, meta keys format/schema_version/embedding_size/model_id/threshold[.r].
// An identity's score is the max cosine over its embeddings; below the probe's threshold means unknown.
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

struct sqlite3;

namespace btnet_edge {

struct Match {
  std::string name;
  float score = 0;  // cosine in [-1, 1]
  int64_t identity_id = 0;
};

class Gallery {
 public:
  // model_id: when both it and the file's are set they must be equal (embeddings of another model differ).
  explicit Gallery(const std::filesystem::path& path, const std::string& model_id = "", int embedding_size = 0);
  // Best identity for one embedding (any norm) above the threshold for probe_resolution, or none.
  std::optional<Match> identify(const std::vector<float>& embedding, int probe_resolution) const;
  size_t size() const { return names_.size(); }
  int embedding_size() const { return embedding_size_; }
  float threshold(int resolution) const;

 private:
  std::filesystem::path path_;
  int embedding_size_ = 0;
  float default_threshold_ = 0.3f;
  std::map<int, float> thresholds_;
  std::vector<float> matrix_;              // K x D unit rows, grouped by identity
  std::vector<size_t> starts_;             // first row of each identity
  std::vector<std::string> names_;
  std::vector<int64_t> ids_;
};

}  // namespace btnet_edge
