// btnet-edge-run: the C++ counterpart of `btnet-edge run`: recognize faces in images, folders or videos
// and write the same JSON ({"images": [{"path", "faces": [...]}], "errors": [{"path", "error"}]}, video
// frames carry "frame").
// Errors print one line and exit non-zero, as the Python CLI does.
#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <optional>
#include <set>
#include <sstream>
#include <type_traits>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>
#include <opencv2/videoio.hpp>

#include "btnet_edge/errors.hpp"
#include "btnet_edge/recognizer.hpp"

namespace fs = std::filesystem;
using btnet_edge::ConfigError;

namespace {

const char* kUsage =
    "usage: btnet-edge-run PACKAGE INPUT... --detector MODEL.onnx [options]\n"
    "  INPUT                 images, folders (their images and videos, sorted), video files or a camera index\n"
    "  --detector PATH       detector ONNX: RetinaFace (cpp/scripts/write_retinaface_onnx.py writes the\n"
    "                        bundled one), SCRFD or YuNet\n"
    "  --detector-kind K     retinaface, scrfd or yunet when the file name does not say\n"
    "  --det-threshold X     detection score threshold (default: the family's)\n"
    "  --det-size N          long side of the coarse pass for large faces (px, default 640)\n"
    "  --min-face PX         smallest face to look for (px, default 10); 0 skips the enlarged small-face pass\n"
    "  --det-upscale X       factor of the enlarged pass (default: from --min-face)\n"
    "  --det-tile N          tile side of the enlarged pass (px, default 1920; 0: no tiles)\n"
    "  --max-side N          no detection pass on an image longer than this (px, default 4800)\n"
    "  --branches B          trained (default: faces whose branch is untrained are upsampled for the trunk),\n"
    "                        all (every branch) or none (always upsample)\n"
    "  --gallery DB          gallery written by `btnet-edge enroll`, to identify against\n"
    "  --indicator I         max, avg or min (default: the package's)\n"
    "  --rounding R          floor, near or ceil (default: the package's)\n"
    "  --align A             landmarks (5-point alignment, default) or box (square box crop)\n"
    "  --device D            cpu (default), cuda or tensorrt (ONNX Runtime execution providers)\n"
    "  --threads N           intra-op threads (0: ONNX Runtime decides)\n"
    "  --json PATH           write the JSON here ('-' or absent: stdout)\n"
    "  --embeddings          add each face's raw embedding to the JSON\n"
    "  --max-frames N        frames per video (cameras default to 100)\n"
    "  --repeat N            run every frame N more times: ms_per_frame per image and a timing summary\n";

const std::set<std::string> kImageSuffixes = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"};
const std::set<std::string> kVideoSuffixes = {".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v"};

std::string lower_suffix(const fs::path& path) {
  std::string s = path.extension().string();
  std::transform(s.begin(), s.end(), s.begin(), ::tolower);
  return s;
}

// Folders become their image and video files (sorted); other entries stay as given (pipeline/sources.py).
std::vector<std::string> expand_inputs(const std::vector<std::string>& inputs) {
  std::vector<std::string> out;
  for (const std::string& item : inputs) {
    if (!fs::is_directory(item)) {
      out.push_back(item);
      continue;
    }
    std::vector<std::string> files;
    for (const auto& entry : fs::directory_iterator(item)) {
      const std::string suffix = lower_suffix(entry.path());
      if (kImageSuffixes.count(suffix) || kVideoSuffixes.count(suffix)) files.push_back((fs::path(item) / entry.path().filename()).lexically_normal().string());
    }
    if (files.empty()) throw btnet_edge::InputImageError("folder " + item + " holds no images or videos");
    std::sort(files.begin(), files.end());
    out.insert(out.end(), files.begin(), files.end());
  }
  return out;
}

struct Args {
  fs::path package, detector, gallery;
  std::vector<std::string> inputs;
  std::string detector_kind, json = "-";
  btnet_edge::DetectorOptions detector_options;
  btnet_edge::RecognizerOptions recognizer_options;
  bool embeddings = false;
  int max_frames = 0, repeat = 0;
};

// The whole of value as a T, or a ConfigError naming the flag.
template <typename T>
T to_number(const std::string& flag, const std::string& value) {
  std::istringstream in(value);
  T parsed{};
  if (in >> parsed && in.eof()) return parsed;
  throw ConfigError(flag + " takes " + (std::is_integral_v<T> ? "an integer" : "a number") + ", found '" + value + "'");
}

Args parse(int argc, char** argv) {
  Args args;
  std::vector<std::string> positional;
  for (int i = 1; i < argc; ++i) {
    const std::string flag = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) throw ConfigError(flag + " needs a value\n" + kUsage);
      return argv[++i];
    };
    if (flag == "-h" || flag == "--help") {
      std::cout << kUsage;
      std::exit(0);
    } else if (flag == "--detector") args.detector = value();
    else if (flag == "--detector-kind") args.detector_kind = value();
    else if (flag == "--det-threshold") args.detector_options.score_threshold = to_number<float>(flag, value());
    else if (flag == "--det-size") args.detector_options.plan.det_size = to_number<int>(flag, value());
    else if (flag == "--min-face") {
      const double px = to_number<double>(flag, value());
      if (px < 0) throw ConfigError("--min-face takes a size >= 0 (px; 0 skips the enlarged pass), found " + std::to_string(px));
      args.detector_options.plan.min_face_px = px > 0 ? std::optional<double>(px) : std::nullopt;
    } else if (flag == "--det-upscale") args.detector_options.plan.upscale = to_number<double>(flag, value());
    else if (flag == "--det-tile") {
      const int tile = to_number<int>(flag, value());
      if (tile < 0) throw ConfigError("--det-tile takes a tile side >= 0 (px; 0: no tiles), found " + std::to_string(tile));
      args.detector_options.plan.tile = tile > 0 ? std::optional<int>(tile) : std::nullopt;
    } else if (flag == "--max-side") args.detector_options.plan.max_side = to_number<int>(flag, value());
    else if (flag == "--branches") args.recognizer_options.branches = value();
    else if (flag == "--gallery") args.gallery = value();
    else if (flag == "--indicator") args.recognizer_options.indicator = value();
    else if (flag == "--rounding") args.recognizer_options.rounding = value();
    else if (flag == "--align") args.recognizer_options.align = value();
    else if (flag == "--device") args.detector_options.device = args.recognizer_options.session.device = value();
    else if (flag == "--threads") args.detector_options.threads = args.recognizer_options.session.threads = to_number<int>(flag, value());
    else if (flag == "--json") args.json = value();
    else if (flag == "--embeddings") args.embeddings = true;
    else if (flag == "--max-frames") args.max_frames = to_number<int>(flag, value());
    else if (flag == "--repeat") args.repeat = to_number<int>(flag, value());
    else if (flag.rfind("--", 0) == 0) throw ConfigError("unknown option " + flag + "\n" + kUsage);
    else positional.push_back(flag);
  }
  if (positional.size() < 2) throw ConfigError(std::string("need a package and at least one input\n") + kUsage);
  if (args.detector.empty())
    throw ConfigError("--detector is required: the C++ runtime has no bundled weights; write the default "
                      "RetinaFace with `python cpp/scripts/write_retinaface_onnx.py retinaface.onnx`");
  args.package = positional[0];
  args.inputs.assign(positional.begin() + 1, positional.end());
  return args;
}

void write_text(const std::string& target, const std::string& text) {
  if (target == "-") {
    std::cout << text << "\n";
    return;
  }
  const fs::path path(target), partial = path.string() + ".partial";
  if (path.has_parent_path()) fs::create_directories(path.parent_path());
  {
    std::ofstream out(partial);
    out << text << "\n";
    if (!out) throw btnet_edge::InputImageError("cannot write " + partial.string());
  }
  fs::rename(partial, path);  // never a half-written file under the final name
}

int run(int argc, char** argv) {
  using Clock = std::chrono::steady_clock;
  Args args = parse(argc, argv);
  const std::vector<std::string> inputs = expand_inputs(args.inputs);  // bad inputs fail before any model loads
  btnet_edge::Recognizer recognizer(args.package,
                                    btnet_edge::create_detector(args.detector, args.detector_kind, args.detector_options),
                                    args.recognizer_options);
  std::string untrained;
  for (const auto& [r, route] : recognizer.routes())
    if (route == "upsample") untrained += (untrained.empty() ? "" : ", ") + std::to_string(r);
  if (!untrained.empty() && args.recognizer_options.branches == "trained")
    std::cerr << "btnet-edge-run: warning: branches " << untrained << " px of " << recognizer.manifest().name
              << " are not trained (or not known to be): faces of those sizes are upsampled for the trunk. Train "
                 "them with btnet-edge train-branches, or pass --branches all to use them anyway\n";
  if (!args.gallery.empty())
    recognizer.set_gallery(std::make_shared<btnet_edge::Gallery>(
        args.gallery, btnet_edge::gallery_model_id(recognizer.manifest()), recognizer.manifest().embedding_size));
  nlohmann::json images = nlohmann::json::array();
  nlohmann::json errors = nlohmann::json::array();
  double timed_s = 0, stages[5] = {0, 0, 0, 0, 0};  // detect, align, branches, trunk, gallery seconds
  int timed_frames = 0, timed_faces = 0;
  auto process = [&](const std::string& source, const cv::Mat& image, int frame_index) {
    std::vector<btnet_edge::Face> faces = recognizer.get(image);  // also the warm-up of a timed frame
    nlohmann::json entry = {{"path", source}, {"faces", nlohmann::json::array()}};
    if (args.repeat > 0) {
      const btnet_edge::StageTimes before = recognizer.times;
      const auto start = Clock::now();
      for (int i = 0; i < args.repeat; ++i) recognizer.get(image);
      const double seconds = std::chrono::duration<double>(Clock::now() - start).count();
      const btnet_edge::StageTimes& after = recognizer.times;
      stages[0] += after.detect - before.detect, stages[1] += after.align - before.align;
      stages[2] += after.branches - before.branches, stages[3] += after.trunk - before.trunk;
      stages[4] += after.gallery - before.gallery;
      entry["ms_per_frame"] = 1e3 * seconds / args.repeat;
      timed_s += seconds;
      timed_frames += args.repeat;
      timed_faces += args.repeat * static_cast<int>(faces.size());
    }
    for (const btnet_edge::Face& face : faces) {
      nlohmann::json item = face.to_json();
      if (args.embeddings) item["embedding"] = face.embedding;
      entry["faces"].push_back(item);
    }
    if (frame_index >= 0) entry["frame"] = frame_index;
    images.push_back(entry);
  };
  for (const std::string& item : inputs) {
    const bool camera = !item.empty() && std::all_of(item.begin(), item.end(), ::isdigit) && !fs::exists(item);
    if (!camera && !kVideoSuffixes.count(lower_suffix(item))) {
      try {  // like `btnet-edge run`: an unreadable image is reported and the others are still processed
        process(item, btnet_edge::read_image(item), -1);
      } catch (const btnet_edge::InputImageError& exc) {
        std::cerr << "btnet-edge-run: skipped " << item << ": " << exc.what() << "\n";
        errors.push_back({{"path", item}, {"error", exc.what()}});
      }
      continue;
    }
    cv::VideoCapture capture = camera ? cv::VideoCapture(std::stoi(item)) : cv::VideoCapture(item);
    if (!capture.isOpened())
      throw btnet_edge::InputImageError("cannot open video or camera " + item + ": check the path or index and the codec");
    const int max_frames = args.max_frames ? args.max_frames : (camera ? 100 : 0);  // cameras default to 100
    cv::Mat frame;
    for (int index = 0; (max_frames == 0 || index < max_frames) && capture.read(frame); ++index)
      process(item, frame, index);
  }
  nlohmann::json document = {{"images", images}, {"errors", errors}};
  if (args.repeat > 0) {
    document["timing"] = {{"frames", timed_frames},
                          {"faces", timed_faces},
                          {"seconds", timed_s},
                          {"ms_per_frame", 1e3 * timed_s / std::max(timed_frames, 1)},
                          {"ms_per_face", timed_faces ? 1e3 * timed_s / timed_faces : 0.0}};
    const char* names[] = {"detect", "align", "branches", "trunk", "gallery"};
    for (int i = 0; i < 5; ++i) document["timing"]["stage_ms_per_frame"][names[i]] = 1e3 * stages[i] / std::max(timed_frames, 1);
    document["timing"]["graph_runs"] = recognizer.runs();  // since start, untimed runs included
    for (const auto& [name, seconds] : recognizer.detector().pass_seconds)  // since start, untimed runs included
      document["timing"]["detect_pass_s"][name] = seconds;
  }
  write_text(args.json, document.dump(2));
  if (!errors.empty())
    throw btnet_edge::InputImageError(std::to_string(errors.size()) +
                                      " input(s) could not be read (see the JSON's errors); the results of the others were written");
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (const btnet_edge::BtnetError& exc) {
    std::cerr << "btnet-edge-run: error: " << exc.what() << "\n";
    return 1;
  } catch (const std::exception& exc) {
    std::cerr << "btnet-edge-run: error: " << exc.what() << "\n";
    return 1;
  }
}
