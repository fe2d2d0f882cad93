"""Search through a real server: QueryBatch, exact search, and the recall calibration."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator

import grpc
import numpy as np
import pytest

from fsclient import AddItem, FaceSearchClient, FaceSearchError, Stats
from fsproto.facesearch.v1 import facesearch_pb2 as pb
from fsproto.facesearch.v1 import facesearch_pb2_grpc as pb_grpc
from fsserver.storage.calibration import QUIET_SECONDS
from support import RunningServer

DIM = 16


def clustered(n: int, seed: int, people: int = 200, draw: int = 0) -> np.ndarray:
    """Face-like data: people (cluster centres, fixed by seed) with noisy vectors each;
    another `draw` gives new vectors of the same people ("photos not in the index")."""
    centres = np.random.default_rng(seed).normal(size=(people, DIM))
    rng = np.random.default_rng([seed, draw])
    return (centres[rng.integers(0, people, n)] + 0.3 * rng.normal(size=(n, DIM))).astype(
        np.float32
    )


def exact_neighbours(stored: np.ndarray, queries: np.ndarray, k: int, space: str) -> np.ndarray:
    if space == "cosine":
        unit = stored / np.linalg.norm(stored, axis=1, keepdims=True)
        q = queries / np.linalg.norm(queries, axis=1, keepdims=True)
        distances = 1.0 - q @ unit.T
    else:
        distances = ((queries[:, None, :] - stored[None, :, :]) ** 2).sum(axis=2)
    return np.argsort(distances, axis=1, kind="stable")[:, :k]


def wait_for_calibration(client: FaceSearchClient, count: int, timeout: float = 60) -> Stats:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        stats = client.stats()
        if stats.recall_measured_at >= count:
            return stats
        time.sleep(0.1)
    raise AssertionError(f"no recall measurement over {count} items within {timeout}s")


@pytest.mark.parametrize("space", ["euclidean", "cosine"])
def test_exact_query_is_brute_force(start_server: Callable[..., RunningServer], space: str) -> None:
    stored = clustered(3000, seed=1)
    queries = clustered(20, seed=2)
    server = start_server(dim=DIM, space=space)
    with server.client() as client:
        client.add_vectors(stored, labels=[f"v{i}" for i in range(len(stored))])
        client.delete(range(0, 3000, 7))  # deleted items must never come back
        alive = np.array([i for i in range(3000) if i % 7])
        expected = alive[exact_neighbours(stored[alive], queries, 10, space)]
        for query, want in zip(queries, expected, strict=True):
            got = client.query(vector=query, k=10, exact=True).results[0].neighbors
            assert [n.id for n in got] == want.tolist()
            assert [n.label for n in got] == [f"v{i}" for i in want]
        batch = client.query_batch(queries, k=10, exact=True)
        assert batch.ids.tolist() == expected.tolist()


def test_query_batch_matches_single_queries(vector_server: RunningServer) -> None:
    stored = clustered(2000, seed=3)
    queries = clustered(50, seed=4)
    with vector_server.client() as client:
        labels = [f"p{i % 13}" for i in range(len(stored))]
        client.add_vectors(stored, labels=labels, metadata=[f"m{i}" for i in range(len(stored))])
        batch = client.query_batch(queries, k=7, ef=300, with_metadata=True)
        assert batch.ids.shape == batch.distances.shape == batch.matches.shape == (50, 7)
        assert batch.search_seconds > 0
        for row, query in enumerate(queries):
            single = client.query(vector=query, k=7, ef=300).results[0].neighbors
            assert batch.neighbors(row) == single
        assert batch.metadata is not None and batch.metadata[0][0] == f"m{batch.ids[0, 0]}"
        assert client.query_batch(queries[:3], k=7).metadata is None  # unless asked for


def test_query_batch_on_a_small_index_returns_what_it_holds(vector_server: RunningServer) -> None:
    with vector_server.client() as client:
        empty = client.query_batch(np.ones((2, DIM)), k=5)
        assert empty.ids.shape == (2, 0)
        client.add_vectors(np.eye(DIM)[:3])
        small = client.query_batch(np.eye(DIM)[:2], k=5)
        assert small.ids.shape == (2, 3) and small.ids[:, 0].tolist() == [0, 1]


@pytest.mark.parametrize(
    ("vectors", "k", "message"),
    [
        (b"\x00" * (4 * DIM + 2), 5, "not whole float32"),
        (np.ones(DIM + 1, "<f4").tobytes(), 5, "whole rows"),
        (b"", 5, "whole rows"),
        (np.full(DIM, np.nan, "<f4").tobytes(), 5, "NaN"),
        (
            np.concatenate([np.ones(DIM), [np.inf] + [0] * (DIM - 1)]).astype("<f4").tobytes(),
            5,
            "row 1 of 2",
        ),
        (np.ones(DIM, "<f4").tobytes(), -1, "k must be"),
    ],
)
def test_bad_batches_are_invalid_argument(
    vector_server: RunningServer, vectors: bytes, k: int, message: str
) -> None:
    with grpc.insecure_channel(vector_server.address) as channel:
        stub = pb_grpc.FaceSearchStub(channel)
        with pytest.raises(grpc.RpcError) as error:
            stub.QueryBatch(pb.QueryBatchRequest(vectors=vectors, k=k))
        assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert message in error.value.details()
        assert stub.Stats(pb.StatsRequest()).dim == DIM  # still serving


def test_query_batch_refuses_vectors_of_another_model(
    start_server: Callable[..., RunningServer],
) -> None:
    server = start_server(dim=DIM, model="clip")
    with server.client() as client, pytest.raises(FaceSearchError) as error:
        client.query_batch(np.ones((1, DIM)), k=1, vector_model="dlib")
    assert error.value.code == grpc.StatusCode.FAILED_PRECONDITION


def test_default_ef_is_calibrated_to_the_target_recall(
    start_server: Callable[..., RunningServer],
) -> None:
    stored = clustered(6000, seed=5, people=600)
    queries = clustered(300, seed=5, people=600, draw=1)  # new photos of the same people
    server = start_server(dim=DIM, target_recall=0.95, ef=500)
    with server.client() as client:
        before = client.stats()
        assert (before.target_recall, before.ef, before.estimated_recall) == (
            pytest.approx(0.95),
            500,  # --ef until the first measurement
            0.0,
        )
        client.add_vectors(stored)
        stats = wait_for_calibration(client, len(stored))
        assert stats.ef < 500  # it found a smaller ef that is good enough
        assert stats.estimated_recall >= 0.95
        # The estimate holds on queries the server never saw, at its default settings.
        found = client.query_batch(queries, k=10).ids
        truth = exact_neighbours(stored, queries, 10, "euclidean")
        recall = np.mean([len(set(f) & set(t)) / 10 for f, t in zip(found, truth, strict=True)])
        assert recall >= 0.95 - 0.02, (recall, stats)
        # A request's own ef still wins: a wide search finds (nearly) all of them.
        wide = client.query_batch(queries, k=10, ef=400).ids
        wide_recall = np.mean([len(set(f) & set(t)) / 10 for f, t in zip(wide, truth, strict=True)])
        assert wide_recall >= max(recall, 0.99), (wide_recall, recall)


def test_calibration_off_keeps_the_configured_ef(
    start_server: Callable[..., RunningServer],
) -> None:
    server = start_server(dim=DIM, target_recall=0.0, ef=77)
    with server.client() as client:
        client.add_vectors(clustered(500, seed=7))
        stats = client.stats()
        assert (stats.ef, stats.target_recall, stats.estimated_recall) == (77, 0.0, 0.0)


def test_a_graph_walk_short_of_k_falls_back_to_brute_force(
    vector_server: RunningServer,
) -> None:
    stored = clustered(1000, seed=8)
    with vector_server.client() as client:
        client.add_vectors(stored)
        client.delete(range(0, 995))  # the graph now leads mostly to deleted items
        got = client.query(vector=stored[0], k=10, ef=10).results[0].neighbors
        assert sorted(n.id for n in got) == [995, 996, 997, 998, 999]


def test_a_slow_load_is_measured_once_at_its_end_and_warns_of_nothing(
    start_server: Callable[..., RunningServer], caplog: pytest.LogCaptureFixture
) -> None:
    """Batches slower than the calibration's quiet time: no measurement runs while the Add
    stream is open (rows added under one would read as misses and warn of a recall the
    index does not have), and the one after it covers every row."""
    caplog.set_level(logging.DEBUG, logger="fsserver.storage.calibration")
    stored = clustered(1500, seed=9, people=150)
    server = start_server(dim=DIM, target_recall=0.95)

    def slowly() -> Iterator[AddItem]:
        for row, vector in enumerate(stored):
            if row and row % 500 == 0:
                time.sleep(2 * QUIET_SECONDS)  # the stream stays open meanwhile
            yield AddItem(vector=vector)

    with server.client() as client:
        assert sum(len(batch) for batch in client.add(slowly(), batch_size=100)) == len(stored)
        stats = wait_for_calibration(client, len(stored))
    assert stats.recall_measured_at == len(stored)
    records = [r for r in caplog.records if r.name == "fsserver.storage.calibration"]
    assert not [r for r in records if r.levelno >= logging.WARNING], records
    assert not [r for r in records if "measuring again" in r.getMessage()], records
