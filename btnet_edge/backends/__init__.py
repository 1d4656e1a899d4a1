"""Backends run graphs (ONNX Runtime, TensorRT, PyTorch) behind one interface."""
