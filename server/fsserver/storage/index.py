"""The face/vector index: a Voyager HNSW index plus labels, metadata and thumbnails.

Ids are uint64 and stable; labels, metadata and thumbnails live in a RecordTable (a few
bytes per labelled item; see records.py), so a million vectors cost little beyond
Voyager's own memory.

With a write-ahead log attached, every add, delete and relabel is appended and fsynced
before it is applied, all under one mutation lock, so the log's order is the index's order
and a replay rebuilds exactly what clients were told was stored.

People are labels: `forget` deletes a person's items (logged as a delete of their ids),
`rename` relabels them (logged as a relabel); gallery.py reads them.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager, suppress

import numpy as np
import numpy.typing as npt
import voyager

from fsclient.types import FloatArray, Item
from fsserver.contract import EmbeddingContract
from fsserver.errors import InvalidArgument, NotFound, ServiceError
from fsserver.storage import exact, validation
from fsserver.storage.compaction import Compaction, catch_up, rebuild
from fsserver.storage.gallery import GalleryReader
from fsserver.storage.inserts import (
    MAX_ID,
    MIN_CAPACITY,
    claim_ids,
    empty_like,
    insert,
    rebuilt_capacity,
    replay_onto,
)
from fsserver.storage.records import RecordTable
from fsserver.storage.rows import Rows
from fsserver.storage.rwlock import ReadWriteLock
from fsserver.storage.wal import WriteAheadLog
from fsserver.storage.wal_records import AddRecord, DeleteRecord, RelabelRecord, WalRecord

log = logging.getLogger(__name__)

IdArray = npt.NDArray[np.uint64]
_SPACES = {"euclidean": voyager.Space.Euclidean, "cosine": voyager.Space.Cosine}
_STORAGES = {"float32": voyager.StorageDataType.Float32, "e4m3": voyager.StorageDataType.E4M3}
# Vectors read per lock hold by scans (live_chunks, gallery_rows): writers wait at most one.
_SCAN_CHUNK = 16_384


class FaceIndex:
    def __init__(
        self,
        contract: EmbeddingContract,
        *,
        m: int = 12,
        ef_construction: int = 200,
        ef: int = 64,
        voyager_index: voyager.Index | None = None,
        records: RecordTable | None = None,
        deleted: Iterable[int] = (),
        next_id: int = 0,
    ) -> None:
        self.contract = contract
        self.default_ef = ef
        self._index = voyager_index or voyager.Index(
            _SPACES[contract.space],
            num_dimensions=contract.dim,
            M=m,
            ef_construction=ef_construction,
            max_elements=MIN_CAPACITY,
            storage_data_type=_STORAGES[contract.storage],
        )
        self._records = records or RecordTable()
        self._deleted: set[int] = set(deleted)
        # Persisted, so an id freed by delete and compaction is never handed out again.
        self._next_id = max(next_id, max((int(i) for i in self._index.ids), default=-1) + 1)
        self.version = 0  # bumped by every change, so callers can tell if a save is due
        self._lock = ReadWriteLock()  # queries/inserts read; resize/delete/swap write
        # Voyager's id table may not be read (contains, get_vector, ids) while add_items
        # writes it: lookups by id and insert chunks take this lock; searches do not.
        self._labels = threading.Lock()
        self._mutation = threading.Lock()  # one add, delete, relabel or snapshot at a time
        self.wal: WriteAheadLog | None = None
        # While a compaction rebuilds the graph, changes are also queued for the new one.
        self._pending: list[WalRecord] | None = None
        self._compaction = threading.Lock()

    # ---- facts -----------------------------------------------------------------------

    @property
    def count(self) -> int:
        return len(self._index) - len(self._deleted)

    @property
    def deleted_count(self) -> int:
        return len(self._deleted)

    @property
    def memory_bytes(self) -> int:
        """An estimate of what this index holds in memory: Voyager's capacity (each slot a
        vector, its level-0 links (2M) and bookkeeping), plus labels, metadata and
        thumbnails. Voyager reports no size of its own."""
        index = self._index
        vector = index.num_dimensions * (1 if self.contract.storage == "e4m3" else 4)
        slot = vector + 2 * index.M * 4 + 32
        return index.max_elements * slot + self._records.memory_bytes

    @property
    def voyager_index(self) -> voyager.Index:
        return self._index

    @property
    def next_id(self) -> int:
        return self._next_id

    def __contains__(self, id: int) -> bool:
        return 0 <= id <= MAX_ID and id in self._index and id not in self._deleted

    # ---- writes ----------------------------------------------------------------------

    def validate_vector(self, vector: FloatArray) -> FloatArray:
        """See validation.validate_vector."""
        return validation.validate_vector(self.contract, vector)

    def validate_matrix(self, matrix: FloatArray) -> FloatArray:
        """See validation.validate_matrix."""
        return validation.validate_matrix(self.contract, matrix)

    def add_rows(self, rows: Rows) -> list[int | ServiceError]:
        """Store rows in one Voyager call; per row its id or its own error (a bad or
        repeated id).

        With a WAL, the accepted rows are logged and fsynced first: when this returns, they
        survive a crash. An OSError from the log fails the whole call, storing nothing.
        """
        with self._mutation:
            outcomes = self._claim_ids(rows.ids)
            kept = [row for row, outcome in enumerate(outcomes) if isinstance(outcome, int)]
            if not kept:
                return outcomes
            ids = [outcome for outcome in outcomes if isinstance(outcome, int)]
            record = AddRecord(lsn=0, rows=rows.take(kept).with_ids(ids))
            if self.wal is not None:
                self.wal.append(record)
            self._apply_or_unlog(record)
        return outcomes

    def _claim_ids(self, requested: Sequence[int | None]) -> list[int | ServiceError]:
        outcomes, self._next_id = claim_ids(requested, self._next_id)
        return outcomes

    def replay(self, record: WalRecord) -> None:
        """Apply a logged change at start-up (it was validated before it was logged)."""
        with self._mutation:
            if isinstance(record, AddRecord):
                top = int(record.ids.max()) if len(record.ids) else -1
                self._next_id = max(self._next_id, top + 1)
            self._apply(record)

    def _apply_or_unlog(self, record: WalRecord) -> None:
        """Apply a change just logged; if that fails, take it back out of the log too.

        Validation should make this never fail, but a record the index cannot apply must
        not stay in the log, where it would stop every later start-up.
        """
        try:
            self._apply(record)
        except Exception:
            if self.wal is not None:
                self.wal.drop_last()
            raise

    def _apply(self, record: WalRecord) -> None:
        """Make a change visible; the caller holds the mutation lock."""
        if isinstance(record, AddRecord):
            before = {id: self._records.get(id) for id in record.ids.tolist()}
            try:
                insert(self._index, self._deleted, self._lock, self._labels, record, self._records)
            except Exception:
                for id, old in before.items():
                    self._records.set(id, old)
                raise
        elif isinstance(record, DeleteRecord):
            live = [i for i in record.ids.tolist() if i in self]
            with self._lock.write():
                for id in live:
                    self._index.mark_deleted(id)
                    self._deleted.add(id)
                    self._records.discard(id)
        else:
            # Like a delete: a get (read side) sees every item before or after, not a mix.
            with self._lock.write():
                self._records.relabel(record.old, record.new)
        if self._pending is not None:
            self._pending.append(record)
        self.version += 1

    def delete(self, ids: Sequence[int]) -> int:
        """Delete all of ids, or none: NotFound names the unknown ones. Logged first."""
        with self._mutation:
            unique = list(dict.fromkeys(ids))
            missing = [i for i in unique if i not in self]
            if missing:
                shown = ", ".join(str(i) for i in missing[:10])
                more = f" and {len(missing) - 10} more" if len(missing) > 10 else ""
                raise NotFound(f"no item with id {shown}{more}; nothing was deleted")
            self._log_and_apply(DeleteRecord(lsn=0, ids=np.array(unique, dtype=np.uint64)))
        return len(unique)

    def _log_and_apply(self, record: WalRecord) -> None:
        """Log (fsynced) and apply a change; the caller holds the mutation lock."""
        if self.wal is not None:
            self.wal.append(record)
        self._apply_or_unlog(record)

    # ---- people ----------------------------------------------------------------------

    def forget(self, label: str) -> int:
        """Delete every live item labelled `label`, as one logged delete of their ids (all
        or nothing); how many. NotFound when no live item has the label."""
        validation.require_label(label)
        with self._mutation:  # every writer takes it: the records hold still meanwhile
            ids = self._records.ids_labelled([label])
            if not len(ids):
                raise NotFound(f"no item is labelled {label!r}; nothing was deleted")
            self._log_and_apply(DeleteRecord(lsn=0, ids=ids))
        return len(ids)

    def rename(self, old: str, new: str) -> int:
        """Relabel every live item labelled `old` as `new` (merging into `new` when items
        carry it already), logged as one relabel; how many. NotFound when none has `old`."""
        validation.require_label(old)
        validation.require_label(new)
        with self._mutation:
            count = self._records.count_of(old)
            if not count:
                raise NotFound(f"no item is labelled {old!r}; nothing was relabelled")
            if new != old:
                self._log_and_apply(RelabelRecord(lsn=0, old=old, new=new))
        return count

    # ---- compaction ------------------------------------------------------------------

    def compact(self, cancelled: threading.Event | None = None) -> Compaction:
        """Rebuild the graph without deleted items, reclaiming their memory; ids stay.

        Queries, adds and deletes go on while the new graph is built: changes made
        meanwhile are queued, replayed onto it in rounds while writers go on, and the last
        few are applied under the mutation lock right before the swap, so writers are held
        for the swap alone (`hold_seconds`).
        """
        with self._compaction:
            with self._mutation:  # the cut: what is live now, and the queue from here on
                started = time.perf_counter()
                dropped, old = len(self._deleted), self._index
                if not dropped:
                    return Compaction(0)
                ids = self.live_ids()  # no insert runs: they take the mutation lock
                self._pending = []
                hold = time.perf_counter() - started
            try:
                # Read and inserted a chunk at a time (items deleted since the cut are left
                # out; their queued deletes then find nothing): writers are not held for
                # the copy, and no second copy of every vector is made.
                index = empty_like(old, rebuilt_capacity(len(ids)))
                chunks = self.read_chunks(old, self._deleted, ids, _SCAN_CHUNK)
                rebuild(index, chunks, cancelled or threading.Event())
                deleted: set[int] = set()
                done = catch_up(index, self._pending, deleted)
                with self._mutation:
                    held = time.perf_counter()
                    replay_onto(index, self._pending[done:], deleted)
                    with self._lock.write():
                        self._index, self._deleted = index, deleted
                    self.version += 1
                    hold = max(hold, time.perf_counter() - held)
                log.info(
                    "compaction: %d deleted items dropped, %d changes made during the rebuild "
                    "carried over in %.2fs; writers held %.1f ms for the swap",
                    dropped,
                    len(self._pending),
                    time.perf_counter() - started,
                    hold * 1e3,
                )
            finally:
                self._pending = None
        return Compaction(dropped, hold)

    # ---- reads -----------------------------------------------------------------------

    @contextmanager
    def reading(self) -> Iterator[voyager.Index]:
        """Hold the index still for a read (no delete, swap or insert chunk meanwhile);
        yields the graph in force, which stays valid after (a compaction swaps in another)."""
        with self._lock.read(), self._labels:
            yield self._index

    @property
    def gallery(self) -> GalleryReader:
        """People and items read from the records (gallery.py)."""
        return GalleryReader(self)

    def get(self, id: int) -> Item:
        # Read side: no delete or swap meanwhile; labels lock: no insert writing the id
        # table, and the record and the vector come from the same write.
        with self._lock.read(), self._labels:
            if id not in self:
                raise NotFound(f"no item with id {id}")
            record = self._records.get(id)
            vector = np.asarray(self._index.get_vector(id), dtype=np.float32)
        return Item(id, record.label, record.metadata, vector, record.thumbnail)

    def search(
        self, vectors: FloatArray, k: int, ef: int | None = None, exact: bool = False
    ) -> tuple[npt.NDArray[np.uint64], FloatArray]:
        """Ids and user-scale distances (rows x min(k, count)) of each row's nearest items.

        `exact` is brute force over every stored vector; otherwise the HNSW graph is walked
        with `ef` (the default ef when None, raised to k).
        """
        if k < 1:
            raise InvalidArgument(f"k must be at least 1, not {k}")
        # Voyager takes only writable, contiguous float32 (not a view of request bytes).
        matrix = np.require(np.atleast_2d(vectors), np.float32, ["C_CONTIGUOUS", "WRITEABLE"])
        found = None
        with self._lock.read():
            # Counted under the lock that the swap of a compaction takes: a count read
            # beside a swap could pair one graph's size with the other's deleted ids.
            k = min(k, self.count)
            if k and not exact:
                # Deleted items can leave the graph walk short of k (RecallError): be exact.
                query_ef = max(ef or self.default_ef, k)
                with suppress(voyager.RecallError):
                    # One row: the 1-D call, which skips Voyager's thread pool.
                    one = len(matrix) == 1
                    found = self._index.query(matrix[0] if one else matrix, k=k, query_ef=query_ef)
                    if one:
                        found = found[0][None, :], found[1][None, :]
        if k == 0:
            return np.zeros((len(matrix), 0), np.uint64), np.zeros((len(matrix), 0), np.float32)
        ids, raw = found if found is not None else self.exact_nearest(matrix, k)
        distances = self.contract.to_user_distances(np.asarray(raw, dtype=np.float32))
        return np.asarray(ids, dtype=np.uint64), distances

    def exact_nearest(self, matrix: FloatArray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Brute force: ids and Voyager-scale distances of each row's k nearest live items."""
        cosine = self.contract.space == "cosine"
        return exact.nearest(matrix, k, self.live_chunks(), cosine=cosine)

    def sample(self, n: int, rng: np.random.Generator) -> tuple[npt.NDArray[np.uint64], FloatArray]:
        """n live items drawn at random: their ids and stored vectors."""
        with self._lock.read(), self._labels:
            ids = self.live_ids()
            picked = rng.choice(ids, size=min(n, len(ids)), replace=False)
            vectors = np.asarray(self._index.get_vectors(picked), dtype=np.float32)
        return picked, vectors

    def vectors_of(self, ids: npt.NDArray[np.uint64]) -> FloatArray:
        """The stored vectors of live or deleted ids (for calibration's brute force)."""
        with self._lock.read(), self._labels:
            return np.asarray(self._index.get_vectors(ids), dtype=np.float32)

    def live_ids(self) -> npt.NDArray[np.uint64]:  # the caller holds `reading()`
        ids = np.fromiter(self._index.ids, np.uint64, len(self._index))
        if self._deleted:
            gone = np.fromiter(self._deleted, np.uint64, len(self._deleted))
            ids = ids[~np.isin(ids, gone)]
        return ids

    def live_chunks(
        self, size: int = _SCAN_CHUNK
    ) -> Iterator[tuple[npt.NDArray[np.uint64], FloatArray]]:
        """Every live item's id and stored vector, a chunk at a time.

        Locks are held per chunk, not throughout, so a scan of a million vectors never
        holds writers off for long; a change made mid-scan may or may not be seen.
        """
        with self._lock.read(), self._labels:
            # A compaction may swap in another graph; this one and its deleted ids stay.
            index, deleted = self._index, self._deleted
            ids = self.live_ids()
        yield from self.read_chunks(index, deleted, ids, size)

    def read_chunks(
        self, index: voyager.Index, deleted: set[int], ids: npt.NDArray[np.uint64], size: int
    ) -> Iterator[tuple[npt.NDArray[np.uint64], FloatArray]]:
        """The stored vectors of `ids` in `index`, a chunk per lock hold, leaving out items
        deleted since the scan began (Voyager refuses to read them): `deleted` is the graph's
        own set, read with it, which a compaction's swap leaves to it (the new graph gets
        another)."""
        for start in range(0, len(ids), size):
            chunk = ids[start : start + size]
            with self._lock.read(), self._labels:
                if deleted:
                    chunk = chunk[[id not in deleted for id in chunk.tolist()]]
                vectors = np.asarray(index.get_vectors(chunk), dtype=np.float32)
            yield chunk, vectors

    def labels_of(self, ids: npt.NDArray[np.uint64]) -> list[list[str]]:
        """The label of each id in a rows x k table of search results."""
        return self._records.labels_of(ids)

    def metadata_of(self, ids: npt.NDArray[np.uint64]) -> list[list[str]]:
        return self._records.metadata_of(ids)

    # ---- for snapshots ---------------------------------------------------------------

    @contextmanager
    def frozen(self) -> Iterator[FaceIndex]:
        """Hold off mutations (queries go on) while a snapshot is written."""
        with self._mutation:
            yield self

    @property
    def records(self) -> RecordTable:
        return self._records

    @property
    def deleted(self) -> set[int]:
        return self._deleted
