"""Coalesced search: callers that arrive while a search runs share the next one, and each
gets exactly its own answer.

Real Voyager in tmp_path. A batch is made to form by holding the index's write lock (as a
delete or a compaction's swap does): the first caller leads and waits on the lock, the rest
queue behind it, and the whole queue is searched in one call once the lock is let go.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

from fsserver.contract import EmbeddingContract
from fsserver.storage.backend import Hits, StoreOptions
from fsserver.storage.coalesce import Coalescer
from fsserver.storage.local import LocalStore
from fsserver.storage.rows import Rows

DIM = 16


@pytest.fixture
def store(tmp_path: Path) -> Iterator[LocalStore]:
    contract = EmbeddingContract.build(
        model="", detector="", dim=DIM, space="euclidean", storage="float32"
    )
    opened = LocalStore(tmp_path / "data", contract, StoreOptions(target_recall=0.0))
    rng = np.random.default_rng(1)
    vectors = rng.normal(size=(3000, DIM)).astype(np.float32)
    opened.add_rows(
        Rows.of(vectors, labels=[f"p{i % 50}" for i in range(3000)], metadata=["m"] * 3000)
    )
    yield opened
    opened.close()


def _queued(store: LocalStore, count: int, timeout: float = 10.0) -> None:
    """Wait until `count` callers wait behind the leader."""
    deadline = time.monotonic() + timeout
    while len(store._coalescer._queue) < count:
        assert time.monotonic() < deadline, "callers did not queue"
        time.sleep(0.005)


def _run_held(
    store: LocalStore, calls: list[Callable[[], Hits]], queued: int | None = None
) -> list[Hits | BaseException]:
    """Run `calls` from threads of their own while the index is write-locked, so that the
    first leads (and waits on the lock) and the others queue (`queued` of them: exact
    searches go alone, to the lock); then let the lock go."""
    answers: list[Hits | BaseException] = [RuntimeError("no answer")] * len(calls)

    def run(i: int) -> None:
        try:
            answers[i] = calls[i]()
        except BaseException as error:
            answers[i] = error

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    with store.index._lock.write():
        threads[0].start()
        time.sleep(0.05)  # the leader is in the search, waiting on the lock
        for t in threads[1:]:
            t.start()
        _queued(store, len(calls) - 1 if queued is None else queued)
    for t in threads:
        t.join(10)
    return answers


def test_queued_queries_share_one_search_and_each_gets_its_own_answer(
    store: LocalStore,
) -> None:
    queries = np.random.default_rng(2).normal(size=(24, DIM)).astype(np.float32)
    alone = [store.search(q[None, :], 10, 64, with_metadata=True) for q in queries]
    calls_before = store._coalescer.calls
    answers = _run_held(
        store,
        [lambda q=q: store.search(q[None, :], 10, 64, with_metadata=True) for q in queries],
    )
    # The leader searched its own row; the 23 queued behind it went in one call.
    assert store._coalescer.calls - calls_before == 2
    for got, want in zip(answers, alone, strict=True):
        assert isinstance(got, Hits)
        assert got.ids.tolist() == want.ids.tolist()
        np.testing.assert_allclose(got.distances, want.distances, rtol=1e-6)
        assert got.labels == want.labels
        assert got.metadata == want.metadata == [["m"] * 10]


def test_k_ef_and_exact_keep_their_meaning_inside_a_batch(store: LocalStore) -> None:
    rng = np.random.default_rng(3)
    settings = [(1, None, False), (5, 16, False), (10, 400, False), (7, None, True)] * 4
    queries = rng.normal(size=(len(settings), DIM)).astype(np.float32)

    def search(i: int) -> Hits:
        k, ef, exact = settings[i]
        return store.search(queries[i][None, :], k, ef, exact)

    alone = [search(i) for i in range(len(settings))]
    coalesced = sum(not exact for _, _, exact in settings)
    answers = _run_held(
        store, [lambda i=i: search(i) for i in range(len(settings))], queued=coalesced - 1
    )
    truth = store.index.exact_nearest(queries, 10)[0]
    for i, (got, want) in enumerate(zip(answers, alone, strict=True)):
        k, ef, exact = settings[i]
        assert isinstance(got, Hits)
        assert got.ids.shape == (1, k)
        assert got.ids.tolist() == want.ids.tolist(), settings[i]
        if exact or (ef or 0) >= 400:
            assert got.ids[0].tolist() == truth[i][:k].tolist()


def test_a_search_that_fails_fails_only_its_own_callers() -> None:
    def search(key: str, rows: np.ndarray) -> list[float]:
        if key == "bad":
            raise ValueError("this key cannot be searched")
        return rows[:, 0].tolist()

    def split(answer: list[float], parts: list[slice]) -> list[list[float]]:
        return [answer[p] for p in parts]

    gate = threading.Event()
    first_in = threading.Event()

    def slow_search(key: str, rows: np.ndarray) -> list[float]:
        if key == "gate":
            first_in.set()
            gate.wait(10)
        return search(key, rows)

    coalescer = Coalescer[str, list[float]](slow_search, split)
    keys = ["gate", "good", "bad", "good", "bad", "good"]
    answers: dict[int, object] = {}

    def run(i: int) -> None:
        try:
            answers[i] = coalescer.search(keys[i], np.full((1, 2), float(i), np.float32))
        except ValueError as error:
            answers[i] = error

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(keys))]
    threads[0].start()
    assert first_in.wait(10)
    for t in threads[1:]:
        t.start()
    deadline = time.monotonic() + 10
    while len(coalescer._queue) < len(keys) - 1:
        assert time.monotonic() < deadline
        time.sleep(0.005)
    gate.set()
    for t in threads:
        t.join(10)
    for i, key in enumerate(keys):
        if key == "bad":
            assert isinstance(answers[i], ValueError)
        else:
            assert answers[i] == [float(i)]
    # The gate's leader alone, then one call per key of the queued batch.
    assert (coalescer.calls, coalescer.rows) == (3, 6)


def test_batches_stop_at_the_row_limit_and_the_rest_follow(store: LocalStore) -> None:
    store._coalescer._max_rows = 4
    queries = np.random.default_rng(4).normal(size=(11, DIM)).astype(np.float32)
    alone = [store.search(q[None, :], 3, 32) for q in queries]
    calls_before = store._coalescer.calls
    answers = _run_held(store, [lambda q=q: store.search(q[None, :], 3, 32) for q in queries])
    assert store._coalescer.calls - calls_before == 1 + 3  # the leader, then 4 + 4 + 2
    for got, want in zip(answers, alone, strict=True):
        assert isinstance(got, Hits)
        assert got.ids.tolist() == want.ids.tolist()
