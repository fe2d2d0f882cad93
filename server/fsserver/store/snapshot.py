"""Durable snapshots: one directory per snapshot, written aside and renamed into place.

    data_dir/snapshots/000000000007/
        index.voyager   Voyager's own file
        records.jsonl   {"id", "label", "metadata", "thumbnail" (base64)} for labelled items
        deleted.json    ids deleted since the graph was built
        manifest.json   format, embedding contract, counts, sha256 + size of each file

A snapshot is written into a hidden temp directory, every file and the directory fsynced,
then renamed to its number (rename is atomic) and the parent fsynced; so a directory with a
number is always complete. Loading takes the newest one and checks every checksum; a
corrupt newest snapshot stops the server with the file's name rather than silently loading
older data (move it aside to fall back to the previous one, which is kept).
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
import shutil
import time
from pathlib import Path
from typing import Any

import voyager

from fsclient.types import SaveResult
from fsserver.contract import EmbeddingContract
from fsserver.errors import ContractMismatch, FaceSearchError
from fsserver.store.index import FaceIndex, Record

log = logging.getLogger(__name__)

FORMAT = "facesearch-snapshot/1"
SNAPSHOTS_DIR = "snapshots"
KEEP = 2  # the newest and the one before it
INDEX_FILE, RECORDS_FILE, DELETED_FILE, MANIFEST_FILE = (
    "index.voyager",
    "records.jsonl",
    "deleted.json",
    "manifest.json",
)


class SnapshotCorrupt(FaceSearchError):
    code, number = "DATA_LOSS", 15


def snapshot_dirs(data_dir: Path) -> list[Path]:
    """Complete snapshots, oldest first."""
    root = data_dir / SNAPSHOTS_DIR
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if p.is_dir() and p.name.isdigit())


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _sha256(path: Path) -> str:
    with path.open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def save_snapshot(index: FaceIndex, data_dir: Path) -> SaveResult:
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
        index.voyager_index.save(str(temp / INDEX_FILE))
        with (temp / RECORDS_FILE).open("w", encoding="utf-8") as f:
            for id, record in index.records.items():
                row = {"id": id, "label": record.label, "metadata": record.metadata}
                if record.thumbnail:
                    row["thumbnail"] = base64.b64encode(record.thumbnail).decode("ascii")
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
        (temp / DELETED_FILE).write_text(json.dumps(sorted(index.deleted)))
        count, deleted = index.count, index.deleted_count
    files: dict[str, dict[str, Any]] = {
        name: {"sha256": _sha256(temp / name), "bytes": (temp / name).stat().st_size}
        for name in (INDEX_FILE, RECORDS_FILE, DELETED_FILE)
    }
    manifest = {
        "format": FORMAT,
        "contract": index.contract.to_dict(),
        "count": count,
        "deleted": deleted,
        "created_unix": time.time(),
        "files": files,
    }
    (temp / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2) + "\n")
    for name in (*files, MANIFEST_FILE):
        _fsync(temp / name)
    _fsync(temp)
    temp.rename(final)
    _fsync(root)
    for old in snapshot_dirs(data_dir)[:-KEEP]:
        shutil.rmtree(old, ignore_errors=True)
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
    if manifest.get("format") != FORMAT:
        raise SnapshotCorrupt(f"{path} has format {manifest.get('format')!r}, not {FORMAT!r}")
    for name, expected in manifest["files"].items():
        file = directory / name
        if not file.is_file():
            raise SnapshotCorrupt(f"snapshot file {file} is missing")
        if _sha256(file) != expected["sha256"]:
            raise SnapshotCorrupt(f"snapshot file {file} fails its checksum (corrupt)")
    return manifest


def load_snapshot(
    data_dir: Path, contract: EmbeddingContract, **index_options: Any
) -> tuple[FaceIndex, str] | None:
    """The newest snapshot as a FaceIndex, or None when the directory has none.

    Raises ContractMismatch when it was built under another embedding contract, and
    SnapshotCorrupt when a file is missing or fails its checksum.
    """
    snapshots = snapshot_dirs(data_dir)
    if not snapshots:
        return None
    directory = snapshots[-1]
    manifest = _read_manifest(directory)
    stored = EmbeddingContract.from_dict(manifest["contract"])
    differences = stored.differences(contract)
    if differences:
        said = "; ".join(f"{name} {theirs!r} vs {ours!r}" for name, theirs, ours in differences)
        raise ContractMismatch(
            f"the snapshot in {directory} was built under another embedding contract than "
            f"this server's flags ({said}, snapshot vs flags); start with matching flags or "
            "another --data-dir"
        )
    voyager_index = voyager.Index.load(str(directory / INDEX_FILE))
    records = {}
    with (directory / RECORDS_FILE).open(encoding="utf-8") as f:
        for line in f:
            row = json.loads(line)
            thumbnail = base64.b64decode(row["thumbnail"]) if "thumbnail" in row else b""
            records[int(row["id"])] = Record(row["label"], row["metadata"], thumbnail)
    deleted = [int(i) for i in json.loads((directory / DELETED_FILE).read_text())]
    index = FaceIndex(
        contract, voyager_index=voyager_index, records=records, deleted=deleted, **index_options
    )
    if index.count != manifest["count"]:
        raise SnapshotCorrupt(
            f"snapshot {directory} holds {index.count} items, its manifest says {manifest['count']}"
        )
    log.info("loaded snapshot %s: %d items", directory.name, index.count)
    return index, str(directory.relative_to(data_dir))
