"""The index interface a collection talks to, and what it needs from any implementation.

Two implementations: LocalStore (local.py: one Voyager index with its WAL and snapshots in
the data directory, the default) and RayShards (fsserver/shards/: N Ray actors, each owning
a LocalStore in data_dir/shards/<i>/). The collection validates requests, embeds images and
allocates nothing; a backend stores, searches and persists vectors under global ids.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import numpy.typing as npt

from fsclient.types import CompactResult, FloatArray, Item, ItemSummary, Page, Person, SaveResult
from fsserver.contract import EmbeddingContract
from fsserver.errors import ServiceError
from fsserver.storage.rows import Rows


@dataclass(frozen=True)
class Hits:
    """Each query row's nearest items, nearest first (rows x min(k, count) each)."""

    ids: npt.NDArray[np.uint64]
    distances: FloatArray  # the user's scale (contract.to_user_distances)
    labels: list[list[str]]
    metadata: list[list[str]] | None  # None unless asked for


@dataclass(frozen=True)
class StoreStats:
    """A backend's share of Stats, under Stats's own field names (the collection adds the
    contract, the embed queue and the decision rule)."""

    count: int
    deleted: int
    ef: int  # the default ef in force (the largest of any shard's)
    target_recall: float
    estimated_recall: float  # the lowest of any shard's; 0 until measured
    recall_measured_at: int
    snapshot: str
    wal_replayed: int
    wal_dropped: int
    wal_bytes: int
    memory_bytes: int  # an estimate: the graph, vectors, labels, metadata, thumbnails


@dataclass(frozen=True)
class StoreOptions:
    """How a store builds, calibrates and checkpoints its index (from the server's Config)."""

    m: int = 12
    ef_construction: int = 200
    ef: int = 64
    target_recall: float = 0.0
    compact_deleted_share: float = 0.25
    checkpoint_wal_mb: int = 0


class IndexBackend(Protocol):
    @property
    def contract(self) -> EmbeddingContract: ...

    @property
    def count(self) -> int: ...

    @property
    def unsaved_changes(self) -> bool: ...

    def add_rows(self, rows: Rows) -> list[int | ServiceError]:
        """Store validated rows; per row its id or its own error. Durable on return."""
        ...

    def delete(self, ids: Sequence[int]) -> int:
        """Delete all of ids or none (NotFound); durable on return."""
        ...

    def search(
        self,
        vectors: FloatArray,
        k: int,
        ef: int | None = None,
        exact: bool = False,
        with_metadata: bool = False,
    ) -> Hits: ...

    def get(self, id: int) -> Item: ...

    # ---- people: the label of an item is its person ---------------------------------

    def people(self) -> list[Person]:
        """Every label held by at least one live item, with its live item count, sorted by
        label. Unlabelled items ("") are not a person."""
        ...

    def items(self, label: str | None, offset: int, limit: int) -> Page[ItemSummary]:
        """Live items (id, label, metadata) in ascending id order, only those labelled
        `label` when given ("": the unlabelled ones); `total` is how many match (for
        paging). InvalidArgument for a negative offset or limit."""
        ...

    def forget(self, label: str) -> int:
        """Delete every live item labelled `label`; durable on return (in the WAL as a
        delete of their ids); the number deleted. NotFound naming the label when no live
        item has it; InvalidArgument for ""."""
        ...

    def rename(self, old: str, new: str) -> int:
        """Relabel every live item labelled `old` as `new` (merging into `new` when it
        exists); durable on return; the number relabelled. NotFound naming `old` when no
        live item has it; InvalidArgument when either is ""."""
        ...

    def gallery(self, max_people: int, seed: int = 0) -> tuple[list[str], FloatArray]:
        """Labels and vectors (rows x dim float32, stored vectors as Get returns them; rows
        in ascending id order) of the live labelled items of at most `max_people` people:
        all when fewer, else a sample of people drawn with `seed`, every item of each. Reads
        vectors a chunk per lock hold, so queries are never held off for long."""
        ...

    def save(self) -> SaveResult: ...

    def writing(self) -> AbstractContextManager[None]:
        """Held while an Add stream is open: recall is not measured under its batches."""
        ...

    def compact(self, force: bool = False, wait: float | None = None) -> CompactResult: ...

    def stats(self) -> StoreStats: ...

    def close(self) -> None: ...
