"""btnet-edge keys: API keys of the face server (new, list, revoke); the file holds only their SHA-256."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("keys", help="create, list or revoke API keys for `btnet-edge serve --api-keys`",
                              description="API keys for the face server. `keys new NAME --file KEYS` prints a new key "
                                          "once (store it in the client's secret store) and keeps only its hash.")
    actions = p.add_subparsers(dest="action", required=True, metavar="{new,list,revoke}")
    new = actions.add_parser("new", help="create a key and print it once")
    new.add_argument("name", help="who or what uses the key (e.g. camera-3, ops-alice)")
    new.add_argument("--file", required=True, type=Path, help="key file (created if missing, mode 0600)")
    new.add_argument("--admin", action="store_true", help="may also enroll, remove and list identities")
    listing = actions.add_parser("list", help="names, roles and creation times (never the keys)")
    listing.add_argument("--file", required=True, type=Path, help="key file")
    revoke = actions.add_parser("revoke", help="remove a key: a running server refuses it within a second")
    revoke.add_argument("name", help="the key's name")
    revoke.add_argument("--file", required=True, type=Path, help="key file")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ..serve.auth import new_key, read_keys, revoke_key

    if args.action == "new":
        key = new_key(args.file, args.name, "admin" if args.admin else "client")
        print(json.dumps({"name": args.name, "role": "admin" if args.admin else "client", "key": key,
                          "note": "shown once: only its hash is stored in " + str(args.file)}))
    elif args.action == "list":
        print(json.dumps([{"name": k.name, "role": k.role, "created": k.created} for k in read_keys(args.file)],
                         indent=2))
    else:
        revoke_key(args.file, args.name)
        print(json.dumps({"revoked": args.name}))
    return 0
