"""Coalesced queries through a real server: a batch's bad request, deadline or cancellation
harms no one else in it.

The batch is made to form by holding the index's write lock from the test (as a delete or
a compaction's swap would): the first Query leads and waits on the lock, the others queue
behind it in the coalescer.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import grpc
import numpy as np
import pytest

from fsclient import FaceSearchClient, FaceSearchError
from fsproto.facesearch.v1 import facesearch_pb2 as pb
from fsproto.facesearch.v1 import facesearch_pb2_grpc as pb_grpc
from tests.support import RunningServer

DIM = 16


def test_a_bad_request_a_deadline_and_a_cancel_in_a_batch_fail_alone(
    start_server: Callable[..., RunningServer],
) -> None:
    running = start_server(dim=DIM, model="", target_recall=0.0)
    rng = np.random.default_rng(5)
    with running.client() as client:
        for _ in client.add_vector_batches(rng.normal(size=(2000, DIM)).astype(np.float32)):
            pass
        queries = rng.normal(size=(8, DIM)).astype(np.float32)
        alone = [[n.id for n in client.query(vector=q, k=5).results[0].neighbors] for q in queries]
    store = running.server.catalog.get("").store
    coalescer = store._coalescer  # type: ignore[attr-defined]
    channel = grpc.insecure_channel(running.address)
    stub = pb_grpc.FaceSearchStub(channel)
    got: dict[int, list[int] | str] = {}

    def query(i: int, vector: np.ndarray, timeout: float | None = 30.0) -> None:
        with FaceSearchClient(running.address, timeout=timeout) as own:
            try:
                got[i] = [n.id for n in own.query(vector=vector, k=5).results[0].neighbors]
            except FaceSearchError as error:
                got[i] = error.code.name

    def request(vector: np.ndarray) -> pb.QueryRequest:
        return pb.QueryRequest(vector=pb.Vector(values=vector.tolist()), k=5)

    threads = [threading.Thread(target=query, args=(i, q)) for i, q in enumerate(queries)]
    with store.index._lock.write():
        threads[0].start()
        time.sleep(0.2)  # the leader waits on the lock inside its search
        for t in threads[1:]:
            t.start()
        late = threading.Thread(target=query, args=(100, queries[0], 0.5))
        late.start()
        cancelled = stub.Query.future(request(queries[1]), timeout=30)
        deadline = time.monotonic() + 20
        while len(coalescer._queue) < len(queries) - 1 + 2:
            assert time.monotonic() < deadline, "the queries did not queue"
            time.sleep(0.01)
        # Refused at once, while the others wait: a bad request never joins a batch.
        for bad in (np.full(DIM, np.nan, np.float32), np.ones(DIM + 1, np.float32)):
            with pytest.raises(grpc.RpcError) as refused:
                stub.Query(request(bad), timeout=10)
            assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        cancelled.cancel()
        late.join(10)  # its deadline passes while it waits in the queue
    for t in threads:
        t.join(30)
    assert got.pop(100) == "DEADLINE_EXCEEDED"
    assert cancelled.cancelled()
    assert got == dict(enumerate(alone))
    # The server goes on answering, batch or not.
    with running.client() as client:
        assert [n.id for n in client.query(vector=queries[3], k=5).results[0].neighbors] == alone[3]
    channel.close()
