"""What a compaction needs besides the index's locks: its result, its threads, its catch-up.

FaceIndex.compact takes the cut under the mutation lock (which ids are live, and a queue for
what changes from then on), reads their vectors a chunk at a time, rebuilds a graph from
them with no lock held (`rebuild`), and swaps it in. `catch_up` replays the
changes queued meanwhile onto the new graph in rounds while writers go on, so that only the
last few rows are applied under the mutation lock, right before the swap.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import voyager

from fsclient.types import FloatArray
from fsserver.storage.inserts import replay_onto
from fsserver.storage.wal_records import AddRecord, WalRecord

# Left for the swap: at most this many queued rows to insert (a few ms of work; a soak
# with 4 records left held writers 163 ms when they were adds of 200 rows).
_LEFT_FOR_THE_SWAP = 32
# Writers could outpace the replay for ever; after this many rounds the rest goes under
# the lock however long it is.
_ROUNDS = 20


@dataclass(frozen=True)
class Compaction:
    removed: int  # deleted items dropped
    hold_seconds: float = 0.0  # how long writers (and, for the swap, queries) were held


class Cancelled(Exception):
    """The rebuild was given up: the store is closing."""


def rebuild(
    index: voyager.Index,
    chunks: Iterable[tuple[npt.NDArray[np.uint64], FloatArray]],
    cancelled: threading.Event,
) -> None:
    """Insert the live rows, chunk by chunk, into a new graph on every core; raises
    Cancelled, within one chunk, once `cancelled` is set.

    At full priority: run at nice 10 so that queries came first, a 50k-row rebuild under
    8 busy clients had not finished after 150 s (deletes piling up meanwhile), while at
    nice 0 the queries that overlapped a rebuild had the same p99 as the others (the
    clients keep the cores busy either way).
    """
    for ids, vectors in chunks:
        if cancelled.is_set():
            raise Cancelled("the store is closing")
        if len(ids):
            index.add_items(vectors, ids=ids, num_threads=-1)


def catch_up(index: voyager.Index, pending: Sequence[WalRecord], deleted: set[int]) -> int:
    """Replay onto the rebuilt `index` the records queued so far in `pending` (a list that
    writers go on appending to under the mutation lock) until few are left; how many were
    replayed. Slicing the list is a stable copy of what was appended so far."""
    done = 0
    for _ in range(_ROUNDS):
        batch = pending[done:]
        if sum(_rows(record) for record in batch) <= _LEFT_FOR_THE_SWAP:
            break
        replay_onto(index, batch, deleted)
        done += len(batch)
    return done


def _rows(record: WalRecord) -> int:
    """What replaying a record costs, in rows inserted (a delete or relabel: next to none)."""
    return len(record.ids) if isinstance(record, AddRecord) else 0
