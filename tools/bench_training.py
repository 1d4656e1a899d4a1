#!/usr/bin/env python3
"""Branch-training figures on this machine: RecordIO decoding, training faces/s, 1-vs-2 processes, resume, --bin rows.

Everything runs on fixture material (the shared fixtures folder): a RecordIO file made
from the faces of the unlabeled photos (each written ``--copies`` times, so the file is
larger than the page cache warm-up), the real MobileFaceNet weights as the trunk, and a
``.bin`` made from the people photos. Prints a table and writes JSON:

    python tools/bench_training.py --json runs/bench_training.json

The MS1MV3 recipe in docs/accuracy.md turns the measured faces/s into a time per epoch.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = Path(os.environ.get("BTNET_FIXTURES", ROOT.parent / "shared" / "fixtures"))
MS1MV3_FACES = 5_179_510  # the authors' config: config.num_image for ms1m-retinaface-t1


def _env() -> dict:
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""), OMP_NUM_THREADS="1")
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(key, None)
    return env


def _cli(args: list[str], processes: int = 1, wait: bool = True):
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(processes)] \
        if processes > 1 else [sys.executable]
    command = [*launcher, "-m", "btnet_edge", *args]
    if not wait:
        return subprocess.Popen(command, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    done = subprocess.run(command, env=_env(), capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"failed: {' '.join(command)}\n{done.stderr[-3000:]}")
    return done


def _state(folder: Path) -> dict:
    import torch

    from btnet_edge.training.state_file import load_state

    return load_state(folder / "last.npz", torch)


def _max_diff(a: dict, b: dict) -> float:
    return max(float((a["branches"][r][k].float() - b["branches"][r][k].float()).abs().max())
               for r in a["branches"] for k in a["branches"][r])


def make_dataset(work: Path, copies: int) -> tuple[Path, int]:
    from btnet_edge.training.data import load_faces
    from btnet_edge.training.recordio import write_face_dataset

    faces = load_faces([FIXTURES / "images" / "unlabeled"]).faces
    rec = work / "train.rec"
    write_face_dataset(rec, np.concatenate([faces] * copies))
    return rec, len(faces)


def bench_decoding(rec: Path, workers: int) -> dict:
    """Faces/s decoding every record (JPEG -> 112 BGR), and with the training pipeline's augmentation + degradation."""
    from concurrent.futures import ThreadPoolExecutor

    import cv2

    from btnet_edge.training.data import Augmentation, Degradation, GlobalBatches, RecordFaces

    cv2.setNumThreads(1)
    source = RecordFaces(rec)
    with ThreadPoolExecutor(workers) as pool:
        started = time.perf_counter()
        decoded = sum(f is not None for f in pool.map(source.get, range(len(source)), chunksize=32))
        decode_s = time.perf_counter() - started
    batches = GlobalBatches(source, np.arange(len(source)), 64, (28, 14, 7), Augmentation(), Degradation(),
                            workers=workers)
    steps = max(1, min(batches.steps_per_epoch, 8))
    started = time.perf_counter()
    for step in range(steps):
        batches.get(step)
    pipeline_s = time.perf_counter() - started
    batches.close()
    return {"workers": workers, "records": len(source), "decoded": decoded,
            "decode_faces_per_s": round(decoded / decode_s, 1),
            "pipeline_faces_per_s": round(steps * 64 / pipeline_s, 1)}


def make_package(work: Path, arch: str) -> Path:
    from btnet_edge.export.package_writer import ExportOptions, build_btnet, export_package

    out = work / f"pkg-{arch}"
    weights = FIXTURES / "models" / "mobilefacenet.pt" if arch == "mobilefacenet" else None
    net, w, report = build_btnet(arch, (28, 14, 7), weights, {}, seed=3)
    export_package(net, ExportOptions(out=out, fused=False, seed=3, progress=False), w, report)
    return out


def train_args(package: Path, rec: Path, out: Path, ckpt: Path, batch: int, steps: int, *extra: str) -> list[str]:
    return ["train-branches", str(package), "--rec", str(rec), "--out", str(out), "--checkpoints", str(ckpt),
            "--batch-size", str(batch), "--steps", str(steps), "--save-every", "2", "--workers", "1",
            "--device", "cpu", "--seed", "4", "--quiet", *extra]


def bench_training(package: Path, rec: Path, work: Path, batch: int, steps: int, threads: int) -> dict:
    """Training faces/s of one CPU process (the log's last windows: model start-up left out)."""
    ckpt = work / f"speed-{package.name}-{threads}.ckpt"
    _cli(train_args(package, rec, work / f"speed-{package.name}-{threads}", ckpt, batch, steps,
                    "--threads", str(threads), "--stop-after", str(steps - 1), "--val-share", "0"))
    timing = json.loads((ckpt / "training_log.json").read_text())["record"]["throughput"]
    windows = timing[1:] or timing  # the first window holds the first step's set-up
    return {"package": package.name, "batch": batch, "threads": threads, "steps": steps,
            "faces_per_s": round(float(np.mean([t["faces_per_s"] for t in windows])), 1),
            "data_wait_share": round(float(np.mean([t["data_wait_share"] for t in windows])), 3)}


def bench_equality(package: Path, rec: Path, work: Path) -> dict:
    sgd = ("--optimizer", "sgd", "--lr", "0.02", "--threads", "1")
    _cli(train_args(package, rec, work / "eq1", work / "eq1.ckpt", 8, 4, *sgd))
    _cli(train_args(package, rec, work / "eq2", work / "eq2.ckpt", 4, 4, *sgd), processes=2)
    a, b = _state(work / "eq1.ckpt"), _state(work / "eq2.ckpt")
    return {"steps": 4, "global_batch": 8, "one_process": "batch 8", "two_processes": "gloo, batch 4 each",
            "max_abs_weight_diff": _max_diff(a, b),
            "max_abs_loss_diff": max(abs(x[k] - y[k]) for x, y in zip(a["history"], b["history"]) for k in x)}


def bench_resume(package: Path, rec: Path, work: Path, steps: int = 14) -> dict:
    killed, straight = work / "killed.ckpt", work / "straight.ckpt"
    process = _cli(train_args(package, rec, work / "k", killed, 8, steps, "--threads", "1"), wait=False)
    while not (killed / "last.npz").exists() and process.poll() is None:
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait()
    at_kill = _state(killed)["step"]
    _cli(train_args(package, rec, work / "k", killed, 8, steps, "--threads", "1", "--resume"))
    _cli(train_args(package, rec, work / "s", straight, 8, steps, "--threads", "1"))
    a, b = _state(straight), _state(killed)
    return {"steps": steps, "killed_at_step": at_kill, "max_abs_weight_diff": _max_diff(a, b),
            "histories_equal": a["history"] == b["history"]}


def bench_bin(package: Path, work: Path) -> list[dict]:
    import importlib.util

    spec = importlib.util.spec_from_file_location("make_bin", ROOT / "tools" / "make_bin.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    path = work / "people.bin"
    module.make_bin(FIXTURES / "images" / "people", path)
    out = work / "bin.json"
    _cli(["eval-pairs", str(package), "--bin", str(path), "--method", "all", "--json", str(out), "--quiet"])
    return json.loads(out.read_text())["rows"]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path, help="write the results here")
    parser.add_argument("--work", type=Path, help="scratch folder (default: a new temp folder)")
    parser.add_argument("--copies", type=int, default=8, help="copies of the fixture faces in the .rec (default 8)")
    parser.add_argument("--steps", type=int, default=7, help="steps of the training-speed runs (default 7)")
    parser.add_argument("--batch", type=int, default=16, help="batch of the training-speed runs (default 16)")
    parser.add_argument("--skip", default="", help="comma list of parts to skip: decode,train,equality,resume,bin")
    args = parser.parse_args(argv)
    skip = set(filter(None, args.skip.split(",")))
    work = args.work or Path(tempfile.mkdtemp(prefix="bench_training_"))
    work.mkdir(parents=True, exist_ok=True)
    import torch

    result: dict = {"env": {"python": platform.python_version(), "torch": torch.__version__, "cpus": os.cpu_count(),
                            "usable_cpus": len(os.sched_getaffinity(0)), "platform": platform.platform(),
                            "cuda": torch.cuda.is_available()}}
    rec, unique = make_dataset(work, args.copies)
    result["dataset"] = {"records": unique * args.copies, "distinct_faces": unique, "bytes": rec.stat().st_size}
    if "decode" not in skip:
        result["decoding"] = [bench_decoding(rec, w) for w in (1, 2)]
    mfn = make_package(work, "mobilefacenet")
    tiny = make_package(work, "test_btnet")
    if "train" not in skip:
        # torch threads 1 and 2: on a CPU shared with other jobs, 2 OpenMP threads wait on each other's time slices
        result["training_cpu"] = [bench_training(package, rec, work, args.batch, args.steps, threads)
                                  for package in (mfn, tiny) for threads in (1, 2)]
    if "equality" not in skip:
        result["one_vs_two_processes"] = bench_equality(tiny, rec, work)
    if "resume" not in skip:
        result["resume_after_kill"] = bench_resume(tiny, rec, work)
    if "bin" not in skip:
        result["eval_pairs_bin"] = bench_bin(mfn, work)

    load = os.getloadavg()
    result["env"]["load_average_1_5_15"] = [round(v, 2) for v in load]
    print(f"load average {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} on {os.cpu_count()} CPUs")
    print(f"dataset: {result['dataset']['records']} records ({unique} distinct fixture faces), "
          f"{result['dataset']['bytes'] / 1e6:.1f} MB")
    for row in result.get("decoding", []):
        print(f"decode    {row['workers']} thread(s): {row['decode_faces_per_s']:8.1f} faces/s decode only, "
              f"{row['pipeline_faces_per_s']:8.1f} faces/s decode+augment+degrade (28/14/7)")
    for row in result.get("training_cpu", []):
        print(f"train CPU {row['package']:>20} batch {row['batch']} threads {row['threads']}: "
              f"{row['faces_per_s']:7.1f} faces/s (data wait {100 * row['data_wait_share']:.0f}%)")
    if "one_vs_two_processes" in result:
        eq = result["one_vs_two_processes"]
        print(f"1 vs 2 processes (global batch 8, {eq['steps']} SGD steps): max |weight diff| "
              f"{eq['max_abs_weight_diff']:.2e}, max |loss diff| {eq['max_abs_loss_diff']:.2e}")
    if "resume_after_kill" in result:
        rs = result["resume_after_kill"]
        print(f"SIGKILL at step {rs['killed_at_step']} of {rs['steps']}, --resume: max |weight diff| "
              f"{rs['max_abs_weight_diff']:.2e}, histories equal: {rs['histories_equal']}")
    if "eval_pairs_bin" in result:
        print(f"{'pair':>9} {'method':>9} {'acc':>7} {'tar@1e-2':>9}   (people.bin, MobileFaceNet, untrained branches)")
        for row in result["eval_pairs_bin"]:
            print(f"{row['res_a']:>4}&{row['res_b']:<4} {row['method']:>9} {row['accuracy']:7.4f} "
                  f"{row['tar_at_far']['1e-2']:9.4f}")
    if "training_cpu" in result:
        fps = max(row["faces_per_s"] for row in result["training_cpu"] if row["package"] == mfn.name)
        print(f"estimate: one MS1MV3 epoch ({MS1MV3_FACES} faces) at {fps} faces/s (MobileFaceNet, this CPU) = "
              f"{MS1MV3_FACES / fps / 3600:.0f} h")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
