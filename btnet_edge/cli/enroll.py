"""btnet-edge enroll: add a person (or a folder of people) to a gallery, one face per photo, all or nothing."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..errors import ConfigError, GalleryError, InputImageError
from .options import add_runtime_options, gallery_model_id, gallery_target, recognizer_from_args


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "enroll", help="enroll a person (or people/<name>/ folders) into a gallery",
        description="Enroll NAME from the face of each IMAGE, or every person of --people DIR (one subfolder of "
                    "photos per person, named after them). A photo showing several faces of similar size is "
                    "refused unless --pick largest. Each person is written all or nothing.")
    p.add_argument("package", type=Path, help="model package folder")
    p.add_argument("images", nargs="*", help="image files or folders (with --name)")
    p.add_argument("--gallery", required=True, type=gallery_target,
                   help="gallery file (created if missing), or postgresql://user@host/db")
    p.add_argument("--name", help="identity name for IMAGES")
    p.add_argument("--people", type=Path, help="bulk: a folder of <name>/ folders of photos")
    p.add_argument("--pick", choices=("largest",),
                   help="which face to take from a photo with several faces (default: refuse such photos)")
    p.add_argument("--skip-missing", action="store_true",
                   help="skip photos without a usable face (none, or several without --pick) instead of failing")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    add_runtime_options(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ..gallery import Gallery
    from ..gallery.enrollment import collect_identity, enroll_people, write_identity
    from ..package.loader import read_manifest
    from ..pipeline.sources import expand_inputs

    if (args.people is None) == (args.name is None):
        raise ConfigError("give --name NAME with IMAGES, or --people DIR for people/<name>/ folders")
    if args.name is not None and not args.name.strip():
        raise ConfigError("--name is empty; give the person's name, e.g. --name \"Ada Lovelace\"")
    if isinstance(args.gallery, Path) and args.gallery.is_dir():
        raise GalleryError(f"--gallery {args.gallery} is a folder; give a database file, "
                           f"e.g. {args.gallery / 'gallery.db'}")
    manifest = read_manifest(args.package)
    _check_existing(args.gallery, manifest)
    if args.people is not None and args.images:
        raise ConfigError("--people enrolls the folders under DIR; do not also list IMAGES")
    if args.name is not None and not args.images:
        raise ConfigError("--name needs IMAGES: the photos of that person")
    with recognizer_from_args(args) as recognizer:

        def open_gallery() -> Gallery:
            return Gallery(args.gallery, embedding_size=manifest.embedding_size, model_id=gallery_model_id(manifest))

        if args.people is None:  # photos first: a refused photo leaves no gallery file behind
            result = collect_identity(recognizer, args.name, expand_inputs(args.images), args.pick, args.skip_missing)
            with open_gallery() as gallery:
                write_identity(gallery, result)
                total = next(i.count for i in gallery.identities() if i.name == args.name)
            print(json.dumps({**result.to_json(), "embeddings": total}))
            return 0
        # opened when the first person is ready: a run that enrolls nobody leaves no empty gallery
        results = enroll_people(recognizer, open_gallery, args.people, args.pick, args.skip_missing,
                                progress=not args.quiet)
    failed = [r for r in results if r.error]
    print(json.dumps({"people": [r.to_json() for r in results], "enrolled": len(results) - len(failed),
                      "failed": len(failed), "embeddings_added": sum(r.added for r in results)}, indent=2))
    if failed:
        raise InputImageError(f"{len(failed)} of {len(results)} people not enrolled "
                              f"({', '.join(r.name for r in failed)})"
                              "; the others were. See the summary above, fix those photos and run again for them")
    return 0


def _check_existing(target, manifest) -> None:
    """Another model's gallery is refused before the (slow) detection; a missing one is created later."""
    from ..gallery import Gallery

    try:
        Gallery(target, embedding_size=manifest.embedding_size, create=False, readonly=True,
                model_id=gallery_model_id(manifest)).close()
    except GalleryError as exc:
        if "no gallery there" not in str(exc):
            raise
