"""One durable index in one directory: Voyager + records + WAL + snapshots + calibration.

The single-process server keeps one LocalStore in its data directory; each Ray shard actor
keeps one in data_dir/shards/<i>/. Opening it locks the directory, loads the newest intact
snapshot and replays the WAL; every add, delete, forget and rename is in the WAL, fsynced,
before it returns; Save writes a snapshot and trims the WAL (and past a deleted share starts
a compaction in the background); a background checkpoint saves once the WAL passes
--checkpoint-wal-mb. Saves and compactions join rather than queue (maintenance.py).
"""

from __future__ import annotations

import fcntl
import logging
import os
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import replace
from pathlib import Path

from fsclient.types import CompactResult, FloatArray, Item, ItemSummary, Page, Person, SaveResult
from fsserver.contract import EmbeddingContract
from fsserver.errors import FailedPrecondition, ServiceError
from fsserver.storage.backend import Hits, StoreOptions, StoreStats
from fsserver.storage.calibration import RecallCalibrator
from fsserver.storage.coalesce import Coalescer
from fsserver.storage.compaction import Cancelled
from fsserver.storage.heap import release_free_memory
from fsserver.storage.index import FaceIndex, IdArray
from fsserver.storage.maintenance import BackgroundRun, GroupRun
from fsserver.storage.records import choose_labels
from fsserver.storage.recovery import open_store
from fsserver.storage.rows import Rows
from fsserver.storage.snapshot import save_snapshot
from fsserver.storage.wal import RecoveryReport

log = logging.getLogger(__name__)

LOCK_FILE = "LOCK"
# Below this share of deleted items, Compact says a rebuild would not pay off (a whole new
# graph for a few percent of memory) and returns at once, unless forced.
MIN_COMPACT_SHARE = 0.05
# Searches of up to this many rows (a vector, an id, a photo's faces) are coalesced with
# others arriving at the same time (coalesce.py); bigger ones (QueryBatch) go alone.
COALESCED_ROWS = 8
SearchKey = tuple[int, int | None, bool]  # what rows must share to share a search: k, ef, metadata


def lock_directory(directory: Path, wait_seconds: float = 0.0) -> int:
    """An exclusive flock on directory/LOCK (one writer per WAL), as an open descriptor.

    The kernel drops the lock when its holder dies, so a restarted shard waits a little
    (`wait_seconds`) for the process it replaces to be gone rather than failing at once.
    """
    directory.mkdir(parents=True, exist_ok=True)
    fd = os.open(directory / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    deadline = time.monotonic() + wait_seconds
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return fd
        except BlockingIOError:
            if time.monotonic() >= deadline:
                os.close(fd)
                raise FailedPrecondition(
                    f"another fsserver is using the data directory {directory}"
                ) from None
            time.sleep(0.1)


class LocalStore:
    """The IndexBackend of one directory (see backend.py)."""

    def __init__(
        self,
        directory: Path,
        contract: EmbeddingContract,
        options: StoreOptions,
        *,
        lock: bool = True,
        lock_wait_seconds: float = 0.0,
    ) -> None:
        """Open (and with `lock`, lock) the directory: snapshot, then WAL replay."""
        self.directory = directory
        self.options = options
        self._lock_fd = lock_directory(directory, lock_wait_seconds) if lock else None
        try:
            recovered = open_store(
                directory,
                contract,
                m=options.m,
                ef_construction=options.ef_construction,
                ef=options.ef,
            )
        except BaseException:
            self._unlock()
            raise
        if not recovered.snapshot:
            log.info("no snapshot in %s: starting from the WAL alone", directory)
        self.index: FaceIndex = recovered.index
        self.snapshot = recovered.snapshot
        self.recovery: RecoveryReport = recovered.report
        # Replayed changes are durable in the WAL already; a save is not due for them.
        self._saved_version = self.index.version
        self._save_lock = threading.Lock()
        self._saves = GroupRun[SaveResult]()
        self._compactions = BackgroundRun[CompactResult]("compaction")
        self._coalescer = Coalescer[SearchKey, Hits](self._search_key, _split_hits)
        self._closing = threading.Event()
        self._checkpointing = threading.Event()
        release_free_memory()  # the snapshot's and the replay's temporary buffers
        self._calibrator = (
            RecallCalibrator(self.index, options.target_recall) if options.target_recall else None
        )

    # ---- facts -----------------------------------------------------------------------

    @property
    def contract(self) -> EmbeddingContract:
        return self.index.contract

    @property
    def count(self) -> int:
        return self.index.count

    @property
    def next_id(self) -> int:
        return self.index.next_id

    @property
    def unsaved_changes(self) -> bool:
        return self.index.version != self._saved_version

    # ---- writes ----------------------------------------------------------------------

    def add_rows(self, rows: Rows) -> list[int | ServiceError]:
        outcomes = self.index.add_rows(rows)
        self._changed()
        return outcomes

    def delete(self, ids: Sequence[int]) -> int:
        deleted = self.index.delete(ids)
        self._changed()
        return deleted

    def forget(self, label: str) -> int:
        forgotten = self.index.forget(label)
        self._changed()
        return forgotten

    def rename(self, old: str, new: str) -> int:
        renamed = self.index.rename(old, new)
        self._maybe_checkpoint()  # no vector changed: recall calibration has nothing new
        return renamed

    @contextmanager
    def writing(self) -> Iterator[None]:
        """Held while an Add stream is open, so recall is not measured under its batches."""
        with self._calibrator.writing() if self._calibrator else nullcontext():
            yield

    def _changed(self) -> None:
        if self._calibrator is not None:
            self._calibrator.note_change()
        self._maybe_checkpoint()

    def _maybe_checkpoint(self) -> None:
        """Start a background snapshot once the WAL has grown past --checkpoint-wal-mb."""
        limit = self.options.checkpoint_wal_mb * 1024 * 1024
        wal = self.index.wal
        if not limit or wal is None or wal.segment_bytes < limit:
            return
        if self._checkpointing.is_set():
            return
        self._checkpointing.set()
        threading.Thread(target=self._checkpoint, name="checkpoint", daemon=True).start()

    def _checkpoint(self) -> None:
        try:
            log.info(
                "checkpoint: the WAL passed %d MB, saving a snapshot",
                self.options.checkpoint_wal_mb,
            )
            self.save()
        except Exception:
            log.exception("checkpoint failed; the WAL keeps every change")
        finally:
            self._checkpointing.clear()

    # ---- reads -----------------------------------------------------------------------

    def search(
        self,
        vectors: FloatArray,
        k: int,
        ef: int | None = None,
        exact: bool = False,
        with_metadata: bool = False,
    ) -> Hits:
        if exact or len(vectors) > COALESCED_ROWS:
            return self._search_now(vectors, k, ef, exact, with_metadata)
        return self._coalescer.search((k, ef, with_metadata), vectors)

    def _search_key(self, key: SearchKey, vectors: FloatArray) -> Hits:
        k, ef, with_metadata = key
        return self._search_now(vectors, k, ef, False, with_metadata)

    def _search_now(
        self, vectors: FloatArray, k: int, ef: int | None, exact: bool, with_metadata: bool
    ) -> Hits:
        index = self.index
        ids, distances = index.search(vectors, k, ef, exact)
        return Hits(
            ids=ids,
            distances=distances,
            labels=index.labels_of(ids),
            metadata=index.metadata_of(ids) if with_metadata else None,
        )

    def get(self, id: int) -> Item:
        return self.index.get(id)

    def people(self) -> list[Person]:
        return self.index.gallery.people()

    def items(self, label: str | None, offset: int, limit: int) -> Page[ItemSummary]:
        return self.index.gallery.items(label, offset, limit)

    def item_ids(self, label: str | None, upto: int) -> tuple[IdArray, int]:
        """The first `upto` matching ids, ascending, and the total (Ray's items pages)."""
        return self.index.gallery.item_ids(label, upto)

    def summaries(self, ids: Sequence[int]) -> list[ItemSummary]:
        return self.index.gallery.summaries(ids)

    def gallery(self, max_people: int, seed: int = 0) -> tuple[list[str], FloatArray]:
        chosen = choose_labels((p.label for p in self.people()), max_people, seed)
        _, labels, vectors = self.index.gallery.gallery_rows(chosen)
        return labels, vectors

    def gallery_rows(self, labels: Sequence[str]) -> tuple[IdArray, list[str], FloatArray]:
        """Ids, labels and vectors of the live items of `labels` (Ray's gallery)."""
        return self.index.gallery.gallery_rows(labels)

    def missing(self, ids: Sequence[int]) -> list[int]:
        """Which of ids are not stored (live)."""
        return [id for id in ids if id not in self.index]

    # ---- persistence -----------------------------------------------------------------

    def save(self) -> SaveResult:
        """Write a snapshot and trim the WAL; past the deleted share, start a compaction in
        the background (its graph goes into the next snapshot). Callers that arrive while
        a snapshot is written share the next one (maintenance.py)."""
        result, joined = self._saves.run(self._save_now)
        return replace(result, joined=joined)

    def _save_now(self) -> SaveResult:
        with self._save_lock:  # close() waits for a snapshot being written
            index = self.index
            if _deleted_share(index) >= self.options.compact_deleted_share:
                self._compactions.run(self._compact_now, wait=0)  # started, or running
            version = index.version
            result = save_snapshot(index, self.directory)
            self.snapshot, self._saved_version = result.snapshot, version
            return result

    def compact(self, force: bool = False, wait: float | None = None) -> CompactResult:
        """Rebuild the graph without deleted items, unless too few are deleted to pay off
        (`skipped` says so; `force` rebuilds anyway). A call made while a compaction runs
        waits for it and shares its result (`joined`); after `wait` seconds (the caller's
        deadline) it answers `running` instead, and the rebuild goes on."""
        index = self.index
        share = _deleted_share(index)
        if not (force or self._compactions.running) and 0 < share < MIN_COMPACT_SHARE:
            deleted, stored = index.deleted_count, index.count + index.deleted_count
            skipped = (
                f"only {deleted} of {stored} stored items ({share:.1%}) are deleted: "
                f"rebuilding the whole graph pays off from {MIN_COMPACT_SHARE:.0%} (force "
                "rebuilds anyway)"
            )
            return CompactResult(removed=0, count=index.count, seconds=0.0, skipped=skipped)
        started = time.perf_counter()
        result, joined = self._compactions.run(self._compact_now, wait)
        if result is None:
            seconds = time.perf_counter() - started
            return CompactResult(0, index.count, seconds, joined=joined, running=True)
        return replace(result, joined=joined)

    def _compact_now(self) -> CompactResult:
        started = time.perf_counter()  # the index logs what it dropped and how long it held
        try:
            done = self.index.compact(self._closing)
        except Cancelled:
            log.info("compaction given up: the store is closing")
            raise
        except Exception:  # logged here: a compaction started by a Save has no caller
            log.exception("compaction failed; the deleted items stay until the next one")
            raise
        release_free_memory()  # the old graph, and the rebuild's chunks of vectors
        if self._calibrator is not None:
            self._calibrator.note_change()
        return CompactResult(
            removed=done.removed,
            count=self.index.count,
            seconds=time.perf_counter() - started,
            hold_seconds=done.hold_seconds,
        )

    def stats(self) -> StoreStats:
        index, calibrator = self.index, self._calibrator
        latest = calibrator.latest if calibrator else None
        return StoreStats(
            count=index.count,
            deleted=index.deleted_count,
            ef=index.default_ef,
            target_recall=calibrator.target if calibrator else 0.0,
            estimated_recall=latest.recall if latest else 0.0,
            recall_measured_at=latest.measured_at if latest else 0,
            snapshot=self.snapshot,
            wal_replayed=self.recovery.replayed,
            wal_dropped=self.recovery.dropped,
            wal_bytes=index.wal.size_bytes if index.wal else 0,
            memory_bytes=index.memory_bytes,
        )

    def close(self) -> None:
        """Stop calibrating and compacting, close the WAL and release the directory."""
        self._closing.set()
        # Given up within a chunk of rows: a thread left inside Voyager at exit aborts it.
        self._compactions.join()
        if self._calibrator is not None:
            self._calibrator.close()
        with self._save_lock:  # let a background checkpoint finish first
            if self.index.wal is not None:
                self.index.wal.close()
        self._unlock()

    def _unlock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # releases the flock
            self._lock_fd = None


def _deleted_share(index: FaceIndex) -> float:
    """Deleted items over all the graph holds: what a compaction would reclaim."""
    stored = index.count + index.deleted_count
    return index.deleted_count / stored if stored else 0.0


def _split_hits(hits: Hits, parts: list[slice]) -> list[Hits]:
    """A coalesced search's answer, cut into each caller's rows."""
    return [
        Hits(
            ids=hits.ids[part],
            distances=hits.distances[part],
            labels=hits.labels[part],
            metadata=hits.metadata[part] if hits.metadata is not None else None,
        )
        for part in parts
    ]
