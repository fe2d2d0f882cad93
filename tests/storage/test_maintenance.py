"""Maintenance under churn: full answers beside compactions, saves and compactions that join.

Real Voyager, real WAL and snapshots in tmp_path. The hammer fails on one short answer:
every query of an index with live rows must get min(k, live) neighbours, whatever runs
beside it (deletes, a compaction's swap, snapshots, calibration).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

from fsserver.contract import EmbeddingContract
from fsserver.storage.backend import StoreOptions
from fsserver.storage.local import MIN_COMPACT_SHARE, LocalStore
from fsserver.storage.maintenance import BackgroundRun, GroupRun
from fsserver.storage.rows import Rows

DIM = 32
CONTRACT = EmbeddingContract.build(
    model="", detector="", dim=DIM, space="euclidean", storage="float32"
)


def _vectors(n: int, seed: int) -> np.ndarray:
    """Clustered rows, like faces: 40 people, each a cloud around a centre."""
    rng = np.random.default_rng(seed)
    centres = np.random.default_rng(0).normal(size=(40, DIM))
    return (centres[rng.integers(0, 40, n)] + 0.3 * rng.normal(size=(n, DIM))).astype(np.float32)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[LocalStore]:
    opened = LocalStore(tmp_path / "data", CONTRACT, StoreOptions(target_recall=0.0))
    yield opened
    opened.close()


def _filled(store: LocalStore, n: int) -> None:
    store.add_rows(Rows.of(_vectors(n, seed=1), labels=[f"p{i % 40}" for i in range(n)]))


def test_no_query_comes_back_short_while_deletes_compactions_and_saves_run(
    tmp_path: Path,
) -> None:
    store = LocalStore(tmp_path / "data", CONTRACT, StoreOptions(target_recall=0.99))
    kept = 2000  # never deleted: every query can always get its 10
    _filled(store, kept + 5000)
    stop = threading.Event()
    short: list[tuple[int, int]] = []
    errors: list[BaseException] = []
    answered = [0]

    def query(seed: int) -> None:
        rng = np.random.default_rng(seed)
        while not stop.is_set():
            for exact in (False, False, False, True):
                hits = store.search(_vectors(1, int(rng.integers(1 << 30))), 10, exact=exact)
                if len(hits.ids[0]) != 10:
                    short.append((len(hits.ids[0]), store.count))
                answered[0] += 1

    def churn() -> None:
        rng = np.random.default_rng(7)
        doomed = list(range(kept, kept + 5000))
        rng.shuffle(doomed)
        round = 0
        while doomed and not stop.is_set():
            round += 1
            store.delete([doomed.pop() for _ in range(min(250, len(doomed)))])
            added = store.add_rows(Rows.of(_vectors(100, seed=round + 10), labels=[""] * 100))
            doomed.extend(int(i) for i in added if isinstance(i, int))
            if round % 2 == 0:
                store.compact(force=True)
            if round % 5 == 0:
                store.save()

    def guarded(work: Callable[[], None]) -> Callable[[], None]:
        def run() -> None:
            try:
                work()
            except BaseException as error:  # reported by the test
                errors.append(error)
                stop.set()

        return run

    threads = [threading.Thread(target=guarded(lambda s=s: query(s))) for s in (1, 2)]
    threads.append(threading.Thread(target=guarded(churn)))
    for thread in threads:
        thread.start()
    threads[-1].join(timeout=25)  # the churn ends by itself, or after 25 s
    stop.set()
    for thread in threads:
        thread.join(timeout=60)
    store.close()
    assert not errors, errors
    assert answered[0] > 100
    assert short == [], f"{len(short)} short answers of {answered[0]}: {short[:5]}"


def test_compactions_asked_for_together_rebuild_once_and_share_the_result(
    store: LocalStore,
) -> None:
    _filled(store, 6000)
    store.delete(list(range(0, 6000, 2)))
    results = []
    barrier = threading.Barrier(4)

    def compact() -> None:
        barrier.wait()
        results.append(store.compact())

    threads = [threading.Thread(target=compact) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert len(results) == 4
    # One rebuilt the graph; the three that arrived meanwhile waited and share its result.
    assert all(r.removed == 3000 and r.count == 3000 for r in results), results
    assert sum(not r.joined for r in results) == 1, results
    assert store.stats().deleted == 0


def test_a_compaction_that_would_not_pay_off_returns_at_once_saying_so(
    store: LocalStore,
) -> None:
    _filled(store, 2000)
    few = int(2000 * MIN_COMPACT_SHARE) // 2
    store.delete(list(range(few)))
    result = store.compact()
    assert result.removed == 0 and result.skipped, result
    assert f"only {few} of 2000" in result.skipped and "force" in result.skipped
    assert store.stats().deleted == few  # nothing was rebuilt
    forced = store.compact(force=True)
    assert (forced.removed, forced.skipped, forced.count) == (few, "", 2000 - few)
    assert forced.hold_seconds <= forced.seconds


def test_writers_go_on_while_a_compaction_rebuilds(store: LocalStore) -> None:
    _filled(store, 20_000)
    store.delete(list(range(0, 20_000, 3)))
    done = threading.Event()
    results = []

    def compact() -> None:
        results.append(store.compact())
        done.set()

    thread = threading.Thread(target=compact)
    thread.start()
    during = 0
    while not done.is_set():
        store.add_rows(Rows.of(_vectors(10, seed=during), labels=[""] * 10))
        during += 1
    thread.join()
    [result] = results
    # Adds were acknowledged during the rebuild (not held until the swap), and every one
    # is in the rebuilt graph.
    assert during >= 5, during
    assert result.removed == len(range(0, 20_000, 3))
    assert store.count == 20_000 - result.removed + 10 * during
    assert store.index.deleted_count == 0
    assert result.hold_seconds < result.seconds


def _gate() -> tuple[threading.Event, threading.Event]:
    return threading.Event(), threading.Event()


def test_a_background_run_is_joined_and_a_caller_can_stop_waiting() -> None:
    runs = BackgroundRun[int]("test")
    entered, release = _gate()
    calls = [0]

    def work() -> int:
        calls[0] += 1
        entered.set()
        release.wait(10)
        return calls[0]

    assert runs.run(work, wait=0) == (None, False)  # started; the caller did not wait
    entered.wait(10)
    assert runs.running
    assert runs.run(work, wait=0.1) == (None, True)  # joined; its deadline came first
    joined: list[tuple[int | None, bool]] = []
    late = threading.Thread(target=lambda: joined.append(runs.run(work)))
    late.start()
    time.sleep(0.2)
    release.set()
    late.join()
    assert joined == [(1, True)] and calls == [1]
    assert runs.run(lambda: 7) == (7, False)  # the next call runs afresh


def test_a_background_run_hands_its_failure_to_every_caller_that_waits() -> None:
    runs = BackgroundRun[int]("test")
    entered, release = _gate()

    def work() -> int:
        entered.set()
        release.wait(10)
        raise RuntimeError("disk full")

    failures: list[str] = []

    def call() -> None:
        try:
            runs.run(work)
        except RuntimeError as error:
            failures.append(str(error))

    threads = [threading.Thread(target=call) for _ in range(2)]
    threads[0].start()
    entered.wait(10)
    threads[1].start()
    time.sleep(0.2)
    release.set()
    for thread in threads:
        thread.join()
    assert failures == ["disk full", "disk full"]


def test_a_group_run_serves_callers_that_arrived_during_a_run_with_one_next_run() -> None:
    """Saves: a run that began before a caller arrived may lack its changes, so the callers
    waiting on it are served together by the next run."""
    runs = GroupRun[int]()
    entered, release = _gate()
    calls = [0]

    def work() -> int:
        calls[0] += 1
        entered.set()
        if calls[0] == 1:
            release.wait(10)
        return calls[0]

    results: list[tuple[int, bool]] = []
    first = threading.Thread(target=lambda: results.append(runs.run(work)))
    first.start()
    entered.wait(10)
    waiting = [threading.Thread(target=lambda: results.append(runs.run(work))) for _ in range(3)]
    for thread in waiting:
        thread.start()
    time.sleep(0.2)
    release.set()
    for thread in [first, *waiting]:
        thread.join()
    assert calls == [2]  # four callers, two runs
    assert sorted(r for r, _ in results) == [1, 2, 2, 2]
    assert sorted(joined for _, joined in results) == [False, False, True, True]


def test_a_compaction_still_running_at_the_deadline_answers_so_and_goes_on(
    store: LocalStore,
) -> None:
    _filled(store, 20_000)
    store.delete(list(range(0, 20_000, 2)))
    early = store.compact(wait=0.01)
    assert early.running and early.removed == 0 and not early.joined, early
    done = store.compact()  # joins the one running
    assert done.joined and done.removed == 10_000 and not done.running, done
    assert store.stats().deleted == 0


def test_a_scan_across_a_compaction_leaves_out_items_deleted_before_the_swap(
    store: LocalStore,
) -> None:
    """Exact queries and calibration read the graph a chunk at a time; a compaction may swap
    in a new graph mid-scan. Items deleted on the old graph before the swap must still be
    left out (Voyager refuses to read them: the scan used to fail here)."""
    _filled(store, 3000)
    store.delete(list(range(0, 3000, 2)))
    index = store.index
    chunks = index.live_chunks(size=500)
    first, _ = next(chunks)
    later = sorted(set(range(1, 3000, 2)) - set(first.tolist()))[:2]  # live, not read yet
    index.delete(later)
    assert index.compact().removed == 1502
    seen = np.concatenate([first, *(ids for ids, _ in chunks)]).tolist()
    assert sorted(seen) == [i for i in range(1, 3000, 2) if i not in later]
