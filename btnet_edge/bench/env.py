"""The environment every benchmark report carries: a latency figure means nothing without its machine."""

from __future__ import annotations

import logging
import os
import platform
import shutil
import subprocess
import time
from pathlib import Path

import cv2
import numpy as np

from ..package.manifest import Manifest

log = logging.getLogger(__name__)

CPUINFO = Path("/proc/cpuinfo")
NVIDIA_SMI_TIMEOUT_S = 10


def cpu_info(cpuinfo: Path = CPUINFO) -> dict:
    """CPU model, logical CPUs, physical cores (distinct physical id / core id pairs) and usable CPUs."""
    model, cores = platform.processor() or platform.machine(), set()
    physical = core = None
    try:
        lines = cpuinfo.read_text().splitlines()
    except OSError:
        lines = []
    for line in [*lines, ""]:
        key, _, value = (part.strip() for part in line.partition(":"))
        if key == "model name":
            model = value
        elif key == "physical id":
            physical = value
        elif key == "core id":
            core = value
        elif not key:  # a blank line ends one logical CPU's block
            if core is not None:
                cores.add((physical, core))
            physical = core = None
    logical = os.cpu_count() or 1
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else logical
    return {"model": model, "logical_cpus": logical, "physical_cores": len(cores) or logical, "usable_cpus": usable}


def physical_cores() -> int:
    """Cores to give intra-op threads: physical cores, capped by the CPUs this process may use."""
    info = cpu_info()
    return max(1, min(info["physical_cores"], info["usable_cpus"]))


def gpu_info() -> list[dict]:
    """GPUs from nvidia-smi, or [] when there is none (or nvidia-smi is absent or fails)."""
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return []
    query = "name,driver_version,memory.total,compute_cap"
    try:
        result = subprocess.run([smi, f"--query-gpu={query}", "--format=csv,noheader"], capture_output=True,
                                text=True, timeout=NVIDIA_SMI_TIMEOUT_S, check=True)
    except (OSError, subprocess.SubprocessError) as exc:
        log.info("nvidia-smi failed (%s); reporting no GPU", exc)
        return []
    gpus = []
    for line in result.stdout.strip().splitlines():
        values = [v.strip() for v in line.split(",")]
        gpus.append(dict(zip(query.split(","), values)))
    return gpus


def backend_version(backend: str) -> str:
    """Version of the library behind ``backend`` (without importing anything that is not installed)."""
    from importlib import metadata

    dists = {"auto": ["onnxruntime", "onnxruntime-gpu"], "onnxruntime": ["onnxruntime", "onnxruntime-gpu"],
             "torch": ["torch"], "tensorrt": ["tensorrt", "tensorrt-cu12", "tensorrt-cu13"]}.get(backend, [backend])
    for dist in dists:
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    return "unknown"


def describe_environment(manifest: Manifest, backend: str, device: str, threads: int, settings: dict) -> dict:
    """The ``env`` object of a report: machine, backend, threads, package and the bench settings."""
    from .. import __version__

    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    return {
        "cpu": cpu_info(),
        "gpu": gpu_info(),
        "load_average_1m": round(load[0], 2) if load else None,  # other work on the machine skews latency
        "os": platform.platform(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "opencv": cv2.__version__,
        "btnet_edge": __version__,
        "backend": "onnxruntime" if backend == "auto" else backend,
        "backend_version": backend_version(backend),
        "device": device,
        "threads": threads,
        "package": {"name": manifest.name, "architecture": manifest.architecture, "weights": manifest.weights,
                    "resolutions": manifest.resolutions, "fused": [f.resolution for f in manifest.fused]},
        "bench": settings,
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
