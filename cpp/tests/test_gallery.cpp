// The gallery reader: max cosine per identity, per-resolution thresholds, and refusals that name the fix.
// The Python-written file itself is read in tests/test_cpp.py (same file format, across the two runtimes).
#include <sqlite3.h>
#include <unistd.h>

#include <filesystem>
#include <vector>

#include "btnet_edge/errors.hpp"
#include "btnet_edge/gallery.hpp"
#include "check.hpp"

using namespace btnet_edge;
namespace fs = std::filesystem;

namespace {

void exec(sqlite3* db, const std::string& sql) {
  char* error = nullptr;
  if (sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &error) != SQLITE_OK) {
    btnet_test::fail(__FILE__, __LINE__, error ? error : "sqlite error");
    sqlite3_free(error);
  }
}

void add_vector(sqlite3* db, int identity, const std::vector<float>& v, int resolution) {
  sqlite3_stmt* statement = nullptr;
  sqlite3_prepare_v2(db, "INSERT INTO embeddings (identity_id, vector, resolution) VALUES (?, ?, ?)", -1, &statement, nullptr);
  sqlite3_bind_int(statement, 1, identity);
  sqlite3_bind_blob(statement, 2, v.data(), static_cast<int>(v.size() * sizeof(float)), SQLITE_TRANSIENT);
  sqlite3_bind_int(statement, 3, resolution);
  CHECK(sqlite3_step(statement) == SQLITE_DONE);
  sqlite3_finalize(statement);
}

}  // namespace

int main() {
  const fs::path path = fs::temp_directory_path() / ("btnet_cpp_test_gallery_" + std::to_string(::getpid()) + ".db");
  fs::remove(path);
  sqlite3* db = nullptr;
  sqlite3_open(path.c_str(), &db);
  exec(db, "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT);"
           "CREATE TABLE identities (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE);"
           "CREATE TABLE embeddings (id INTEGER PRIMARY KEY, identity_id INTEGER NOT NULL, vector BLOB NOT NULL,"
           " resolution INTEGER NOT NULL, source TEXT);"
           "INSERT INTO meta VALUES ('format', 'btnet-edge-gallery'), ('schema_version', '1'),"
           " ('embedding_size', '3'), ('model_id', 'arch:trunk-sha256:0123456789abcdef'), ('threshold', '0.5'),"
           " ('threshold.14', '0.9');"
           "INSERT INTO identities (id, name) VALUES (1, 'ann'), (2, 'bob');");
  add_vector(db, 1, {1, 0, 0}, 112);
  add_vector(db, 1, {0, 1, 0}, 112);
  add_vector(db, 2, {0.6f, 0.8f, 0}, 112);
  sqlite3_close(db);

  const Gallery gallery(path, "arch:trunk-sha256:0123456789abcdef", 3);
  CHECK(gallery.size() == 2);
  CHECK_NEAR(gallery.threshold(112), 0.5f, 1e-6f);
  CHECK_NEAR(gallery.threshold(14), 0.9f, 1e-6f);
  auto match = gallery.identify({0, 2, 0}, 112);  // ann's second vector: cosine 1 (any probe norm)
  CHECK(match && match->name == "ann");
  CHECK(match && std::abs(match->score - 1.0f) < 1e-6f);
  match = gallery.identify({0.6f, 0.8f, 0.0f}, 112);  // bob exactly (ann's best is 0.8)
  CHECK(match && match->name == "bob");
  CHECK(!gallery.identify({0, 0, 1}, 112));          // orthogonal to all: unknown
  match = gallery.identify({0.0f, 0.6f, 0.8f}, 112);  // ann 0.6 (max of 0 and 0.6), bob 0.48
  CHECK(match && match->name == "ann" && std::abs(match->score - 0.6f) < 1e-6f);
  CHECK(!gallery.identify({0.0f, 0.6f, 0.8f}, 14));  // 0.6 < the 14 px threshold 0.9: unknown

  EXPECT_ERROR(GalleryError, Gallery(path, "other:trunk-sha256:ffff", 3), "was enrolled with model");
  EXPECT_ERROR(GalleryError, Gallery(path, "", 512), "gallery holds 3-d embeddings, the model gives 512-d");
  EXPECT_ERROR(GalleryError, Gallery(path.string() + ".absent"), "no gallery there");
  EXPECT_ERROR(GalleryError, gallery.identify({1, 0}, 112), "probe has 2 values");
  const fs::path not_db = path.string() + ".txt";
  { FILE* f = std::fopen(not_db.c_str(), "w"); std::fputs("hello, not sqlite", f); std::fclose(f); }
  EXPECT_ERROR(GalleryError, Gallery{not_db}, "is not a btnet-edge gallery");
  sqlite3_open(path.c_str(), &db);  // a tampered row: one component's exponent raised
  add_vector(db, 2, {0.6f, 0.8f * 1024.0f, 0}, 28);
  sqlite3_close(db);
  EXPECT_ERROR(GalleryError, Gallery(path, "", 3), "of 'bob' is not a finite unit vector");
  fs::remove(path);
  fs::remove(not_db);
  return TEST_MAIN_RETURN;
}
