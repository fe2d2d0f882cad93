"""Many clients at once against one real vector server, then a restart from snapshot + WAL.

Six threads, each with its own FaceSearchClient and its own ids, mix adds (with per-item
errors), upserts, revivals of deleted ids, deletes (some all-or-nothing refusals), gets,
queries by vector and by id, stats, and (one thread) saves and compactions, for a few
seconds. Every thread checks each answer against what it was told before, and at the end
every acknowledged item must be there exactly as last written, every deleted one gone, and
the count right; the same must hold after the server is stopped without saving and a new
one recovers the data directory from its snapshot and write-ahead log.
"""

from __future__ import annotations

import threading
import time
import traceback
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial

import grpc
import numpy as np
import pytest

from fsclient import FaceSearchClient, FaceSearchError
from fsclient.types import AddItem, AddResult, Item, Neighbor
from support import RunningServer

DIM = 16
THREADS = 6
DURATION = 8.0  # seconds of mixed traffic
POOL = 300  # ids each thread may use, so the final checks stay quick
RANGE = 1_000_000
# The last thread owns [2**63, 2**64): its new items get server-assigned ids, which come
# after the largest id in use, so they land above every other thread's range.
AUTO = THREADS - 1
AUTO_BASE = 2**63
CALL_TIMEOUT = 30.0  # no call may hang the test
UNICODE = "é✓𝄞 日本"


@dataclass(frozen=True)
class Stored:
    label: str
    metadata: str
    vector: np.ndarray


def expect_code(code: grpc.StatusCode, call: Callable[[], object]) -> FaceSearchError:
    try:
        call()
    except FaceSearchError as error:
        assert error.code == code, f"expected {code.name}, got {error}"
        return error
    raise AssertionError(f"expected {code.name}, the call succeeded")


def check_item(item: Item, id: int, stored: Stored, where: str) -> None:
    assert item.id == id, where
    assert (item.label, item.metadata) == (stored.label, stored.metadata), f"{where}: id {id}"
    assert item.vector.dtype == np.float32, where
    np.testing.assert_array_equal(item.vector, stored.vector, err_msg=f"{where}: id {id}")


class Worker:
    """One client thread; `live` is what it was told is stored, `known` every id it sent."""

    def __init__(self, number: int, address: str, stop_at: float) -> None:
        self.number = number
        self.address = address
        self.stop_at = stop_at
        self.rng = np.random.default_rng(1000 + number)
        self.base = AUTO_BASE if number == AUTO else number * RANGE
        self.live: dict[int, Stored] = {}
        self.known: set[int] = set()
        self.version = 0
        self.ops: Counter[str] = Counter()
        self.self_queries = 0
        self.self_hits = 0
        self.saved = False
        self.error: str | None = None

    # ---- helpers ---------------------------------------------------------------------

    def owns(self, id: int) -> bool:
        if self.number == AUTO:
            return id >= AUTO_BASE
        return self.base <= id < self.base + RANGE

    def pick(self, pool: list[int], most: int) -> list[int]:
        if not pool:
            return []
        n = int(self.rng.integers(1, most + 1))
        chosen = self.rng.choice(len(pool), size=min(n, len(pool)), replace=False)
        return [pool[int(i)] for i in chosen]

    def new_record(self, id: int | None) -> tuple[str, str]:
        self.version += 1
        roll = self.rng.random()
        if roll < 0.1:
            return "", ""  # no record at all: an upsert must drop the old one
        if roll < 0.2:
            return f"{UNICODE} t{self.number}", ""
        return f"t{self.number}-{id}-v{self.version}", f'{{"v": {self.version}, "u": "{UNICODE}"}}'

    def vectors(self, n: int) -> np.ndarray:
        return self.rng.normal(size=(n, DIM)).astype(np.float32)

    def free_ids(self) -> list[int]:
        """Ids this thread may add as new: never used, or deleted (a revival)."""
        if self.number == AUTO:
            return sorted(self.known - self.live.keys())
        return [i for i in range(self.base, self.base + POOL) if i not in self.live]

    def store(self, client: FaceSearchClient, items: list[AddItem]) -> list[AddResult]:
        results = [r for batch in client.add(items, batch_size=len(items)) for r in batch]
        assert len(results) == len(items)
        return results

    # ---- operations ------------------------------------------------------------------

    def add(self, client: FaceSearchClient) -> None:
        """New items (some revivals), maybe an upsert, maybe a bad or repeated item."""
        explicit: list[int | None]
        if self.number == AUTO and not self.known:
            explicit = [AUTO_BASE]  # lifts the next server id above every other thread's
        elif self.number == AUTO and len(self.known) < POOL:
            explicit = [None] * int(self.rng.integers(1, 9))
        else:
            explicit = list(self.pick(self.free_ids(), 12))
        if self.live and self.rng.random() < 0.3:
            explicit += self.pick(sorted(self.live), 2)
        if not explicit:
            return
        vectors = self.vectors(len(explicit))
        items = []
        for id, vector in zip(explicit, vectors, strict=True):
            label, metadata = self.new_record(id)
            items.append(AddItem(vector=vector, label=label, id=id, metadata=metadata))
        bad: set[int] = set()
        if self.rng.random() < 0.15:  # a NaN vector fails alone
            free = [i for i in self.free_ids() if i not in explicit]
            if self.number == AUTO or not free:
                bad_item = AddItem(vector=np.full(DIM, np.nan, np.float32), label="bad")
            else:
                id = free[int(self.rng.integers(len(free)))]
                bad_item = AddItem(vector=np.full(DIM, np.nan, np.float32), label="bad", id=id)
                self.known.add(id)
            bad.add(len(items))
            items.append(bad_item)
        repeated: set[int] = set()
        if self.rng.random() < 0.1 and items[0].id is not None:  # the repeat fails alone
            repeated.add(len(items))
            items.append(AddItem(vector=self.vectors(1)[0], label="repeat", id=items[0].id))
        results = self.store(client, items)
        for position, (item, result) in enumerate(zip(items, results, strict=True)):
            if position in bad:
                assert result.error is not None, f"a NaN vector was stored: {result}"
                assert result.error.code_name == "INVALID_ARGUMENT", result.error
                continue
            if position in repeated:
                assert result.error is not None, f"a repeated id was stored: {result}"
                assert "more than once" in result.error.message, result.error
                continue
            assert result.ok and result.id is not None, f"add failed: {result.error}"
            if item.id is None:
                assert result.id > AUTO_BASE, f"server id {result.id} is in another's range"
                assert result.id not in self.known, f"server id {result.id} was handed out again"
            else:
                assert result.id == item.id, (result.id, item.id)
            assert item.vector is not None
            self.known.add(result.id)
            self.live[result.id] = Stored(item.label, item.metadata, item.vector)

    def upsert(self, client: FaceSearchClient) -> None:
        ids = self.pick(sorted(self.live), 4)
        if not ids:
            return
        vectors = self.vectors(len(ids))
        items = []
        for id, vector in zip(ids, vectors, strict=True):
            label, metadata = self.new_record(id)
            items.append(AddItem(vector=vector, label=label, id=id, metadata=metadata))
        for item, result in zip(items, self.store(client, items), strict=True):
            assert result.ok and result.id == item.id, f"upsert of {item.id}: {result}"
            assert item.vector is not None and item.id is not None
            self.live[item.id] = Stored(item.label, item.metadata, item.vector)

    def delete(self, client: FaceSearchClient) -> None:
        ids = self.pick(sorted(self.live), 10)
        if not ids:
            return
        gone = sorted(self.known - self.live.keys())
        if gone and self.rng.random() < 0.15:
            # All or nothing: one id that is not there deletes none of them.
            missing = gone[int(self.rng.integers(len(gone)))]
            error = expect_code(grpc.StatusCode.NOT_FOUND, lambda: client.delete([*ids, missing]))
            assert str(missing) in error.details, error.details
            check_item(client.get(ids[0]), ids[0], self.live[ids[0]], "after a refused delete")
            return
        assert client.delete(ids) == len(ids)
        for id in ids:
            del self.live[id]

    def get(self, client: FaceSearchClient) -> None:
        pool = sorted(self.known)
        if not pool:
            return
        id = pool[int(self.rng.integers(len(pool)))]
        if id in self.live:
            check_item(client.get(id), id, self.live[id], "get")
        else:
            expect_code(grpc.StatusCode.NOT_FOUND, lambda: client.get(id))

    def check_neighbours(self, neighbours: list[Neighbor], where: str) -> None:
        distances = [n.distance for n in neighbours]
        assert distances == sorted(distances), f"{where}: unsorted {distances}"
        for n in neighbours:
            if self.owns(n.id):
                # Every change to this thread's ids finished before the query started.
                assert n.id in self.live, f"{where}: returned id {n.id}, deleted or never added"
                stored = self.live[n.id]
                assert (n.label, n.metadata) == (stored.label, stored.metadata), where

    def query_vector(self, client: FaceSearchClient) -> None:
        if self.live and self.rng.random() < 0.5:
            ids = sorted(self.live)
            target = self.live[ids[int(self.rng.integers(len(ids)))]].vector
            vector = target + self.rng.normal(scale=0.01, size=DIM).astype(np.float32)
        else:
            vector = self.vectors(1)[0]
        k = int(self.rng.integers(1, 21))
        result = client.query(vector=vector, k=k)
        assert len(result.results) == 1
        neighbours = result.results[0].neighbors
        # k of them, or all there are: at least this thread's own live items.
        assert min(k, len(self.live)) <= len(neighbours) <= k, (k, len(self.live), neighbours)
        self.check_neighbours(neighbours, "query by vector")

    def query_id(self, client: FaceSearchClient) -> None:
        gone = sorted(self.known - self.live.keys())
        if gone and self.rng.random() < 0.2:
            id = gone[int(self.rng.integers(len(gone)))]
            expect_code(grpc.StatusCode.NOT_FOUND, lambda: client.query(id=id, k=3))
            return
        ids = sorted(self.live)
        if not ids:
            return
        id = ids[int(self.rng.integers(len(ids)))]
        neighbours = client.query(id=id, k=5, ef=100).results[0].neighbors
        self.check_neighbours(neighbours, f"query by id {id}")
        self.self_queries += 1
        self.self_hits += any(n.id == id for n in neighbours)

    def stats(self, client: FaceSearchClient) -> None:
        stats = client.stats()
        assert stats.dim == DIM and stats.count >= 0 and stats.deleted >= 0
        assert stats.wal_bytes > 0

    def save(self, client: FaceSearchClient) -> None:
        result = client.save()
        assert result.snapshot.startswith("snapshots/"), result
        self.saved = True

    def compact(self, client: FaceSearchClient) -> None:
        result = client.compact()
        assert result.removed >= 0 and result.count >= 0

    # ---- the loop --------------------------------------------------------------------

    def run(self) -> None:
        ops: list[tuple[str, float]] = [
            ("add", 24),
            ("upsert", 14),
            ("delete", 18),
            ("get", 16),
            ("query_vector", 14),
            ("query_id", 14),
            ("stats", 3),
        ]
        if self.number == 0:
            ops += [("save", 1.5), ("compact", 1.5)]
        names = [name for name, _ in ops]
        weights = np.array([w for _, w in ops]) / sum(w for _, w in ops)
        halfway = self.stop_at - DURATION / 2
        try:
            with FaceSearchClient(self.address, timeout=CALL_TIMEOUT) as client:
                while (now := time.monotonic()) < self.stop_at:
                    if self.number == 0 and not self.saved and now > halfway:
                        name = "save"  # at least one snapshot under load
                    elif self.number == 0 and now > halfway and not self.ops["compact"]:
                        name = "compact"
                    else:
                        name = names[int(self.rng.choice(len(names), p=weights))]
                    self.ops[name] += 1
                    getattr(self, name)(client)
        except BaseException:
            self.error = f"thread {self.number}:\n{traceback.format_exc()}"


def verify(address: str, workers: list[Worker], where: str) -> list[str]:
    """Every known id as its thread last saw it; the problems found (empty: all good)."""

    def check(worker: Worker) -> list[str]:
        problems = []
        with FaceSearchClient(address, timeout=CALL_TIMEOUT) as client:
            for id in sorted(worker.known):
                try:
                    if id in worker.live:
                        check_item(client.get(id), id, worker.live[id], where)
                    else:
                        expect_code(grpc.StatusCode.NOT_FOUND, partial(client.get, id))
                except (AssertionError, FaceSearchError) as error:
                    problems.append(f"{where}: thread {worker.number}, id {id}: {error}")
        return problems

    with ThreadPoolExecutor(len(workers)) as pool:
        problems = [p for found in pool.map(check, workers) for p in found]
    with FaceSearchClient(address, timeout=CALL_TIMEOUT) as client:
        count = client.stats().count
    expected = sum(len(w.live) for w in workers)
    if count != expected:
        problems.append(f"{where}: Stats.count is {count}, expected {expected} live items")
    return problems


def fail_with(problems: list[str]) -> None:
    if problems:
        shown = "\n".join(problems[:30])
        pytest.fail(f"{len(problems)} problem(s):\n{shown}", pytrace=False)


@pytest.mark.timeout(120)
def test_concurrent_clients_then_recovery_from_snapshot_and_wal(
    start_server: Callable[..., RunningServer],
) -> None:
    running = start_server(dim=DIM, model="")
    stop_at = time.monotonic() + DURATION
    workers = [Worker(n, running.address, stop_at) for n in range(THREADS)]
    threads = [
        threading.Thread(target=w.run, name=f"stress-{w.number}", daemon=True) for w in workers
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=DURATION + 3 * CALL_TIMEOUT)
    hung = [t.name for t in threads if t.is_alive()]
    assert not hung, f"client threads still running: {hung}"
    fail_with([w.error for w in workers if w.error])

    totals = sum((w.ops for w in workers), Counter())
    for name in ("add", "upsert", "delete", "get", "query_vector", "query_id", "save", "compact"):
        assert totals[name] > 0, f"no {name} ran: {dict(totals)}"
    assert all(w.live for w in workers), [len(w.live) for w in workers]
    assert any(w.known - w.live.keys() for w in workers), "nothing was deleted"
    queries = sum(w.self_queries for w in workers)
    hits = sum(w.self_hits for w in workers)
    # HNSW is approximate, but an item is all but always its own nearest neighbour.
    assert hits >= 0.9 * queries, f"query by id found itself {hits} of {queries} times"
    fail_with(verify(running.address, workers, "under load"))

    # Changes after the last snapshot, so the restart has WAL records to replay.
    first = workers[0]
    with running.client(timeout=CALL_TIMEOUT) as client:
        first.upsert(client)
        first.add(client)
        first.delete(client)
        auto_before = max(workers[AUTO].known)
    running.server.stop(grace=1.0, save=False)

    recovered = start_server(data_dir=running.data_dir, dim=DIM, model="")
    with recovered.client(timeout=CALL_TIMEOUT) as client:
        stats = client.stats()
        assert stats.snapshot.startswith("snapshots/"), stats
        assert stats.wal_replayed >= 1, stats
        assert stats.wal_dropped == 0, stats
    fail_with(verify(recovered.address, workers, "after recovery"))
    with recovered.client(timeout=CALL_TIMEOUT) as client:
        # Ids are never handed out again, not even after deletes, compaction and a restart.
        fresh = client.add_vectors(np.ones(DIM, np.float32))[0].id
        assert fresh is not None and fresh > auto_before
        workers[AUTO].known.add(fresh)
        workers[AUTO].live[fresh] = Stored("", "", np.ones(DIM, np.float32))
        for worker in workers:
            ids = sorted(worker.live)[:5]
            for id in ids:
                neighbours = client.query(id=id, k=3, ef=100).results[0].neighbors
                worker.check_neighbours(neighbours, f"query by id {id} after recovery")
