"""Recognize faces with the embedding models served by Triton (written by `btnet-edge export-triton`).

Detection and alignment run here, on the camera box (btnet-edge's Recognizer); the
branches and the trunk run on the Triton server. Needs: pip install "tritonclient[http]" btnet-edge
Run:  python client_example.py PACKAGE IMAGE [--url localhost:8000]
"""

import argparse

import cv2
import numpy as np
import tritonclient.http as triton

from btnet_edge import Recognizer
from btnet_edge.package.loader import load_package
from btnet_edge.serve.frontend import RemoteRunner


def triton_embed(client, manifest, groups):
    """{resolution: (n, 3, r, r) float32} -> {resolution: (n, D)} on Triton.

    With faces at every resolution one call to the ensemble does it all; otherwise the
    non-empty branches are called (Triton's batching models take a batch of at least 1)
    and then the trunk, whose entry points accept empty batches.
    """
    trunk = manifest.trunk
    feeds = {t.name: np.zeros((0, *t.shape), np.float32) for t in trunk.inputs}
    feeds[trunk.inputs[0].name] = groups.get(112, feeds[trunk.inputs[0].name])
    if all(len(groups.get(r, ())) for r in trunk.entry_resolutions):
        inputs = {trunk.inputs[0].name: groups[112], **{b.input.name: groups[b.resolution] for b in manifest.branches}}
        embeddings = _infer(client, "btnet_embed", inputs, trunk.output.name)
    else:
        for b in manifest.branches:
            if len(groups.get(b.resolution, ())):
                feeds[b.output.name] = _infer(client, f"btnet_branch_{b.resolution}",
                                              {b.input.name: groups[b.resolution]}, b.output.name)
        embeddings = _infer(client, "btnet_trunk", feeds, trunk.output.name)
    out, start = {}, 0
    for r in trunk.entry_resolutions:  # the trunk's output order
        n = len(groups.get(r, ()))
        out[r] = embeddings[start:start + n]
        start += n
    return {r: out[r] for r in groups}


def _infer(client, model, feeds, output):
    inputs = []
    for name, array in feeds.items():
        tensor = triton.InferInput(name, list(array.shape), "FP32")
        tensor.set_data_from_numpy(np.ascontiguousarray(array, np.float32))
        inputs.append(tensor)
    return client.infer(model, inputs, outputs=[triton.InferRequestedOutput(output)]).as_numpy(output)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("package", help="the model package the repository was exported from")
    parser.add_argument("image")
    parser.add_argument("--url", default="localhost:8000", help="Triton HTTP endpoint")
    args = parser.parse_args()
    client = triton.InferenceServerClient(args.url, network_timeout=30.0)
    package = load_package(args.package)
    runner = RemoteRunner(lambda groups: triton_embed(client, package.manifest, groups))  # Triton takes float32
    with Recognizer(package, runner=runner) as recognizer:
        for face in recognizer.get(cv2.imread(args.image)):
            print(face.to_json())


if __name__ == "__main__":
    main()
