"""What the `fsclient` commands share: argument types, the usage error, small fetches.

Its own module so that command modules (cli.py, cli_people.py) share one UsageError class:
`python -m fsclient.cli` runs cli.py as __main__, and a second module importing cli.py
would get a second copy of it.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Callable, Iterable
from pathlib import Path

import grpc
import numpy as np

from fsclient.client import DEFAULT_SERVER, FaceSearchClient, FaceSearchError
from fsclient.connection import DEFAULT_PORT
from fsclient.sources import LocalFileError, load_vectors, write_file
from fsclient.types import FloatArray


class UsageError(Exception):
    """A command line that makes no sense: exit status 2."""


# ---- argument types ----------------------------------------------------------------------


def positive_int(text: str) -> int:
    value = non_negative_int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {text}")
    return value


def non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must not be negative: {text}")
    return value


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be more than 0, not {text}")
    return value


def distance(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"must be a distance of 0 or more, not {text}")
    return value


# ---- helpers -----------------------------------------------------------------------------


def one_vector(path: str, command: str) -> FloatArray:
    """The one vector of a .npy file (1-D, or 2-D with one row)."""
    vectors = load_vectors(Path(path), path)
    if vectors.ndim == 2 and len(vectors) != 1:
        raise LocalFileError(f"{path}: holds {len(vectors)} vectors; {command} takes one")
    return np.asarray(vectors, dtype=np.float32).ravel()


def fetch_thumbnail(client: FaceSearchClient, item_id: int) -> bytes | None:
    """Item `item_id`'s face thumbnail; None when it has none or was deleted meanwhile."""
    try:
        return client.get(item_id).thumbnail or None
    except FaceSearchError as error:
        if error.code == grpc.StatusCode.NOT_FOUND:
            return None  # a placeholder is drawn instead
        raise


def write_picture(
    args: argparse.Namespace,
    client: FaceSearchClient,
    item_ids: Iterable[int],
    draw: Callable[[dict[int, bytes | None]], bytes],
    what: str,
) -> None:
    """Fetch the thumbnails of `item_ids`, draw the picture with them into --show, and say
    so on stderr (not with --quiet or --json, whose stdout is the answer alone)."""
    thumbnails = {item_id: fetch_thumbnail(client, item_id) for item_id in sorted(set(item_ids))}
    write_file(args.show, draw(thumbnails))
    if not (args.quiet or args.json):
        print(f"{what} picture written to {args.show}", file=sys.stderr)


def add_global_options(parser: argparse.ArgumentParser, *, in_subcommand: bool) -> None:
    """The options every command takes, before or after its name (--server, --json, TLS…).
    After the subcommand they default to SUPPRESS, so a value given before it is kept."""

    def default(value: object) -> object:
        return argparse.SUPPRESS if in_subcommand else value

    group = parser.add_argument_group("global options")
    group.add_argument(
        "--server",
        metavar="HOST[:PORT]",
        default=default(None),
        help=f"the facesearch server (default: $FSCLIENT_SERVER, else {DEFAULT_SERVER}; "
        f"port {DEFAULT_PORT} when none is given)",
    )
    group.add_argument(
        "--collection",
        metavar="NAME",
        default=default(None),
        help="the collection to work on (default: $FSCLIENT_COLLECTION, else 'default')",
    )
    group.add_argument(
        "--timeout",
        type=positive_float,
        metavar="SECONDS",
        default=default(None),
        help="deadline of each call (default: none)",
    )
    group.add_argument(
        "--json", action="store_true", default=default(False), help="print one line of JSON"
    )
    group.add_argument(
        "-q",
        "--quiet",
        action="store_true",
        default=default(False),
        help="no progress bar and no chatter; results, failures and errors still print",
    )
    # The token is deliberately no flag: command lines show up in `ps` and shell history.
    tls = parser.add_argument_group("TLS and authentication")
    tls.add_argument(
        "--tls",
        action="store_true",
        default=default(False),
        help="connect over TLS, trusting the system's CAs (implied by --tls-ca)",
    )
    tls.add_argument(
        "--tls-ca",
        metavar="PEM",
        default=default(None),
        help="connect over TLS, trusting this CA (default: $FSCLIENT_TLS_CA)",
    )
    tls.add_argument(
        "--tls-cert",
        metavar="PEM",
        default=default(None),
        help="client certificate, for mutual TLS (default: $FSCLIENT_TLS_CERT)",
    )
    tls.add_argument(
        "--tls-key",
        metavar="PEM",
        default=default(None),
        help="the private key of --tls-cert (default: $FSCLIENT_TLS_KEY)",
    )
    tls.add_argument(
        "--token-file",
        metavar="FILE",
        default=default(None),
        help="read the bearer token from FILE (default: $FSCLIENT_TOKEN)",
    )
