"""Add's packed rows (AddRequest.rows): the bulk path must keep every per-item promise."""

from __future__ import annotations

from collections.abc import Callable

import grpc
import numpy as np
import pytest

from fsclient import AddItem, convert
from fsproto.facesearch.v1 import facesearch_pb2 as pb
from fsproto.facesearch.v1 import facesearch_pb2_grpc as pb_grpc
from support import RunningServer

DIM = 16


def rows_request(vectors: np.ndarray, **columns: list) -> pb.AddRequest:
    matrix = np.atleast_2d(np.asarray(vectors, "<f4"))
    return pb.AddRequest(
        rows=pb.VectorRows(vectors=matrix.tobytes(), dim=matrix.shape[1], **columns)
    )


def test_rows_store_labels_metadata_and_ids(vector_server: RunningServer) -> None:
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(2500, DIM)).astype(np.float32)
    with vector_server.client() as client:
        labels = [f"p{i // 10}" for i in range(2500)]
        results = client.add_vectors(vectors, labels=labels, metadata=["{}"] * 2500)
        assert [r.id for r in results] == list(range(2500))
        item = client.get(1234)
        assert (item.label, item.metadata) == ("p123", "{}")
        np.testing.assert_array_equal(item.vector, vectors[1234])
        # Upsert by id through rows, beside fresh ids from the server.
        again = client.add_vectors(vectors[:2] * 2, ids=[5, 2**63], labels=["new", "far"])
        assert [r.id for r in again] == [5, 2**63]
        assert client.get(5).label == "new" and client.get(2**63).label == "far"
        assert client.stats().count == 2501


def test_items_and_rows_in_one_request_answer_in_order(vector_server: RunningServer) -> None:
    with grpc.insecure_channel(vector_server.address) as channel:
        stub = pb_grpc.FaceSearchStub(channel)
        request = rows_request(np.eye(DIM)[:3], labels=["r0", "r1", "r2"])
        request.items.append(pb.AddItem(vector=pb.Vector(values=np.ones(DIM).tolist()), label="i"))
        (response,) = stub.Add(iter([request]))
        assert [r.id for r in response.results] == [0, 1, 2, 3]  # the item first, then rows
        labels = [stub.Get(pb.GetRequest(id=i)).label for i in range(4)]
        assert labels == ["i", "r0", "r1", "r2"]


def test_bad_rows_fail_alone(start_server: Callable[..., RunningServer]) -> None:
    server = start_server(dim=DIM, model="", max_label_bytes=8)
    vectors = np.ones((5, DIM), np.float32)
    vectors[1, 3] = np.nan
    vectors[3] = 1e30  # its squared length overflows float32
    with server.client() as client:
        results = client.add_vectors(
            vectors, labels=["ok", "nan", "much-too-long", "big", "ok"], ids=[1, 2, 3, 4, 1]
        )
        reasons = [r.error.message if r.error else "" for r in results]
        assert results[0].id == 1 and results[4].error is not None
        assert "NaN" in reasons[1] and "--max-label-bytes" in reasons[2]
        assert "overflows" in reasons[3] and "more than once" in reasons[4]
        wrong = client.add_vectors(np.ones((2, DIM - 1)))
        assert all(r.error and "dimension 15" in r.error.message for r in wrong)
        assert client.stats().count == 1


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        (pb.VectorRows(vectors=b"\x00" * (4 * DIM + 2), dim=DIM), "not whole rows"),
        (pb.VectorRows(vectors=b"\x00" * (4 * DIM + 4), dim=0), "dim unset"),
        (
            pb.VectorRows(vectors=np.ones(2 * DIM, "<f4").tobytes(), dim=DIM, labels=["a"]),
            "1 labels",
        ),
        (pb.VectorRows(vectors=np.ones(DIM, "<f4").tobytes(), dim=DIM, ids=[1, 2]), "2 ids"),
    ],
)
def test_malformed_rows_refuse_the_batch(
    vector_server: RunningServer, rows: pb.VectorRows, message: str
) -> None:
    with grpc.insecure_channel(vector_server.address) as channel:
        stub = pb_grpc.FaceSearchStub(channel)
        with pytest.raises(grpc.RpcError) as error:
            list(stub.Add(iter([pb.AddRequest(rows=rows)])))
        assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert message in error.value.details()
    with vector_server.client() as client:  # nothing stored, still serving
        assert client.stats().count == 0
        assert client.add([AddItem(vector=np.ones(DIM))]) is not None


def test_an_unset_dim_is_taken_from_the_data_and_fails_only_its_request(
    vector_server: RunningServer,
) -> None:
    vectors = np.arange(3 * DIM, dtype="<f4").reshape(3, DIM)
    unset = [
        # No column tells the row count: rows of the index's dim.
        pb.VectorRows(vectors=vectors.tobytes(), labels=[]),
        # Two labels for 3 * DIM values: two rows of 1.5 * DIM, each refused alone.
        pb.VectorRows(vectors=vectors.tobytes(), labels=["a", "b"]),
        # Three labels: three rows of DIM, stored.
        pb.VectorRows(vectors=vectors.tobytes(), labels=["x", "y", "z"]),
    ]
    with grpc.insecure_channel(vector_server.address) as channel:
        stub = pb_grpc.FaceSearchStub(channel)
        answers = list(stub.Add(iter(pb.AddRequest(rows=rows) for rows in unset)))
    outcomes = [convert.add_response_from_pb(answer) for answer in answers]
    assert [[r.id for r in batch] for batch in outcomes] == [[0, 1, 2], [None, None], [3, 4, 5]]
    assert all("dimension 24" in (r.error.message if r.error else "") for r in outcomes[1])
    with vector_server.client() as client:
        assert client.stats().count == 6
        np.testing.assert_array_equal(client.get(4).vector, vectors[1])
        assert client.get(4).label == "y"


def test_a_rows_batch_over_the_limit_is_resource_exhausted(
    start_server: Callable[..., RunningServer],
) -> None:
    server = start_server(dim=DIM, model="", max_batch_items=10)
    with grpc.insecure_channel(server.address) as channel:
        stub = pb_grpc.FaceSearchStub(channel)
        with pytest.raises(grpc.RpcError) as error:
            list(stub.Add(iter([rows_request(np.ones((11, DIM)))])))
        assert error.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


def test_packed_answers_say_what_one_result_per_row_says(
    start_server: Callable[..., RunningServer],
) -> None:
    """AddRequest.packed_answers: the same outcomes, as ids and errors by position."""
    vectors = np.ones((6, DIM), np.float32) * np.arange(1, 7, dtype=np.float32)[:, None]
    vectors[2, 0] = np.nan
    answers = {}
    for packed in (False, True):
        server = start_server(dim=DIM, model="")
        with grpc.insecure_channel(server.address) as channel:
            request = rows_request(vectors, ids=[7, 8, 9, 7, 10, 11])
            request.items.append(pb.AddItem(vector=pb.Vector(values=[0.5] * DIM), label="item"))
            request.packed_answers = packed
            (answers[packed],) = pb_grpc.FaceSearchStub(channel).Add(iter([request]))
    unpacked, packed_answer = answers[False], answers[True]
    assert len(unpacked.results) == 7 and not unpacked.row_ids and not unpacked.row_errors
    # The item keeps its message; the rows are ids, 0 where refused, and errors by position.
    assert len(packed_answer.results) == 1 and packed_answer.results[0].id == 0
    assert list(packed_answer.row_ids) == [7, 8, 0, 0, 10, 11]
    assert sorted(packed_answer.row_errors) == [2, 3]
    assert "NaN" in packed_answer.row_errors[2].message
    assert convert.add_response_from_pb(packed_answer) == convert.add_response_from_pb(unpacked)


def test_the_client_asks_for_packed_answers_and_unpacks_them(
    vector_server: RunningServer,
) -> None:
    vectors = np.random.default_rng(3).normal(size=(2500, DIM)).astype(np.float32)
    vectors[1700, 5] = np.inf
    with vector_server.client() as client:
        batches = list(client.add_vector_batches(vectors, batch_size=1000))
    assert [len(b) for b in batches] == [1000, 1000, 500]
    results = [r for b in batches for r in b]
    assert [r.id for r in results[:1700]] == list(range(1700))
    assert results[1700].id is None and results[1700].error is not None
    assert "NaN or Inf" in results[1700].error.message
    assert [r.id for r in results[1701:]] == list(range(1700, 2499))
