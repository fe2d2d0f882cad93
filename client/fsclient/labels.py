"""Label lists: a CSV naming photos (or .npy files) and who is in each.

`fsclient add --labels-csv FILE` reads them here; `fsserver enroll` finds the same columns
with `find_columns` (the server may import the client, never the other way round). A list
has a path column (`path` or `file`; relative paths are taken from the list's folder), a
label column (`label`, `person` or `identity`) and optionally `metadata`. Column names are
matched ignoring case and surrounding spaces; the first of each list of names present wins.
"""

from __future__ import annotations

import csv
import dataclasses
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from fsclient.sources import LocalFileError, Source, _source

PATH_COLUMNS = ("path", "file")
LABEL_COLUMNS = ("label", "person", "identity")
METADATA_COLUMNS = ("metadata",)


@dataclass(frozen=True)
class Columns:
    """The names, as the list spells them, of its path, label and metadata columns."""

    path: str
    label: str | None
    metadata: str | None


def _names(wanted: Sequence[str]) -> str:
    quoted = [f"`{name}`" for name in wanted]
    return " or ".join(quoted) if len(quoted) < 3 else f"{', '.join(quoted[:-1])} or {quoted[-1]}"


def find_columns(names: Sequence[str], shown: str, *, need_label: bool = True) -> Columns:
    """The path, label and metadata columns among `names`; LocalFileError naming the columns
    the list does have when it lacks a path column (or a label column, if `need_label`)."""
    by_key: dict[str, str] = {}
    for name in names:
        by_key.setdefault(str(name).strip().lower(), str(name))

    def first(wanted: Sequence[str]) -> str | None:
        return next((by_key[key] for key in wanted if key in by_key), None)

    has = ", ".join(str(name) for name in names) or "none"
    path, label = first(PATH_COLUMNS), first(LABEL_COLUMNS)
    if path is None:
        raise LocalFileError(f"{shown}: no {_names(PATH_COLUMNS)} column (its columns: {has})")
    if label is None and need_label:
        raise LocalFileError(f"{shown}: no {_names(LABEL_COLUMNS)} column (its columns: {has})")
    return Columns(path, label, first(METADATA_COLUMNS))


def listed_path(folder: str | os.PathLike[str], cell: str) -> str:
    """A listed path, relative to the list's folder unless absolute (os.path.join keeps
    the user's spelling, for reports)."""
    return os.path.join(folder, cell)


def read_labels_csv(given: str) -> list[Source]:
    """Every file a label list names, in its order, each with its label (and metadata, where
    the row has some). Refused whole, with one line naming the CSV line, if a row names no
    file, a file that is not there, or no label: nothing is sent until the list is sound."""
    folder = os.path.dirname(given)
    sources: list[Source] = []
    try:
        with open(given, newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            if not reader.fieldnames:
                raise LocalFileError(f"{given}: empty CSV (no header line)")
            columns = find_columns(reader.fieldnames, given)
            for row in reader:
                where = f"{given} line {reader.line_num}"
                cell = (row.get(columns.path) or "").strip()
                label = (row.get(columns.label or "") or "").strip()
                metadata = row.get(columns.metadata or "") or None
                if not cell:
                    raise LocalFileError(f"{where}: empty `{columns.path}`")
                if not label:
                    raise LocalFileError(f"{where}: empty `{columns.label}` for {cell}")
                shown = listed_path(folder, cell)
                path = Path(shown)
                if not path.is_file():
                    why = "not a file" if path.exists() else "No such file or directory"
                    raise LocalFileError(f"{where}: cannot read {shown}: {why}")
                try:
                    source = _source(path, shown)
                except LocalFileError as error:
                    raise LocalFileError(f"{where}: {error}") from None
                sources.append(dataclasses.replace(source, label=label, metadata=metadata))
    except OSError as error:
        raise LocalFileError(f"cannot read {given}: {error.strerror or error}") from None
    except UnicodeDecodeError:
        raise LocalFileError(f"{given}: not UTF-8 text") from None
    except csv.Error as error:
        raise LocalFileError(f"{given}: not a readable CSV ({error})") from None
    if not sources:
        raise LocalFileError(f"{given}: lists no files (only a header line)")
    return sources
