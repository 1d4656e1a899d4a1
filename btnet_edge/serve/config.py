"""Settings of the face server: one frozen dataclass, built from CLI options or a Ray Serve config file's ``args``."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any

from ..errors import ConfigError
from .protocol import DEFAULT_HOST, DEFAULT_PORT

LOOPBACK = ("127.0.0.1", "localhost", "::1")


def is_loopback(host: str) -> bool:
    return host in LOOPBACK or host.startswith("127.")


@dataclass(frozen=True)
class ServeConfig:
    """What ``btnet-edge serve`` runs. Sizes carry their units in their names."""

    package: str
    gallery: str | None = None  # SQLite file or postgresql:// URL; each front-end thread opens its own connection
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    frontends: int = 1  # replicas that decode, detect and align (per request)
    frontend_threads: int = 2  # concurrent requests per front-end replica
    embedders: int = 1  # replicas that batch faces across requests through branches and trunk
    max_batch_requests: int = 16  # requests merged into one embedder batch
    batch_wait_ms: float = 5.0  # how long the embedder waits to fill a batch
    max_request_mb: float = 16.0  # encoded image size limit (HTTP 413 above)
    max_image_mpx: float = 40.0  # decoded image size limit in megapixels (HTTP 413 above)
    embed_timeout_s: float = 20.0  # front-end -> embedder; a lost replica becomes HTTP 503/504, not a hang
    request_timeout_s: float = 60.0  # HTTP proxy limit for a whole request
    replica_cpus: float = 0.5  # Ray CPUs reserved per replica (small: fits a 2-core machine)
    threads: int = 1  # ONNX Runtime intra-op threads per session
    detector: str | None = None
    detector_kind: str | None = None
    det_threshold: float | None = None
    max_side: int | None = None
    backend: str = "auto"  # the embedder's (and the front-ends' detector's): auto/onnxruntime, torch, tensorrt
    device: str = "cpu"  # "cuda": ONNX Runtime's CUDA provider (or PyTorch CUDA)
    engines: str | None = None  # engine folder of `btnet-edge build` (backend tensorrt)
    replica_gpus: float = 0.0  # Ray GPUs per replica: Ray hides the GPUs from a replica that declares none
    api_keys: str | None = None  # key file of `btnet-edge keys new`: requests need Authorization: Bearer KEY
    insecure_no_auth: bool = False  # allow a non-loopback host without api_keys (behind your own gateway)

    def __post_init__(self) -> None:
        if not is_loopback(self.host) and not self.api_keys and not self.insecure_no_auth:
            raise ConfigError(f"binding {self.host} exposes the face API to the network without authentication: give "
                              "--api-keys KEYS (create keys with `btnet-edge keys new NAME --file KEYS`), or "
                              "--insecure-no-auth if a gateway of yours authenticates every request")
        for name in ("frontends", "frontend_threads", "embedders", "max_batch_requests", "port"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < (0 if name == "port" else 1):
                raise ConfigError(f"serve setting {name} should be a positive integer, found {getattr(self, name)!r}")
        for name in ("batch_wait_ms", "max_request_mb", "max_image_mpx", "embed_timeout_s", "request_timeout_s",
                     "replica_cpus"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or value < 0 or (value == 0 and name != "batch_wait_ms"
                                                                    and name != "replica_cpus"):
                raise ConfigError(f"serve setting {name} should be a positive number, found {value!r}")

        if not isinstance(self.replica_gpus, (int, float)) or self.replica_gpus < 0:
            raise ConfigError(f"serve setting replica_gpus should be a number >= 0, found {self.replica_gpus!r}")
        if self.uses_gpu and not self.replica_gpus:
            raise ConfigError(f"backend {self.backend!r} on device {self.device!r} runs on a GPU, but Ray hides GPUs "
                              "from replicas that declare none: give --replica-gpus (e.g. 0.5 to put a front-end "
                              "and an embedder on one GPU)")
        self.recognizer_config()  # backend, device and engines checked here, not in a replica

    @property
    def uses_gpu(self) -> bool:
        """True when the graphs run on a GPU: TensorRT engines, or the CUDA device."""
        return self.backend == "tensorrt" or self.device.startswith("cuda")

    @property
    def embedder_takes_uint8(self) -> bool:
        """True when the embedder runs device-resident engines, which take the aligned uint8 crops."""
        if self.backend != "tensorrt" or not self.engines:
            return False
        from ..trt_runtime.engine_folder import read_engine_folder

        return read_engine_folder(self.engines).uint8

    @property
    def max_request_bytes(self) -> int:
        return int(self.max_request_mb * 1024 * 1024)

    @property
    def url(self) -> str:
        host = "127.0.0.1" if self.host in ("0.0.0.0", "") else self.host
        return f"http://{host}:{self.port}"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def recognizer_config(self):
        """The RecognizerConfig every front-end's Recognizer and the embedder are built from."""
        from ..pipeline.config import RecognizerConfig
        from ..pipeline.detect_plan import DetectPlan

        return RecognizerConfig(package=self.package, backend=self.backend, device=self.device, engines=self.engines,
                                threads=self.threads, detector=self.detector,
                                detector_kind=self.detector_kind, det_threshold=self.det_threshold,
                                det_plan=DetectPlan(max_side=self.max_side) if self.max_side is not None else None)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ServeConfig:
        """From a config file's ``args``: unknown keys are an error naming the known ones."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"unknown serve settings {unknown}; known: {sorted(known)}")
        if "package" not in data:
            raise ConfigError("serve settings need 'package': the model package folder")
        return cls(**data)
