"""TensorRT engines: build targets, the build plan, cache keys, FP16 graphs and trunk segments.

Everything here that does not touch a GPU is plain Python (plus onnx where a graph
is rewritten) and tested on CPU; TensorRT and CUDA are imported lazily, only in
``builder``, ``cuda_mem`` and :mod:`btnet_edge.backends.trt`.
"""
