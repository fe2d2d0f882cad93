"""The `fsclient` commands about people: people, list, forget, rename, identify, verify.

`fsclient.cli.build_parser` calls `register(command)`; the commands keep cli.py's
conventions: the text comes from `fsclient.format_people`, `--json` prints `dumps()`'s one
line, a server or file error ends as one line on stderr (cli.main), and a usage error goes
through the subcommand's parser (exit status 2). This module does not import fsclient.cli:
run as `python -m fsclient.cli`, that module is `__main__`, and a second copy of it would
raise errors main() does not catch.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from functools import partial

from fsclient.cli_args import distance, one_vector, positive_int, write_picture
from fsclient.client import FaceSearchClient
from fsclient.format import dumps
from fsclient.format_people import (
    format_forget,
    format_identify,
    format_items,
    format_people,
    format_rename,
    format_verify,
)
from fsclient.picture import require_pillow
from fsclient.picture_people import draw_identities
from fsclient.sources import read_file

DEFAULT_CANDIDATES = 3

Command = Callable[..., argparse.ArgumentParser]


# ---- the commands ------------------------------------------------------------------------


def run_people(args: argparse.Namespace, client: FaceSearchClient) -> int:
    people = client.all_people()
    print(dumps({"people": people}) if args.json else format_people(people))
    return 0


def run_list(args: argparse.Namespace, client: FaceSearchClient) -> int:
    items = client.all_items(args.label)
    print(dumps({"items": items}) if args.json else format_items(items, args.label))
    return 0


def run_forget(args: argparse.Namespace, client: FaceSearchClient) -> int:
    deleted = client.forget(args.label)
    answer = {"label": args.label, "deleted": deleted}
    print(dumps(answer) if args.json else format_forget(args.label, deleted))
    return 0


def run_rename(args: argparse.Namespace, client: FaceSearchClient) -> int:
    renamed, merged = client.rename(args.old, args.new)
    if args.json:
        answer = {"old_label": args.old, "new_label": args.new}
        print(dumps({**answer, "renamed": renamed, "merged": merged}))
    else:
        print(format_rename(args.old, args.new, renamed, merged))
    return 0


def run_identify(args: argparse.Namespace, client: FaceSearchClient) -> int:
    if args.show:
        require_pillow()  # before a slow call whose picture could not be drawn
    options = {"candidates": args.candidates, "threshold": args.threshold}
    photo: bytes | None = None
    if args.image is not None:
        photo = read_file(args.image)
        result = client.identify(image=photo, **options)
    else:
        result = client.identify(vector=one_vector(args.vector, "identify"), **options)
    if args.json:
        print(dumps(result))
    else:
        print(format_identify(result, quiet=args.quiet, threshold=args.threshold))
    if args.show:
        ids = [c.id for found in result.results for c in found.candidates]
        draw = partial(draw_identities, photo, result)
        write_picture(args, client, ids, draw, "identity")
    return 0


def run_verify(args: argparse.Namespace, client: FaceSearchClient) -> int:
    image = read_file(args.image)
    if args.other is not None:
        result = client.verify(image, read_file(args.other), threshold=args.threshold)
    else:
        result = client.verify(image, person=args.person, threshold=args.threshold)
    # Same or different is an answer, not an error: exit status 0 either way.
    print(dumps(result) if args.json else format_verify(result, args.person, quiet=args.quiet))
    return 0


# ---- the parsers -------------------------------------------------------------------------


def _threshold_option(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument(
        "--threshold",
        type=distance,
        metavar="T",
        help=f"the distance threshold for this call (default: the server's {what})",
    )


def register(command: Command) -> None:
    """Add the people commands; `command(name, help, description="")` makes a subparser
    with the global options (cli.build_parser's)."""
    command("people", "list every person (label) with their item count").set_defaults(
        run=run_people
    )

    listing = command("list", "list the stored items: id, label, metadata")
    listing.add_argument(
        "--label", metavar="TEXT", help="only this person's items ('': the unlabelled ones)"
    )
    listing.set_defaults(run=run_list)

    forget = command("forget", "delete every item of one person (durable when it returns)")
    forget.add_argument("label", metavar="LABEL")
    forget.set_defaults(run=run_forget)

    rename = command(
        "rename",
        "relabel every item of one person",
        "Relabel every item of person OLD as NEW; when NEW has items already, the two "
        "people become one (merged).",
    )
    rename.add_argument("old", metavar="OLD")
    rename.add_argument("new", metavar="NEW")
    rename.set_defaults(run=run_rename)

    identify = command(
        "identify",
        "say who each face is: an enrolled person, or unknown",
        "Who each face in IMAGE (or the vector) is: the nearest enrolled person when the "
        "server's decision\nrule accepts them, else unknown. Below each face, the nearest "
        "candidate people: the distance\nto their nearest item, the similarity (0.5 at the "
        "threshold) and `near`, their items within it.",
    )
    target = identify.add_mutually_exclusive_group(required=True)
    target.add_argument("image", nargs="?", metavar="IMAGE", help="identify every face in it")
    target.add_argument("--vector", metavar="FILE.npy", help="identify one vector instead")
    identify.add_argument(
        "--candidates",
        type=positive_int,
        default=DEFAULT_CANDIDATES,
        metavar="N",
        help=f"candidate people per face (default: {DEFAULT_CANDIDATES})",
    )
    _threshold_option(identify, "calibrated one")
    identify.add_argument(
        "--show",
        metavar="OUT.png",
        help="draw the photo with each face named, and the candidates (needs Pillow)",
    )
    identify.set_defaults(run=run_identify)

    verify = command(
        "verify",
        "say whether two faces are the same person",
        "Compare the largest face of IMAGE with that of OTHER, or with an enrolled person "
        "(their nearest\nitem). Exit status 0 for either answer.",
    )
    verify.add_argument("image", metavar="IMAGE")
    other = verify.add_mutually_exclusive_group(required=True)
    other.add_argument("other", nargs="?", metavar="OTHER", help="a second image")
    other.add_argument("--person", metavar="NAME", help="an enrolled person instead")
    _threshold_option(verify, "threshold for a pair, or for a person")
    verify.set_defaults(run=run_verify)
