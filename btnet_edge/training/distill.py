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
from .data import Augmentation, BatchSampler, FaceSet, network_inputs

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
    batch_size: int = 32
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

    def __init__(self, net, spec, options: TrainOptions) -> None:
        torch = require("torch", extra="train")
        self.torch, self.net, self.spec, self.options = torch, net, spec, options
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

    def freeze_trunk(self) -> None:
        """requires_grad off and eval mode: weights and BN statistics of the trunk cannot change."""
        self.net.trunk.eval()
        for p in self.net.trunk.parameters():
            p.requires_grad_(False)

    def _tensors(self, faces_112: np.ndarray) -> dict[int, object]:
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

    def losses(self, faces_112: np.ndarray) -> dict[int, dict[str, object]]:
        """{r: {"feature", "embedding", "cosine"}} for a batch of aligned 112 px faces (cosine: a monitor only)."""
        functional = self.torch.nn.functional
        inputs = self._tensors(faces_112)
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

    def step(self, faces_112: np.ndarray, lr: float) -> dict[str, float]:
        """One optimizer step on a batch; returns the losses before the update."""
        self.set_branch_mode(True)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        values = self.losses(faces_112)
        total = sum(self.options.feature_weight * v["feature"] + self.options.embedding_weight * v["embedding"]
                    for v in values.values())
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(total).backward()
        self.scaler.unscale_(self.optimizer)
        for r in self.resolutions:
            self.torch.nn.utils.clip_grad_norm_(self.params[r], CLIP_NORM)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        return _floats(values)

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


def _floats(values: dict[int, dict[str, object]]) -> dict[str, float]:
    kinds = ("feature", "embedding", "cosine")
    return {f"{kind}_{r}": float(v[kind].detach()) for r, v in values.items() for kind in kinds}


def learning_rate(step: int, total: int, peak: float) -> float:
    """Linear warm-up over the first 5 % of the steps, then cosine decay to 1 % of the peak."""
    warmup = max(1, int(total * WARMUP_SHARE))
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return peak * (0.01 + 0.99 * 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0))))


def split_faces(faces: FaceSet, share: float, seed: int) -> tuple[FaceSet, FaceSet]:
    """(train, held out): a seeded share of the faces kept out of training (none below 10 faces)."""
    if not 0.0 <= share < 1.0:
        raise ConfigError(f"--val-share should be in [0, 1), found {share}")
    count = int(round(len(faces) * share)) if len(faces) >= 10 else 0
    order = np.random.default_rng(seed + 1).permutation(len(faces))
    train, held_out = np.sort(order[count:]), np.sort(order[:count])
    return (FaceSet(faces.faces[train], tuple(faces.sources[j] for j in train)),
            FaceSet(faces.faces[held_out], tuple(faces.sources[j] for j in held_out)))


def total_steps(options: TrainOptions, steps_per_epoch: int) -> int:
    if options.steps is not None:
        if options.steps < 1:
            raise ConfigError(f"--steps should be at least 1, found {options.steps}")
        return options.steps
    epochs = DEFAULT_EPOCHS if options.epochs is None else options.epochs
    if epochs < 1:
        raise ConfigError(f"--epochs should be at least 1, found {epochs}")
    return epochs * max(1, steps_per_epoch)


def train(net, faces: FaceSet, spec, options: TrainOptions, meta: dict) -> dict:
    """Distill the branches of ``net`` on ``faces``; checkpoints as it goes. Returns the run's record."""
    torch = require("torch", extra="train")
    from tqdm.auto import tqdm

    if options.threads:
        torch.set_num_threads(options.threads)
    torch.manual_seed(options.seed)
    distiller = BranchDistiller(net, spec, options)
    faces, held_out = split_faces(faces, options.val_share, options.seed)
    sampler = BatchSampler(faces, options.batch_size, options.augmentation, options.seed)
    total = total_steps(options, sampler.steps_per_epoch)
    meta = {**meta, "resolutions": distiller.resolutions}
    checkpoint = Path(options.checkpoints) / CHECKPOINT_NAME if options.checkpoints else None
    step, history, resumed_from, curve = 0, [], None, []
    if options.resume:
        if checkpoint is None or not checkpoint.is_file():
            raise CheckpointError(f"--resume: no checkpoint at {checkpoint}; run without --resume to start")
        step, history, saved = load_checkpoint(checkpoint, distiller, sampler, meta)
        resumed_from, meta["validation_before"] = step, saved.get("validation_before", {})
        curve = list(saved.get("curve", []))
        log.info("resumed from %s at step %d of %d", checkpoint, step, total)
    else:
        if options.recalibrate_bn:
            count = distiller.recalibrate_batchnorm(faces.faces[:CALIBRATION_FACES])
            log.info("re-estimated the statistics of %d branch BatchNorms on %d faces (eval function unchanged)",
                     count, min(len(faces), CALIBRATION_FACES))
        meta["validation_before"] = distiller.evaluate(held_out.faces) if len(held_out) else {}
    before = meta["validation_before"]
    started = time.perf_counter()
    bar = tqdm(total=total, initial=step, desc="distill", unit="step", disable=not options.progress)
    try:
        while step < total:
            values = distiller.step(sampler.next(), learning_rate(step, total, options.lr))
            history.append(values)
            step += 1
            bar.update()
            bar.set_postfix({k.replace("feature_", "f").replace("embedding_", "e"): f"{v:.4f}"
                             for k, v in values.items() if not k.startswith("cosine")})
            if step % options.save_every == 0 or step == total:
                if len(held_out):
                    curve.append({"step": step, **_round(distiller.evaluate(held_out.faces))})
                    log.debug("step %d held-out %s", step, curve[-1])
                if checkpoint is not None:
                    save_checkpoint(checkpoint, distiller, sampler, step, total, history, {**meta, "curve": curve})
    finally:
        bar.close()
    distiller.set_branch_mode(False)
    after = distiller.evaluate(held_out.faces) if len(held_out) else {}
    record = {
        "method": "distillation from the frozen trunk: MSE at the implant point + MSE of embeddings",
        "loss_weights": {"feature": options.feature_weight, "embedding": options.embedding_weight},
        "margin_loss": "not used (needs labels and the trunk's classifier)",
        **{k: v for k, v in meta.items() if k not in ("validation_before", "curve")},
        "init": options.init, "faces": len(faces), "images": len(set(faces.sources)), "steps": total,
        "epochs": round(total / max(1, sampler.steps_per_epoch), 2), "batch_size": sampler.batch_size,
        "optimizer": options.optimizer, "lr": options.lr, "lr_schedule": "5% linear warm-up, cosine to 1%",
        "weight_decay": options.weight_decay, "device": distiller.device, "amp": distiller.amp,
        "seed": options.seed, "resumed_from_step": resumed_from, "recalibrated_bn": bool(options.recalibrate_bn),
        "augmentation": asdict(options.augmentation) if options.augmentation else None,
        "validation": {"faces": len(held_out), "before": _round(before), "after": _round(after), "curve": curve},
        "seconds_this_session": round(time.perf_counter() - started, 1), "torch_version": torch.__version__,
    }
    return record


def _round(values: dict[str, float]) -> dict[str, float]:
    return {k: round(v, 6) for k, v in values.items()}


def train_and_export(package: str | Path, image_dirs: Sequence[str | Path], out: str | Path, options: TrainOptions,
                     min_face_px: float = 48.0, name: str | None = None, fused: bool | None = None,
                     force: bool = False) -> dict:
    """Package -> trained branches -> new package (same trunk, preprocessing and dispatch; run in the manifest)."""
    from ..export.package_weights import btnet_from_package
    from ..export.package_writer import ExportOptions, export_package
    from ..package.branch_status import branch_statuses
    from ..package.loader import load_package
    from ..package.manifest import MANIFEST_NAME
    from ..safe_io import check_replaceable_folder
    from .data import load_faces

    out = Path(out)
    # before the long part, not after it; never over the source package or the photos
    check_replaceable_folder(out, force, MANIFEST_NAME, "--out", [package, *image_dirs])
    if options.resume and not (options.checkpoints and (Path(options.checkpoints) / CHECKPOINT_NAME).is_file()):
        raise CheckpointError(f"--resume: no checkpoint at {Path(options.checkpoints or '.') / CHECKPOINT_NAME}; "
                              "run without --resume to start")
    source = load_package(package)
    manifest = source.manifest
    net = btnet_from_package(source)
    if options.recalibrate_bn is None:  # BNs folded in the source ONNX came back as identity BNs
        options.recalibrate_bn = (manifest.extra.get("import_report") or {}).get("trunk", {}).get("format") == "onnx"
    faces = load_faces(image_dirs, min_face_px=min_face_px, progress=options.progress)
    meta = {"source_package": manifest.name, "source_folder": str(Path(package)),
            "trunk_sha256": manifest.files.get(manifest.trunk.file),
            "image_folders": [str(p) for p in image_dirs], "min_face_px": min_face_px}
    record = train(net, faces, manifest.preprocess, options, meta)
    net.to("cpu").eval()
    pre = manifest.preprocess
    export_options = ExportOptions(
        out=out, fused=bool(manifest.fused) if fused is None else fused, name=name or f"{manifest.name}.distilled",
        color_order=pre.color_order, mean=pre.mean, std=pre.std, flip_tta=pre.flip_tta, dispatch=manifest.dispatch,
        force=force, progress=options.progress, previous_branches=tuple(branch_statuses(manifest)),
    )
    report = {**dict(manifest.extra.get("import_report") or {}), "training": record}
    written = export_package(net, export_options, manifest.weights, report)
    log.info("trained package written to %s", out)
    return {"package": str(out), "name": written.name, "faces": record["faces"], "steps": record["steps"],
            "validation": record["validation"], "checkpoints": str(options.checkpoints)}
