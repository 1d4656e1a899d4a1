"""Only verified bytes run; the API ties a gallery to its model; oversized images are refused from the header."""

from __future__ import annotations

import shutil
import struct
import zlib

import cv2
import numpy as np
import pytest

from btnet_edge.errors import GalleryError, ImageTooLargeError, PackageError
from btnet_edge.gallery import Gallery
from btnet_edge.package.manifest import model_id
from btnet_edge.pipeline.image import read_image
from btnet_edge.pipeline.image_header import image_size
from btnet_edge.pipeline.recognizer import Recognizer


def _embed_14(recognizer: Recognizer) -> np.ndarray:
    face = np.random.default_rng(0).integers(0, 255, (1, 14, 14, 3), dtype=np.uint8)
    return recognizer.embed(face, 14)


def test_a_graph_swapped_after_construction_is_refused(tiny_package, tmp_path):
    package = tmp_path / "pkg"
    shutil.copytree(tiny_package, package)
    with Recognizer(package) as genuine:
        reference = _embed_14(genuine)
    recognizer = Recognizer(package)  # hashes checked here; sessions are built later, on first use
    shutil.copyfile(package / "branch_7.onnx", package / "trunk.onnx")  # a valid graph, but not this one
    with pytest.raises(PackageError, match=r"trunk\.onnx does not match its sha256"):
        _embed_14(recognizer)
    recognizer.close()
    shutil.copyfile(tiny_package / "trunk.onnx", package / "trunk.onnx")
    with Recognizer(package) as restored:
        assert float((_embed_14(restored) * reference).sum()) > 0.9999


def test_a_loaded_session_keeps_running_what_was_verified(tiny_package, tmp_path):
    package = tmp_path / "pkg"
    shutil.copytree(tiny_package, package)
    with Recognizer(package) as recognizer:
        before = _embed_14(recognizer)
        (package / "trunk.onnx").write_bytes(b"swapped")
        assert float((_embed_14(recognizer) * before).sum()) > 0.9999


def test_the_api_refuses_a_gallery_of_another_model(tiny_package, tmp_path):
    from btnet_edge.package.loader import read_manifest

    manifest = read_manifest(tiny_package)
    size = manifest.embedding_size
    with Gallery(tmp_path / "other.db", embedding_size=size, model_id="r50:trunk-sha256:0123456789abcdef") as other:
        with pytest.raises(GalleryError, match="enrolled with model 'r50:trunk-sha256:0123456789abcdef'"):
            Recognizer(tiny_package, gallery=other)
    with Gallery(tmp_path / "wide.db", embedding_size=size + 1) as wide:
        with pytest.raises(GalleryError, match=f"holds {size + 1}-d embeddings, the model gives {size}-d"):
            Recognizer(tiny_package, gallery=wide)
    with Gallery(tmp_path / "ours.db", embedding_size=size, model_id=model_id(manifest)) as ours:
        Recognizer(tiny_package, gallery=ours).close()


def _png_header(width: int, height: int) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 4096))


@pytest.mark.parametrize("ext", [".png", ".jpg", ".bmp", ".webp", ".tif", ".ppm"])
def test_header_sizes_match_opencv(ext):
    image = np.zeros((37, 53, 3), np.uint8)
    ok, data = cv2.imencode(ext, image)
    assert ok and image_size(data.tobytes()) == (53, 37)


def test_a_decompression_bomb_is_refused_before_decoding(tmp_path, monkeypatch):
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(_png_header(30000, 30000))  # would decode to 2.5 GiB
    with pytest.raises(ImageTooLargeError, match=r"30000 x 30000 px.*BTNET_MAX_IMAGE_PIXELS"):
        read_image(bomb)
    photo = tmp_path / "photo.png"
    cv2.imwrite(str(photo), np.zeros((40, 50, 3), np.uint8))
    monkeypatch.setenv("BTNET_MAX_IMAGE_PIXELS", "1000")
    with pytest.raises(ImageTooLargeError, match="over the limit"):
        read_image(photo)
    assert read_image(photo, max_pixels=2000).shape == (40, 50, 3)
