"""The face server on Ray Serve: started and stopped here on 127.0.0.1, real photos, real SQLite gallery.

One server for the module (Ray on 2 CPUs); every request loop is bounded and every
client call has a timeout, so a broken server fails the test instead of hanging it.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import cv2
import numpy as np
import pytest

from btnet_edge.bench.serve_load import run_load, same_faces, summarize
from btnet_edge.errors import ServeError
from btnet_edge.gallery import Gallery
from btnet_edge.pipeline.recognizer import Recognizer, main_face

from .conftest import FIXTURES, needs_fixtures

SCENES = FIXTURES / "images" / "scenes"
OBAMA = FIXTURES / "images" / "people" / "obama" / "obama1.jpg"
MAX_REQUEST_MB = 1.0
TIMEOUT_S = 20.0

pytestmark = [pytest.mark.serve, pytest.mark.fixtures, needs_fixtures(SCENES / "t1.jpg", OBAMA)]


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _jpeg(img: np.ndarray) -> bytes:
    return cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 95])[1].tobytes()


def _decoded(data: bytes) -> np.ndarray:
    return cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)


@pytest.fixture(scope="module")
def frames() -> list[bytes]:
    """t1 (6 faces) at full size and shrunk, so faces land on the 112, 28 and 14 px branches, plus two more scenes."""
    t1 = cv2.imread(str(SCENES / "t1.jpg"))
    shrunk = [cv2.resize(t1, None, fx=s, fy=s, interpolation=cv2.INTER_AREA) for s in (0.15, 0.08)]
    return [_jpeg(img) for img in [t1, *shrunk, cv2.imread(str(SCENES / "two_people.jpg")),
                                   cv2.imread(str(OBAMA))]]


@pytest.fixture(scope="module")
def gallery_path(tiny_package, tmp_path_factory) -> Path:
    from btnet_edge.package.manifest import model_id as gallery_model_id

    path = tmp_path_factory.mktemp("gallery") / "people.db"
    with Recognizer(tiny_package) as rec:
        face = main_face(rec.get(_decoded(_jpeg(cv2.imread(str(OBAMA))))))
        with Gallery(path, embedding_size=rec.manifest.embedding_size, model_id=gallery_model_id(rec.manifest)) as g:
            g.enroll("obama", face.normed_embedding)
    return path


@pytest.fixture(scope="module")
def server(tiny_package, gallery_path):
    pytest.importorskip("ray", reason="ray[serve] not installed (btnet-edge[serve], in the dev extra)")
    from btnet_edge.serve import app
    from btnet_edge.serve.config import ServeConfig

    config = ServeConfig(package=str(tiny_package), gallery=str(gallery_path), port=_free_port(), frontend_threads=4,
                         max_batch_requests=4, batch_wait_ms=50, max_request_mb=MAX_REQUEST_MB, embed_timeout_s=10)
    url = app.start(config, num_cpus=2)
    yield url
    app.stop()


def _reference(package: Path, gallery_path: Path, frames: list[bytes]) -> list[list]:
    """What one in-process Recognizer answers for the same decoded frames, with the gallery as it is now."""
    with Gallery(gallery_path, create=False) as g, Recognizer(package, gallery=g) as rec:
        return [rec.get(_decoded(data)) for data in frames]


@pytest.fixture(scope="module")
def reference(tiny_package, gallery_path, frames):
    return _reference(tiny_package, gallery_path, frames)


@pytest.fixture
def client(server):
    from btnet_edge.serve.client import FaceClient

    return FaceClient(server, timeout_s=TIMEOUT_S)


def test_answers_equal_the_in_process_recognizer(client, frames, reference):
    assert client.health()["resolutions"] == [112, 28, 14, 7]
    used = set()
    for data, expected in zip(frames, reference):
        faces = client.get_encoded(data)
        assert same_faces(faces, expected) == ""
        used |= {f.resolution for f in faces}
    assert {112, 28, 14} <= used  # the shrunk frames reached the small branches
    obama = client.get(_decoded(frames[-1]))  # the client's own encoding path
    subject = main_face(obama)  # the enrolled photo's own face (the small-face pass may add doubtful boxes)
    assert subject.identity == "obama" and subject.identity_score > 0.99


def test_concurrent_requests_share_branch_and_trunk_runs(client, frames, reference):
    before = client.stats()
    results: dict[int, list] = {}

    def send(i: int) -> None:
        results[i] = client.get_encoded(frames[i % 3])

    threads = [threading.Thread(target=send, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(TIMEOUT_S * 2)
    assert sorted(results) == list(range(8))
    for i, faces in results.items():  # each client got its own faces back, not a neighbour's
        assert same_faces(faces, reference[i % 3]) == ""
    after = client.stats()
    requests, batches = after["requests"] - before["requests"], after["batches"] - before["batches"]
    assert requests == 8 and batches < requests
    trunk_runs = after["graphs"]["trunk"]["runs"] - before["graphs"]["trunk"]["runs"]
    faces = after["graphs"]["trunk"]["faces"] - before["graphs"]["trunk"]["faces"]
    assert faces == sum(len(r) for r in results.values()) and trunk_runs < 8


def test_bad_requests_get_4xx_with_a_message(server, client):
    with pytest.raises(ServeError, match="HTTP 400: the 9 bytes are not an image"):
        client.get_encoded(b"not a jpg")
    with pytest.raises(ServeError, match="HTTP 400: empty body"):
        client.get_encoded(b"")
    with pytest.raises(ServeError, match=r"HTTP 413: .*over the limit of 1048576 bytes"):
        client.get_encoded(b"\xff" * int(1.5 * 1024 * 1024))
    for method, path, status in (("GET", "/v1/faces", 405), ("POST", "/v1/nothing", 404)):
        request = urllib.request.Request(server + path, data=b"x" if method == "POST" else None, method=method)
        with pytest.raises(urllib.error.HTTPError) as caught:
            urllib.request.urlopen(request, timeout=TIMEOUT_S)
        assert caught.value.code == status and "error" in json.loads(caught.value.read())
    assert client.health()["status"] == "ok"  # nothing above hurt the server


def test_enrollment_while_serving_is_seen_by_the_next_request(client, frames, gallery_path, tiny_package):
    from btnet_edge.package.manifest import model_id as gallery_model_id

    faces = client.get_encoded(frames[3])
    assert all(f.identity != "left_person" for f in faces)
    with Recognizer(tiny_package) as rec, Gallery(gallery_path, create=False,
                                                   model_id=gallery_model_id(rec.manifest)) as g:
        g.enroll("left_person", faces[0].normed_embedding)
    again = client.get_encoded(frames[3])
    assert again[0].identity == "left_person" and again[0].identity_score > 0.99


def test_killed_embedder_replica_gives_errors_not_hangs_then_recovers(server, client, frames, tiny_package,
                                                                      gallery_path):
    import ray

    from btnet_edge.serve import app

    reference = _reference(tiny_package, gallery_path, frames)  # earlier tests enrolled people

    def kill() -> None:
        ray.kill(app.replica_actors("Embedder")[0], no_restart=False)

    run = run_load(client.get_encoded, frames, reference, clients=3, frames_per_client=6, kill=kill, kill_after=0.3)
    summary = summarize(run)
    assert run.kill_at_s is not None
    assert summary["lost"] == 0 and summary["wrong"] == 0 and summary["ok"] > 0
    assert summary["max_latency_ms"] < 1000 * (TIMEOUT_S + 1)  # bounded: no client waited past its timeout
    for message in summary["error_messages"]:
        assert "HTTP 503" in message or "HTTP 504" in message or "HTTP 500" in message, message
    deadline = time.monotonic() + 90  # Ray restarts the replica: correct answers come back
    while True:
        try:
            assert same_faces(client.get_encoded(frames[0]), reference[0]) == ""
            break
        except ServeError:
            assert time.monotonic() < deadline, "the server did not recover within 90 s"
            time.sleep(1.0)


ISOLATED = textwrap.dedent("""
    import json, sys
    sys.modules["ray"] = None  # ray is not installed
    import btnet_edge.serve.app, btnet_edge.serve.client, btnet_edge.serve.triton_repo, btnet_edge.cli.serve
    from btnet_edge.cli.main import main
    try:
        main(["serve", "-h"])
    except SystemExit as exc:
        help_code = exc.code
    code = main(["serve", sys.argv[1], "--port", "8612"])
    print(json.dumps({"help": help_code, "serve": code}))
""")


def test_without_ray_the_cli_names_the_extra(tiny_package):
    result = subprocess.run([sys.executable, "-c", ISOLATED, str(tiny_package)], capture_output=True, text=True,
                            timeout=120)
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report == {"help": 0, "serve": 2}
    assert "btnet-edge[serve]" in result.stderr


def test_a_missing_gallery_fails_before_any_replica_starts(tiny_package, tmp_path, capsys):
    from btnet_edge.cli.main import main

    pytest.importorskip("ray", reason="ray[serve] not installed (btnet-edge[serve], in the dev extra)")
    assert main(["serve", str(tiny_package), "--gallery", str(tmp_path / "none.db"), "--port", "8613"]) == 1
    assert "no gallery there" in capsys.readouterr().err
    assert not (tmp_path / "none.db").exists()


def test_write_config_makes_a_serve_config_file(tiny_package, tmp_path):
    from btnet_edge.cli.main import main
    from btnet_edge.serve.config import ServeConfig

    target = tmp_path / "serve.yaml"
    assert main(["serve", str(tiny_package), "--embedders", "3", "--write-config", str(target)]) == 0
    config = json.loads(target.read_text())  # JSON is YAML: `serve run serve.yaml` reads it
    assert config["http_options"]["host"] == "127.0.0.1"
    application = config["applications"][0]
    assert application["import_path"] == "btnet_edge.serve.app:app_builder"
    assert ServeConfig.from_dict(application["args"]).embedders == 3


def test_bench_serve_on_the_running_server(server, tiny_package, gallery_path, tmp_path, capsys):
    from btnet_edge.cli.main import main

    out = tmp_path / "load.json"
    code = main(["bench-serve", str(tiny_package), "--url", server, "--gallery", str(gallery_path), "--images",
                 str(SCENES / "t1.jpg"), "--scales", "100,15", "--clients", "2", "--frames", "3",
                 "--kill-replica", "frontend",
                 "--timeout-s", str(TIMEOUT_S), "--json", str(out), "--quiet"])
    report = json.loads(out.read_text())
    assert code == 0  # nothing wrong, nothing lost
    load = report["load"]
    assert (load["sent"], load["ok"], load["wrong"], load["lost"]) == (6, 6, 0, 0)
    from btnet_edge.bench.serve_load import encode_frames

    with Recognizer(tiny_package) as rec:  # faces per frame as the in-process Recognizer finds them
        per_frame = [len(rec.get(_decoded(data))) for data in encode_frames([cv2.imread(str(SCENES / "t1.jpg"))],
                                                                            [1.0, 0.15])]
    assert min(per_frame) >= 6  # t1's six people at both scales
    assert load["batching"]["graphs"]["trunk"]["faces"] == 3 * sum(per_frame)  # each unique frame sent 3 times
    assert report["in_process"]["frames"] == 6 and report["kill"]["lost"] == 0 and report["kill"]["wrong"] == 0
    for message in report["kill"]["error_messages"]:  # a killed front-end: 503 JSON from our proxy hook, no bare 500
        assert "HTTP 503" in message and "500" not in message, message
    assert "faces/run" in capsys.readouterr().out
