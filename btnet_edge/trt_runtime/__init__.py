"""Running TensorRT engines: the engine backend, device memory, the engine folder, frame layouts, cache keys.

This is the run side of TensorRT; :mod:`btnet_edge.trt_build` (targets, plans, the builder)
imports it, never the reverse. TensorRT and CUDA are imported lazily, inside the calls that
need them (:func:`.compat.trt_module`, :func:`.device_memory.device_memory`).
"""
