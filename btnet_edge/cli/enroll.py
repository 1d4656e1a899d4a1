"""btnet-edge enroll: add a person to a gallery from the largest face of each image."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from ..errors import InputImageError
from .options import add_runtime_options, gallery_model_id, recognizer_from_args



def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("enroll", help="enroll a person into a gallery",
                              description="Enroll NAME from the largest confident face of each IMAGE. Nothing is "
                                          "written unless every image yields a face.")
    p.add_argument("package", type=Path, help="model package folder")
    p.add_argument("images", nargs="+", help="image files or folders")
    p.add_argument("--gallery", required=True, type=Path, help="gallery database (created if missing)")
    p.add_argument("--name", required=True, help="identity name")
    p.add_argument("--skip-missing", action="store_true", help="skip images without a face instead of failing")
    add_runtime_options(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ..package.loader import read_manifest
    from ..pipeline.gallery import Gallery
    from ..pipeline.sources import expand_inputs
    from ..pipeline.image import read_image
    from ..pipeline.recognizer import main_face

    from ..errors import GalleryError

    if not args.name.strip():
        raise GalleryError("--name is empty; give the person's name, e.g. --name \"Ada Lovelace\"")
    if args.gallery.is_dir():
        raise GalleryError(f"--gallery {args.gallery} is a folder; give a database file, e.g. {args.gallery / 'gallery.db'}")
    manifest = read_manifest(args.package)
    if args.gallery.exists():  # another model's gallery is refused before the (slow) detection
        Gallery(args.gallery, embedding_size=manifest.embedding_size, create=False,
                model_id=gallery_model_id(manifest)).close()
    recognizer = recognizer_from_args(args)
    embeddings, resolutions, sources, missing = [], [], [], []
    for path in expand_inputs(args.images):
        face = main_face(recognizer.get(read_image(path)))
        if face is None:
            missing.append(path)
            continue
        embeddings.append(face.normed_embedding)
        resolutions.append(face.resolution)
        sources.append(path)
    if missing and not args.skip_missing:
        raise InputImageError(f"no face found in {', '.join(missing)}; nothing was enrolled. Use other images or "
                              "--skip-missing")
    if not embeddings:
        raise InputImageError("no face found in any image; nothing was enrolled")
    with Gallery(args.gallery, embedding_size=manifest.embedding_size, model_id=gallery_model_id(manifest)) as gallery:
        added = gallery.enroll(args.name, np.stack(embeddings), resolutions=resolutions, sources=sources)
        total = next(i.count for i in gallery.identities() if i.name == args.name)
    print(json.dumps({"name": args.name, "added": added, "embeddings": total, "skipped": missing,
                      "resolutions": resolutions}))
    return 0
