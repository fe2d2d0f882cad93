"""`fsclient collections`: list, create and drop the server's collections.

    fsclient collections                                   list them
    fsclient collections create NAME (--dim D | --model M) [--space S] [--storage T] ...
    fsclient collections drop NAME

One subcommand with an ACTION word rather than nested subcommands, so the global options
(--server, --json, ...) work after it as after every other command. Same conventions as
cli_people.py: text from format_collections, `--json` one line, usage errors through the
parser (exit status 2).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

from fsclient.cli_args import UsageError, positive_int
from fsclient.client import FaceSearchClient
from fsclient.format import dumps
from fsclient.format_collections import format_collections, format_created, format_dropped

Command = Callable[..., argparse.ArgumentParser]
ACTIONS = ("list", "create", "drop")
SPACES = ("euclidean", "cosine")
STORAGES = ("float32", "e4m3")


def run_collections(args: argparse.Namespace, client: FaceSearchClient) -> int:
    if args.action != "create":
        for flag in ("dim", "model", "space", "storage", "m", "ef_construction"):
            if getattr(args, flag) is not None:
                raise UsageError(f"--{flag.replace('_', '-')} goes with `collections create`")
    if args.action == "list":
        if args.name is not None:
            raise UsageError("`collections` lists them all; give a NAME to create or drop")
        infos = client.collections()
        print(dumps({"collections": infos}) if args.json else format_collections(infos))
        return 0
    if args.name is None:
        raise UsageError(f"`collections {args.action}` needs a NAME")
    if args.action == "drop":
        items = client.drop_collection(args.name)
        answer = {"name": args.name, "dropped": True, "items": items}
        print(dumps(answer) if args.json else format_dropped(args.name, items))
        return 0
    if (args.dim is None) == (args.model is None):
        raise UsageError("`collections create` needs one of --dim (raw vectors) or --model")
    info = client.create_collection(
        args.name,
        model=args.model or "",
        dim=args.dim or 0,
        space=args.space or "",
        storage=args.storage or "",
        m=args.m or 0,
        ef_construction=args.ef_construction or 0,
    )
    print(dumps(info) if args.json else format_created(info))
    return 0


def register(command: Command) -> None:
    """Add the `collections` command; `command(name, help, description="")` makes a
    subparser with the global options (cli.build_parser's)."""
    collections = command(
        "collections",
        "list, create or drop collections",
        "Without ACTION, list the collections. `create NAME --dim D` makes one of raw "
        "vectors,\n`create NAME --model M` one of faces embedded by DeepFace model M; `drop "
        "NAME` deletes one\nand everything in it. Other commands work on one collection with "
        "--collection NAME.",
    )
    collections.add_argument("action", nargs="?", choices=ACTIONS, default="list")
    collections.add_argument("name", nargs="?", metavar="NAME")
    collections.add_argument("--dim", type=positive_int, metavar="D", help="raw vectors of D")
    collections.add_argument("--model", metavar="M", help="faces, embedded by this model")
    collections.add_argument("--space", choices=SPACES, help="default: the server's --space")
    collections.add_argument("--storage", choices=STORAGES, help="default: the server's --storage")
    collections.add_argument(
        "--m", type=positive_int, metavar="N", help="HNSW links per node (default: the server's)"
    )
    collections.add_argument(
        "--ef-construction", type=positive_int, metavar="N", help="default: the server's"
    )
    collections.set_defaults(run=run_collections)
