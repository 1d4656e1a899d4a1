"""Typed errors: every message says what was found, what was expected and what to do.

Only ``btnet_edge.cli.main`` turns these into exit codes; library code raises.
"""

from __future__ import annotations


class BtnetError(Exception):
    """Base class of every error btnet-edge raises on purpose."""

    exit_code = 1


class MissingDependencyError(BtnetError):
    """An optional dependency (torch, onnx, tensorrt, cuda) is not installed."""

    exit_code = 2


class CheckpointError(BtnetError):
    """A checkpoint file cannot be read or does not fit the architecture."""


class PackageError(BtnetError):
    """A model package is missing, corrupt, tampered with or of an unknown schema."""


class ManifestError(PackageError):
    """manifest.json is malformed: the message names the field."""


class InputImageError(BtnetError):
    """An image is unreadable, empty, or of the wrong dtype or channel count."""


class BackendError(BtnetError):
    """A backend cannot load or run a graph."""


class NoGpuError(BackendError):
    """No NVIDIA driver or GPU answers on this machine (GPU tests skip on this, and only on this)."""


class EngineMismatchError(BackendError):
    """A TensorRT engine was built for another GPU or TensorRT version."""


class GalleryError(BtnetError):
    """The gallery database is unreadable, of another schema, or the request is invalid."""


class ConfigError(BtnetError):
    """An option value (dispatch policy, target file, resolution list) is invalid."""


class ServeError(BtnetError):
    """The face server refused a request, failed, or did not answer in time; the message says which."""


class OutputError(BtnetError):
    """An output cannot be written, or writing it would replace something that is not ours."""


class ImageTooLargeError(InputImageError):
    """An image has more pixels than the limit (a decompression bomb?); the message names the limit to raise."""


class NotComputedError(BtnetError, AttributeError, KeyError):
    """A face attribute that insightface models compute (age, gender, ...) but btnet-edge does not.

    An AttributeError, so ``hasattr(face, "age")`` is False, and a KeyError, so ``face["age"]``
    fails as a dict lookup would; never a silent None.
    """

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""
