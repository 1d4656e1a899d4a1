"""btnet-edge gallery: list, remove, rename identities and set open-set thresholds."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("gallery", help="list or edit a gallery", description="List or edit a gallery database.")
    p.add_argument("gallery", type=Path, help="gallery database")
    actions = p.add_mutually_exclusive_group()
    actions.add_argument("--remove", metavar="NAME", help="remove an identity and its embeddings")
    actions.add_argument("--rename", nargs=2, metavar=("OLD", "NEW"), help="rename an identity")
    actions.add_argument("--threshold", type=float, help="set the open-set threshold (cosine)")
    p.add_argument("--resolution", type=int, help="with --threshold: only for probes of this branch resolution")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ..errors import GalleryError
    from ..gallery import Gallery

    with Gallery(args.gallery, create=False) as gallery:
        if args.remove:
            if not gallery.remove(args.remove):
                raise GalleryError(f"{args.remove!r} is not enrolled in {args.gallery}; see `btnet-edge gallery "
                                   f"{args.gallery}` for the names")
        elif args.rename:
            gallery.rename(*args.rename)
        elif args.threshold is not None:
            gallery.set_threshold(args.threshold, args.resolution)
        listing = {
            "identities": [{"name": i.name, "embeddings": i.count, "resolutions": list(i.resolutions)}
                           for i in gallery.identities()],
            "default_threshold": gallery.default_threshold,
            "thresholds": {str(k): v for k, v in gallery.thresholds.items()},
        }
    print(json.dumps(listing, indent=2))
    return 0
