"""Face detection on real photos: the default RetinaFace, SCRFD and YuNet, tiling, and input checks.

Photos and models come from ../shared/fixtures (BTNET_FIXTURES overrides); tests
that need them skip with the reason when that folder is absent.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import cv2
import numpy as np
import pytest

from btnet_edge.errors import BackendError, ConfigError, InputImageError
from btnet_edge.pipeline.detect import Detection, FaceDetector, create_detector
from btnet_edge.pipeline.detectors._nms import box_iou, nms
from btnet_edge.pipeline.image import check_bgr_image, read_image

FIXTURES = Path(os.environ.get("BTNET_FIXTURES") or Path(__file__).resolve().parents[1].parent / "shared" / "fixtures")
SCENES = FIXTURES / "images" / "scenes"
SCRFD_ONNX = FIXTURES / "models" / "scrfd_500m_kps.onnx"
YUNET_ONNX = FIXTURES / "models" / "yunet_s_640_640.onnx"

needs_fixtures = pytest.mark.skipif(
    not SCENES.is_dir(), reason=f"fixture photos not found at {SCENES} (set BTNET_FIXTURES to the fixtures folder)"
)


def _scene(name: str) -> np.ndarray:
    path = SCENES / name
    if not path.is_file():
        pytest.skip(f"fixture photo missing: {path}")
    return read_image(path)


def _model(path: Path) -> Path:
    if not path.is_file():
        pytest.skip(f"fixture model missing: {path}")
    return path


@pytest.fixture(scope="module")
def retina() -> FaceDetector:
    """One pass at up to 1280 px (t1 at its own size): the single-scale detector these tests check."""
    return create_detector(det_size=1280, min_face_px=None)


@pytest.fixture(scope="module")
def t1() -> np.ndarray:
    return _scene("t1.jpg")


def _assert_face_geometry(face: Detection) -> None:
    x1, y1, x2, y2 = face.bbox
    assert x2 > x1 and y2 > y1
    assert np.all((face.kps[:, 0] >= x1) & (face.kps[:, 0] <= x2)), (face.bbox, face.kps)
    assert np.all((face.kps[:, 1] >= y1) & (face.kps[:, 1] <= y2)), (face.bbox, face.kps)
    eyes, mouth = face.kps[:2], face.kps[3:]
    assert eyes[:, 1].max() < mouth[:, 1].min(), face.kps  # eyes above the mouth corners
    assert face.kps[0, 0] < face.kps[1, 0] and face.kps[3, 0] < face.kps[4, 0], face.kps  # image-left first


# --- the default detector -----------------------------------------------------------------------------


@needs_fixtures
@pytest.mark.fixtures
def test_default_finds_the_six_faces_of_t1(retina: FaceDetector, t1: np.ndarray) -> None:
    faces = retina.detect(t1)
    assert len(faces) == 6
    scores = [f.score for f in faces]
    assert scores == sorted(scores, reverse=True)
    assert all(0.5 <= s <= 1.0 for s in scores)
    for face in faces:
        assert face.bbox.shape == (4,) and face.bbox.dtype == np.float32
        assert face.kps.shape == (5, 2) and face.kps.dtype == np.float32
        assert 80 <= face.width <= 130  # t1's faces are about 90-110 px wide
        _assert_face_geometry(face)
    with pytest.raises(ValueError):  # read-only: a frozen Detection stays what the detector returned
        faces[0].bbox[0] = 0
    assert box_iou(faces[0].bbox, np.stack([f.bbox for f in faces[1:]])).max() < 0.1  # six different faces


@needs_fixtures
@pytest.mark.fixtures
@pytest.mark.parametrize("name, width", [("obama-240p.jpg", 55), ("obama-480p.jpg", 105),
                                         ("obama-720p.jpg", 147), ("obama-1080p.jpg", 242)])
def test_one_face_per_resolution_with_its_own_size(retina: FaceDetector, name: str, width: float) -> None:
    faces = retina.detect(_scene(name))
    assert len(faces) == 1
    assert abs(faces[0].width - width) <= 0.12 * width, faces[0].bbox
    _assert_face_geometry(faces[0])


@needs_fixtures
@pytest.mark.fixtures
@pytest.mark.parametrize("factor", [0.25, 0.2, 0.15])
def test_tiny_faces_found_at_native_resolution(retina: FaceDetector, t1: np.ndarray, factor: float) -> None:
    """t1 shrunk until its faces are 12-29 px: at least 4 of the 6 remain (6, 6, 5 when written).

    One pass at det_size 640: the small frame is enlarged to 640 px, as insightface does.
    """
    small = cv2.resize(t1, None, fx=factor, fy=factor, interpolation=cv2.INTER_AREA)
    faces = create_detector(det_size=640, min_face_px=None).detect(small)
    assert len(faces) >= 4
    assert np.median([f.width for f in faces]) <= 130 * factor  # boxes at the small scale: no upscaling happened
    full = np.stack([f.bbox for f in retina.detect(t1)])
    for face in faces:  # each is one of t1's real faces, not a texture
        assert box_iou(face.bbox / factor, full).max() > 0.4


@needs_fixtures
@pytest.mark.fixtures
def test_det_size_shrinks_and_maps_back(t1: np.ndarray) -> None:
    frame = _scene("obama-1080p.jpg")
    native = create_detector(det_size=1920, min_face_px=None).detect(frame)
    shrunk = create_detector(det_size=960, min_face_px=None).detect(frame)
    assert len(native) == len(shrunk) == 1
    assert box_iou(shrunk[0].bbox, native[0].bbox[None]).item() > 0.8  # coordinates in the original frame
    assert np.abs(shrunk[0].kps - native[0].kps).max() < 12


@needs_fixtures
@pytest.mark.fixtures
def test_non_contiguous_view_is_accepted(retina: FaceDetector, t1: np.ndarray) -> None:
    mirrored = t1[:, ::-1]
    assert not mirrored.flags.c_contiguous
    faces = retina.detect(mirrored)
    assert len(faces) == 6
    expected = np.stack([f.bbox for f in retina.detect(t1)])
    width = t1.shape[1]
    for face in faces:
        x1, y1, x2, y2 = face.bbox
        assert box_iou(np.array([width - x2, y1, width - x1, y2]), expected).max() > 0.7


def test_no_faces_in_uniform_frames(retina: FaceDetector) -> None:
    assert retina.detect(np.full((480, 640, 3), 128, np.uint8)) == []
    assert retina.detect(np.zeros((1, 1, 3), np.uint8)) == []  # padded to the network's stride


# --- tiling -------------------------------------------------------------------------------------------


# A coarse pass at 640 and an enlarged pass at 1x (the one that is tiled) for faces below ~100 px.
_ENLARGED = {"min_face_px": 20, "upscale": 1.0}


def _assert_same_faces(plain: list[Detection], tiled: list[Detection]) -> None:
    assert len(tiled) == len(plain)
    boxes = np.stack([f.bbox for f in tiled])
    for face in plain:
        assert box_iou(face.bbox, boxes).max() > 0.6, face.bbox
    for i, face in enumerate(tiled):  # no face reported twice from overlapping tiles
        others = np.delete(boxes, i, axis=0)
        assert box_iou(face.bbox, others).max() < 0.2


@needs_fixtures
@pytest.mark.fixtures
def test_tiling_matches_whole_frame_on_a_large_photo() -> None:
    frame = _scene("obama_and_biden.jpg")  # 2000x1428, faces 145-182 px: larger than a tile's overlap
    plain = create_detector(**_ENLARGED, tile=None).detect(frame)
    tiled = create_detector(**_ENLARGED, tile=640).detect(frame)
    assert len(plain) == 3
    _assert_same_faces(plain, tiled)


@needs_fixtures
@pytest.mark.fixtures
def test_tiling_matches_whole_frame_across_many_tile_edges(t1: np.ndarray) -> None:
    """36 copies of t1 at 0.3x: 216 faces of ~30 px, many cut by tile edges in one tile or another."""
    mosaic = np.tile(cv2.resize(t1, None, fx=0.3, fy=0.3, interpolation=cv2.INTER_AREA), (6, 6, 1))
    plain = create_detector(**_ENLARGED, tile=None).detect(mosaic)
    tiled = create_detector(**_ENLARGED, tile=640).detect(mosaic)
    assert len(plain) == 216
    _assert_same_faces(plain, tiled)


@needs_fixtures
@pytest.mark.fixtures
def test_tiling_keeps_faces_that_cross_a_tile_edge(t1: np.ndarray) -> None:
    """t1 at 0.5x (faces ~50 px, below the coarse pass's cut) slid across the edge at x=640."""
    small = cv2.resize(t1, None, fx=0.5, fy=0.5, interpolation=cv2.INTER_AREA)
    plain_detector = create_detector(**_ENLARGED, tile=None)
    tiled_detector = create_detector(**_ENLARGED, tile=640)  # tiles [0, 546], [427, 973], [854, 1400]
    for shift in range(300, 500, 16):
        canvas = np.full((small.shape[0], 1400, 3), 127, np.uint8)
        canvas[:, shift:shift + small.shape[1]] = small
        plain = plain_detector.detect(canvas)
        assert len(plain) == 6, shift
        _assert_same_faces(plain, tiled_detector.detect(canvas))


# --- SCRFD and YuNet ----------------------------------------------------------------------------------

_NATIVE = {"det_size": 1280, "min_face_px": None}  # one pass, t1 at its own size: the decoder alone


@needs_fixtures
@pytest.mark.fixtures
@pytest.mark.parametrize("model", [SCRFD_ONNX, YUNET_ONNX], ids=["scrfd", "yunet"])
def test_other_detectors_find_the_six_faces_of_t1(model: Path, t1: np.ndarray) -> None:
    detector = create_detector(_model(model), **_NATIVE)  # family from the file name
    assert detector.name in model.name
    faces = detector.detect(t1)
    assert len(faces) == 6
    reference = np.stack([f.bbox for f in create_detector(**_NATIVE).detect(t1)])
    for face in faces:
        _assert_face_geometry(face)
        assert box_iou(face.bbox, reference).max() > 0.5  # the same faces RetinaFace finds


@needs_fixtures
@pytest.mark.fixtures
@pytest.mark.parametrize("model", [SCRFD_ONNX, YUNET_ONNX], ids=["scrfd", "yunet"])
def test_other_detectors_at_every_resolution(model: Path) -> None:
    detector = create_detector(_model(model), **_NATIVE)
    for name, width in [("obama-240p.jpg", 55), ("obama-1080p.jpg", 242)]:
        faces = detector.detect(_scene(name))
        assert len(faces) == 1, name
        assert abs(faces[0].width - width) <= 0.12 * width, (name, faces[0].bbox)
    assert detector.detect(np.full((480, 640, 3), 128, np.uint8)) == []


@needs_fixtures
@pytest.mark.fixtures
def test_yunet_letterboxed_into_a_fixed_input_size(t1: np.ndarray) -> None:
    """The path taken where OpenCV refuses frame-sized input: same faces, coordinates mapped back."""
    native = create_detector(_model(YUNET_ONNX), **_NATIVE).detect(t1)
    boxed = create_detector(YUNET_ONNX, input_size=(640, 640), **_NATIVE).detect(t1)  # t1 is 1280x886: shrunk by half
    assert len(boxed) == len(native) == 6
    _assert_same_faces(native, boxed)
    for face in boxed:
        _assert_face_geometry(face)


@needs_fixtures
@pytest.mark.fixtures
def test_declared_kind_overrides_file_name(tmp_path: Path, t1: np.ndarray) -> None:
    anonymous = tmp_path / "detector.onnx"
    anonymous.symlink_to(_model(SCRFD_ONNX))
    with pytest.raises(ConfigError, match="kind="):
        create_detector(anonymous)
    assert len(create_detector(anonymous, kind="scrfd", **_NATIVE).detect(t1)) == 6


@needs_fixtures
@pytest.mark.fixtures
def test_wrong_declared_kind_fails_clearly(t1: np.ndarray) -> None:
    with pytest.raises(BackendError, match="SCRFD"):
        create_detector(_model(YUNET_ONNX), kind="scrfd").detect(t1)
    with pytest.raises(BackendError, match="RetinaFace"):
        create_detector(_model(SCRFD_ONNX), kind="retinaface").detect(t1)


# --- options and the factory ----------------------------------------------------------------------------


@pytest.mark.parametrize("spec, options", [
    ("scrfd", {}),                              # a family name without its model file
    ("faces.tflite", {}),                       # not an ONNX path
    ("/nonexistent/scrfd.onnx", {}),            # missing file
    (None, {"kind": "mtcnn"}),                  # unknown family
    (None, {"score_threshold": 1.5}),
    (None, {"nms_threshold": 0.0}),
    (None, {"max_side": 10}),
    (None, {"tile": 16}),
    (None, {"tile": 640, "tile_overlap": 400}),  # overlap comes from the plan now
    (None, {"det_size": 32}),
    (None, {"min_face_px": -1}),
    (None, {"upscale": 8.0}),
    (None, {"input_size": (640, 640)}),         # a YuNet option given to RetinaFace
    (None, {"score_treshold": 0.5}),            # misspelt option
])
def test_bad_detector_configs_raise_config_error(spec: str | None, options: dict) -> None:
    with pytest.raises(ConfigError):
        create_detector(spec, **options)


def test_detection_is_frozen() -> None:
    face = Detection(np.zeros(4, np.float32), np.zeros((5, 2), np.float32), 0.9)
    with pytest.raises(dataclasses.FrozenInstanceError):
        face.score = 1.0  # type: ignore[misc]


def test_nms_keeps_the_best_of_overlapping_boxes() -> None:
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [50, 50, 60, 60], [2, 2, 6, 6]], np.float32)
    scores = np.array([0.8, 0.9, 0.7, 0.6], np.float32)
    assert nms(boxes, scores, 0.4).tolist() == [1, 2, 3]  # the small box inside has IoU 0.16
    assert nms(boxes, scores, 0.4, containment_threshold=0.7).tolist() == [1, 2]


# --- input checks ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("bad, found", [
    (None, "None"),
    (np.zeros((0, 0, 3), np.uint8), "empty"),
    (np.zeros((48, 64), np.uint8), "grayscale"),
    (np.zeros((48, 64, 4), np.uint8), "4 channels"),
    (np.zeros((48, 64, 3), np.uint16), "uint16"),
    (np.zeros((48, 64, 3), np.float32), "float32"),
    ([[0, 0, 0]], "list"),
])
def test_bad_arrays_raise_input_image_error(retina: FaceDetector, bad: object, found: str) -> None:
    with pytest.raises(InputImageError, match=found) as info:
        retina.detect(bad)  # type: ignore[arg-type]
    assert "expected" in str(info.value)  # says what it wants, not only what it got


def test_check_bgr_image_returns_contiguous_uint8() -> None:
    view = np.zeros((10, 20, 3), np.uint8)[:, ::2]
    out = check_bgr_image(view)
    assert out.flags.c_contiguous and out.shape == (10, 10, 3) and out.dtype == np.uint8


def test_read_image_missing_file_names_the_path(tmp_path: Path) -> None:
    missing = tmp_path / "nope.jpg"
    with pytest.raises(InputImageError, match=r"nope\.jpg"):
        read_image(missing)


def test_read_image_rejects_a_text_file_named_jpg(tmp_path: Path) -> None:
    fake = tmp_path / "photo.jpg"
    fake.write_text("this is not a JPEG\n")
    with pytest.raises(InputImageError, match=r"photo\.jpg"):
        read_image(fake)


def test_read_image_rejects_16_bit_png(tmp_path: Path) -> None:
    path = tmp_path / "deep.png"
    assert cv2.imwrite(str(path), np.full((20, 30, 3), 40000, np.uint16))
    with pytest.raises(InputImageError, match="uint16"):
        read_image(path)


def test_read_image_converts_grayscale_and_alpha_files(tmp_path: Path) -> None:
    gray = tmp_path / "gray.png"
    assert cv2.imwrite(str(gray), np.arange(20 * 30, dtype=np.uint8).reshape(20, 30))
    img = read_image(gray)
    assert img.shape == (20, 30, 3) and img.dtype == np.uint8
    assert np.array_equal(img[..., 0], img[..., 2]) and img[1, 0, 0] == 30
    bgra = tmp_path / "alpha.png"
    pixels = np.zeros((20, 30, 4), np.uint8)
    pixels[..., 2], pixels[..., 3] = 200, 255
    assert cv2.imwrite(str(bgra), pixels)
    img = read_image(bgra)
    assert img.shape == (20, 30, 3) and img[0, 0].tolist() == [0, 0, 200]
