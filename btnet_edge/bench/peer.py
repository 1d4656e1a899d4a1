"""The peer on the same frames: insightface's FaceAnalysis-style pipeline (its SCRFD at det_size 640) + our recognizer.

Only when the optional ``peer`` extra (insightface) is installed and ``--peer-detector``
names an SCRFD ONNX file of insightface's model packs; otherwise None, with one log line.
insightface's detector finds the faces (its own preprocessing, decoding and NMS, one 640
pass, as ``FaceAnalysis(det_size=(640, 640))``), and the same Recognizer embeds them, so the
ratio compares detection plans, not recognizers.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Callable

import numpy as np

log = logging.getLogger(__name__)

PEER_DET_SIZE = (640, 640)


def bench_peer(open_recognizer: Callable, detector_file: str | Path | None, inputs: Sequence[str], repeats: int,
               max_frames: int | None) -> list[dict] | None:
    """Frame entries (as bench_frames') for insightface's detector + our recognizer, or None when it cannot run.

    ``open_recognizer()``: a new Recognizer with the benchmark's settings (its detector is not used).
    """
    if detector_file is None:
        return None
    try:
        from insightface.model_zoo import get_model
    except ImportError:
        log.warning("insightface is not installed (pip install -e '.[peer]'): no peer column")
        return None
    from collections import Counter

    from ..pipeline.detect import Detection
    from ..pipeline.recognizer import StageTimes
    from ..pipeline.sources import expand_inputs, iter_frames
    from .frames import stage_report

    model = get_model(str(detector_file))
    model.prepare(ctx_id=-1, input_size=PEER_DET_SIZE, det_thresh=0.5)
    entries = []
    with open_recognizer() as recognizer:
        for source in expand_inputs(inputs):
            first = next(iter_frames([source], max_frames=1), None)
            if first is None:
                continue
            is_video = first.index is not None
            frames = list(iter_frames([source], max_frames)) if is_video else [first] * repeats
            recognizer.times = StageTimes()
            faces: Counter = Counter()
            for frame in frames:
                start = time.perf_counter()
                boxes, kps = model.detect(frame.image, input_size=PEER_DET_SIZE)
                found = [Detection(np.asarray(b[:4], np.float32), np.asarray(k, np.float32).reshape(5, 2), float(b[4]))
                         for b, k in zip(boxes, kps if kps is not None else [np.zeros((5, 2))] * len(boxes))]
                result = recognizer.recognize(frame.image, found, time.perf_counter() - start)
                faces.update(face.resolution for face in result)
            entries.append(stage_report(source, "video" if is_video else "image", recognizer.times, faces))
    return entries
