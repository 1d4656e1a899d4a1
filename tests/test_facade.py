"""insightface habits: FaceAnalysis.prepare/get/draw_on and dict-style reads of Face."""

from __future__ import annotations

import numpy as np
import pytest

from btnet_edge import FaceAnalysis, NotComputedError
from btnet_edge.errors import BackendError, ConfigError
from btnet_edge.pipeline.face import Face

from .conftest import FIXTURES, needs_fixtures

T1 = FIXTURES / "images" / "scenes" / "t1.jpg"

EMBEDDING = np.arange(4, dtype=np.float32) + 1


def _face(embedding=EMBEDDING) -> Face:
    return Face(bbox=np.array([1, 2, 30, 40], np.float32), kps=np.zeros((5, 2), np.float32), det_score=0.9,
                face_size=38.0, resolution=28, embedding=embedding)


def test_face_reads_like_insightface_dict():
    face = _face()
    assert np.array_equal(face["embedding"], face.embedding) and np.array_equal(face.get("kps"), face.kps)
    assert np.allclose(np.linalg.norm(face["normed_embedding"]), 1.0)
    assert "embedding" in face and "bbox" in face and "identity" not in face and "age" not in face
    assert face.get("identity") is None and face.get("identity", "nobody") == "nobody"
    assert set(face.keys()) >= {"bbox", "kps", "det_score", "embedding", "normed_embedding"}
    assert "embedding" not in _face(embedding=None)
    with pytest.raises(KeyError, match="has no 'identity'"):
        face["identity"]


@pytest.mark.parametrize("name", ["age", "gender", "sex", "landmark_3d_68", "landmark_2d_106", "pose"])
def test_attributes_we_do_not_compute_say_so(name):
    face = _face()
    for read in (lambda: getattr(face, name), lambda: face[name], lambda: face.get(name)):
        with pytest.raises(NotComputedError, match=f"face.{name} is not computed by btnet-edge"):
            read()
    assert not hasattr(face, name)  # an AttributeError, never a silent None
    with pytest.raises(AttributeError) as info:
        _ = face.embeding  # a typo is a plain AttributeError
    assert not isinstance(info.value, NotComputedError)


def test_modules_we_do_not_run_are_refused(tiny_package):
    with pytest.raises(ConfigError, match=r"allowed_modules \['genderage'\]"):
        FaceAnalysis(str(tiny_package), allowed_modules=["detection", "recognition", "genderage"])
    app = FaceAnalysis(tiny_package.name, root=tiny_package.parent)
    with pytest.raises(ConfigError, match=r"call app\.prepare"):
        app.get(np.zeros((64, 64, 3), np.uint8))
    with pytest.raises(ConfigError, match="det_size"):
        app.prepare(ctx_id=-1, det_size=(640,))


def test_cuda_asked_by_name_is_an_error_when_absent(tiny_package):
    import onnxruntime

    if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        pytest.skip("this machine has CUDA: nothing to refuse")
    app = FaceAnalysis(tiny_package, providers=["CUDAExecutionProvider"])
    with pytest.raises(BackendError, match="no CUDA provider"):
        app.prepare(ctx_id=0)


def test_max_num_keeps_large_central_faces_as_insightface():
    from btnet_edge.app.face_analysis import keep_main_faces

    def at(x1, y1, x2, y2):
        return Face(bbox=np.array([x1, y1, x2, y2], np.float32), kps=np.zeros((5, 2)), det_score=0.9, face_size=1.0,
                    resolution=112)

    corner, centre, small_centre = at(0, 0, 100, 100), at(450, 450, 530, 530), at(480, 480, 500, 500)
    faces = [corner, centre, small_centre]  # scores: 10000 - 2 * 405000, 6400 - 2 * 200, 400 - 2 * 200
    assert keep_main_faces(faces, (1000, 1000), 1) == [1]
    assert sorted(keep_main_faces(faces, (1000, 1000), 2)) == [1, 2]


@needs_fixtures(T1)
def test_prepare_get_draw_on_a_real_photo(mfn_package):
    import cv2

    from btnet_edge.app.face_analysis import keep_main_faces
    from btnet_edge.pipeline.detect import create_detector
    from btnet_edge.pipeline.recognizer import Recognizer

    img = cv2.imread(str(T1))
    with FaceAnalysis(mfn_package, allowed_modules=["detection", "recognition"]) as app:
        app.prepare(ctx_id=-1, det_size=(640, 640))
        faces = app.get(img)
        top2 = app.get(img, max_num=2)
        drawn = app.draw_on(img, faces)
    assert len(faces) == 6 and all(f["embedding"].shape == (128,) for f in faces)
    detector = create_detector(det_size=640, min_face_px=0, score_threshold=0.5)
    with Recognizer(mfn_package, detector=detector) as rec:
        same = rec.get(img)
    assert all(np.allclose(a.embedding, b.embedding, atol=1e-5) for a, b in zip(faces, same))
    expected = [faces[i].bbox.tolist() for i in sorted(keep_main_faces(faces, img.shape[:2], 2))]
    assert len(top2) == 2 and [f.bbox.tolist() for f in top2] == expected
    assert drawn.shape == img.shape and not np.array_equal(drawn, img)
    assert np.array_equal(img, cv2.imread(str(T1)))  # the input is not drawn on
