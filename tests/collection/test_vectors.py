"""Raw vectors through a real server: agreement with brute force, ids, k, empty index."""

from __future__ import annotations

from collections.abc import Callable

import grpc
import numpy as np
import pytest

from fsclient import FaceSearchError
from fsproto.facesearch.v1 import facesearch_pb2 as pb
from fsproto.facesearch.v1 import facesearch_pb2_grpc as pb_grpc
from fsserver.collection.collection import DEFAULT_K
from support import RunningServer

DIM = 16


def brute_force(stored: np.ndarray, query: np.ndarray, space: str) -> np.ndarray:
    if space == "cosine":
        unit = stored / np.linalg.norm(stored, axis=1, keepdims=True)
        return 1.0 - unit @ (query / np.linalg.norm(query))
    return np.linalg.norm(stored - query, axis=1)


@pytest.mark.parametrize("space", ["euclidean", "cosine"])
@pytest.mark.parametrize("storage", ["float32", "e4m3"])
def test_neighbours_agree_with_brute_force(
    start_server: Callable[..., RunningServer], space: str, storage: str
) -> None:
    rng = np.random.default_rng(7)
    stored = rng.normal(size=(500, DIM)).astype(np.float32)
    queries = rng.normal(size=(20, DIM)).astype(np.float32)
    server = start_server(dim=DIM, space=space, storage=storage)
    with server.client() as client:
        results = client.add_vectors(stored, labels=[f"v{i}" for i in range(len(stored))])
        ids = [r.id for r in results]
        assert ids == list(range(len(stored)))
        hits = 0
        for query in queries:
            exact = brute_force(stored, query, space)
            expected = [int(i) for i in np.argsort(exact)[:10]]
            neighbours = client.query(vector=query, k=10, ef=200).results[0].neighbors
            assert [n.distance for n in neighbours] == sorted(n.distance for n in neighbours)
            hits += len(set(expected) & {n.id for n in neighbours})
            assert neighbours[0].label == f"v{neighbours[0].id}"
            # Distances are on the scale users expect: plain L2 or 1 - cos, not squared L2.
            tolerance = 1e-4 if storage == "float32" else 0.15
            assert neighbours[0].distance == pytest.approx(
                exact[neighbours[0].id], abs=tolerance * max(1.0, float(exact.max()))
            )
        recall = hits / (10 * len(queries))
        assert recall >= (0.99 if storage == "float32" else 0.8), recall


def test_query_by_id_returns_itself_first(vector_server: RunningServer) -> None:
    rng = np.random.default_rng(1)
    with vector_server.client() as client:
        results = client.add_vectors(rng.normal(size=(200, DIM)), metadata=["m"] * 200)
        for result in results[:20]:
            first = client.query(id=result.id, k=3).results[0].neighbors[0]
            assert first.id == result.id
            assert first.distance == pytest.approx(0.0, abs=1e-5)
            assert first.metadata == "m"


def test_k_larger_than_index_returns_what_exists(vector_server: RunningServer) -> None:
    with vector_server.client() as client:
        client.add_vectors(np.eye(DIM)[:3])
        neighbours = client.query(vector=np.eye(DIM)[0], k=50).results[0].neighbors
        assert sorted(n.id for n in neighbours) == [0, 1, 2]


def test_empty_index_returns_no_neighbours(vector_server: RunningServer) -> None:
    with vector_server.client() as client:
        result = client.query(vector=np.ones(DIM), k=5)
        assert len(result.results) == 1
        assert result.results[0].neighbors == []
        assert client.stats().count == 0


def test_caller_ids_get_upsert_and_delete(vector_server: RunningServer) -> None:
    with vector_server.client() as client:
        ids = [2**63 + 5, 7, 12]
        results = client.add_vectors(np.eye(DIM)[:3], ids=ids, labels=["a", "b", "c"])
        assert [r.id for r in results] == ids
        item = client.get(2**63 + 5)
        assert item.label == "a"
        np.testing.assert_allclose(item.vector, np.eye(DIM)[0])
        # The next server-assigned id follows the largest in use.
        assert client.add_vectors(np.eye(DIM)[3])[0].id == 2**63 + 6
        # Adding an existing id replaces its vector and label.
        client.add_vectors(np.eye(DIM)[5], ids=[7], labels=["b2"])
        assert client.get(7).label == "b2"
        np.testing.assert_allclose(client.get(7).vector, np.eye(DIM)[5])
        assert client.stats().count == 4
        assert client.delete([7, 12]) == 2
        stats = client.stats()
        assert (stats.count, stats.deleted) == (2, 2)
        with pytest.raises(FaceSearchError) as error:
            client.get(7)
        assert error.value.code == grpc.StatusCode.NOT_FOUND
        neighbours = client.query(vector=np.eye(DIM)[5], k=10).results[0].neighbors
        assert {n.id for n in neighbours} == {2**63 + 5, 2**63 + 6}
        # All or nothing: one unknown id deletes none.
        with pytest.raises(FaceSearchError) as error:
            client.delete([2**63 + 5, 999])
        assert error.value.code == grpc.StatusCode.NOT_FOUND
        assert "999" in error.value.details
        assert client.stats().count == 2


def test_bad_vectors_fail_only_their_item(vector_server: RunningServer) -> None:
    good = np.ones(DIM)
    with vector_server.client() as client:
        results = client.add_vectors(
            np.stack([good, np.full(DIM, np.nan), good * 2, np.full(DIM, np.inf)])
        )
        assert [r.ok for r in results] == [True, False, True, False]
        assert results[1].error is not None
        assert results[1].error.code_name == "INVALID_ARGUMENT"
        assert "NaN" in results[1].error.message
        short = client.add_vectors(np.ones(DIM - 1))[0]
        assert short.error is not None and "dimension" in short.error.message
        assert client.stats().count == 2


def test_duplicate_ids_in_one_batch_fail_the_repeat(vector_server: RunningServer) -> None:
    with vector_server.client() as client:
        results = client.add_vectors(np.eye(DIM)[:3], ids=[4, 4, 5])
        assert [r.ok for r in results] == [True, False, True]
        assert results[1].error is not None and "more than once" in results[1].error.message


@pytest.mark.parametrize(
    ("query", "code"),
    [
        ({"vector": np.ones(DIM + 1)}, grpc.StatusCode.INVALID_ARGUMENT),
        ({"vector": np.full(DIM, np.nan)}, grpc.StatusCode.INVALID_ARGUMENT),
        ({"vector": np.ones(DIM), "k": 10**6}, grpc.StatusCode.INVALID_ARGUMENT),
        ({"vector": np.ones(DIM), "k": -3}, grpc.StatusCode.INVALID_ARGUMENT),
        ({"id": 123456}, grpc.StatusCode.NOT_FOUND),
        ({"image": b"\xff\xd8 not really"}, grpc.StatusCode.FAILED_PRECONDITION),
        ({"vector": np.ones(DIM), "vector_model": "Facenet"}, grpc.StatusCode.FAILED_PRECONDITION),
    ],
)
def test_bad_queries_get_their_status_and_the_server_keeps_serving(
    start_server: Callable[..., RunningServer], query: dict[str, object], code: grpc.StatusCode
) -> None:
    server = start_server(dim=DIM, model="ArcFace-custom")
    with server.client() as client:
        client.add_vectors(np.ones(DIM))
        with pytest.raises(FaceSearchError) as error:
            client.query(**{"k": 3, **query})  # type: ignore[arg-type]
        assert error.value.code == code
        assert error.value.details
        assert client.query(vector=np.ones(DIM), k=1).results[0].neighbors[0].id == 0


def test_images_sent_to_a_vector_only_server_fail_per_item(vector_server: RunningServer) -> None:
    with vector_server.client() as client:
        results = client.add_images([b"\x89PNG whatever"], labels=["x"])
        assert results[0].error is not None
        assert results[0].error.code_name == "FAILED_PRECONDITION"
        assert "raw vectors" in results[0].error.message


def test_limits_answer_resource_exhausted_and_the_server_keeps_serving(
    start_server: Callable[..., RunningServer],
) -> None:
    server = start_server(dim=DIM, model="", max_message_mb=1, max_batch_items=100)
    with server.client() as client:
        with pytest.raises(FaceSearchError) as error:
            client.query(image=b"\xff" * (2 * 1024 * 1024), k=1)
        assert error.value.code == grpc.StatusCode.RESOURCE_EXHAUSTED
        with pytest.raises(FaceSearchError) as error:
            client.add_vectors(np.ones((101, DIM)), batch_size=101)
        assert error.value.code == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "max-batch-items" in error.value.details
        assert len(client.add_vectors(np.ones((150, DIM)), batch_size=100)) == 150
        assert client.stats().count == 150


def test_add_images_refuses_missing_files_before_sending(vector_server: RunningServer) -> None:
    with vector_server.client() as client, pytest.raises(FileNotFoundError, match=r"nope\.jpg"):
        client.add_images(["nope.jpg"])
    with vector_server.client() as client:
        assert client.stats().count == 0


def test_k_unset_means_the_default(vector_server: RunningServer) -> None:
    with vector_server.client() as client:
        client.add_vectors(np.random.default_rng(3).normal(size=(20, DIM)))
    with grpc.insecure_channel(vector_server.address) as channel:
        stub = pb_grpc.FaceSearchStub(channel)
        query = pb.Vector(values=np.ones(DIM).tolist())
        (matches,) = stub.Query(pb.QueryRequest(vector=query)).results  # k unset: 0
        assert len(matches.neighbors) == DEFAULT_K
        batch = stub.QueryBatch(pb.QueryBatchRequest(vectors=np.ones(DIM, "<f4").tobytes()))
        assert (batch.rows, batch.k) == (1, DEFAULT_K)


def test_byte_swapped_vectors_are_refused_saying_so(vector_server: RunningServer) -> None:
    vectors = np.random.default_rng(4).normal(size=(3, DIM)).astype("<f4") * 0.1
    swapped = vectors.astype(">f4").view("<f4")  # what a big-endian client sends
    with vector_server.client() as client:
        results = client.add_vectors(np.stack([vectors[0], swapped[1], vectors[2]]))
        assert [r.ok for r in results] == [True, False, True]
        assert results[1].error is not None and "byte-swapped" in results[1].error.message
        with pytest.raises(FaceSearchError) as refused:
            client.query(vector=swapped[0], k=1)
        assert refused.value.code == grpc.StatusCode.INVALID_ARGUMENT
        assert "byte-swapped" in refused.value.details
        with pytest.raises(FaceSearchError) as batch:
            client.query_batch(swapped, k=1)
        assert "byte-swapped" in batch.value.details
        # Ordinary vectors, large or small, are not taken for swapped ones.
        assert all(r.ok for r in client.add_vectors(np.stack([vectors[0] * 1e4, vectors[1] / 1e4])))
