"""Through the real server: the WAL across crashes, upserts, deletes and compaction."""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

from fsclient import AddItem, FaceSearchError
from fsserver.errors import FailedPrecondition
from support import RunningServer

DIM = 8


def _crash(server: RunningServer) -> None:
    """Stop without the save a graceful stop makes: what is left is snapshot + WAL."""
    server.server.stop(grace=None, save=False)


def _vectors(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, DIM)).astype(np.float32)


def test_acknowledged_adds_and_deletes_survive_a_crash_without_save(
    start_server: Callable[..., RunningServer], tmp_path: Path
) -> None:
    data = tmp_path / "data"
    server = start_server(data_dir=data, dim=DIM)
    vectors = _vectors(200)
    with server.client() as client:
        client.add_vectors(vectors[:100], labels=[f"a{i}" for i in range(100)])
        client.save()
        client.add_vectors(vectors[100:], labels=[f"a{i}" for i in range(100, 200)], batch_size=30)
        client.delete([5, 150])
        assert client.stats().wal_bytes > 0
    _crash(server)

    again = start_server(data_dir=data, dim=DIM)
    with again.client() as client:
        stats = client.stats()
        # 4 add batches of the second call and 1 delete came after the snapshot.
        assert (stats.count, stats.wal_replayed, stats.wal_dropped) == (198, 5, 0)
        for id in (0, 99, 100, 199):
            item = client.get(id)
            assert item.label == f"a{id}"
            np.testing.assert_array_equal(item.vector, vectors[id])
        for id in (5, 150):
            with pytest.raises(FaceSearchError) as error:
                client.get(id)
            assert error.value.code.name == "NOT_FOUND"


def test_an_upsert_replaces_vector_label_and_metadata_durably(
    start_server: Callable[..., RunningServer], tmp_path: Path
) -> None:
    data = tmp_path / "data"
    server = start_server(data_dir=data, dim=DIM)
    old, new = _vectors(2, seed=1)
    with server.client() as client:
        client.add_vectors(old, ids=[7], labels=["old"], metadata=['{"v": 1}'])
        client.add_vectors(_vectors(50, seed=2), ids=list(range(100, 150)))
        [result] = client.add_vectors(new, ids=[7], labels=["new"], metadata=['{"v": 2}'])
        assert result.id == 7
    _crash(server)
    again = start_server(data_dir=data, dim=DIM)
    with again.client() as client:
        assert client.stats().count == 51
        item = client.get(7)
        assert (item.label, item.metadata) == ("new", '{"v": 2}')
        np.testing.assert_array_equal(item.vector, new)
        nearest = client.query(vector=new, k=1).results[0].neighbors[0]
        assert (nearest.id, nearest.label) == (7, "new")
        # Nothing answers for the old vector under the old label any more.
        stale = client.query(vector=old, k=51, ef=200).results[0].neighbors
        assert [n.label for n in stale].count("old") == 0
        assert [n.id for n in stale].count(7) == 1


def test_compaction_drops_deleted_items_and_keeps_ids(
    start_server: Callable[..., RunningServer], tmp_path: Path
) -> None:
    data = tmp_path / "data"
    server = start_server(data_dir=data, dim=DIM)
    vectors = _vectors(400)
    deleted = list(range(0, 400, 2))
    with server.client() as client:
        client.add_vectors(vectors, labels=[f"v{i}" for i in range(400)])
        client.delete(deleted)
        result = client.compact()
        assert (result.removed, result.count) == (200, 200)
        assert (
            len(server.server.catalog.default.store.index.voyager_index) == 200
        )  # memory reclaimed
        stats = client.stats()
        assert (stats.count, stats.deleted) == (200, 0)
        for id in (1, 201, 399):
            assert client.get(id).label == f"v{id}"
            assert client.query(vector=vectors[id], k=1).results[0].neighbors[0].id == id
        returned = {
            n.id for q in vectors[:20] for n in client.query(vector=q, k=10).results[0].neighbors
        }
        assert not returned & set(deleted)
        # New ids continue after the largest ever handed out, never reusing a deleted one.
        [fresh] = client.add_vectors(_vectors(1, seed=9))
        assert fresh.id == 400
        client.delete([399])
    _crash(server)
    again = start_server(data_dir=data, dim=DIM)
    with again.client() as client:
        assert client.stats().count == 200
        assert client.get(201).label == "v201"
        with pytest.raises(FaceSearchError):
            client.get(399)


def test_save_starts_a_compaction_once_the_deleted_share_passes_the_threshold(
    start_server: Callable[..., RunningServer],
) -> None:
    server = start_server(dim=DIM, compact_deleted_share=0.3)
    with server.client() as client:
        client.add_vectors(_vectors(100))
        client.delete(list(range(20)))
        client.save()
        time.sleep(0.5)
        assert client.stats().deleted == 20  # 20 % deleted: below the threshold
        client.delete(list(range(20, 40)))
        saved = client.save()  # written at once; the compaction runs in the background
        assert saved.count == 60
        deadline = time.monotonic() + 30
        while client.stats().deleted and time.monotonic() < deadline:
            time.sleep(0.05)
        stats = client.stats()
        assert (stats.count, stats.deleted) == (60, 0)
    assert len(server.server.catalog.default.store.index.voyager_index) == 60


def test_adds_and_deletes_during_a_compaction_are_kept(
    start_server: Callable[..., RunningServer], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    data = tmp_path / "data"
    server = start_server(data_dir=data, dim=DIM, ef_construction=400)
    vectors = _vectors(30_000, seed=4)
    with server.client() as client:
        client.add_vectors(vectors[:20_000], batch_size=5000)
        client.delete(list(range(0, 20_000, 3)))
        done = threading.Event()
        compacted: list[int] = []

        def compact() -> None:
            with server.client() as other:
                compacted.append(other.compact().removed)
            done.set()

        thread = threading.Thread(target=compact)
        caplog.set_level(logging.INFO, logger="fsserver.storage.index")
        thread.start()
        added = 0
        while not done.is_set() or added == 0:  # add and delete while it rebuilds
            start = 20_000 + added
            client.add_vectors(vectors[start : start + 100], ids=list(range(start, start + 100)))
            client.delete([start])
            added += 100
            if start + 200 > len(vectors):
                break
        thread.join(timeout=120)
        assert compacted == [len(range(0, 20_000, 3))]
        carried = re.search(r"(\d+) changes made during the rebuild carried over", caplog.text)
        assert carried and int(carried.group(1)) > 0, caplog.text
        expected = 20_000 - len(range(0, 20_000, 3)) + added - added // 100
        assert client.stats().count == expected
        for start in range(20_000, 20_000 + added, 100):
            with pytest.raises(FaceSearchError):
                client.get(start)
            item = client.get(start + 1)
            np.testing.assert_array_equal(item.vector, vectors[start + 1])
    _crash(server)
    again = start_server(data_dir=data, dim=DIM)
    with again.client() as client:
        assert client.stats().count == expected


def test_health_turns_serving_only_after_the_wal_is_replayed(
    start_server: Callable[..., RunningServer], tmp_path: Path
) -> None:
    from dataclasses import replace

    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    from fsserver.api.server import FaceSearchServer

    data = tmp_path / "data"
    server = start_server(data_dir=data, dim=DIM)
    with server.client() as client:
        client.add_vectors(_vectors(5000), batch_size=500)
    _crash(server)
    again = FaceSearchServer(replace(server.server.config, data_dir=data))
    again.open()
    try:
        with grpc.insecure_channel(again.address) as channel:
            health = health_pb2_grpc.HealthStub(channel)
            check = health_pb2.HealthCheckRequest(service="facesearch.v1.FaceSearch")
            assert health.Check(check).status == health_pb2.HealthCheckResponse.NOT_SERVING
            again.load()
            assert health.Check(check).status == health_pb2.HealthCheckResponse.SERVING
        assert again.catalog.default.stats().wal_replayed == 10
        assert again.catalog.default.stats().count == 5000
    finally:
        again.stop(grace=None)


def test_one_data_directory_serves_one_server(
    start_server: Callable[..., RunningServer], tmp_path: Path
) -> None:
    data = tmp_path / "data"
    start_server(data_dir=data, dim=DIM)
    with pytest.raises(FailedPrecondition, match="another fsserver is using the data directory"):
        start_server(data_dir=data, dim=DIM)


def test_a_growing_wal_is_checkpointed_in_the_background(
    start_server: Callable[..., RunningServer], tmp_path: Path
) -> None:
    data = tmp_path / "data"
    server = start_server(data_dir=data, dim=128, checkpoint_wal_mb=1)
    vectors = np.random.default_rng(0).normal(size=(6000, 128)).astype(np.float32)  # ~3 MB
    with server.client() as client:
        client.add_vectors(vectors, batch_size=500)
        deadline = time.monotonic() + 60
        while not client.stats().snapshot and time.monotonic() < deadline:
            time.sleep(0.05)
        stats = client.stats()
        assert stats.snapshot, "no checkpoint was taken"
        assert stats.wal_bytes < vectors.nbytes  # the log was trimmed behind the snapshots
    _crash(server)
    again = start_server(data_dir=data, dim=128)
    with again.client() as client:
        stats = client.stats()
        assert stats.count == 6000 and stats.snapshot
        assert stats.wal_replayed < 12  # not the whole enrollment
        np.testing.assert_array_equal(client.get(5999).vector, vectors[5999])


def test_recall_is_not_measured_under_a_slow_add_stream_but_right_after_it(
    start_server: Callable[..., RunningServer],
) -> None:
    """Batches slower than the calibration's quiet period: while the stream is open nothing
    is measured (rows arriving mid-measurement read as misses); once it ends, the default
    ef is calibrated over every row and reaches the target."""
    server = start_server(dim=DIM, target_recall=0.95)
    rows = _vectors(1000, seed=5)
    ended = threading.Event()
    seen_during: list[int] = []

    def slowly() -> Iterator[AddItem]:
        for start in range(0, len(rows), 200):
            if start:
                time.sleep(0.9)  # longer than the 0.5 s pause calibration waits for
            yield from (AddItem(vector=row) for row in rows[start : start + 200])

    def watch() -> None:
        with server.client() as watcher:
            while not ended.is_set():
                seen_during.append(watcher.stats().recall_measured_at)
                time.sleep(0.1)

    watcher = threading.Thread(target=watch)
    watcher.start()
    with server.client() as client:
        added = [r for batch in client.add(slowly(), batch_size=200) for r in batch]
        ended.set()
        watcher.join()
        assert len(added) == 1000 and all(r.ok for r in added)
        assert seen_during and set(seen_during) == {0}, seen_during  # nothing measured
        deadline = time.monotonic() + 60
        while not client.stats().recall_measured_at and time.monotonic() < deadline:
            time.sleep(0.1)
        stats = client.stats()
    assert stats.recall_measured_at == 1000
    assert stats.estimated_recall >= 0.95
