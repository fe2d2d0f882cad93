"""Writing rows into a Voyager index: ids for a batch, and the chunked insert.

Kept apart from index.py, which calls them under its locks (the sharded router claims ids
with the same function, so ids mean the same in one index and across shards).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from contextlib import nullcontext

import numpy as np
import voyager

from fsserver.errors import InvalidArgument, ResourceExhausted, ServiceError
from fsserver.storage.records import RecordTable
from fsserver.storage.rwlock import ReadWriteLock
from fsserver.storage.wal_records import AddRecord, DeleteRecord, WalRecord

MAX_ID = 2**64 - 1
# Rows per add_items call: lookups by id wait for at most one chunk of inserts. Smaller
# chunks cost bulk loads dearly (60k face-like rows: 6,046/s at 256 rows, 7,900/s at 1024,
# 8,040/s in one call), so a Get may wait ~0.1-0.3 s behind a bulk load instead.
_INSERT_CHUNK = 1024
# Capacity grows by half (not doubling): a doubled graph held up to 2x the memory its rows
# need, and a resize only copies memory (tens of ms per 100 MB, under the write lock).
_GROWTH = 1.5
MIN_CAPACITY = 1024


def grown_capacity(current: int, needed: int) -> int:
    """The capacity to resize to when `needed` slots do not fit in `current`."""
    return max(needed, int(current * _GROWTH), MIN_CAPACITY)


def rebuilt_capacity(live: int) -> int:
    """A rebuilt graph's capacity: its rows and an eighth more, so the first adds after a
    compaction do not resize it at once."""
    return max(live + live // 8, MIN_CAPACITY)


def claim_ids(
    requested: Sequence[int | None], next_id: int
) -> tuple[list[int | ServiceError], int]:
    """Ids for a batch (each requested one, or the counter's next for None), or per item
    why not (out of range, repeated in the batch); and the counter after them.

    The counter only grows, past every id handed out or requested, so a fresh id never
    collides with one in use (the sharded router keeps one such counter for all shards).
    """
    if all(id is None for id in requested) and next_id + len(requested) <= MAX_ID:
        return list(range(next_id, next_id + len(requested))), next_id + len(requested)
    seen: set[int] = set()
    outcomes: list[int | ServiceError] = []
    for wanted in requested:
        if wanted is None:
            if next_id > MAX_ID:
                outcomes.append(ResourceExhausted("no free id above the largest one in use"))
                continue
            wanted = next_id
        elif not 0 <= wanted <= MAX_ID:
            outcomes.append(InvalidArgument(f"id {wanted} is outside 0..2^64-1"))
            continue
        if wanted in seen:
            outcomes.append(InvalidArgument(f"id {wanted} appears more than once in this batch"))
            continue
        next_id = max(next_id, wanted + 1)
        seen.add(wanted)
        outcomes.append(wanted)
    return outcomes, next_id


def insert(
    index: voyager.Index,
    deleted: set[int],
    lock: ReadWriteLock | None,
    labels: threading.Lock | None,
    record: AddRecord,
    records: RecordTable | None,
) -> None:
    """Add or replace rows (and their records); grows capacity and revives deleted ids.

    Rows go in chunks, each under the labels lock with its records, so a lookup by id
    waits at most one chunk and sees a record and a vector from the same write.
    Replacements go in one thread: Voyager crashed replacing rows in parallel with adds.
    """
    ids = record.ids.tolist()
    revived = [i for i in ids if i in deleted]
    needed = len(index) + len(ids)
    if needed > index.max_elements or revived:
        with lock.write() if lock else nullcontext():
            if needed > index.max_elements:
                index.resize(grown_capacity(index.max_elements, needed))
            for id in revived:
                index.unmark_deleted(id)
                deleted.discard(id)
    replacing = np.array([id in index for id in ids], dtype=bool)
    batch = record.rows
    extras = any(batch.metadata) or any(batch.thumbnails)
    for rows, threads in ((np.flatnonzero(replacing), 1), (np.flatnonzero(~replacing), -1)):
        for start in range(0, len(rows), _INSERT_CHUNK):
            chunk = rows[start : start + _INSERT_CHUNK]
            chunk_ids = [ids[i] for i in chunk]
            with lock.read() if lock else nullcontext(), labels or nullcontext():
                if records is not None:
                    positions = chunk.tolist()
                    records.set_labels(chunk_ids, [batch.labels[i] for i in positions])
                    # Bulk loads carry neither and replace nothing that had any: skip the rows.
                    if extras or records.has_any_extras:
                        for i in positions:
                            metadata, thumbnail = batch.metadata[i], batch.thumbnails[i]
                            if metadata or thumbnail or records.has_extras(ids[i]):
                                records.set_extras(ids[i], metadata, thumbnail)
                index.add_items(batch.vectors[chunk], ids=chunk_ids, num_threads=threads)


def empty_like(old: voyager.Index, capacity: int) -> voyager.Index:
    """A new, empty graph with the settings of `old`."""
    return voyager.Index(
        old.space,
        num_dimensions=old.num_dimensions,
        M=old.M,
        ef_construction=old.ef_construction,
        max_elements=capacity,
        storage_data_type=old.storage_data_type,
    )


def replay_onto(index: voyager.Index, changes: Sequence[WalRecord], deleted: set[int]) -> None:
    """Apply to a rebuilt graph changes logged while it was built, keeping its deleted ids
    in `deleted`. Relabels change only the records, which the old and new graphs share."""
    for record in changes:
        if isinstance(record, AddRecord):
            insert(index, deleted, None, None, record, None)
        elif isinstance(record, DeleteRecord):
            for id in record.ids.tolist():
                if id in index and id not in deleted:
                    index.mark_deleted(id)
                    deleted.add(id)
