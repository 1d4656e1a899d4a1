"""Decoders, one file per detector family; :func:`btnet_edge.pipeline.detect.create_detector` picks one."""
