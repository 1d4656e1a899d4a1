"""PyTorch -> ONNX model package (needs the export extra)."""
