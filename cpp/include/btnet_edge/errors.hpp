// Typed errors, the same kinds as btnet_edge/errors.py: every message says what was found,
// what was expected and what to do. Only the apps turn them into exit codes.
#pragma once

#include <stdexcept>
#include <string>

namespace btnet_edge {

class BtnetError : public std::runtime_error {
 public:
  explicit BtnetError(const std::string& message) : std::runtime_error(message) {}
  virtual const char* kind() const noexcept { return "BtnetError"; }
};

#define BTNET_ERROR(Name, Base)                                                  \
  class Name : public Base {                                                     \
   public:                                                                       \
    explicit Name(const std::string& message) : Base(message) {}                 \
    const char* kind() const noexcept override { return #Name; }                 \
  };

BTNET_ERROR(PackageError, BtnetError)    // a package is missing, corrupt, tampered with or of an unknown schema
BTNET_ERROR(ManifestError, PackageError) // manifest.json is malformed: the message names the field
BTNET_ERROR(InputImageError, BtnetError) // an image is unreadable, empty, or of the wrong type
BTNET_ERROR(BackendError, BtnetError)    // ONNX Runtime cannot load or run a graph
BTNET_ERROR(GalleryError, BtnetError)    // the gallery is unreadable, of another schema or another model
BTNET_ERROR(ConfigError, BtnetError)     // an option value is invalid

#undef BTNET_ERROR

}  // namespace btnet_edge
