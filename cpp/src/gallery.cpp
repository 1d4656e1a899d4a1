#include "btnet_edge/gallery.hpp"

#include <sqlite3.h>

#include <algorithm>
#include <cmath>
#include <cstring>

#include "btnet_edge/errors.hpp"

namespace btnet_edge {
namespace {

constexpr const char* kFormatTag = "btnet-edge-gallery";
constexpr const char* kSchemaVersion = "1";
constexpr double kNormTolerance = 1e-4;  // gallery/records.py NORM_TOLERANCE

using Database = std::unique_ptr<sqlite3, decltype(&sqlite3_close)>;
using Statement = std::unique_ptr<sqlite3_stmt, decltype(&sqlite3_finalize)>;

Statement prepare(sqlite3* db, const std::string& sql, const std::filesystem::path& path) {
  sqlite3_stmt* raw = nullptr;
  if (sqlite3_prepare_v2(db, sql.c_str(), -1, &raw, nullptr) != SQLITE_OK) {
    const std::string why = sqlite3_errmsg(db);
    sqlite3_finalize(raw);
    throw GalleryError(path.string() + " is not a btnet-edge gallery: SQLite cannot read it (" + why +
                       "); pass the gallery written by `btnet-edge enroll`");
  }
  return Statement(raw, sqlite3_finalize);
}

std::string text(sqlite3_stmt* row, int column) {
  const unsigned char* value = sqlite3_column_text(row, column);
  return value ? reinterpret_cast<const char*>(value) : "";
}

}  // namespace

Gallery::Gallery(const std::filesystem::path& path, const std::string& model_id, int embedding_size) : path_(path) {
  if (!std::filesystem::is_regular_file(path))
    throw GalleryError(path.string() + ": no gallery there; check the path (enroll with `btnet-edge enroll`)");
  sqlite3* raw = nullptr;
  const int opened = sqlite3_open_v2(path.c_str(), &raw, SQLITE_OPEN_READONLY, nullptr);
  Database db(raw, sqlite3_close);
  if (opened != SQLITE_OK)
    throw GalleryError(path.string() + ": cannot open (" + sqlite3_errmsg(raw) + "); check the file is readable");
  sqlite3_busy_timeout(db.get(), 5000);
  std::map<std::string, std::string> meta;
  {
    Statement rows = prepare(db.get(), "SELECT key, value FROM meta", path);
    while (sqlite3_step(rows.get()) == SQLITE_ROW) meta[text(rows.get(), 0)] = text(rows.get(), 1);
  }
  if (meta["format"] != kFormatTag || !meta.count("schema_version"))
    throw GalleryError(path.string() + " is not a btnet-edge gallery: its meta table lacks format '" + kFormatTag + "'");
  if (meta["schema_version"] != kSchemaVersion)
    throw GalleryError(path.string() + ": gallery schema version " + meta["schema_version"] +
                       ", this btnet-edge reads version " + kSchemaVersion +
                       "; use a matching btnet-edge or re-enroll into a new path");
  embedding_size_ = std::stoi(meta["embedding_size"]);
  const std::string advice = "embeddings of different models cannot be compared: use another gallery or re-enroll";
  if (embedding_size && embedding_size != embedding_size_)
    throw GalleryError(path.string() + ": gallery holds " + std::to_string(embedding_size_) +
                       "-d embeddings, the model gives " + std::to_string(embedding_size) + "-d; " + advice);
  if (!model_id.empty() && meta.count("model_id") && meta["model_id"] != model_id)
    throw GalleryError(path.string() + ": gallery was enrolled with model '" + meta["model_id"] + "', not '" +
                       model_id + "'; " + advice +
                       (meta["model_id"].find(":trunk-sha256:") != std::string::npos
                            ? " (this gallery was enrolled by btnet-edge 0.1, whose model id covered only the trunk; "
                              "ids now cover the preprocessing and every graph, so re-enroll the people into a new "
                              "gallery with this version)"
                            : ""));
  for (const auto& [key, value] : meta) {
    if (key == "threshold") default_threshold_ = std::stof(value);
    if (key.rfind("threshold.", 0) == 0) thresholds_[std::stoi(key.substr(10))] = std::stof(value);
  }
  Statement rows = prepare(db.get(),
                           "SELECT e.identity_id, i.name, e.id, e.vector FROM embeddings e JOIN identities i "
                           "ON i.id = e.identity_id ORDER BY e.identity_id, e.id", path);
  const size_t bytes = static_cast<size_t>(embedding_size_) * sizeof(float);
  while (sqlite3_step(rows.get()) == SQLITE_ROW) {
    const int64_t identity = sqlite3_column_int64(rows.get(), 0);
    const std::string name = text(rows.get(), 1);
    if (static_cast<size_t>(sqlite3_column_bytes(rows.get(), 3)) != bytes)
      throw GalleryError(path.string() + ": embedding " + std::to_string(sqlite3_column_int64(rows.get(), 2)) + " of '" +
                         name + "' has the wrong size; the file is damaged: remove and re-enroll '" + name + "'");
    if (ids_.empty() || ids_.back() != identity) {
      starts_.push_back(matrix_.size() / embedding_size_);
      ids_.push_back(identity);
      names_.push_back(name);
    }
    const size_t offset = matrix_.size();
    matrix_.resize(offset + embedding_size_);
    std::memcpy(matrix_.data() + offset, sqlite3_column_blob(rows.get(), 3), bytes);  // little-endian hosts
    // As the Python gallery: a stored row must be finite and of unit norm (a flipped exponent bit would
    // otherwise outscore every real match). Refused here, naming the fix; Python quarantines and lists it.
    double norm = 0;
    for (int k = 0; k < embedding_size_; ++k) norm += static_cast<double>(matrix_[offset + k]) * matrix_[offset + k];
    norm = std::sqrt(norm);
    if (!(std::abs(norm - 1.0) <= kNormTolerance))
      throw GalleryError(path.string() + ": embedding " + std::to_string(sqlite3_column_int64(rows.get(), 2)) + " of '" +
                         name + "' is not a finite unit vector (norm " + std::to_string(norm) +
                         "); the gallery was edited or damaged: `btnet-edge gallery " + path.string() +
                         " --remove '" + name + "'`, then enroll again");
  }
}

float Gallery::threshold(int resolution) const {
  auto found = thresholds_.find(resolution);
  return found == thresholds_.end() ? default_threshold_ : found->second;
}

std::optional<Match> Gallery::identify(const std::vector<float>& embedding, int probe_resolution) const {
  if (embedding.size() != static_cast<size_t>(embedding_size_))
    throw GalleryError("probe has " + std::to_string(embedding.size()) + " values, the gallery " +
                       std::to_string(embedding_size_) + "; is it from the gallery's model?");
  double norm = 0;
  for (float v : embedding) norm += static_cast<double>(v) * v;
  norm = std::sqrt(norm);
  if (!(norm >= 1e-12)) throw GalleryError("probe is a zero vector or holds NaN; check the recognizer output");
  std::vector<float> probe(embedding.size());
  for (size_t i = 0; i < probe.size(); ++i) probe[i] = static_cast<float>(embedding[i] / norm);
  std::optional<Match> best;
  const size_t rows = matrix_.size() / std::max(embedding_size_, 1);
  for (size_t identity = 0; identity < starts_.size(); ++identity) {
    const size_t end = identity + 1 < starts_.size() ? starts_[identity + 1] : rows;
    float score = -1.0f;
    for (size_t row = starts_[identity]; row < end; ++row) {
      float dot = 0;
      for (int k = 0; k < embedding_size_; ++k) dot += probe[k] * matrix_[row * embedding_size_ + k];
      score = std::max(score, dot);  // rows are checked unit vectors: nothing to clip
    }
    if (!best || score > best->score) best = Match{names_[identity], score, ids_[identity]};
  }
  if (best && best->score < threshold(probe_resolution)) return std::nullopt;
  return best;
}

}  // namespace btnet_edge
