"""How a sharded data directory is laid out, and which shard an id lives in (no Ray here).

    data_dir/LOCK           the server's lock (one server per data directory)
    data_dir/sharding.json  {"format": ..., "shards": N}: written once, checked at every start
    data_dir/shards/<i>/    shard i: a LocalStore's own LOCK, snapshots/ and wal/

An item's shard is its id modulo N: stable, needs no table, and spreads the server's dense
id counter evenly. So N is fixed for the life of the data directory, and opening it with
another N is a start-up error rather than a silent re-route that would lose every item.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from fsserver.errors import FailedPrecondition
from fsserver.storage.files import fsync_path
from fsserver.storage.recovery import WAL_DIR
from fsserver.storage.snapshot import SNAPSHOTS_DIR

LAYOUT_FILE = "sharding.json"
FORMAT = "facesearch-shards/1"
SHARDS_DIR = "shards"


def shard_of(id: int, shards: int) -> int:
    return id % shards


def shard_dir(data_dir: Path, shard: int) -> Path:
    return data_dir / SHARDS_DIR / str(shard)


def read_layout(data_dir: Path) -> int | None:
    """The shard count recorded in data_dir, or None for an unsharded directory."""
    path = data_dir / LAYOUT_FILE
    if not path.is_file():
        return None
    try:
        layout = json.loads(path.read_text())
        if layout.get("format") != FORMAT:
            raise ValueError(f"format {layout.get('format')!r}, not {FORMAT!r}")
        shards = int(layout["shards"])
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
        raise FailedPrecondition(f"{path} is unreadable: {error}") from None
    if shards < 1:
        raise FailedPrecondition(f"{path} names {shards} shards")
    return shards


def claim_layout(data_dir: Path, shards: int) -> None:
    """Record `shards` in a new data directory, or check an existing one holds as many."""
    recorded = read_layout(data_dir)
    if recorded is not None:
        if recorded != shards:
            raise FailedPrecondition(
                f"{data_dir} holds {recorded} shards, not {shards}: ids are placed by id % "
                f"shards, so start with --shards {recorded} (or use another --data-dir)"
            )
        return
    if (data_dir / WAL_DIR).is_dir() or (data_dir / SNAPSHOTS_DIR).is_dir():
        raise FailedPrecondition(
            f"{data_dir} holds a single (unsharded) index: start without --backend ray, "
            "or use another --data-dir"
        )
    data_dir.mkdir(parents=True, exist_ok=True)
    temp = data_dir / f".{LAYOUT_FILE}.tmp"
    temp.write_text(json.dumps({"format": FORMAT, "shards": shards}) + "\n")
    with temp.open("rb") as f:
        os.fsync(f.fileno())
    temp.rename(data_dir / LAYOUT_FILE)
    fsync_path(data_dir)


def check_not_sharded(data_dir: Path) -> None:
    """The single index must not open a directory that holds Ray shards (it would look
    empty and start a second, unrelated index beside them)."""
    layout = read_layout(data_dir)
    if layout is not None:
        raise FailedPrecondition(
            f"{data_dir} holds {layout} Ray shards: start with --backend ray --shards {layout}"
        )
