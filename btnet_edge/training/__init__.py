"""Branch training by distillation from the frozen trunk (needs the ``train`` extra: torch, onnx).

Importing this package does not import torch; :func:`btnet_edge.training.distill.train_and_export` does.
"""
