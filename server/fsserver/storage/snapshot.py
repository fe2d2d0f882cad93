"""Durable snapshots: one directory per snapshot, written aside and renamed into place.

    data_dir/snapshots/000000000007/
        index.voyager   Voyager's own file
        labels.npz      ids (uint64) and label codes (int32) of labelled items
        labels.json     the label of each code (each distinct label once)
        records.jsonl   {"id", "metadata", "thumbnail" (base64)} for items with either
        deleted.json    ids deleted since the graph was built
        manifest.json   format, embedding contract, counts, sha256 + size of each file

A snapshot is written into a hidden temp directory, every file and the directory fsynced,
then renamed to its number (rename is atomic) and the parent fsynced; so a directory with a
number is always complete. Only then is the write-ahead log trimmed, and only of records the
*older* kept snapshot holds too. The manifest records the last WAL LSN the snapshot holds.

Loading takes the newest snapshot and checks every checksum. A corrupt one is renamed
`<number>.corrupt` (kept for inspection, logged with the file that failed) and the previous
snapshot is loaded instead; the WAL still holds every change since that one, so nothing
acknowledged is lost. Only when no snapshot is intact does the server refuse to start.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import voyager

from fsclient.types import SaveResult
from fsserver.contract import EmbeddingContract
from fsserver.errors import ContractMismatch, ServiceError
from fsserver.storage.files import fsync_path
from fsserver.storage.index import FaceIndex
from fsserver.storage.records import Record, RecordTable

log = logging.getLogger(__name__)

FORMAT = "facesearch-snapshot/2"
# Format 1 kept every label in records.jsonl (one JSON line per labelled item); still read.
READABLE_FORMATS = ("facesearch-snapshot/1", FORMAT)
SNAPSHOTS_DIR = "snapshots"
KEEP = 2  # the newest and the one before it
INDEX_FILE, RECORDS_FILE, DELETED_FILE, MANIFEST_FILE = (
    "index.voyager",
    "records.jsonl",
    "deleted.json",
    "manifest.json",
)
LABEL_CODES_FILE, LABEL_NAMES_FILE = "labels.npz", "labels.json"
DATA_FILES = (INDEX_FILE, LABEL_CODES_FILE, LABEL_NAMES_FILE, RECORDS_FILE, DELETED_FILE)


class SnapshotCorrupt(ServiceError):
    code, number = "DATA_LOSS", 15


def snapshot_dirs(data_dir: Path) -> list[Path]:
    """Complete snapshots, oldest first."""
    root = data_dir / SNAPSHOTS_DIR
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if p.is_dir() and p.name.isdigit())


def _sha256(path: Path) -> str:
    with path.open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def save_snapshot(index: FaceIndex, data_dir: Path) -> SaveResult:
    """Write a snapshot of index, then trim its WAL; a crash at any step loses nothing."""
    started = time.perf_counter()
    root = data_dir / SNAPSHOTS_DIR
    root.mkdir(parents=True, exist_ok=True)
    for stale in root.glob(".tmp-*"):  # left by a crash mid-save
        shutil.rmtree(stale, ignore_errors=True)
    existing = snapshot_dirs(data_dir)
    number = int(existing[-1].name) + 1 if existing else 1
    final = root / f"{number:012d}"
    temp = root / f".tmp-{final.name}-{os.getpid()}"
    temp.mkdir()
    with index.frozen():
        # Later changes go to a new WAL segment, so this one can go once it is covered.
        wal_lsn = index.wal.rotate() if index.wal else 0
        next_id = index.next_id
        index.voyager_index.save(str(temp / INDEX_FILE))
        ids, codes, names = index.records.label_columns()
        with (temp / LABEL_CODES_FILE).open("wb") as columns:
            np.savez(columns, ids=ids, codes=codes)
        (temp / LABEL_NAMES_FILE).write_text(json.dumps(names, ensure_ascii=False))
        with (temp / RECORDS_FILE).open("w", encoding="utf-8") as f:
            for id, metadata, thumbnail in index.records.extras():
                row: dict[str, Any] = {"id": id, "metadata": metadata}
                if thumbnail:
                    row["thumbnail"] = base64.b64encode(thumbnail).decode("ascii")
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
        (temp / DELETED_FILE).write_text(json.dumps(sorted(index.deleted)))
        count, deleted = index.count, index.deleted_count
    files: dict[str, dict[str, Any]] = {
        name: {"sha256": _sha256(temp / name), "bytes": (temp / name).stat().st_size}
        for name in DATA_FILES
    }
    manifest = {
        "format": FORMAT,
        "contract": index.contract.to_dict(),
        "count": count,
        "deleted": deleted,
        "wal_lsn": wal_lsn,
        "next_id": next_id,
        "created_unix": time.time(),
        "files": files,
    }
    (temp / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2) + "\n")
    for name in (*files, MANIFEST_FILE):
        fsync_path(temp / name)
    fsync_path(temp)
    temp.rename(final)
    fsync_path(root)
    for old in snapshot_dirs(data_dir)[:-KEEP]:
        shutil.rmtree(old, ignore_errors=True)
    kept = snapshot_dirs(data_dir)
    if index.wal is not None and len(kept) >= 2:
        # Keep what the older kept snapshot lacks: it is the fallback if this one rots.
        # (With one snapshot the log is kept whole: an empty index is the fallback.)
        try:
            oldest = json.loads((kept[0] / MANIFEST_FILE).read_text())
            index.wal.trim(int(oldest.get("wal_lsn", 0)))
        except (OSError, ValueError) as error:
            log.warning("WAL not trimmed: the oldest snapshot's manifest is unreadable (%s)", error)
    size = sum(f["bytes"] for f in files.values()) + (final / MANIFEST_FILE).stat().st_size
    seconds = time.perf_counter() - started
    log.info("saved snapshot %s: %d items, %d bytes in %.2fs", final.name, count, size, seconds)
    return SaveResult(
        snapshot=str(final.relative_to(data_dir)), count=count, bytes=size, seconds=seconds
    )


def _read_manifest(directory: Path) -> dict[str, Any]:
    path = directory / MANIFEST_FILE
    try:
        manifest: dict[str, Any] = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise SnapshotCorrupt(f"snapshot manifest {path} is unreadable: {error}") from None
    if manifest.get("format") not in READABLE_FORMATS:
        raise SnapshotCorrupt(f"{path} has format {manifest.get('format')!r}, not {FORMAT!r}")
    try:
        files = {name: str(expected["sha256"]) for name, expected in manifest["files"].items()}
        EmbeddingContract.from_dict(manifest["contract"])
        int(manifest["count"])
    except (KeyError, TypeError, AttributeError, ValueError) as error:
        raise SnapshotCorrupt(f"snapshot manifest {path} is incomplete: {error!r}") from None
    for name, sha256 in files.items():
        file = directory / name
        if not file.is_file():
            raise SnapshotCorrupt(f"snapshot file {file} is missing")
        if _sha256(file) != sha256:
            raise SnapshotCorrupt(f"snapshot file {file} fails its checksum (corrupt)")
    return manifest


def _load_records(directory: Path) -> RecordTable:
    if (directory / LABEL_CODES_FILE).is_file():
        with np.load(directory / LABEL_CODES_FILE) as columns:
            ids, codes = columns["ids"].astype(np.uint64), columns["codes"].astype(np.int32)
        names = json.loads((directory / LABEL_NAMES_FILE).read_text(encoding="utf-8"))
        if len(ids) != len(codes) or (
            len(codes) and not 0 <= codes.min() <= codes.max() < len(names)
        ):
            raise ValueError("label codes do not match the label names")
        records = RecordTable.from_columns(ids, codes, names)
    else:
        records = RecordTable()
    with (directory / RECORDS_FILE).open(encoding="utf-8") as f:
        for line in f:
            row = json.loads(line)
            thumbnail = base64.b64decode(row["thumbnail"]) if "thumbnail" in row else b""
            if "label" in row:  # format 1: every field in one line
                records.set(int(row["id"]), Record(row["label"], row["metadata"], thumbnail))
            else:
                records.set_extras(int(row["id"]), row["metadata"], thumbnail)
    return records


@dataclass(frozen=True)
class LoadedSnapshot:
    index: FaceIndex
    name: str  # relative to the data directory
    wal_lsn: int  # the last WAL record it holds


def load_snapshot(
    data_dir: Path, contract: EmbeddingContract, **index_options: Any
) -> LoadedSnapshot | None:
    """The newest intact snapshot, or None when the directory has none.

    A corrupt snapshot is renamed aside and the one before it loaded. Raises
    ContractMismatch when a snapshot was built under another embedding contract, and
    SnapshotCorrupt when snapshots exist but none is intact.
    """
    failures: list[SnapshotCorrupt] = []
    for directory in reversed(snapshot_dirs(data_dir)):
        try:
            loaded = _load(directory, data_dir, contract, index_options)
        except SnapshotCorrupt as error:
            failures.append(error)
            aside = directory.with_name(f"{directory.name}.corrupt")
            directory.rename(aside)
            log.error("%s; moved it to %s and trying the one before it", error, aside.name)
            continue
        if failures:
            log.warning(
                "loaded the older snapshot %s; the WAL replays what came after", loaded.name
            )
        return loaded
    if failures:
        said = "; ".join(str(f) for f in failures)
        raise SnapshotCorrupt(f"no intact snapshot in {data_dir / SNAPSHOTS_DIR}: {said}")
    return None


def _load(
    directory: Path, data_dir: Path, contract: EmbeddingContract, index_options: dict[str, Any]
) -> LoadedSnapshot:
    manifest = _read_manifest(directory)
    stored = EmbeddingContract.from_dict(manifest["contract"])
    differences = stored.differences(contract)
    if differences:
        said = "; ".join(f"{name} {theirs!r} vs {ours!r}" for name, theirs, ours in differences)
        raise ContractMismatch(
            f"the snapshot in {directory} was built under another embedding contract than "
            f"this server's flags ({said}, snapshot vs flags); {stored.mismatch_advice()}"
        )
    try:
        voyager_index = voyager.Index.load(str(directory / INDEX_FILE))
        records = _load_records(directory)
        deleted = [int(i) for i in json.loads((directory / DELETED_FILE).read_text())]
    except (ValueError, KeyError, IndexError, RuntimeError, OSError) as error:  # checksums held
        raise SnapshotCorrupt(f"snapshot {directory} cannot be read: {error}") from None
    index = FaceIndex(
        contract,
        voyager_index=voyager_index,
        records=records,
        deleted=deleted,
        next_id=int(manifest.get("next_id", 0)),
        **index_options,
    )
    if index.count != manifest["count"]:
        raise SnapshotCorrupt(
            f"snapshot {directory} holds {index.count} items, its manifest says {manifest['count']}"
        )
    log.info("loaded snapshot %s: %d items", directory.name, index.count)
    return LoadedSnapshot(
        index, str(directory.relative_to(data_dir)), int(manifest.get("wal_lsn", 0))
    )
