"""Model packages: manifest, verification and loading (no torch, no onnx)."""
