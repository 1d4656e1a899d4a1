"""Branch distillation from the frozen trunk (BTNet, arXiv 2310.09563, Sec. 3.2).

For each resolution r the branch reads the face degraded to r px and must reproduce
(1) the trunk's feature map at the implant point on the 112 face and (2) the trunk's
embedding, through the shared trunk tail: loss = w_f * MSE(features) + w_e * MSE(embeddings),
weights 1 and 1 as the authors. The trunk is frozen entirely: ``requires_grad`` off and
eval mode, so its BN statistics do not move and it stays the one trunk every resolution
shares (the authors' checkpoints let trunk BN drift; DESIGN.md). Only a branch's own
layers (stem .. implant block) train, with their BN in train mode. The margin loss needs
labels and a classifier head that packages do not carry: it is left out.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from .._deps import require
from ..errors import CheckpointError, ConfigError
from .checkpoints import CHECKPOINT_NAME, load_checkpoint, save_checkpoint
from .data import Augmentation, Batch, Degradation, FaceSet, FaceSource, GlobalBatches, load_held_out, network_inputs
from .distributed import World, barrier, init_world, mean_over_ranks, restore_batch_norm, use_global_batch_norm

log = logging.getLogger(__name__)

DEFAULT_EPOCHS = 100
WARMUP_SHARE = 0.05
CLIP_NORM = 5.0  # per branch, as the authors clip
CALIBRATION_FACES = 64


@dataclass
class TrainOptions:
    """What ``train-branches`` decides; ``steps`` wins over ``epochs`` when both are given."""

    resolutions: Sequence[int] | None = None  # None: every branch of the package
    epochs: int | None = None
    steps: int | None = None
    batch_size: int = 32  # per process: the global batch is WORLD_SIZE x batch_size
    lr: float = 3e-3
    optimizer: str = "adamw"
    weight_decay: float = 5e-4
    feature_weight: float = 1.0
    embedding_weight: float = 1.0
    init: str = "trunk"  # "trunk": branches start from the trunk's weights; "package": from the package's branches
    device: str = "auto"
    amp: bool = True
    threads: int = 0
    seed: int = 0
    val_share: float = 0.1  # faces held out to measure distillation on faces not trained on
    checkpoints: Path | None = None
    save_every: int = 50
    resume: bool = False
    progress: bool = True
    augmentation: Augmentation | None = field(default_factory=Augmentation)
    degradation: Degradation = field(default_factory=Degradation)
    workers: int = 2  # decoding / augmentation threads per process
    max_held_out: int = 512  # at most this many faces held out (large datasets: 10 % would be too many)
    stop_after: int | None = None  # stop after this many steps of this session, checkpoint kept (time-sliced jobs)
    # Re-estimate the branches' BN statistics on the training faces before the first step, keeping
    # the eval-mode function: for packages whose BNs were folded in their source ONNX (identity BN,
    # whose train-mode batch statistics would otherwise differ wildly). None: on for those packages.
    recalibrate_bn: bool | None = None


def _device(torch, name: str) -> str:
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError("--device cuda asked for, but PyTorch sees no CUDA device; use --device cpu")
    return name


class BranchDistiller:
    """Owns the optimizer and the frozen-trunk set-up of one BTNet; ``step(faces)`` trains once."""

    def __init__(self, net, spec, options: TrainOptions, world: World | None = None) -> None:
        torch = require("torch", extra="train")
        self.torch, self.net, self.spec, self.options = torch, net, spec, options
        self.world = world or World()
        wanted = list(options.resolutions or net.resolutions)
        bad = [r for r in wanted if r not in net.resolutions]
        if bad:
            raise ConfigError(f"the package has no branch for {bad} px; it has {net.resolutions}")
        self.resolutions = sorted(wanted, reverse=True)
        self.device = _device(torch, options.device)
        self.amp = options.amp and self.device.startswith("cuda")
        if options.init == "trunk":
            net.init_branches_from_trunk(self.resolutions)
        elif options.init != "package":
            raise ConfigError(f"init should be 'trunk' or 'package', found {options.init!r}")
        net.to(self.device)
        self.freeze_trunk()
        self.params: dict[int, list] = {}
        for r in self.resolutions:
            own = set(net.branch_keys(r))
            named = list(net.branch(r).named_parameters())
            for name, p in named:
                p.requires_grad_(name in own)
            self.params[r] = [p for name, p in named if name in own]
        groups = [p for r in self.resolutions for p in self.params[r]]
        if options.optimizer == "adamw":
            self.optimizer = torch.optim.AdamW(groups, lr=options.lr, weight_decay=options.weight_decay)
        elif options.optimizer == "sgd":
            self.optimizer = torch.optim.SGD(groups, lr=options.lr, momentum=0.9, weight_decay=options.weight_decay)
        else:
            raise ConfigError(f"optimizer should be adamw or sgd, found {options.optimizer!r}")
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp)
        # global-batch BN statistics: on several processes (so N ranks compute what one does) and on the CPU
        # (so one CPU process computes exactly what two do); one CUDA process keeps the native BatchNorm
        self.global_bn = use_global_batch_norm(torch, self.branch_batch_norms()) \
            if self.world.distributed or self.device == "cpu" else []
        self.module = _DistillModule(self)
        self.ddp = None
        if self.world.distributed:
            from torch.nn.parallel import DistributedDataParallel

            devices = [self.device] if self.device.startswith("cuda") else None
            self.ddp = DistributedDataParallel(self.module, device_ids=devices, broadcast_buffers=False)

    def branch_batch_norms(self) -> list:
        """The BatchNorm layers of the branches' own parts (the ones that train)."""
        out = []
        for r in self.resolutions:
            own = tuple(k.rsplit(".", 1)[0] + "." for k in self.net.branch_keys(r))
            out += [m for name, m in self.net.branch(r).named_modules()
                    if isinstance(m, self.torch.nn.modules.batchnorm._BatchNorm) and name + "." in own]
        return out

    def release(self) -> None:
        """Back to plain BatchNorm2d modules (export, evaluation after training)."""
        restore_batch_norm(self.torch, self.global_bn)
        self.global_bn = []
    def freeze_trunk(self) -> None:
        """requires_grad off and eval mode: weights and BN statistics of the trunk cannot change."""
        self.net.trunk.eval()
        for p in self.net.trunk.parameters():
            p.requires_grad_(False)

    def _tensors(self, faces_112: np.ndarray | Batch) -> dict[int, object]:
        if isinstance(faces_112, Batch):
            arrays = network_inputs(faces_112.faces, self.resolutions, self.spec, faces_112.small)
        else:
            arrays = network_inputs(faces_112, self.resolutions, self.spec)
        return {r: self.torch.from_numpy(a).to(self.device, non_blocking=True) for r, a in arrays.items()}

    def _teacher(self, x112):
        """Trunk features at every implant point and the embedding, without gradients."""
        trunk, targets, start = self.net.trunk, {}, 0
        x = x112
        with self.torch.no_grad():
            for r in self.resolutions:  # largest first: the order the trunk meets the implants
                stop = self.net.implant_index(r) + 1
                x = trunk.run(x, start, stop)
                targets[r] = x
                start = stop
            embedding = trunk.run(x, start)
        return targets, embedding

    def losses(self, faces_112: np.ndarray | Batch) -> dict[int, dict[str, object]]:
        """{r: {"feature", "embedding", "cosine"}} for a batch of aligned 112 px faces (cosine: a monitor only).

        A plain array: the r px views by area (evaluation); a :class:`Batch`: its own views (training).
        """
        return self.losses_of(self._tensors(faces_112))

    def losses_of(self, inputs: dict) -> dict[int, dict[str, object]]:
        functional = self.torch.nn.functional
        with self.torch.autocast("cuda", dtype=self.torch.float16, enabled=self.amp):
            targets, embedding = self._teacher(inputs[112])
            out = {}
            for r in self.resolutions:
                feature = self.net.run_branch(r, inputs[r])
                student = self.net.run_trunk_from(r, feature)
                out[r] = {"feature": functional.mse_loss(feature.float(), targets[r].float()),
                          "embedding": functional.mse_loss(student.float(), embedding.float()),
                          "cosine": functional.cosine_similarity(student.float().detach(), embedding.float()).mean()}
        return out

    def evaluate(self, faces_112: np.ndarray, batch_size: int = 64) -> dict[str, float]:
        """Mean losses and cosine with the branches in eval mode (as exported), no update."""
        self.set_branch_mode(False)
        sums: dict[str, float] = {}
        with self.torch.no_grad():
            for start in range(0, len(faces_112), batch_size):
                chunk = faces_112[start:start + batch_size]
                for key, value in _floats(self.losses(chunk)).items():
                    sums[key] = sums.get(key, 0.0) + value * len(chunk)
        return {k: v / max(1, len(faces_112)) for k, v in sums.items()}

    def recalibrate_batchnorm(self, faces_112: np.ndarray) -> int:
        """Running statistics of each trainable branch BN := those of its input on ``faces_112``; scale and
        shift adjusted so that eval mode computes the same function. Returns the number of BNs changed."""
        torch = self.torch
        inputs = self._tensors(faces_112)
        changed = 0
        for r in self.resolutions:
            branch, own = self.net.branch(r), tuple(k.rsplit(".", 1)[0] + "." for k in self.net.branch_keys(r))
            layers = [m for name, m in branch.named_modules()
                      if isinstance(m, torch.nn.modules.batchnorm._BatchNorm) and name + "." in own]
            seen: dict = {}
            hooks = [m.register_forward_pre_hook(lambda m, args, seen=seen: seen.__setitem__(
                m, (args[0].float().mean(dim=(0, 2, 3)), args[0].float().var(dim=(0, 2, 3), unbiased=False))))
                for m in layers]
            branch.eval()
            try:
                with torch.no_grad():
                    self.net.run_branch(r, inputs[r])
            finally:
                for hook in hooks:
                    hook.remove()
            with torch.no_grad():
                for m, (mean, var) in seen.items():
                    old_std, new_std = torch.sqrt(m.running_var + m.eps), torch.sqrt(var + m.eps)
                    m.bias.add_(m.weight * (mean - m.running_mean) / old_std)
                    m.weight.mul_(new_std / old_std)
                    m.running_mean.copy_(mean)
                    m.running_var.copy_(var)
                    changed += 1
        return changed

    def set_branch_mode(self, training: bool) -> None:
        for r in self.resolutions:
            self.net.branch(r).train(training)
        self.freeze_trunk()

    def step(self, faces_112: np.ndarray | Batch, lr: float) -> dict[str, float]:
        """One optimizer step on this process's share of a batch; returns the losses before the update
        (the mean over the processes: every rank logs the global batch's values)."""
        self.set_branch_mode(True)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        stacked = (self.ddp or self.module)(self._tensors(faces_112))
        keys = [(r, kind) for r in self.resolutions for kind in _KINDS]
        values = {r: {kind: stacked[keys.index((r, kind))] for kind in _KINDS} for r in self.resolutions}
        total = sum(self.options.feature_weight * v["feature"] + self.options.embedding_weight * v["embedding"]
                    for v in values.values())
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(total).backward()
        self.scaler.unscale_(self.optimizer)
        for r in self.resolutions:
            self.torch.nn.utils.clip_grad_norm_(self.params[r], CLIP_NORM)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        logged = mean_over_ranks(self.torch, self.world, stacked.detach().float()).cpu().tolist()
        return {f"{kind}_{r}": float(v) for (r, kind), v in zip(keys, logged)}

    def branch_states(self) -> dict[str, dict]:
        """The trained part of each branch (its own keys), on the CPU."""
        out = {}
        for r in self.resolutions:
            state = self.net.branch(r).state_dict()
            out[str(r)] = {k: state[k].detach().cpu().clone() for k in self.net.branch_keys(r)}
        return out

    def load_branch_states(self, states: dict[str, dict]) -> None:
        for r in self.resolutions:
            if str(r) not in states:
                raise CheckpointError(f"checkpoint has no {r} px branch (it has {sorted(states)})")
            state = self.net.branch(r).state_dict()
            state.update(states[str(r)])
            self.net.branch(r).load_state_dict(state, strict=True)


_KINDS = ("feature", "embedding", "cosine")


def _floats(values: dict[int, dict[str, object]]) -> dict[str, float]:
    return {f"{kind}_{r}": float(v[kind].detach()) for r, v in values.items() for kind in _KINDS}


def _distill_module(torch):
    class DistillModule(torch.nn.Module):
        """The distillation losses as one module's forward, so that DDP can wrap it (its gradients: branches only)."""

        def __init__(self, distiller: BranchDistiller) -> None:
            super().__init__()
            self.net = distiller.net
            self._distiller = [distiller]  # a list: not registered as a submodule

        def forward(self, inputs: dict):
            distiller = self._distiller[0]
            values = distiller.losses_of(inputs)
            return torch.stack([values[r][kind].float() for r in distiller.resolutions for kind in _KINDS])

    return DistillModule


def _DistillModule(distiller: BranchDistiller):
    return _distill_module(distiller.torch)(distiller)


def learning_rate(step: int, total: int, peak: float) -> float:
    """Linear warm-up over the first 5 % of the steps, then cosine decay to 1 % of the peak."""
    warmup = max(1, int(total * WARMUP_SHARE))
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return peak * (0.01 + 0.99 * 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0))))


def split_indices(count: int, share: float, seed: int, max_held_out: int = 512) -> tuple[np.ndarray, np.ndarray]:
    """(train, held out) indices: a seeded share of the faces (at most ``max_held_out``; none below 10 faces)."""
    if not 0.0 <= share < 1.0:
        raise ConfigError(f"--val-share should be in [0, 1), found {share}")
    held = min(int(round(count * share)), max_held_out) if count >= 10 else 0
    order = np.random.default_rng(seed + 1).permutation(count)
    return np.sort(order[held:]), np.sort(order[:held])


def total_steps(options: TrainOptions, steps_per_epoch: int) -> int:
    if options.steps is not None:
        if options.steps < 1:
            raise ConfigError(f"--steps should be at least 1, found {options.steps}")
        return options.steps
    epochs = DEFAULT_EPOCHS if options.epochs is None else options.epochs
    if epochs < 1:
        raise ConfigError(f"--epochs should be at least 1, found {epochs}")
    return epochs * max(1, steps_per_epoch)


def train(net, source: FaceSource | FaceSet, spec, options: TrainOptions, meta: dict,
          world: World | None = None) -> dict:
    """Distill the branches of ``net`` on the faces of ``source``; checkpoints as it goes (rank 0).

    Returns the run's record. With several processes (torchrun) every rank calls this; rank 0
    alone writes the checkpoint, the training log and its plot.
    """
    torch = require("torch", extra="train")
    from tqdm.auto import tqdm

    from .data import ArrayFaces

    if isinstance(source, FaceSet):
        source = ArrayFaces(source)
    if options.threads:
        torch.set_num_threads(options.threads)
    if world is None:
        world, device = init_world(torch, _device(torch, options.device))
        options.device = device
    torch.manual_seed(options.seed)
    distiller = BranchDistiller(net, spec, options, world)
    train_idx, held_idx = split_indices(len(source), options.val_share, options.seed, options.max_held_out)
    held_out = load_held_out(source, held_idx)
    batches = GlobalBatches(source, train_idx, options.batch_size, distiller.resolutions, options.augmentation,
                            options.degradation, options.seed, world.rank, world.size, options.workers)
    total = total_steps(options, batches.steps_per_epoch)
    meta = {**meta, "resolutions": distiller.resolutions}
    checkpoint = Path(options.checkpoints) / CHECKPOINT_NAME if options.checkpoints else None
    step, resumed_from = 0, None
    history: list[dict] = []
    curve: list[dict] = []
    timing: list[dict] = []
    sampler_state = {"seed": options.seed, "global_batch": batches.global_batch, "train_faces": len(train_idx)}
    if options.resume:
        if checkpoint is None or not checkpoint.is_file():
            raise CheckpointError(f"--resume: no checkpoint at {checkpoint}; run without --resume to start")
        step, history, saved = load_checkpoint(checkpoint, distiller, sampler_state, meta)
        resumed_from, meta["validation_before"] = step, saved.get("validation_before", {})
        curve, timing = list(saved.get("curve", [])), list(saved.get("timing", []))
        log.info("resumed from %s at step %d of %d", checkpoint, step, total)
    else:
        if options.recalibrate_bn:
            count = distiller.recalibrate_batchnorm(_first_faces(source, train_idx))
            log.info("re-estimated the statistics of %d branch BatchNorms on %d faces (eval function unchanged)",
                     count, min(len(train_idx), CALIBRATION_FACES))
        meta["validation_before"] = distiller.evaluate(held_out) if len(held_out) else {}
    before = meta["validation_before"]
    started = time.perf_counter()
    session_steps, window_start, window_steps, waited = 0, time.perf_counter(), 0, 0.0
    stopped = False
    bar = tqdm(total=total, initial=step, desc="distill", unit="step", disable=not options.progress or not world.main)
    try:
        while step < total:
            tick = time.perf_counter()
            batch = batches.get(step)
            waited += time.perf_counter() - tick
            values = distiller.step(batch, learning_rate(step, total, options.lr))
            history.append(values)
            step += 1
            session_steps += 1
            window_steps += 1
            bar.update()
            bar.set_postfix({k.replace("feature_", "f").replace("embedding_", "e"): f"{v:.4f}"
                             for k, v in values.items() if not k.startswith("cosine")})
            stopped = options.stop_after is not None and session_steps >= options.stop_after and step < total
            if step % options.save_every == 0 or step == total or stopped:
                seconds = time.perf_counter() - window_start
                timing.append({"step": step, "faces_per_s": round(window_steps * batches.global_batch
                                                                  / max(seconds, 1e-9), 2),
                               "data_wait_share": round(waited / max(seconds, 1e-9), 4), "processes": world.size,
                               "bad_records": len(batches.bad_records)})
                log.info("step %d/%d %.1f faces/s (data wait %.0f%%) %s", step, total, timing[-1]["faces_per_s"],
                         100 * timing[-1]["data_wait_share"],
                         " ".join(f"{k}={v:.4f}" for k, v in values.items() if not k.startswith("cosine")))
                if len(held_out):
                    curve.append({"step": step, **_round(distiller.evaluate(held_out))})
                if checkpoint is not None and world.main:
                    save_checkpoint(checkpoint, distiller, sampler_state, step, total, history,
                                    {**meta, "curve": curve, "timing": timing})
                barrier(world)
                window_start, window_steps, waited = time.perf_counter(), 0, 0.0  # training time only
            if stopped:
                log.info("stopped after %d steps of this session at step %d of %d; --resume continues",
                         session_steps, step, total)
                break
    finally:
        bar.close()
        batches.close()
        distiller.release()
    distiller.set_branch_mode(False)
    after = distiller.evaluate(held_out) if len(held_out) and not stopped else {}
    record = {
        "method": "distillation from the frozen trunk: MSE at the implant point + MSE of embeddings",
        "loss_weights": {"feature": options.feature_weight, "embedding": options.embedding_weight},
        "margin_loss": "not used (needs labels and the trunk's classifier)",
        **{k: v for k, v in meta.items() if k not in ("validation_before", "curve", "timing")},
        "init": options.init, "faces": len(train_idx), "data": getattr(source, "description", None),
        "steps": total, "completed_steps": step, "stopped": stopped,
        "epochs": round(total / max(1, batches.steps_per_epoch), 2), "batch_size": batches.batch_size,
        "processes": world.size, "global_batch": batches.global_batch, "backend": world.backend,
        "bad_records": len(batches.bad_records),
        "optimizer": options.optimizer, "lr": options.lr, "lr_schedule": "5% linear warm-up, cosine to 1%",
        "weight_decay": options.weight_decay, "device": distiller.device, "amp": distiller.amp,
        "seed": options.seed, "resumed_from_step": resumed_from, "recalibrated_bn": bool(options.recalibrate_bn),
        "augmentation": asdict(options.augmentation) if options.augmentation else None,
        "degradation": asdict(options.degradation),
        "validation": {"faces": len(held_out), "before": _round(before), "after": _round(after), "curve": curve},
        "throughput": timing,
        "seconds_this_session": round(time.perf_counter() - started, 1), "torch_version": torch.__version__,
    }
    if world.main and options.checkpoints:
        write_training_log(Path(options.checkpoints), record, history)
    return record


def _first_faces(source: FaceSource, indices: np.ndarray) -> np.ndarray:
    faces = [f for f in (source.get(int(i)) for i in indices[:CALIBRATION_FACES]) if f is not None]
    return np.stack(faces)


def write_training_log(folder: Path, record: dict, history: list[dict]) -> None:
    """training_log.json (the record and every step's losses) and training.png (losses, faces/s) in ``folder``."""
    import json

    from ..safe_io import atomic_write_text

    atomic_write_text(folder / "training_log.json", json.dumps({"record": record, "history": history}, indent=1),
                      "training log")
    try:
        from ..evaluation.plots import plot_training

        plot_training(history, record.get("throughput", []), folder / "training.png",
                      title=f"train-branches: {record.get('processes', 1)} process(es), global batch "
                            f"{record.get('global_batch')}")
    except Exception as exc:  # matplotlib missing or a display problem: the JSON holds the same numbers
        log.info("no training plot (%s); the numbers are in %s", exc, folder / "training_log.json")


def _round(values: dict[str, float]) -> dict[str, float]:
    return {k: round(v, 6) for k, v in values.items()}


def open_source(image_dirs: Sequence[str | Path] = (), rec: str | Path | None = None,
                crops: Sequence[str | Path] = (), min_face_px: float = 48.0, progress: bool = False) -> FaceSource:
    """One face source from the CLI's choice: --rec (RecordIO), --crops (aligned crops) or --images (photos)."""
    from .data import ArrayFaces, CropFolderFaces, RecordFaces, load_faces

    given = [name for name, value in (("--rec", rec), ("--crops", crops), ("--images", image_dirs)) if value]
    if len(given) != 1:
        raise ConfigError("give one face source: --rec train.rec (insightface RecordIO), --crops DIR (aligned crops) "
                          f"or --images DIR (photos); found {', '.join(given) or 'none'}")
    if rec:
        return RecordFaces(rec)
    if crops:
        return CropFolderFaces(crops)
    faces = load_faces(image_dirs, min_face_px=min_face_px, progress=progress)
    source = ArrayFaces(faces)
    source.description = f"{len(faces)} faces detected in {len(set(faces.sources))} photos"
    return source


def train_and_export(package: str | Path, image_dirs: Sequence[str | Path], out: str | Path, options: TrainOptions,
                     min_face_px: float = 48.0, name: str | None = None, fused: bool | None = None,
                     force: bool = False, rec: str | Path | None = None, crops: Sequence[str | Path] = ()) -> dict:
    """Package -> trained branches -> new package (same trunk, preprocessing and dispatch; run in the manifest).

    Under torchrun every process trains its share; rank 0 writes checkpoints and the package.
    """
    from ..export.package_weights import btnet_from_package
    from ..export.package_writer import ExportOptions, export_package
    from ..package.branch_status import branch_statuses
    from ..package.loader import load_package
    from ..package.manifest import MANIFEST_NAME
    from ..safe_io import check_replaceable_folder
    from .distributed import close_world

    torch = require("torch", extra="train")
    out = Path(out)
    # before the long part, not after it; never over the source package or the data
    check_replaceable_folder(out, force, MANIFEST_NAME, "--out", [package, *image_dirs, *crops,
                                                                  *([Path(rec).parent] if rec else [])])
    if options.resume and not (options.checkpoints and (Path(options.checkpoints) / CHECKPOINT_NAME).is_file()):
        raise CheckpointError(f"--resume: no checkpoint at {Path(options.checkpoints or '.') / CHECKPOINT_NAME}; "
                              "run without --resume to start")
    source = load_package(package)
    manifest = source.manifest
    world, options.device = init_world(torch, _device(torch, options.device))
    try:
        net = btnet_from_package(source)
        if options.recalibrate_bn is None:  # BNs folded in the source ONNX came back as identity BNs
            trunk_report = (manifest.extra.get("import_report") or {}).get("trunk", {})
            options.recalibrate_bn = trunk_report.get("format") == "onnx"
        faces = open_source(image_dirs, rec, crops, min_face_px, progress=options.progress and world.main)
        meta = {"source_package": manifest.name, "source_folder": str(Path(package)),
                "trunk_sha256": manifest.files.get(manifest.trunk.file),
                "image_folders": [str(p) for p in image_dirs], "crop_folders": [str(p) for p in crops],
                "recordio": str(rec) if rec else None, "min_face_px": min_face_px}
        record = train(net, faces, manifest.preprocess, options, meta, world)
        if hasattr(faces, "close"):
            faces.close()
        summary = {"package": None, "faces": record["faces"], "steps": record["steps"],
                   "completed_steps": record["completed_steps"], "processes": world.size,
                   "global_batch": record["global_batch"], "throughput": record["throughput"][-1:],
                   "bad_records": record["bad_records"], "validation": record["validation"],
                   "checkpoints": str(options.checkpoints)}
        if record["stopped"]:
            log.info("stopped before the last step: no package written; run again with --resume")
            return summary
        if world.main:
            net.to("cpu").eval()
            pre = manifest.preprocess
            export_options = ExportOptions(
                out=out, fused=bool(manifest.fused) if fused is None else fused,
                name=name or f"{manifest.name}.distilled", color_order=pre.color_order, mean=pre.mean, std=pre.std,
                flip_tta=pre.flip_tta, dispatch=manifest.dispatch, force=force, progress=options.progress,
                previous_branches=tuple(branch_statuses(manifest)))
            report = {**dict(manifest.extra.get("import_report") or {}), "training": record}
            written = export_package(net, export_options, manifest.weights, report)
            log.info("trained package written to %s", out)
            summary.update(package=str(out), name=written.name)
        barrier(world)
        return summary
    finally:
        close_world(world)
