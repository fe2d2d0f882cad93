"""The local files `fsclient` reads: images and .npy vectors, named as the user knows them."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import grpc
import numpy as np

from fsclient.types import FloatArray, ItemError

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"})
VECTOR_EXTENSION = ".npy"


class LocalFileError(Exception):
    """A file that cannot be read or written, or a .npy that holds no vectors."""


@dataclass(frozen=True)
class Source:
    """One file to enroll. `shown` is its path as the user gave it (joined, for folders)."""

    path: Path
    shown: str
    is_vectors: bool
    rows: int = 1
    one_dimensional: bool = True
    label: str | None = None  # from a label list (--labels-csv): wins over the options
    metadata: str | None = None  # likewise, where the list's row has some

    def name(self, row: int) -> str:
        """What a report calls one item: the path, plus `#ROW` for rows of a 2-D .npy."""
        return self.shown if self.one_dimensional else f"{self.shown}#{row}"


def _reason(error: OSError) -> str:
    return error.strerror or str(error)


def read_file(path: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as error:
        raise LocalFileError(f"cannot read {path}: {_reason(error)}") from None


def write_file(path: str, data: bytes) -> None:
    try:
        Path(path).write_bytes(data)
    except OSError as error:
        raise LocalFileError(f"cannot write {path}: {_reason(error)}") from None


def load_vectors(path: Path, shown: str, *, mmap: bool = False) -> FloatArray:
    """A 1-D (one vector) or 2-D (one per row) numeric array from a .npy file."""
    try:
        array = np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
    except OSError as error:
        raise LocalFileError(f"cannot read {shown}: {_reason(error)}") from None
    except ValueError as error:
        raise LocalFileError(f"{shown}: not a numeric .npy array ({error})") from None
    if array.ndim not in (1, 2) or array.size == 0 or array.dtype.kind not in "fiu":
        raise LocalFileError(
            f"{shown}: expected a non-empty 1-D or 2-D numeric array, "
            f"got shape {array.shape} of {array.dtype}"
        )
    return array


def _source(path: Path, shown: str) -> Source:
    if path.suffix.lower() != VECTOR_EXTENSION:
        return Source(path, shown, is_vectors=False)
    vectors = load_vectors(path, shown, mmap=True)  # mmap: only the header is read now
    one_d = vectors.ndim == 1
    return Source(path, shown, True, rows=1 if one_d else len(vectors), one_dimensional=one_d)


def _wanted(file: Path, folder: Path) -> bool:
    suffix = file.suffix.lower()
    hidden = any(part.startswith(".") for part in file.relative_to(folder).parts)
    known = suffix in IMAGE_EXTENSIONS or suffix == VECTOR_EXTENSION
    return known and not hidden and file.is_file()


def collect_sources(paths: Sequence[str]) -> list[Source]:
    """Files as given, and folders walked recursively in sorted order.

    A file named explicitly is sent whatever its extension (the server judges it); inside
    folders only images and .npy files count, and hidden files (e.g. macOS `._x.jpg`) don't.
    """
    sources: list[Source] = []
    for given in paths:
        path = Path(given)
        if path.is_dir():
            found = sorted(f for f in path.rglob("*") if _wanted(f, path))
            if not found:
                raise LocalFileError(f"no images or .npy files in {given}")
            # os.path.join keeps the user's spelling ("./photos/") where Path would not.
            sources += [_source(f, os.path.join(given, *f.relative_to(path).parts)) for f in found]
        elif path.is_file():
            sources.append(_source(path, given))
        else:
            raise LocalFileError(f"cannot read {given}: No such file or directory")
    return sources


def read_source(source: Source) -> bytes | FloatArray:
    """An image's bytes, or a .npy file's vectors as rows (memory-mapped, read lazily)."""
    if not source.is_vectors:
        return source.path.read_bytes()
    vectors = np.load(source.path, mmap_mode="r", allow_pickle=False)
    return vectors[None, :] if vectors.ndim == 1 else vectors


def local_item_error(error: OSError | ValueError) -> ItemError:
    """An item that failed here, before the server saw it, told like a server's failure."""
    if isinstance(error, ValueError):  # a .npy file rewritten since it was listed
        code, reason = grpc.StatusCode.INVALID_ARGUMENT, str(error)
    elif isinstance(error, FileNotFoundError):
        code, reason = grpc.StatusCode.NOT_FOUND, _reason(error)
    elif isinstance(error, PermissionError):
        code, reason = grpc.StatusCode.PERMISSION_DENIED, _reason(error)
    else:
        code, reason = grpc.StatusCode.UNKNOWN, _reason(error)
    return ItemError(code.value[0], f"cannot read file: {reason}")
