"""API keys, admin routes and the probe's serve fixes; one real `btnet-edge serve` process (Ray) for the whole file.

The server test runs the CLI as a user would: a key file from `btnet-edge keys new`,
401/403 answers, enrollment over the API, Ray's ports on loopback, and SIGTERM leaving no
Ray process behind. The rest needs no Ray: key files, the header check before decoding,
the non-loopback refusal and the proxy's 503 for a dead replica.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import struct
import subprocess
import sys
import time
import urllib.error
import urllib.request
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest

from btnet_edge.errors import ConfigError
from btnet_edge.serve import auth

from .conftest import FIXTURES, needs_fixtures

REPO = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
OBAMA = FIXTURES / "images" / "people" / "obama" / "obama1.jpg"
TIMEOUT_S = 30


def test_keys_cli_prints_a_key_once_and_stores_only_its_hash(tmp_path: Path, capsys) -> None:
    from btnet_edge.cli.main import main

    keys = tmp_path / "keys.json"
    assert main(["keys", "new", "camera-1", "--file", str(keys)]) == 0
    key = json.loads(capsys.readouterr().out)["key"]
    assert main(["keys", "new", "--admin", "ops", "--file", str(keys)]) == 0
    admin_key = json.loads(capsys.readouterr().out)["key"]
    text = keys.read_text()
    assert key not in text and admin_key not in text and auth.key_hash(key) in text
    assert oct(keys.stat().st_mode & 0o777) == "0o600"
    assert main(["keys", "list", "--file", str(keys)]) == 0
    assert [(k["name"], k["role"]) for k in json.loads(capsys.readouterr().out)] == [("camera-1", "client"),
                                                                                     ("ops", "admin")]
    assert main(["keys", "new", "ops", "--file", str(keys)]) == 1  # names are unique
    checker = auth.KeyChecker(keys)
    assert checker.role_of(key).role == "client" and checker.role_of(admin_key).role == "admin"
    assert checker.role_of(key[:-1] + "x") is None and checker.role_of("") is None
    assert main(["keys", "revoke", "camera-1", "--file", str(keys)]) == 0
    checker._checked_at = 0.0  # the server re-reads the file at most once a second
    os.utime(keys, (time.time() + 5, time.time() + 5))
    assert checker.role_of(key) is None and checker.role_of(admin_key).name == "ops"


def test_authorize_answers_401_and_403_with_a_message(tmp_path: Path) -> None:
    from btnet_edge.serve.app import authorize
    from btnet_edge.serve.frontend import HttpError

    keys = tmp_path / "keys.json"
    client, admin = auth.new_key(keys, "cam"), auth.new_key(keys, "ops", "admin")
    checker = auth.KeyChecker(keys)
    for header, status, text in [(None, 401, "needs an API key"), ("Basic abc", 401, "needs an API key"),
                                 ("Bearer wrong", 401, "not valid"), (f"Bearer {client}", 403, "may identify faces")]:
        with pytest.raises(HttpError, match=text) as caught:
            authorize(checker, header, admin=True)
        assert caught.value.status == status
        assert client not in str(caught.value)
    assert authorize(checker, f"Bearer {client}", admin=False) == "cam"
    assert authorize(checker, f"bearer  {admin} ", admin=True) == "ops"
    assert authorize(None, None, admin=True) == "anonymous"  # no key file: loopback only (checked below)
    with pytest.raises(ConfigError, match="not a btnet-edge API key file"):
        keys.write_text("{}")
        auth.KeyChecker(keys)


def test_a_non_loopback_host_needs_keys_or_an_explicit_opt_out(tiny_package, tmp_path: Path, capsys) -> None:
    from btnet_edge.cli.main import main
    from btnet_edge.serve.config import ServeConfig

    assert main(["serve", str(tiny_package), "--host", "0.0.0.0", "--port", "8619"]) == 1
    assert "without authentication: give --api-keys KEYS" in capsys.readouterr().err
    assert ServeConfig(package="p", host="0.0.0.0", insecure_no_auth=True).host == "0.0.0.0"
    assert ServeConfig(package="p", host="0.0.0.0", api_keys="keys.json").api_keys == "keys.json"
    with pytest.raises(ConfigError):
        ServeConfig.from_dict({"package": "p", "host": "192.0.2.9"})


def _png(width: int, height: int) -> bytes:
    """A tiny PNG whose header declares ``width`` x ``height`` (a decompression bomb's shape)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
            + chunk(b"IEND", b""))


def test_the_pixel_count_is_checked_from_the_header_before_decoding() -> None:
    from btnet_edge.serve.frontend import HttpError, decode_image

    for side in (15000, 30000):
        pattern = rf"{side}x{side} px \(declared by its header\) is over the limit"
        with pytest.raises(HttpError, match=pattern) as caught:
            decode_image(_png(side, side), 16 << 20, 40e6)
        assert caught.value.status == 413
    small = cv2.imencode(".png", np.zeros((8, 8, 3), np.uint8))[1].tobytes()
    assert decode_image(small, 16 << 20, 40e6).shape == (8, 8, 3)


def test_the_proxy_middleware_turns_a_silent_replica_failure_into_503_json() -> None:
    from btnet_edge.serve.proxy_errors import ReplicaFailureAsJson, proxy_middlewares

    async def dead_replica(scope, receive, send) -> None:  # what Ray's proxy does for a replica that died
        return None

    async def answering(scope, receive, send) -> None:
        await send({"type": "http.response.start", "status": 500, "headers": []})
        await send({"type": "http.response.body", "body": b'{"error": "ours"}'})

    def run(app) -> list[dict]:
        sent: list[dict] = []

        async def send(message) -> None:
            sent.append(message)

        asyncio.run(ReplicaFailureAsJson(app)({"type": "http", "path": "/v1/faces"}, None, send))
        return sent

    start, body = run(dead_replica)
    assert start["status"] == 503 and (b"retry-after", b"1") in start["headers"]
    assert "Ray restarts it: retry" in json.loads(body["body"])["error"]
    assert [m.get("status") for m in run(answering)] == [500, None]  # the app's own answers pass through
    assert proxy_middlewares()[0].cls is ReplicaFailureAsJson


def _descendants(pid: int) -> set[int]:
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def _listening(pids: set[int]) -> list[tuple[str, int]]:
    """(address, port) of the TCP sockets in LISTEN state owned by ``pids`` (from /proc, no psutil)."""
    inodes = set()
    for pid in pids:
        try:
            for fd in Path(f"/proc/{pid}/fd").iterdir():
                target = os.readlink(fd)
                if target.startswith("socket:["):
                    inodes.add(target[8:-1])
        except OSError:
            continue
    out = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            parts = line.split()
            if parts[3] == "0A" and parts[9] in inodes:
                address, port = parts[1].rsplit(":", 1)
                raw = bytes.fromhex(address)
                if len(raw) == 4:
                    ip = ".".join(str(b) for b in raw[::-1])
                else:
                    words = b"".join(raw[i:i + 4][::-1] for i in range(0, 16, 4))  # 4 host-order words
                    mapped = words[:12] == b"\0" * 10 + b"\xff\xff"
                    ip = ".".join(str(b) for b in words[12:]) if mapped else ("::" if not any(words) else words.hex())
                out.append((ip, int(port, 16)))
    return out


def _request(url: str, method: str = "GET", body: bytes | None = None, key: str | None = None) -> tuple[int, dict]:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    request = urllib.request.Request(url, data=body, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


@pytest.mark.serve
@pytest.mark.fixtures
@needs_fixtures(OBAMA)
def test_served_api_keys_admin_routes_loopback_ports_and_sigterm(tiny_package, tmp_path: Path) -> None:
    pytest.importorskip("ray", reason="ray[serve] not installed (btnet-edge[serve], in the dev extra)")
    from btnet_edge.gallery import Gallery
    from btnet_edge.package.loader import read_manifest
    from btnet_edge.package.manifest import model_id

    from .test_serve import _free_port

    keys, gallery = tmp_path / "keys.json", tmp_path / "people.db"
    client_key, admin_key = auth.new_key(keys, "camera-1"), auth.new_key(keys, "ops", "admin")
    manifest = read_manifest(tiny_package)
    Gallery(gallery, embedding_size=manifest.embedding_size, model_id=model_id(manifest)).close()
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "btnet_edge", "serve", str(tiny_package), "--gallery", str(gallery),
                             "--port", str(port), "--api-keys", str(keys), "--num-cpus", "2"], env=ENV,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        assert line.startswith("{"), proc.stderr.read()[-3000:]
        url = json.loads(line)["url"]
        photo = OBAMA.read_bytes()
        assert _request(url + "/v1/health")[0] == 200  # for load balancers: no key needed, no faces given
        status, answer = _request(url + "/v1/faces", "POST", photo)
        assert status == 401 and "Authorization: Bearer KEY" in answer["error"]
        assert _request(url + "/v1/faces", "POST", photo, key="btnet_wrong")[0] == 401
        assert _request(url + "/v1/identities", key=client_key)[0] == 403
        status, enrolled = _request(url + "/v1/identities/Barack%20Obama", "POST", photo, key=admin_key)
        assert status == 200 and enrolled["added"] == 1 and enrolled["used"] == ["api:ops"], enrolled
        status, faces = _request(url + "/v1/faces", "POST", photo, key=client_key)
        assert status == 200 and "Barack Obama" in [f["identity"] for f in faces["faces"]]
        assert _request(url + "/v1/identities", key=admin_key)[1]["identities"][0]["name"] == "Barack Obama"
        assert _request(url + "/v1/identities/Barack%20Obama", "DELETE", key=client_key)[0] == 403
        assert _request(url + "/v1/identities/Barack%20Obama", "DELETE", key=admin_key)[0] == 200
        assert _request(url + "/v1/identities", key=admin_key)[1]["identities"] == []
        ray_processes = _descendants(proc.pid)
        sockets = _listening(ray_processes | {proc.pid})
        assert ("127.0.0.1", port) in sockets and len(sockets) > 3  # the API and Ray's own servers
        assert {ip for ip, _ in sockets} == {"127.0.0.1"}, _owners(sockets, ray_processes)  # no other interface
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=90)
        assert proc.returncode == 0, proc.stderr.read()[-3000:]
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and any(Path(f"/proc/{p}").exists() and _not_zombie(p)
                                                  for p in ray_processes):
            time.sleep(0.5)
        left = [p for p in ray_processes if Path(f"/proc/{p}").exists() and _not_zombie(p)]
        assert left == [], [Path(f"/proc/{p}/cmdline").read_text()[:100] for p in left]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)
        proc.stdout.close()
        proc.stderr.close()


def _not_zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _owners(sockets: list[tuple[str, int]], pids: set[int]) -> list:
    """For a failure message: which process listens where."""
    return [(ip, port, sorted(Path(f"/proc/{p}/cmdline").read_text().replace("\0", " ")[:80] for p in pids
                              if (ip, port) in _listening({p}))) for ip, port in sockets if ip != "127.0.0.1"]
