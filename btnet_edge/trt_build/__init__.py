"""Building TensorRT engines: targets, the build plan, the builder, FP16 graphs, trunk segments, input graphs, check.

Everything here that does not touch a GPU is plain Python (plus onnx where a graph is
rewritten) and tested on CPU. This is the build side: it imports the run side
(:mod:`btnet_edge.trt_runtime`: cache keys, the engine folder, the engine backend), never
the reverse. TensorRT is imported lazily, only in ``builder`` (and the run side).
"""
