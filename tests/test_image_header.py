"""Image sizes from headers for every format OpenCV decodes; what cannot be bounded is never decoded."""

from __future__ import annotations

import struct

import cv2
import numpy as np
import pytest

from btnet_edge.errors import ImageTooLargeError, InputImageError
from btnet_edge.pipeline.image import check_image_pixels, read_image
from btnet_edge.pipeline.image_header import image_format, image_size

RNG = np.random.default_rng(0)
PHOTO = RNG.integers(0, 255, (37, 53, 3), np.uint8)
# what OpenCV encodes here: every format it also decodes (OpenEXR is absent from the pip wheels)
ENCODABLE = [".jpg", ".png", ".bmp", ".webp", ".tif", ".pbm", ".pgm", ".ppm", ".pam", ".pfm", ".sr", ".hdr", ".jp2",
             ".avif", ".gif"]


def _encoded(ext: str, image: np.ndarray = PHOTO) -> bytes:
    if ext in (".hdr", ".pfm"):
        image = image.astype(np.float32) / 255
    elif ext in (".pbm", ".pgm"):
        image = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    try:
        ok, data = cv2.imencode(ext, image)
    except cv2.error as exc:
        pytest.skip(f"this OpenCV cannot encode {ext}: {exc}")
    if not ok:
        pytest.skip(f"this OpenCV cannot encode {ext}")
    return data.tobytes()


@pytest.mark.parametrize("ext", ENCODABLE)
@pytest.mark.parametrize("shape", [(37, 53), (300, 17)])
def test_header_size_is_what_opencv_decodes(ext, shape):
    data = _encoded(ext, cv2.resize(PHOTO, shape[::-1]))
    decoded = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_ANYDEPTH | cv2.IMREAD_ANYCOLOR)
    assert decoded is not None
    assert image_size(data) == (decoded.shape[1], decoded.shape[0]) == shape[::-1]


def test_j2k_codestream_and_bigtiff():
    jp2 = _encoded(".jp2")
    codestream = jp2[jp2.index(b"\xff\x4f\xff\x51"):]
    assert image_format(codestream) == "JPEG 2000" and image_size(codestream) == (53, 37)
    big = _bigtiff_gray(61, 29)
    decoded = cv2.imdecode(np.frombuffer(big, np.uint8), cv2.IMREAD_GRAYSCALE)
    assert decoded is not None and decoded.shape == (29, 61)
    assert image_size(big) == (61, 29)


def _bigtiff_gray(width: int, height: int) -> bytes:
    """A minimal uncompressed 8-bit BigTIFF (header, one IFD of 20-byte entries, one strip)."""
    tags = [(256, 3, width), (257, 3, height), (258, 3, 8), (259, 3, 1), (262, 3, 1), (273, 16, 0), (277, 3, 1),
            (278, 3, height), (279, 16, width * height)]
    ifd_size = 8 + 20 * len(tags) + 8
    strip_at = 16 + ifd_size
    entries = b"".join(struct.pack("<HHQQ", tag, kind, 1, strip_at if tag == 273 else value)
                       for tag, kind, value in tags)
    ifd = struct.pack("<Q", len(tags)) + entries + struct.pack("<Q", 0)
    return b"II+\x00" + struct.pack("<HHQ", 8, 0, 16) + ifd + bytes(range(256)) * (width * height // 256 + 1)


def _jpeg_with_stray_byte() -> bytes:
    data = _encoded(".jpg", cv2.resize(PHOTO, (400, 300)))
    sof = data.index(b"\xff\xc0")
    return data[:sof] + b"\x00" + data[sof:]


def test_a_stray_byte_before_sof_does_not_hide_the_size():
    data = _jpeg_with_stray_byte()
    decoded = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    assert decoded is not None and decoded.shape[:2] == (300, 400)  # libjpeg skips the byte and decodes
    assert image_size(data) == (400, 300)
    with pytest.raises(ImageTooLargeError, match="400 x 300 px"):
        check_image_pixels(data, "stray.jpg", max_pixels=100_000)


def test_garbage_and_fill_bytes_between_segments():
    data = _encoded(".jpg")
    sof = data.index(b"\xff\xc0")
    padded = data[:sof] + b"\x12\x34\xff\x00\x56" + b"\xff\xff" + data[sof + 1:]  # garbage, FF00, fill bytes
    assert image_size(padded) == (53, 37)


def test_a_pam_header_named_jpg_is_refused_before_opencv(tmp_path, capfd, monkeypatch):
    """240 MP declared in 70 bytes: refused from the header, OpenCV never sees it (no OpenCV line on stderr)."""
    path = tmp_path / "photo.jpg"
    path.write_bytes(b"P7\nWIDTH 16000\nHEIGHT 15000\nDEPTH 3\nMAXVAL 255\nTUPLTYPE RGB\nENDHDR\n")

    def decode(*_args, **_kwargs):
        raise AssertionError("cv2.imdecode called on a file that should have been refused from its header")

    monkeypatch.setattr(cv2, "imdecode", decode)
    with pytest.raises(ImageTooLargeError, match="16000 x 15000 px \\(240 MP\\)"):
        read_image(path)
    assert capfd.readouterr().err == ""


@pytest.mark.parametrize("data, says", [
    (b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00\xff\xda\x00\x08", "JPEG header does not"),
    (b"\x89PNG\r\n\x1a\n\x00\x00\x00\x0dtEXt" + b"\x00" * 17, "PNG header does not"),
    (b"P6\n# a comment\nwide 480\n255\n", "PNM header does not"),
    (b"GIF89a\x00\x00\x00\x00\x00\x00\x00", "GIF header does not"),
    (b"\x76\x2f\x31\x01" + b"\x00" * 64, "not a JPEG/PNG"),  # OpenEXR: no size read here, so not decoded
    (b"some text that is not an image", "not a JPEG/PNG"),
])
def test_what_cannot_be_bounded_is_refused(tmp_path, data, says):
    path = tmp_path / "x.jpg"
    path.write_bytes(data)
    with pytest.raises(InputImageError, match=says):
        read_image(path)


def test_an_empty_file_says_so(tmp_path):
    (tmp_path / "empty.jpg").write_bytes(b"")
    with pytest.raises(InputImageError, match="empty"):
        read_image(tmp_path / "empty.jpg")


def test_text_headers_with_comments_and_orders():
    assert image_size(b"P5\n# made by\n#  a camera\n 640\t480 255\n") == (640, 480)
    assert image_size(b"#?RADIANCE\nFORMAT=32-bit_rle_rgbe\n\n+X 640 -Y 480\n") == (640, 480)
    assert image_size(b"#?RADIANCE\nFORMAT=32-bit_rle_rgbe\n\n-Y 480 +X 640\n") == (640, 480)


def test_the_server_checks_the_header_before_decoding(monkeypatch):
    from btnet_edge.serve.frontend import HttpError, decode_image

    bomb = b"P7\nWIDTH 16000\nHEIGHT 15000\nDEPTH 3\nMAXVAL 255\nTUPLTYPE RGB\nENDHDR\n"
    monkeypatch.setattr(cv2, "imdecode", lambda *a, **k: pytest.fail("decoded a request refused by its header"))
    with pytest.raises(HttpError, match=r"16000x15000 px \(declared by its header\) is over the limit") as exc:
        decode_image(bomb, max_bytes=1 << 20, max_pixels=40e6)
    assert exc.value.status == 413
    with pytest.raises(HttpError) as exc:
        decode_image(b"not an image at all", max_bytes=1 << 20, max_pixels=40e6)
    assert exc.value.status == 400
