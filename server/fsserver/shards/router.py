"""The Ray backend: N shard actors behind the IndexBackend interface (--backend ray).

Ids are global: this router hands them out from one counter (started, at open, past the
largest any shard has used, so they stay unique across restarts) and an item lives in shard
id % N (sharding.py). Add groups a batch by shard and sends each part with its ids; Query
fans out to every shard (each searches with at least the caller's ef) and merges the top k
by distance; Delete checks every id exists, then deletes; Save snapshots every shard; Stats
sums them. People are merged over the shards: counts summed, item pages merged by id,
forget and rename sent to every shard (NotFound only when none had the label), and a
gallery's people drawn here, from the merged list, then read from every shard. Writes are
serialised here, as the single index serialises them, so each shard's WAL order is the
order clients saw.

Shard actors restart when they die (max_restarts=-1): their constructor loads the shard's
snapshot and replays its WAL. Calls to a restarting shard are retried by Ray once it is back
(max_task_retries=-1); a call waits at most --shard-timeout for every shard and otherwise
fails as a whole with UNAVAILABLE: no partial result is ever presented as complete.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import ray
from ray.exceptions import GetTimeoutError, RayActorError, RayTaskError

from fsclient.types import (
    CompactResult,
    FloatArray,
    Item,
    ItemSummary,
    Page,
    Person,
    SaveResult,
)
from fsserver.config import Config
from fsserver.contract import EmbeddingContract
from fsserver.errors import (
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    ServiceError,
    Unavailable,
)
from fsserver.shards.actor import ShardActor
from fsserver.shards.merge import merge_hits
from fsserver.storage.backend import Hits, StoreOptions, StoreStats
from fsserver.storage.inserts import claim_ids
from fsserver.storage.records import choose_labels
from fsserver.storage.rows import Rows
from fsserver.storage.sharding import claim_layout, shard_dir, shard_of

log = logging.getLogger(__name__)
T = TypeVar("T")

# Threads per shard actor: queries run beside a long add (the store is thread-safe).
SHARD_THREADS = 8
# Query batches above this go to the object store once rather than to each shard.
_PUT_ABOVE_BYTES = 64 * 1024


def connect(config: Config) -> bool:
    """Join the cluster at --ray-address, or start Ray here; True when this process started
    it (and so shuts it down at close). An already connected process (tests) is reused."""
    if ray.is_initialized():
        return False
    if config.ray_address:
        ray.init(address=config.ray_address)
    else:
        # Ray's default object store takes 30% of RAM; shards pass little through it.
        ray.init(
            object_store_memory=config.ray_object_store_mb * 1024 * 1024,
            include_dashboard=False,
        )
    return True


class RayShards:
    """The IndexBackend of Ray shard actors (see backend.py)."""

    def __init__(
        self,
        actors: Sequence[Any],
        contract: EmbeddingContract,
        next_id: int,
        timeout: float,
        owns_ray: bool,
    ) -> None:
        self._actors = list(actors)
        self._contract = contract
        self._next_id = next_id
        self._timeout = timeout
        self._owns_ray = owns_ray
        self._writes = threading.Lock()  # one add or delete at a time, as in the index

    @classmethod
    def open(
        cls, data_dir: Path, contract: EmbeddingContract, options: StoreOptions, config: Config
    ) -> RayShards:
        """Start (or join) Ray, then one actor per shard; returns once every shard has
        loaded its snapshot and replayed its WAL."""
        claim_layout(data_dir, config.shards)
        owns_ray = connect(config)
        actors: list[Any] = []
        try:
            cpus = ray.cluster_resources().get("CPU", 0.0)
            wanted = config.shards * config.shard_cpus
            if owns_ray and wanted > cpus:
                raise FailedPrecondition(
                    f"{config.shards} shards of {config.shard_cpus:g} CPUs need {wanted:g} "
                    f"CPUs; Ray has {cpus:g} here: lower --shard-cpus"
                )
            remote = ray.remote(ShardActor).options(
                num_cpus=config.shard_cpus,
                max_restarts=-1,
                max_task_retries=-1,
                max_concurrency=SHARD_THREADS,
            )
            actors = [
                remote.remote(
                    shard, str(shard_dir(data_dir, shard).resolve()), contract.to_dict(), options
                )
                for shard in range(config.shards)
            ]
            started = time.perf_counter()
            # No timeout: a big shard takes as long as its snapshot and WAL take to load.
            states = _unwrap(lambda: ray.get([actor.ready.remote() for actor in actors]))
        except BaseException:
            _stop(actors)
            if owns_ray:
                ray.shutdown()
            raise
        log.info(
            "%d Ray shards ready in %.1fs: %s items",
            len(actors),
            time.perf_counter() - started,
            " + ".join(str(count) for _, count in states),
        )
        next_id = max(next_free for next_free, _ in states)
        return cls(actors, contract, next_id, config.shard_timeout, owns_ray)

    # ---- facts -----------------------------------------------------------------------

    @property
    def contract(self) -> EmbeddingContract:
        return self._contract

    @property
    def shards(self) -> int:
        return len(self._actors)

    @property
    def count(self) -> int:
        return self.stats().count

    @property
    def unsaved_changes(self) -> bool:
        """Whether a shard has changes since its last snapshot (the server saves them as it
        stops). A shard that cannot say counts as saved: its WAL holds every acknowledged
        change, so skipping the snapshot loses nothing, where failing the stop would."""
        try:
            return any(self._gather([a.unsaved_changes.remote() for a in self._actors], "Save"))
        except Unavailable as error:
            log.warning("no final snapshot (the WALs hold every change): %s", error)
            return False

    def shard_pids(self) -> list[int]:
        """The process id of each shard actor (tests kill them)."""
        return list(self._gather([a.pid.remote() for a in self._actors], "pid"))

    # ---- writes ----------------------------------------------------------------------

    def add_rows(self, rows: Rows) -> list[int | ServiceError]:
        """Store each row in its id's shard. A shard that does not confirm in time fails
        only its own rows (UNAVAILABLE): they are not acknowledged, though the shard may
        still store them, as a crash mid-add may."""
        with self._writes:
            outcomes, self._next_id = claim_ids(rows.ids, self._next_id)
            by_shard: dict[int, list[int]] = {}  # shard → positions of its rows
            ids_by_shard: dict[int, list[int]] = {}
            for row, outcome in enumerate(outcomes):
                if isinstance(outcome, int):
                    shard = shard_of(outcome, self.shards)
                    by_shard.setdefault(shard, []).append(row)
                    ids_by_shard.setdefault(shard, []).append(outcome)
            calls = {
                shard: self._actors[shard].add_rows.remote(
                    rows.take(positions).with_ids(ids_by_shard[shard])
                )
                for shard, positions in by_shard.items()
            }
            # Every shard's answer is collected, so rows in shards that did store are
            # reported stored even when another shard failed.
            if calls:
                ray.wait(list(calls.values()), num_returns=len(calls), timeout=self._timeout)
            for shard, call in calls.items():
                positions = by_shard[shard]
                try:
                    stored = self._gather([call], f"Add to shard {shard}", timeout=0)[0]
                except Unavailable as error:
                    stored = [error] * len(positions)
                for row, result in zip(positions, stored, strict=True):
                    outcomes[row] = result
        return outcomes

    def delete(self, ids: Sequence[int]) -> int:
        """All of ids or none: every id is checked in its shard before any is deleted."""
        with self._writes:
            unique = list(dict.fromkeys(ids))
            by_shard: dict[int, list[int]] = {}
            for id in unique:
                by_shard.setdefault(shard_of(id, self.shards), []).append(id)
            shards = list(by_shard)
            missing_parts = self._gather(
                [self._actors[s].missing.remote(by_shard[s]) for s in shards], "Delete"
            )
            missing = sorted(id for part in missing_parts for id in part)
            if missing:
                shown = ", ".join(str(i) for i in missing[:10])
                more = f" and {len(missing) - 10} more" if len(missing) > 10 else ""
                raise NotFound(f"no item with id {shown}{more}; nothing was deleted")
            self._gather(
                [self._actors[s].delete_present.remote(by_shard[s]) for s in shards],
                "Delete (if it failed part way, deleting the same ids again is safe)",
            )
        return len(unique)

    def forget(self, label: str) -> int:
        """Every shard deletes its items labelled `label` (each durably, all or nothing in
        itself); NotFound when none had any. If a shard fails part way, forgetting the same
        label again finishes the job."""
        if not label:
            raise InvalidArgument("the label must not be empty: unlabelled items are no person")
        with self._writes:
            counts = self._gather(
                [a.forget_present.remote(label) for a in self._actors],
                "Forget (if it failed part way, forgetting the same label again is safe)",
            )
        if not sum(counts):
            raise NotFound(f"no item is labelled {label!r}; nothing was deleted")
        return int(sum(counts))

    def rename(self, old: str, new: str) -> int:
        """Every shard relabels its items labelled `old`; NotFound when none had any."""
        if not old or not new:
            raise InvalidArgument("the label must not be empty: unlabelled items are no person")
        with self._writes:
            counts = self._gather(
                [a.rename_present.remote(old, new) for a in self._actors],
                "Rename (if it failed part way, renaming again is safe)",
            )
        if not sum(counts):
            raise NotFound(f"no item is labelled {old!r}; nothing was relabelled")
        return int(sum(counts))

    # ---- reads -----------------------------------------------------------------------

    def people(self) -> list[Person]:
        parts: list[list[Person]] = self._gather(
            [a.people.remote() for a in self._actors], "People"
        )
        counts: dict[str, int] = {}
        for part in parts:
            for person in part:
                counts[person.label] = counts.get(person.label, 0) + person.count
        return [Person(label, counts[label]) for label in sorted(counts)]

    def items(self, label: str | None, offset: int, limit: int) -> Page[ItemSummary]:
        """The page of the merged id order: each shard sends its first offset + limit
        matching ids (the page can hold no later one of any shard), then the page's
        items are read from their shards. An item deleted between the two is left out."""
        if offset < 0 or limit < 0:
            raise InvalidArgument(f"offset and limit must not be negative: {offset}, {limit}")
        parts = self._gather(
            [a.item_ids.remote(label, offset + limit) for a in self._actors], "Items"
        )
        total = sum(int(t) for _, t in parts)
        merged = np.sort(np.concatenate([np.zeros(0, np.uint64), *(ids for ids, _ in parts)]))
        page = merged[offset : offset + limit].tolist()
        by_shard: dict[int, list[int]] = {}
        for id in page:
            by_shard.setdefault(shard_of(id, self.shards), []).append(id)
        shards = list(by_shard)
        found: list[list[ItemSummary]] = self._gather(
            [self._actors[s].summaries.remote(by_shard[s]) for s in shards], "Items"
        )
        summaries = {item.id: item for part in found for item in part}
        return Page([summaries[id] for id in page if id in summaries], total)

    def gallery(self, max_people: int, seed: int = 0) -> tuple[list[str], FloatArray]:
        """The people are drawn from the merged list (as the single store draws them), then
        every shard sends its items of them; rows in ascending id order."""
        chosen = choose_labels((p.label for p in self.people()), max_people, seed)
        if not chosen:
            return [], np.zeros((0, self._contract.dim), np.float32)
        shared: Any = ray.put(chosen)
        parts = self._gather([a.gallery_rows.remote(shared) for a in self._actors], "Gallery")
        ids = np.concatenate([part[0] for part in parts])
        labels = [label for part in parts for label in part[1]]
        vectors = np.concatenate([part[2] for part in parts])
        order = np.argsort(ids, kind="stable")
        return [labels[i] for i in order.tolist()], np.ascontiguousarray(vectors[order])

    def search(
        self,
        vectors: FloatArray,
        k: int,
        ef: int | None = None,
        exact: bool = False,
        with_metadata: bool = False,
    ) -> Hits:
        shared: Any = ray.put(vectors) if vectors.nbytes > _PUT_ABOVE_BYTES else vectors
        parts = self._gather(
            [a.search.remote(shared, k, ef, exact, with_metadata) for a in self._actors],
            "Query",
        )
        return merge_hits(parts, k)

    def get(self, id: int) -> Item:
        actor = self._actors[shard_of(id, self.shards)]
        item: Item = self._gather([actor.get.remote(id)], "Get")[0]
        return item

    # ---- the rest --------------------------------------------------------------------

    def writing(self) -> AbstractContextManager[None]:
        # Each shard calibrates its own ef, waiting for a pause in its own writes.
        return nullcontext()

    def save(self) -> SaveResult:
        started = time.perf_counter()
        saved: list[SaveResult] = self._gather([a.save.remote() for a in self._actors], "Save")
        return SaveResult(
            snapshot=", ".join(
                f"shards/{shard}/{result.snapshot}" for shard, result in enumerate(saved)
            ),
            count=sum(result.count for result in saved),
            bytes=sum(result.bytes for result in saved),
            seconds=time.perf_counter() - started,
        )

    def compact(self, force: bool = False, wait: float | None = None) -> CompactResult:
        # Each shard rebuilds within the router's own timeout; `wait` is not passed on.
        started = time.perf_counter()
        done: list[CompactResult] = self._gather(
            [a.compact.remote(force) for a in self._actors], "Compact"
        )
        skipped = [result.skipped for result in done if result.skipped]
        return CompactResult(
            removed=sum(result.removed for result in done),
            count=sum(result.count for result in done),
            seconds=time.perf_counter() - started,
            # Said when no shard rebuilt; each shard decides for itself.
            skipped=skipped[0] if len(skipped) == len(done) else "",
            joined=all(result.joined for result in done),
            hold_seconds=max((result.hold_seconds for result in done), default=0.0),
        )

    def stats(self) -> StoreStats:
        parts: list[StoreStats] = self._gather([a.stats.remote() for a in self._actors], "Stats")
        measured = [p for p in parts if p.recall_measured_at]
        return StoreStats(
            count=sum(p.count for p in parts),
            deleted=sum(p.deleted for p in parts),
            # Each shard searches with its own calibrated ef; the largest is the one felt.
            ef=max(p.ef for p in parts),
            target_recall=parts[0].target_recall,
            # Merged recall is about each shard's; the weakest shard bounds it.
            estimated_recall=min(p.estimated_recall for p in measured) if measured else 0.0,
            recall_measured_at=sum(p.recall_measured_at for p in measured),
            snapshot=", ".join(
                f"shards/{shard}/{p.snapshot}" for shard, p in enumerate(parts) if p.snapshot
            ),
            wal_replayed=sum(p.wal_replayed for p in parts),
            wal_dropped=sum(p.wal_dropped for p in parts),
            wal_bytes=sum(p.wal_bytes for p in parts),
            memory_bytes=sum(p.memory_bytes for p in parts),
        )

    def close(self) -> None:
        """Close every shard's store (WAL, directory lock), stop the actors, and Ray if it
        was started here."""
        try:
            self._gather([a.close.remote() for a in self._actors], "close")
        except ServiceError as error:
            log.warning("closing the shards: %s", error)
        finally:
            _stop(self._actors)
            if self._owns_ray:
                ray.shutdown()

    # ---- calls -----------------------------------------------------------------------

    def _gather(self, calls: list[Any], what: str, timeout: float | None = None) -> list[Any]:
        """Every call's result, or UNAVAILABLE if any shard is down past the timeout."""
        limit = self._timeout if timeout is None else timeout
        try:
            return _unwrap(lambda: ray.get(calls, timeout=limit))
        except GetTimeoutError:
            raise Unavailable(
                f"{what}: a shard did not answer within {self._timeout:g}s (--shard-timeout); "
                "it may be restarting after a failure (reloading its snapshot and replaying "
                "its WAL); nothing partial was returned: retry"
            ) from None
        except RayActorError as error:
            raise Unavailable(f"{what}: a shard is unavailable ({error}); retry") from None


def _unwrap(call: Callable[[], T]) -> T:
    """call(), with a shard's own error (NotFound, a refused snapshot…) raised as itself
    rather than wrapped in Ray's RayTaskError."""
    try:
        return call()
    except RayTaskError as error:
        cause = getattr(error, "cause", None)
        if isinstance(cause, ServiceError):
            raise cause from None
        raise


def _stop(actors: Sequence[Any]) -> None:
    for actor in actors:
        ray.kill(actor, no_restart=True)
