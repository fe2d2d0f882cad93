"""What the `fsclient` commands share: argument types, the usage error, small fetches.

Its own module so that command modules (cli.py, cli_people.py) share one UsageError class:
`python -m fsclient.cli` runs cli.py as __main__, and a second module importing cli.py
would get a second copy of it.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import grpc
import numpy as np

from fsclient.client import FaceSearchClient, FaceSearchError
from fsclient.sources import LocalFileError, load_vectors
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
