"""One shard: a LocalStore in data_dir/shards/<i>/, run as a Ray actor by router.py.

The class is plain Python (router.py wraps it with ray.remote), so all it knows of Ray is
what Ray hands it. Its __init__ is the recovery: Ray runs it again in a fresh process when
the actor dies (max_restarts), and it loads the shard's newest snapshot and replays its WAL,
so every add the router acknowledged (fsynced in this WAL before add_rows returned) is back.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from fsclient.types import CompactResult, FloatArray, Item, ItemSummary, Person, SaveResult
from fsserver.contract import EmbeddingContract
from fsserver.errors import FailedPrecondition, NotFound, ServiceError, Unavailable
from fsserver.storage.backend import Hits, StoreOptions, StoreStats
from fsserver.storage.index import IdArray
from fsserver.storage.local import LocalStore
from fsserver.storage.rows import Rows

log = logging.getLogger(__name__)

# A restarted shard waits this long for its dead predecessor's directory lock to go.
LOCK_WAIT_SECONDS = 30.0


class ShardActor:
    def __init__(
        self, shard: int, directory: str, contract: dict[str, Any], options: StoreOptions
    ) -> None:
        logging.basicConfig(
            level=logging.INFO, format=f"%(asctime)s %(levelname)s shard {shard}: %(message)s"
        )
        self.shard = shard
        self._store: LocalStore | None = None
        # A refusal (a corrupt snapshot, another contract) is kept and raised by ready(),
        # so the server reports it cleanly instead of Ray retrying a doomed constructor.
        self._failure: ServiceError | None = None
        try:
            self._store = LocalStore(
                Path(directory),
                EmbeddingContract.from_dict(contract),
                options,
                lock_wait_seconds=LOCK_WAIT_SECONDS,
            )
        except ServiceError as error:
            self._failure = error
            log.error("shard %d cannot open %s: %s", shard, directory, error)
        except Exception as error:  # e.g. a directory it may not write
            log.exception("shard %d cannot open %s", shard, directory)
            self._failure = FailedPrecondition(f"shard {shard} cannot open {directory}: {error}")

    @property
    def store(self) -> LocalStore:
        if self._store is None:
            assert self._failure is not None
            raise self._failure
        return self._store

    def ready(self) -> tuple[int, int]:
        """(next free id, live items), once the snapshot is loaded and the WAL replayed."""
        store = self.store
        return store.next_id, store.count

    def pid(self) -> int:
        return os.getpid()

    # ---- writes: the router serialises them and sends explicit ids ------------------

    def add_rows(self, rows: Rows) -> list[int | ServiceError]:
        """Store rows under the router's ids; durable (fsynced in this shard's WAL) on return.

        Safe to run twice (Ray retries it on a restarted actor): the same ids with the same
        rows are an upsert to the same values.
        """
        # Ray hands numpy arguments over read-only (from its object store); Voyager's
        # add_items refuses read-only arrays, so take a writable copy.
        writable = np.array(rows.vectors, dtype=np.float32, copy=True)
        return self.store.add_rows(replace(rows, vectors=writable))

    def missing(self, ids: Sequence[int]) -> list[int]:
        return self.store.missing(ids)

    def delete_present(self, ids: Sequence[int]) -> int:
        """Delete those of ids this shard holds (the router checked they all exist first).

        Ignoring absent ids makes a retry after a restart harmless.
        """
        present = [id for id in ids if id in self.store.index]
        return self.store.delete(present) if present else 0

    def forget_present(self, label: str) -> int:
        """Delete this shard's items labelled `label`; 0 when it has none (the router says
        NotFound only when no shard had any). A retry after a restart finds none: 0."""
        try:
            return self.store.forget(label)
        except NotFound:
            return 0

    def rename_present(self, old: str, new: str) -> int:
        """Relabel this shard's items labelled `old` as `new`; 0 when it has none."""
        try:
            return self.store.rename(old, new)
        except NotFound:
            return 0

    # ---- reads and the rest ----------------------------------------------------------

    def people(self) -> list[Person]:
        return self.store.people()

    def item_ids(self, label: str | None, upto: int) -> tuple[IdArray, int]:
        return self.store.item_ids(label, upto)

    def summaries(self, ids: Sequence[int]) -> list[ItemSummary]:
        return self.store.summaries(ids)

    def gallery_rows(self, labels: Sequence[str]) -> tuple[IdArray, list[str], FloatArray]:
        return self.store.gallery_rows(labels)

    def search(
        self, vectors: FloatArray, k: int, ef: int | None, exact: bool, with_metadata: bool
    ) -> Hits:
        return self.store.search(vectors, k, ef, exact, with_metadata)

    def get(self, id: int) -> Item:
        return self.store.get(id)

    def save(self) -> SaveResult:
        return self.store.save()

    def compact(self, force: bool = False) -> CompactResult:
        return self.store.compact(force)

    def stats(self) -> StoreStats:
        return self.store.stats()

    def unsaved_changes(self) -> bool:
        return self.store.unsaved_changes

    def close(self) -> None:
        if self._store is not None:
            self._store.close()
            self._store = None
            self._failure = Unavailable(f"shard {self.shard} is closed: the server is stopping")
