#!/usr/bin/env bash
# Everything that needs an NVIDIA GPU, in one run (docs/tensorrt.md, "What ran where").
#   tools/gpu_checks.sh [OUT_DIR]      results (pytest log, bench JSON) go to OUT_DIR (default gpu-checks/)
# Needs the dev extra; TensorRT tests also need TensorRT (JetPack, NVIDIA's index) or tensorrt-rtx-cu12.
set -uo pipefail
cd "$(dirname "$0")/.."
out="${1:-gpu-checks}"
mkdir -p "$out"
nvidia-smi > "$out/nvidia-smi.txt" 2>&1 || echo "nvidia-smi not found" > "$out/nvidia-smi.txt"
# cuda_mem for real, torch CUDA FP16 vs ONNX Runtime FP32, TensorRT build/run/check (each skips with its reason)
python3 -m pytest -q -rs -m gpu tests/test_gpu_cuda.py tests/test_trt_gpu.py 2>&1 | tee "$out/pytest-gpu.txt"
status=${PIPESTATUS[0]}
# latency per resolution vs upsample-to-112 on PyTorch CUDA FP16 (random r50 weights time like trained ones)
if python3 -c "import torch, sys; sys.exit(not torch.cuda.is_available())"; then
    python3 -m btnet_edge export --arch r50 --out "$out/r50" --force --fused
    python3 -m btnet_edge bench "$out/r50" --backend torch --device cuda --fp16 --batch 1,16 --no-mixed --quiet \
        --json "$out/bench-torch-cuda-fp16.json" | tee "$out/bench-torch-cuda-fp16.txt"
fi
exit "$status"
