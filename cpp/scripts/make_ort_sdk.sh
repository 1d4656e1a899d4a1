#!/usr/bin/env bash
# Assemble an ONNX Runtime SDK folder laid out like the official release archive (include/, lib/)
# from two published packages, for CI and development on machines without the release archive:
#   - the library: the `onnxruntime` pip wheel's onnxruntime/capi/libonnxruntime.so.<version>
#     (linked, not copied: the wheel stays the one source of the binary);
#   - the C/C++ headers: the npm package com.github.asus4.onnxruntime (0.4.9 ships the
#     ONNX Runtime 1.29 headers; the C API is versioned, so they work with a newer library).
# Nothing third-party is written into the repository: the default output is build/onnxruntime-sdk.
# Usage: cpp/scripts/make_ort_sdk.sh [OUT_DIR]   then   cmake -DONNXRUNTIME_ROOT=OUT_DIR ...
# ORT_HEADERS_DIR=<folder with onnxruntime_cxx_api.h> takes the headers from there instead of npm: needed
# when the library is OLDER than the npm headers' C API (e.g. a JetPack onnxruntime-gpu wheel), since a
# library serves only API versions up to its own (take include/onnxruntime/core/session/ of its release tag).
set -euo pipefail
NPM_PACKAGE="com.github.asus4.onnxruntime@0.4.9"
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
OUT="${1:-$ROOT/build/onnxruntime-sdk}"
PYTHON="${PYTHON:-python3}"

capi="$("$PYTHON" -c 'import onnxruntime, os; print(os.path.join(os.path.dirname(onnxruntime.__file__), "capi"))')" || {
    echo "make_ort_sdk: cannot import onnxruntime with $PYTHON; pip install onnxruntime first" >&2; exit 1; }
library="$(ls "$capi"/libonnxruntime.so.* 2>/dev/null | head -n 1)"
[ -n "$library" ] || { echo "make_ort_sdk: no libonnxruntime.so.* in $capi (is this a Linux wheel?)" >&2; exit 1; }
if [ -z "${ORT_HEADERS_DIR:-}" ]; then
    command -v npm >/dev/null || { echo "make_ort_sdk: npm is needed for the headers (apt-get install npm)" >&2; exit 1; }
fi

if [ -f "$OUT/include/onnxruntime_cxx_api.h" ] && [ "$(readlink "$OUT/lib/$(basename "$library")" || true)" = "$library" ]; then
    echo "$OUT"; exit 0  # already assembled from this wheel
fi
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
if [ -n "${ORT_HEADERS_DIR:-}" ]; then
    headers="$ORT_HEADERS_DIR"
else
    (cd "$work" && npm pack --silent "$NPM_PACKAGE" >/dev/null && tar xzf ./*.tgz)
    headers="$(dirname "$(find "$work/package" -path '*simulator*/Headers/onnxruntime_cxx_api.h' | head -n 1)")"
fi
[ -f "$headers/onnxruntime_c_api.h" ] || { echo "make_ort_sdk: no onnxruntime_c_api.h in $headers" >&2; exit 1; }

staging="$OUT.partial.$$"
rm -rf "$staging"
mkdir -p "$staging/include" "$staging/lib"
cp "$headers"/*.h "$staging/include/"
name="$(basename "$library")"                      # libonnxruntime.so.1.32.0
ln -s "$library" "$staging/lib/$name"
ln -s "$name" "$staging/lib/libonnxruntime.so.1"   # the SONAME the library declares
ln -s libonnxruntime.so.1 "$staging/lib/libonnxruntime.so"
for provider in "$capi"/libonnxruntime_providers_*.so; do  # CUDA/TensorRT providers load from beside the library
    [ -e "$provider" ] && ln -s "$provider" "$staging/lib/$(basename "$provider")"
done
rm -rf "$OUT"
mkdir -p "$(dirname "$OUT")"
mv "$staging" "$OUT"
echo "$OUT"
