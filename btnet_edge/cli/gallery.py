"""btnet-edge gallery: list, remove, rename identities and set open-set thresholds (SQLite file or PostgreSQL URL)."""

from __future__ import annotations

import argparse
import json

from .options import gallery_target


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("gallery", help="list or edit a gallery",
                              description="List a gallery (identities, thresholds, damaged rows) or edit it. Listing "
                                          "opens it read-only; the exit code is 1 when a stored embedding is damaged.")
    p.add_argument("gallery", type=gallery_target, help="gallery file, or postgresql://user@host/db")
    actions = p.add_mutually_exclusive_group()
    actions.add_argument("--remove", metavar="NAME", help="remove an identity and its embeddings")
    actions.add_argument("--rename", nargs=2, metavar=("OLD", "NEW"), help="rename an identity")
    actions.add_argument("--threshold", type=float, help="set the open-set threshold (cosine in [-1, 1])")
    p.add_argument("--resolution", type=int, help="with --threshold: only for probes of this branch resolution")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ..errors import ConfigError, GalleryError
    from ..gallery import Gallery

    if args.resolution is not None and args.threshold is None:
        raise ConfigError("--resolution sets a per-resolution threshold: give --threshold with it, e.g. "
                          f"--threshold 0.35 --resolution {args.resolution}")
    if args.remove is not None and not args.remove.strip():
        raise ConfigError("--remove needs the name of an enrolled identity; see `btnet-edge gallery GALLERY` for them")
    from ..gallery.records import check_resolution, check_threshold, normalise_name

    if args.threshold is not None:  # checked before the gallery is opened for writing: a refused edit touches nothing
        check_threshold(args.threshold)
        if args.resolution is not None:
            check_resolution(args.resolution)
    for name in args.rename or ():
        normalise_name(name)
    editing = args.remove is not None or args.rename is not None or args.threshold is not None
    with Gallery(args.gallery, create=False, readonly=not editing) as gallery:
        if args.remove is not None:
            if not gallery.remove(args.remove):
                raise GalleryError(f"{args.remove!r} is not enrolled in {gallery.where}; see `btnet-edge gallery "
                                   f"{gallery.where}` for the names")
        elif args.rename:
            gallery.rename(*args.rename)
        elif args.threshold is not None:
            gallery.set_threshold(args.threshold, args.resolution)
        identities = gallery.identities()
        names = {i.identity_id: i.name for i in identities}
        damaged = gallery.damaged
        listing = {
            "identities": [{"name": i.name, "embeddings": i.count, "resolutions": list(i.resolutions)}
                           for i in identities],
            "default_threshold": gallery.default_threshold,
            "thresholds": {str(k): v for k, v in gallery.thresholds.items()},
            "damaged": [{"embedding": d.row_id, "name": names.get(d.identity_id), "problem": d.reason}
                        for d in damaged],
        }
        print(json.dumps(listing, indent=2, allow_nan=False))
    if damaged:
        who = sorted({names.get(d.identity_id, str(d.identity_id)) for d in damaged})
        raise GalleryError(f"{len(damaged)} stored embedding(s) are damaged and left out of every search "
                           f"({', '.join(who)}); "
                           f"remove and re-enroll them: btnet-edge gallery {gallery.where} --remove NAME")
    return 0
