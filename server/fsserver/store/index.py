"""The face/vector index: a Voyager HNSW index plus labels, metadata and thumbnails.

Ids are uint64 and stable; labels and metadata live in a sparse dict (only items that have
them), so a million unlabelled padding vectors cost nothing beyond Voyager's own memory.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import voyager

from fsclient.types import FloatArray, Item, Neighbor
from fsserver.contract import EmbeddingContract
from fsserver.errors import FaceSearchError, InvalidArgument, NotFound, ResourceExhausted
from fsserver.store.rwlock import ReadWriteLock

MAX_ID = 2**64 - 1
_SPACES = {"euclidean": voyager.Space.Euclidean, "cosine": voyager.Space.Cosine}
_STORAGES = {"float32": voyager.StorageDataType.Float32, "e4m3": voyager.StorageDataType.E4M3}
# Grow capacity in big steps: a resize locks queries out, so it should be rare.
_MIN_CAPACITY = 1024


@dataclass(frozen=True)
class Record:
    label: str = ""
    metadata: str = ""
    thumbnail: bytes = b""


NO_RECORD = Record()  # shared by every item without label, metadata or thumbnail


@dataclass(frozen=True)
class Entry:
    """One item to store. `vector` must have passed validate_vector."""

    vector: FloatArray
    id: int | None = None
    record: Record = NO_RECORD


class FaceIndex:
    def __init__(
        self,
        contract: EmbeddingContract,
        *,
        m: int = 12,
        ef_construction: int = 200,
        ef: int = 64,
        threshold: float | None = None,
        voyager_index: voyager.Index | None = None,
        records: dict[int, Record] | None = None,
        deleted: Iterable[int] = (),
    ) -> None:
        self.contract = contract
        self.default_ef = ef
        self.threshold = threshold
        self._index = voyager_index or voyager.Index(
            _SPACES[contract.space],
            num_dimensions=contract.dim,
            M=m,
            ef_construction=ef_construction,
            max_elements=_MIN_CAPACITY,
            storage_data_type=_STORAGES[contract.storage],
        )
        self._records: dict[int, Record] = records or {}
        self._deleted: set[int] = set(deleted)
        self._next_id = max((int(i) for i in self._index.ids), default=-1) + 1
        self.version = 0  # bumped by every change, so callers can tell if a save is due
        self._lock = ReadWriteLock()  # queries/inserts read; resize/delete write
        self._mutation = threading.Lock()  # one add, delete or save at a time

    # ---- facts -----------------------------------------------------------------------

    @property
    def count(self) -> int:
        return len(self._index) - len(self._deleted)

    @property
    def deleted_count(self) -> int:
        return len(self._deleted)

    @property
    def voyager_index(self) -> voyager.Index:
        return self._index

    def __contains__(self, id: int) -> bool:
        return 0 <= id <= MAX_ID and id in self._index and id not in self._deleted

    # ---- writes ----------------------------------------------------------------------

    def validate_vector(self, vector: FloatArray) -> FloatArray:
        """The vector as a writable float32 row, or InvalidArgument saying what is wrong."""
        array = np.array(vector, dtype=np.float32).ravel()  # a copy: Voyager needs writable
        if array.size != self.contract.dim:
            raise InvalidArgument(
                f"vector has dimension {array.size}, this index holds dimension {self.contract.dim}"
            )
        if not np.isfinite(array).all():
            raise InvalidArgument("vector contains NaN or Inf")
        if self.contract.space == "cosine" and not array.any():
            raise InvalidArgument("a zero vector has no direction in cosine space")
        return array

    def add(self, entries: Sequence[Entry]) -> list[int | FaceSearchError]:
        """Store entries in one Voyager call; per entry its id or its own error."""
        outcomes: list[int | FaceSearchError] = []
        with self._mutation:
            seen: set[int] = set()
            ids: list[int] = []
            rows: list[FloatArray] = []
            for entry in entries:
                try:
                    id = self._claim_id(entry.id, seen)
                except FaceSearchError as error:
                    outcomes.append(error)
                    continue
                seen.add(id)
                ids.append(id)
                rows.append(entry.vector)
                outcomes.append(id)
                # Records first: a concurrent query that finds the vector finds its label.
                if entry.record != NO_RECORD:
                    self._records[id] = entry.record
                else:
                    self._records.pop(id, None)
            if ids:
                self._insert(np.stack(rows), ids)
                self.version += 1
        return outcomes

    def _claim_id(self, requested: int | None, seen: set[int]) -> int:
        if requested is None:
            if self._next_id > MAX_ID:
                raise ResourceExhausted("no free id above the largest one in use")
            requested = self._next_id
        elif not 0 <= requested <= MAX_ID:
            raise InvalidArgument(f"id {requested} is outside 0..2^64-1")
        if requested in seen:
            raise InvalidArgument(f"id {requested} appears more than once in this batch")
        self._next_id = max(self._next_id, requested + 1)
        return requested

    def _insert(self, matrix: FloatArray, ids: list[int]) -> None:
        revived = [i for i in ids if i in self._deleted]
        needed = len(self._index) + len(ids)
        if needed > self._index.max_elements or revived:
            with self._lock.write():
                if needed > self._index.max_elements:
                    self._index.resize(max(needed, 2 * self._index.max_elements))
                for id in revived:
                    self._index.unmark_deleted(id)
                    self._deleted.discard(id)
        with self._lock.read():
            self._index.add_items(matrix, ids=ids)

    def delete(self, ids: Sequence[int]) -> int:
        """Delete all of ids, or none: NotFound names the unknown ones."""
        with self._mutation:
            unique = list(dict.fromkeys(ids))
            missing = [i for i in unique if i not in self]
            if missing:
                shown = ", ".join(str(i) for i in missing[:10])
                more = f" and {len(missing) - 10} more" if len(missing) > 10 else ""
                raise NotFound(f"no item with id {shown}{more}; nothing was deleted")
            with self._lock.write():
                for id in unique:
                    self._index.mark_deleted(id)
                    self._deleted.add(id)
                    self._records.pop(id, None)
            self.version += 1
        return len(unique)

    # ---- reads -----------------------------------------------------------------------

    def get(self, id: int) -> Item:
        if id not in self:
            raise NotFound(f"no item with id {id}")
        record = self._records.get(id, NO_RECORD)
        with self._lock.read():
            vector = np.asarray(self._index.get_vector(id), dtype=np.float32)
        return Item(id, record.label, record.metadata, vector, record.thumbnail)

    def query(self, vectors: FloatArray, k: int, ef: int | None = None) -> list[list[Neighbor]]:
        """k nearest live items for each row of `vectors`, nearest first."""
        if k < 1:
            raise InvalidArgument(f"k must be at least 1, not {k}")
        matrix = np.atleast_2d(np.asarray(vectors, dtype=np.float32))
        with self._lock.read():
            k = min(k, self.count)
            if k == 0:
                return [[] for _ in matrix]
            query_ef = max(ef or self.default_ef, k)
            try:
                ids, distances = self._index.query(matrix, k=k, query_ef=query_ef)
            except voyager.RecallError:
                # Deleted items can leave the graph walk short of k; be exact instead.
                ids, distances = self._exact(matrix, k)
        return [
            self._neighbors(row_ids, row_d) for row_ids, row_d in zip(ids, distances, strict=True)
        ]

    def _exact(self, matrix: FloatArray, k: int) -> tuple[np.ndarray, np.ndarray]:
        live = np.array([i for i in self._index.ids if i not in self._deleted], dtype=np.uint64)
        stored = np.asarray(self._index.get_vectors(live.tolist()), dtype=np.float32)
        if self.contract.space == "cosine":
            unit = matrix / np.linalg.norm(matrix, axis=1, keepdims=True)
            stored_unit = stored / np.linalg.norm(stored, axis=1, keepdims=True)
            distances = 1.0 - unit @ stored_unit.T
        else:
            distances = ((matrix[:, None, :] - stored[None, :, :]) ** 2).sum(axis=2)
        order = np.argsort(distances, axis=1, kind="stable")[:, :k]
        return live[order], np.take_along_axis(distances, order, axis=1)

    def _neighbors(self, ids: np.ndarray, distances: np.ndarray) -> list[Neighbor]:
        neighbors = []
        for raw_id, raw_distance in zip(ids.tolist(), distances.tolist(), strict=True):
            record = self._records.get(raw_id, NO_RECORD)
            distance = self.contract.to_user_distance(raw_distance)
            match = self.threshold is not None and distance <= self.threshold
            neighbors.append(Neighbor(raw_id, record.label, record.metadata, distance, match))
        return neighbors

    # ---- for snapshots ---------------------------------------------------------------

    @contextmanager
    def frozen(self) -> Iterator[FaceIndex]:
        """Hold off mutations (queries go on) while a snapshot is written."""
        with self._mutation:
            yield self

    @property
    def records(self) -> dict[int, Record]:
        return self._records

    @property
    def deleted(self) -> set[int]:
        return self._deleted
