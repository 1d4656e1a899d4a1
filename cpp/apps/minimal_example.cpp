// The README's minimal C++ example, compiled with the project so it stays true.
#include <iostream>

#include <opencv2/imgcodecs.hpp>

#include "btnet_edge/recognizer.hpp"

int main(int argc, char** argv) {
  if (argc != 4) {
    std::cerr << "usage: btnet-edge-example PACKAGE DETECTOR.onnx FRAME.jpg\n";
    return 2;
  }
  try {
    btnet_edge::Recognizer rec(argv[1], btnet_edge::create_detector(argv[2], "", {}));  // ONNX Runtime on CPU
    for (const btnet_edge::Face& face : rec.get(cv::imread(argv[3])))  // OpenCV BGR uint8 in, Face objects out
      std::cout << face.to_json() << " embedding " << face.normed_embedding().size() << "-d\n";
  } catch (const btnet_edge::BtnetError& exc) {  // typed errors that say what to do
    std::cerr << "error: " << exc.what() << "\n";
    return 1;
  }
  return 0;
}
