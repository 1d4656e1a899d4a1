#!/usr/bin/env python3
"""Bad inputs tried on every subcommand: how many were handled cleanly, and how much user data was lost.

    python tools/bad_inputs.py [--json OUT]

"Handled cleanly": a non-zero exit, exactly one ``btnet-edge CMD: error:`` line, no
traceback, no internal error. "Data lost": any file that existed before the case
(photos, a thesis folder, a previous results file, an enrolled gallery, the
package) changed or vanished, or a symlink of the user's became a plain file.
tests/test_bad_inputs.py runs the same cases.

A case may say more (a third item, see ``Expect``): ``same_as`` another case (the same
words in another order must give exactly its message: options before, between and
after the positionals), ``says`` a fragment of the error, or ``ok`` (exit 0, cleanly)
with the files it may change (writing through a symlink changes its target).
"""

from __future__ import annotations

import contextlib
import io
import json
import shlex
import shutil
import struct
import sys
import tempfile
import zlib
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

import cv2
import numpy as np

from btnet_edge.cli.main import main

# label -> what else the case must show: {"same_as": label} | {"says": text} | {"ok": True, "changes": [paths]}
Expect = dict


def _png_header(width: int, height: int) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 4096))


def _tampered(package: Path, work: Path, name: str, change) -> Path:
    copy = work / "tampered" / name
    shutil.copytree(package, copy)
    path = copy / "manifest.json"
    data = json.loads(path.read_text())
    change(data, copy)
    path.write_text(json.dumps(data))
    return copy


def make_world(package: Path, work: Path) -> dict[str, Path]:
    """User files the cases must not destroy, and broken inputs to try."""
    from btnet_edge.gallery import Gallery
    from btnet_edge.package.loader import read_manifest
    from btnet_edge.package.manifest import model_id

    photos = work / "photos"
    photos.mkdir(parents=True)
    for i in range(2):
        cv2.imwrite(str(photos / f"p{i}.jpg"), np.full((48, 64, 3), 60 + 50 * i, np.uint8))
    (work / "thesis").mkdir()
    (work / "cwd").mkdir()
    (work / "cwd" / "keep.txt").write_text("the user's own file in the current folder\n")
    (work / "thesis" / "thesis.tex").write_text("years of work\n")
    (work / "results.json").write_text('{"images": ["an earlier run"]}\n')
    (work / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    (work / "bomb.png").write_bytes(_png_header(30000, 30000))
    (work / "notes.txt").write_text("x\n")
    (work / "broken.onnx").write_bytes(b"not an onnx graph")
    (work / "bad.toml").write_text("this is = = not toml\n")
    manifest = read_manifest(package)
    with Gallery(work / "gallery.db", embedding_size=manifest.embedding_size, model_id=model_id(manifest)) as gallery:
        gallery.enroll("ada", np.eye(manifest.embedding_size, dtype=np.float32)[:2])
    with Gallery(work / "other.db", embedding_size=manifest.embedding_size, model_id="r50:trunk-sha256:0") as g:
        g.enroll("bob", np.eye(manifest.embedding_size, dtype=np.float32)[:1])
    tamper = {
        "opset_words": lambda d, p: d.update(opset="seventeen"),
        "std_nan": lambda d, p: d["preprocess"].update(std=[float("nan"), 1.0, 1.0]),
        "flip_string": lambda d, p: d["preprocess"].update(flip_tta="false"),
        "huge_resolution": lambda d, p: d["branches"][0].update(resolution=100000),
        "negative_embedding": lambda d, p: d.update(embedding_size=-1),
        "int_for_list": lambda d, p: d["trunk"].update(inputs=3),
        "swapped_trunk": lambda d, p: shutil.copyfile(p / "branch_7.onnx", p / "trunk.onnx"),
    }
    flipped = "BGR" if manifest.preprocess.color_order == "RGB" else "RGB"
    tamper["colour_edited"] = lambda d, p: d["preprocess"].update(color_order=flipped)
    tamper["embedding_disagrees"] = lambda d, p: (d.update(embedding_size=d["embedding_size"] // 2),
                                                  d["trunk"]["output"].update(shape=[d["embedding_size"]]))
    paths = {name: _tampered(package, work, name, change) for name, change in tamper.items()}
    _external_data_packages(package, work)
    _probe_files(work)
    return {"photos": photos, **paths}


def _probe_files(work: Path) -> None:
    """The bad-input probe's files: a JPEG hiding its size behind a stray byte, a PAM named .jpg, a cut video,
    and the user's symlinks (one to a file elsewhere, one to /dev/null)."""
    _ok, data = cv2.imencode(".jpg", np.full((48, 64, 3), 90, np.uint8))
    data = bytearray(data.tobytes())
    sof = data.index(b"\xff\xc0")
    data[sof + 5:sof + 9] = struct.pack(">HH", 15000, 15000)  # declares 225 MP
    (work / "stray.jpg").write_bytes(bytes(data[:sof]) + b"\x00" + bytes(data[sof:]))  # libjpeg skips the byte
    (work / "pam.jpg").write_bytes(b"P7\nWIDTH 16000\nHEIGHT 15000\nDEPTH 3\nMAXVAL 255\nTUPLTYPE RGB\nENDHDR\n")
    clip = work / "clip.mp4"
    writer = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"mp4v"), 10, (160, 120))
    rng = np.random.default_rng(0)
    for i in range(30):
        frame = np.full((120, 160, 3), i * 8, np.uint8)
        frame[:40, :40] = rng.integers(0, 255, (40, 40, 3))
        writer.write(frame)
    writer.release()
    video = bytearray(clip.read_bytes())
    span = len(video) // 6
    video[len(video) // 2:len(video) // 2 + span] = bytes(span)
    (work / "damaged.mp4").write_bytes(bytes(video))
    clip.unlink()
    (work / "linked").mkdir()
    (work / "linked" / "results.json").write_text('{"images": ["kept elsewhere"]}\n')
    (work / "link.json").symlink_to(work / "linked" / "results.json")
    (work / "null.json").symlink_to("/dev/null")


def _external_data_packages(package: Path, work: Path) -> None:
    """Copies whose trunk keeps its weights in an external file: not hashed, and outside the package."""
    try:
        import onnx
    except ImportError:  # the dev extra has onnx; without it these two cases are left out
        return
    import hashlib

    for name, location in (("external_unhashed", "trunk.weights"), ("external_outside", "../trunk.weights")):
        copy = work / "tampered" / name
        shutil.copytree(package, copy)
        model = onnx.load(str(copy / "trunk.onnx"))
        onnx.save_model(model, str(copy / "trunk.onnx"), save_as_external_data=True, all_tensors_to_one_file=True,
                        location="trunk.weights", size_threshold=0)
        if location != "trunk.weights":  # onnx will not write a location outside; a crafted file will
            model = onnx.load(str(copy / "trunk.onnx"), load_external_data=False)
            for tensor in model.graph.initializer:
                for entry in tensor.external_data:
                    if entry.key == "location":
                        entry.value = location
            (copy / "trunk.onnx").write_bytes(model.SerializeToString())
            shutil.copyfile(copy / "trunk.weights", copy.parent / "trunk.weights")  # the file it points at, outside
        data = json.loads((copy / "manifest.json").read_text())
        data["files"]["trunk.onnx"] = hashlib.sha256((copy / "trunk.onnx").read_bytes()).hexdigest()
        (copy / "manifest.json").write_text(json.dumps(data))


# The same words in another order (options before, between or after the positionals) must give exactly the message
# of the case named: one per subcommand with positionals, and the README's enroll line.
ORDER_CASES = [
    ("order: run, options first", "run --json {W}/photos {PKG} {W}/photos", "run: --json is a folder"),
    ("order: run, options between", "run {PKG} --json {W}/photos {W}/photos", "run: --json is a folder"),
    ("order: enroll as the README types it", "enroll {PKG} --gallery {W}/gallery.db --name x {W}/photos",
     "enroll: no face"),
    ("order: enroll, options first", "enroll --gallery {W}/gallery.db --name x {PKG} {W}/photos", "enroll: no face"),
    ("order: enroll, photos between options", "enroll {PKG} --gallery {W}/gallery.db {W}/photos --name x",
     "enroll: no face"),
    ("order: info, options first", "info --json {W}/photos", "info: not a package"),
    ("order: gallery, options first", "gallery --remove nobody {W}/gallery.db", "gallery: remove unknown name"),
    ("order: build, options first", "build --target nope --dry-run {PKG}", "build: unknown target"),
    ("order: check, options first", "check --engines {W}/nothere {PKG}", "check: engines folder missing"),
    ("order: compare, options first", "compare --engines {W}/nothere {PKG} {W}/photos/p0.jpg",
     "compare: engines folder missing"),
    ("order: eval-pairs, options first", "eval-pairs --pairs {W}/nothere.csv {PKG}", "eval-pairs: pairs missing"),
    ("order: eval-ident, options first", "eval-ident --gallery-dir {W}/thesis --probes-dir {W}/thesis {PKG}",
     "eval-ident: folders without identities"),
    ("order: eval-track, options first", "eval-track --people {W}/nothere {PKG}", "eval-track: people folder missing"),
    ("order: train-branches, options first", "train-branches --images {W}/nothere --out {W}/t --steps 1 {PKG}",
     "train-branches: images missing"),
    ("order: bench, options first", "bench --resolutions 5 --quiet {PKG}", "bench: unknown resolution"),
    ("order: serve, options first", "serve --gallery {W}/nothere.db {PKG}", "serve: gallery missing"),
    ("order: bench-serve, options first", "bench-serve --images {W}/nothere.jpg --clients 2 {PKG}",
     "bench-serve: images missing"),
    ("order: export-triton, options first", "export-triton --out {W}/thesis --force {PKG}",
     "export-triton: --force over a thesis"),
    ("order: bench-cpp, options first", "bench-cpp --app {W}/nothere-app {PKG} {W}/photos",
     "bench-cpp: C++ app missing"),
    ("order: keys, options first", "keys revoke --file {W}/nothere.json camera-1", "keys: revoke from a missing file"),
    ("order: bench-shared-gallery, options first", "bench-shared-gallery --photo {W}/nothere.jpg {PKG}",
     "bench-shared-gallery: photo missing"),
]


def probe_cases(work: Path) -> list[tuple[str, str, Expect]]:
    """The bad-input probe's findings (issue 20), each with the outcome it must have now."""
    t = work / "tampered"
    found = [
        ("probe: JPEG hiding 225 MP behind a stray byte", "run {PKG} {W}/stray.jpg --json {W}/run_stray.json",
         {"says": "1 input(s) could not be read", "json_error": "15000 x 15000 px"}),
        ("probe: PAM header named .jpg declaring 240 MP", "run {PKG} {W}/pam.jpg --json {W}/run_pam.json",
         {"json_error": "16000 x 15000 px (240 MP)"}),
        ("probe: colour order edited, gallery of the original", f"run {t / 'colour_edited'} {{W}}/photos "
         "--gallery {W}/gallery.db", {"says": "was enrolled with model"}),
        ("probe: manifest embedding size not the graph's", f"run {t / 'embedding_disagrees'} {{W}}/photos",
         {"says": "in the graph but"}),
        ("probe: video with a corrupt middle", "run {PKG} {W}/damaged.mp4 --json {W}/run_video.json --no-track",
         {"json_error": "of the 30 frames its header declares"}),
        ("probe: --json through a symlink", "run {PKG} {W}/photos --json {W}/link.json --quiet",
         {"ok": True, "changes": ["{W}/linked/results.json"]}),
        ("probe: --json to a link to /dev/null", "run {PKG} {W}/photos --json {W}/null.json --quiet", {"ok": True}),
    ]
    if not Path("/dev/video0").exists():
        found.append(("probe: camera 0 with no camera", "run {PKG} 0 --quiet", {"says": "1 input(s) could not be read",
                                                                       "stderr": "no camera 0: /dev/video0 does not "
                                                                                 "exist", "max_lines": 3}))
    if (t / "external_unhashed").is_dir():
        found += [
            ("probe: external data the manifest does not hash", f"run {t / 'external_unhashed'} {{W}}/photos",
             {"says": "which the manifest does not hash"}),
            ("probe: external data outside the package", f"run {t / 'external_outside'} {{W}}/photos",
             {"says": "outside the package folder"}),
        ]
    return found


def cases(package: Path, work: Path, lines: list[tuple] | None = None) -> list[tuple[str, str, Expect]]:
    """(label, command line, expectation) triples; {PKG}, {W} (the work folder) and tampered package paths are
    filled in."""
    t = {name: work / "tampered" / name for name in ("opset_words", "std_nan", "flip_string", "huge_resolution",
                                                      "negative_embedding", "int_for_list", "swapped_trunk")}
    given = lines is not None
    lines = lines or [
        ("run: stride 0", "run {PKG} {W}/photos --stride 0"),
        ("run: negative max-frames", "run {PKG} {W}/photos --max-frames -1"),
        ("run: --json is a folder", "run {PKG} {W}/photos --json {W}/photos"),
        ("run: --json is the input photo", "run {PKG} {W}/photos/p0.jpg --json {W}/photos/p0.jpg"),
        ("run: --draw is a file", "run {PKG} {W}/photos --draw {W}/notes.txt"),
        ("run: --draw is the inputs' folder", "run {PKG} {W}/photos --draw {W}/photos"),
        ("run: --draw is a parent of the inputs", "run {PKG} {W}/photos --draw {W}"),
        ("run: --draw holds a file of the same name", "run {PKG} {W}/photos/p0.jpg --draw {W}/photos_drawn_clash"),
        ("run: unreadable image (others kept)", "run {PKG} {W}/photos {W}/broken.jpg --json {W}/run_partial.json"),
        ("run: decompression bomb", "run {PKG} {W}/bomb.png --json {W}/run_bomb.json"),
        ("run: missing file", "run {PKG} {W}/missing.jpg --json {W}/run_missing.json"),
        ("run: package is a file", "run {W}/notes.txt {W}/photos"),
        ("run: package is a folder of photos", "run {W}/photos {W}/photos"),
        ("run: gallery of another model", "run {PKG} {W}/photos --gallery {W}/other.db"),
        ("run: gallery is a text file", "run {PKG} {W}/photos --gallery {W}/notes.txt"),
        ("run: gallery missing", "run {PKG} {W}/photos --gallery {W}/nothere.db"),
        ("run: detector missing", "run {PKG} {W}/photos --detector {W}/nothere.onnx"),
        ("run: unknown device", "run {PKG} {W}/photos --device tpu"),
        ("run: negative threads", "run {PKG} {W}/photos --threads -2"),
        ("run: detection threshold 5", "run {PKG} {W}/photos --det-threshold 5"),
        ("run: tensorrt without engines", "run {PKG} {W}/photos --backend tensorrt"),
        ("run: opset in words", f"run {t['opset_words']} {{W}}/photos"),
        ("run: std NaN", f"run {t['std_nan']} {{W}}/photos"),
        ("run: flip_tta as a string", f"run {t['flip_string']} {{W}}/photos"),
        ("run: resolution 100000", f"run {t['huge_resolution']} {{W}}/photos"),
        ("run: embedding_size -1", f"run {t['negative_embedding']} {{W}}/photos"),
        ("run: int where a list belongs", f"run {t['int_for_list']} {{W}}/photos"),
        ("run: graph swapped", f"run {t['swapped_trunk']} {{W}}/photos"),
        ("export: --out . --force", "export --arch test_btnet --out . --force --quiet"),
        ("export: --out .. --force", "export --arch test_btnet --out .. --force --quiet"),
        ("run: --draw . (the current folder)", "run {PKG} {W}/photos --draw ."),
        ("run: --jsonl is a folder", "run {PKG} {W}/photos --jsonl {W}/photos"),
        ("run: --jsonl is the input photo", "run {PKG} {W}/photos/p0.jpg --jsonl {W}/photos/p0.jpg --force"),
        ("run: --jsonl over an earlier file", "run {PKG} {W}/photos --jsonl {W}/results.json"),
        ("run: --json - and --jsonl -", "run {PKG} {W}/photos --json - --jsonl -"),
        ("eval-track: people folder missing", "eval-track {PKG} --people {W}/nothere"),
        ("eval-track: no person with two photos", "eval-track {PKG} --people {W}/photos --frames 2"),
        ("eval-track: zero frames", "eval-track {PKG} --people {W}/photos --frames 0"),
        ("export: --force over a thesis", "export --arch test_btnet --out {W}/thesis --force --quiet"),
        ("export: --out over a package without --force", "export --arch test_btnet --out {PKG} --quiet"),
        ("export: --out is a file", "export --arch test_btnet --out {W}/notes.txt --quiet"),
        ("export: std 0", "export --arch test_btnet --out {W}/new_pkg --std 0,0,0 --quiet"),
        ("export: std nan", "export --arch test_btnet --out {W}/new_pkg --std nan,1,1 --quiet"),
        ("export: mean of two", "export --arch test_btnet --out {W}/new_pkg --mean 1,2 --quiet"),
        ("export: resolution 100000", "export --arch test_btnet --out {W}/new_pkg --resolutions 100000 --quiet"),
        ("export: resolutions in words", "export --arch test_btnet --out {W}/new_pkg --resolutions abc --quiet"),
        ("export: trunk is a text file", "export --arch test_btnet --out {W}/new_pkg --trunk {W}/notes.txt --quiet"),
        ("export: trunk missing", "export --arch test_btnet --out {W}/new_pkg --trunk {W}/nothere.pt --quiet"),
        ("info: not a package", "info {W}/photos"),
        ("info: opset in words", f"info {t['opset_words']}"),
        ("info: graph swapped", f"info {t['swapped_trunk']}"),
        ("enroll: empty name", "enroll {PKG} {W}/photos --gallery {W}/gallery.db --name ''"),
        ("enroll: gallery is a folder", "enroll {PKG} {W}/photos --gallery {W}/photos --name x"),
        ("enroll: no face", "enroll {PKG} {W}/photos --gallery {W}/gallery.db --name x"),
        ("enroll: gallery of another model", "enroll {PKG} {W}/photos --gallery {W}/other.db --name x"),
        ("gallery: missing", "gallery {W}/nothere.db"),
        ("gallery: not a gallery", "gallery {W}/notes.txt"),
        ("gallery: threshold 5", "gallery {W}/gallery.db --threshold 5"),
        ("gallery: remove unknown name", "gallery {W}/gallery.db --remove nobody"),
        ("build: unknown target", "build {PKG} --target nope --dry-run"),
        ("build: target not TOML", "build {PKG} --target {W}/bad.toml --dry-run"),
        ("build: --json is a folder", "build {PKG} --target desktop-fp16 --dry-run --json {W}/photos"),
        ("build: --json over the manifest", "build {PKG} --target desktop-fp16 --dry-run --json {PKG}/manifest.json"),
        ("build: --out is a file", "build {PKG} --target desktop-fp16 --dry-run --out {W}/notes.txt"),
        ("build: no TensorRT", "build {PKG} --target desktop-fp16 --out {W}/engines"),
        ("build: TensorRT version in words", "build {PKG} --target desktop-fp16 --dry-run --trt-version abc"),
        ("check: engines folder missing", "check {PKG} --engines {W}/nothere"),
        ("check: zero samples", "check {PKG} --engines {W}/nothere --samples 0"),
        ("compare: engines folder missing", "compare {PKG} {W}/photos/p0.jpg --engines {W}/nothere"),
        ("compare: size in words", "compare {PKG} {W}/photos/p0.jpg --engines {W}/nothere --sizes big"),
        ("eval-pairs: pairs missing", "eval-pairs {PKG} --pairs {W}/nothere.csv"),
        ("eval-pairs: pairs not a table", "eval-pairs {PKG} --pairs {W}/notes.txt"),
        ("eval-pairs: .bin missing", "eval-pairs {PKG} --bin {W}/nothere.bin"),
        ("eval-pairs: .bin not a pickle", "eval-pairs {PKG} --bin {W}/notes.txt"),
        ("eval-pairs: --pairs and --bin", "eval-pairs {PKG} --pairs {W}/notes.txt --bin {W}/notes.txt"),
        ("train-branches: --rec missing", "train-branches {PKG} --rec {W}/nothere.rec --out {W}/t --steps 1"),
        ("train-branches: --rec not RecordIO", "train-branches {PKG} --rec {W}/notes.txt --out {W}/t --steps 1"),
        ("train-branches: --rec and --images", "train-branches {PKG} --rec {W}/notes.txt --images {W}/photos "
                                               "--out {W}/t --steps 1"),
        ("eval-ident: folders without identities", "eval-ident {PKG} --gallery-dir {W}/thesis --probes-dir {W}/thesis"),
        ("train-branches: batch size 0", "train-branches {PKG} --images {W}/photos --out {W}/t --batch-size 0"),
        ("train-branches: save every 0", "train-branches {PKG} --images {W}/photos --out {W}/t --save-every 0"),
        ("train-branches: lr -1", "train-branches {PKG} --images {W}/photos --out {W}/t --lr -1"),
        ("train-branches: images missing", "train-branches {PKG} --images {W}/nothere --out {W}/t --steps 1"),
        ("train-branches: --out . --force", "train-branches {PKG} --images {W}/photos --out . --force --steps 1"),
        ("train-branches: --out over a thesis", "train-branches {PKG} --images {W}/photos --out {W}/thesis --force"),
        ("bench: batch 0", "bench {PKG} --batch 0 --quiet"),
        ("bench: unknown resolution", "bench {PKG} --resolutions 5 --quiet"),
        ("bench: repeats 0", "bench {PKG} --repeats 0 --quiet"),
        ("bench-gallery: zero embeddings", "bench-gallery --embeddings 0"),
        ("bench-gallery: --json is a folder", "bench-gallery --embeddings 10 --json {W}/photos --quiet"),
        ("serve: package is a file", "serve {W}/notes.txt"),
        ("serve: gallery missing", "serve {PKG} --gallery {W}/nothere.db"),
        ("serve: gallery of another model", "serve {PKG} --gallery {W}/other.db"),
        ("serve: zero front-ends", "serve {PKG} --frontends 0"),
        ("bench-serve: images missing", "bench-serve {PKG} --images {W}/nothere.jpg"),
        ("bench-serve: zero clients", "bench-serve {PKG} --images {W}/photos --clients 0"),
        ("export-triton: --force over a thesis", "export-triton {PKG} --out {W}/thesis --force"),
        ("export-triton: not a package", "export-triton {W}/photos --out {W}/triton"),
        ("export-triton: --out is a file", "export-triton {PKG} --out {W}/notes.txt"),
        ("export-triton: max batch 0", "export-triton {PKG} --out {W}/triton --max-batch 0"),
        ("bench-cpp: C++ app missing", "bench-cpp {PKG} {W}/photos --app {W}/nothere-app"),
        ("eval-detect: no ground truth", "eval-detect"),
        ("eval-detect: photos missing", "eval-detect --synth {W}/nothere"),
        ("eval-detect: annotations not WIDER FACE", "eval-detect --annotations {W}/notes.txt --images {W}/photos"),
        ("eval-detect: zero frames", "eval-detect --synth {W}/photos --count 0"),
        ("enroll: --people and --name together", "enroll {PKG} --gallery {W}/gallery.db --name x --people {W}/thesis"),
        ("enroll: --people folder missing", "enroll {PKG} --gallery {W}/gallery.db --people {W}/nothere"),
        ("run: --min-face negative", "run {PKG} {W}/photos --min-face -3"),
        ("run: --det-size 0", "run {PKG} {W}/photos --det-size 0"),
        ("export: ONNX trunk that is not ONNX", "export --trunk {W}/broken.onnx --out {W}/new_pkg --quiet"),
        ("bench-cpp: app is a text file", "bench-cpp {PKG} {W}/photos --app {W}/notes.txt"),
        ("gallery: empty --remove", "gallery {W}/gallery.db --remove ''"),
        ("gallery: --resolution without --threshold", "gallery {W}/gallery.db --resolution 14"),
        ("run: PostgreSQL gallery unreachable", "run {PKG} {W}/photos --gallery postgresql://nobody@127.0.0.1:9/none"),
        ("keys: revoke from a missing file", "keys revoke camera-1 --file {W}/nothere.json"),
        ("keys: not a key file", "keys list --file {W}/notes.txt"),
        ("serve: 0.0.0.0 without API keys", "serve {PKG} --host 0.0.0.0"),
        ("serve: API key file missing", "serve {PKG} --api-keys {W}/nothere.json"),
        ("bench-shared-gallery: photo missing", "bench-shared-gallery {PKG} --photo {W}/nothere.jpg"),
    ]
    if not given:
        lines = [*lines, *[(label, line, {"same_as": twin}) for label, line, twin in ORDER_CASES], *probe_cases(work)]

    def fill(text: str) -> str:
        return text.replace("{PKG}", shlex.quote(str(package))).replace("{W}", shlex.quote(str(work)))

    out = []
    for label, line, *rest in lines:
        expect = dict(rest[0]) if rest else {}
        if "changes" in expect:
            expect["changes"] = [fill(c) for c in expect["changes"]]
        out.append((label, fill(line), expect))
    return out


SQLITE_TRANSIENT = ("-wal", "-shm", "-journal")  # SQLite's own files beside a database: it makes and removes them


def _snapshot(folder: Path) -> dict[str, bytes]:
    """The bytes of every file (a symlink is checked as a link, its target as the file it is); SQLite's own
    transient files beside a database are left out."""
    return {str(p): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and not p.is_symlink() and not p.name.endswith(SQLITE_TRANSIENT)}


def _links(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_symlink())


def run_case(line: str) -> tuple[int, str]:
    err, out = io.StringIO(), io.StringIO()
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
            code = main(shlex.split(line))
    except SystemExit as exc:  # argparse: usage and one error line, exit 2
        code = int(exc.code or 0)
    except BaseException as exc:
        return -1, f"Traceback: {type(exc).__name__}: {exc}"
    return code, err.getvalue()


def clean(code: int, stderr: str, command: str) -> bool:
    errors = [line for line in stderr.splitlines() if f"btnet-edge {command}: error:" in line]
    return code not in (0, -1) and len(errors) == 1 and "Traceback" not in stderr and "internal error" not in stderr


def _meets(expect: Expect, code: int, stderr: str, command: str, line: str, messages: dict[str, str]) -> bool:
    """Whether the case shows what its expectation says, beyond being clean."""
    if expect.get("ok"):
        return code == 0 and "Traceback" not in stderr and ": error:" not in stderr
    if not clean(code, stderr, command):
        return False
    message = _message(stderr)
    if "same_as" in expect and message != messages.get(expect["same_as"]):
        return False
    if "says" in expect and expect["says"] not in message:
        return False
    if "stderr" in expect and expect["stderr"] not in stderr:
        return False
    if "max_lines" in expect and len(stderr.strip().splitlines()) > expect["max_lines"]:
        return False
    if "json_error" in expect:
        words = shlex.split(line)
        target = Path(words[words.index("--json") + 1])
        errors = json.loads(target.read_text())["errors"] if target.is_file() else []
        return any(expect["json_error"] in e["error"] for e in errors)
    return True


def run_all(package: Path, work: Path, lines: list[tuple] | None = None) -> list[dict]:
    """Every case (or ``lines``) in ``work`` (made here) against ``package``: one row per case."""
    make_world(package, work)
    (work / "photos_drawn_clash").mkdir()
    (work / "photos_drawn_clash" / "p0.jpg").write_bytes(b"someone else's drawing")
    guarded = [package, work]
    rows = []
    messages: dict[str, str] = {}
    with contextlib.chdir(work / "cwd"):
        for label, line, expect in cases(package, work, lines):
            before = {str(g): _snapshot(g) for g in guarded}
            links = [link for g in guarded for link in _links(g)]
            code, stderr = run_case(line)
            allowed = set(expect.get("changes", ()))
            lost = sum(1 for g in guarded for name, data in before[str(g)].items()
                       if name not in allowed and (not Path(name).is_file() or Path(name).read_bytes() != data))
            lost += sum(1 for link in links if not link.is_symlink())  # a link replaced by a plain file
            command = shlex.split(line)[0]
            messages[label] = _message(stderr)
            rows.append({"case": label, "command": line, "exit": code, "clean": _meets(expect, code, stderr, command,
                                                                                        line, messages),
                         "files_lost": lost, "message": messages[label]})
    return rows


def _message(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    errors = [line for line in lines if ": error:" in line or "Traceback" in line]
    return (errors or lines or [""])[-1][:300]


def summary(rows: list[dict]) -> dict:
    return {"tried": len(rows), "handled_cleanly": sum(r["clean"] for r in rows),
            "files_lost": sum(r["files_lost"] for r in rows)}


def markdown(rows: list[dict]) -> str:
    """The summary, and the same per kind of case (option order, the probe's findings, the others)."""
    totals = summary(rows)
    subcommands = len({shlex.split(r["command"])[0] for r in rows})
    out = ["| bad inputs tried | handled cleanly | files lost |", "|---|---|---|",
           f"| {totals['tried']} (all {subcommands} subcommands) | {totals['handled_cleanly']} "
           f"| {totals['files_lost']} |",
           "", "| kind | cases | handled as expected | files lost |", "|---|---|---|---|"]
    kinds = {"bad options and files": [r for r in rows if not r["case"].startswith(("order:", "probe:"))],
             "options in another order (same message as the case typed in order)":
                 [r for r in rows if r["case"].startswith("order:")],
             "the probe's findings (issue 20)": [r for r in rows if r["case"].startswith("probe:")]}
    for kind, group in kinds.items():
        out.append(f"| {kind} | {len(group)} | {sum(r['clean'] for r in group)} "
                   f"| {sum(r['files_lost'] for r in group)} |")
    return "\n".join(out)


def main_tool(argv: list[str]) -> int:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path, help="write every row and the summary as JSON here")
    parser.add_argument("--markdown", action="store_true",
                        help="print only the summary tables as markdown (what docs/reliability.md quotes)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="btnet-bad-inputs-") as scratch:
        package = Path(scratch) / "pkg"
        with contextlib.redirect_stdout(io.StringIO()):
            if main(["export", "--arch", "test_btnet", "--out", str(package), "--quiet", "--no-parity"]) != 0:
                raise SystemExit("cannot export the test package")
        rows = run_all(package, Path(scratch) / "work")
    if args.markdown:
        print(markdown(rows))
        return 0 if summary(rows)["handled_cleanly"] == len(rows) and summary(rows)["files_lost"] == 0 else 1
    width = max(len(r["case"]) for r in rows)
    for r in rows:
        print(f"{r['case']:<{width}}  exit {r['exit']:>3}  {'clean' if r['clean'] else 'NOT CLEAN'}  "
              f"lost {r['files_lost']}  {r['message'][:110]}")
    totals = summary(rows)
    print(f"\nbad inputs tried {totals['tried']}, handled cleanly {totals['handled_cleanly']}, "
          f"files lost {totals['files_lost']}")
    if args.json:
        from btnet_edge.safe_io import atomic_write_text

        atomic_write_text(args.json, json.dumps({"summary": totals, "rows": rows}, indent=2) + "\n")
    return 0 if totals["handled_cleanly"] == totals["tried"] and totals["files_lost"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main_tool(sys.argv[1:]))
