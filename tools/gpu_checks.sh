#!/usr/bin/env bash
# Everything that needs an NVIDIA GPU, in one run (docs/tensorrt.md, "What ran where").
#   tools/gpu_checks.sh [OUT_DIR]      results (pytest log, bench JSON) go to OUT_DIR (default gpu-checks/)
# Needs the dev extra; TensorRT tests also need TensorRT (JetPack, NVIDIA's index) or tensorrt-rtx-cu12.
# Exit status: non-zero when any step failed (each failed step is named at the end).
set -uo pipefail
cd "$(dirname "$0")/.."
out="${1:-gpu-checks}"
mkdir -p "$out"
failed=()
step() {  # step NAME LOG COMMAND...: run, tee to LOG, remember a failure
    local name="$1" log="$2"
    shift 2
    "$@" 2>&1 | tee "$log"
    local status=${PIPESTATUS[0]}
    if [ "$status" -ne 0 ]; then
        echo "gpu_checks: step '$name' failed (exit $status)" >&2
        failed+=("$name")
    fi
}
nvidia-smi > "$out/nvidia-smi.txt" 2>&1 || echo "nvidia-smi not found" > "$out/nvidia-smi.txt"
# cuda_mem for real, torch CUDA FP16 vs ONNX Runtime FP32, TensorRT build/run/check (each skips with its reason)
step pytest-gpu "$out/pytest-gpu.txt" python3 -m pytest -q -rs -m gpu tests/test_gpu_cuda.py tests/test_trt_gpu.py
# latency per resolution vs upsample-to-112 on PyTorch CUDA FP16 (random r50 weights time like trained ones)
if python3 -c "import torch, sys; sys.exit(not torch.cuda.is_available())"; then
    step export "$out/export.txt" python3 -m btnet_edge export --arch r50 --out "$out/r50" --force --fused
    if [ -d "$out/r50" ]; then
        step bench-torch-cuda-fp16 "$out/bench-torch-cuda-fp16.txt" python3 -m btnet_edge bench "$out/r50" \
            --backend torch --device cuda --fp16 --batch 1,16 --no-mixed --quiet --json "$out/bench-torch-cuda-fp16.json"
    else
        echo "gpu_checks: no package from the export step; bench skipped" >&2
        failed+=("bench-torch-cuda-fp16")
    fi
fi
if [ "${#failed[@]}" -ne 0 ]; then
    echo "gpu_checks: FAILED steps: ${failed[*]}" >&2
    exit 1
fi
echo "gpu_checks: every step passed"
