"""Prometheus metrics, scraped over HTTP from real servers after real calls."""

from __future__ import annotations

import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from prometheus_client.parser import text_string_to_metric_families

from fsclient import FaceSearchError
from fsproto.facesearch.v1 import facesearch_pb2 as pb
from fsproto.facesearch.v1 import facesearch_pb2_grpc as pb_grpc
from support import RunningServer

DIM = 8
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def wait_for(condition: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


def scrape(address: str | None) -> Samples:
    """Every sample at http://ADDRESS/metrics, by name and labels."""
    assert address is not None
    with urllib.request.urlopen(f"http://{address}/metrics", timeout=10) as response:
        assert response.status == 200
        text = response.read().decode()
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def settled(address: str | None) -> Samples:
    """A scrape once no call is in flight: a call is counted once grpc has finished it,
    which may be just after the client has its answer."""
    samples: Samples = {}

    def idle() -> bool:
        samples.clear()
        samples.update(scrape(address))
        in_flight = [v for (name, _), v in samples.items() if name.endswith("_in_flight")]
        return sum(in_flight) == 0

    wait_for(idle)
    return samples


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


def requests(samples: Samples, rpc: str, code: str) -> float | None:
    return value(samples, "facesearch_requests_total", rpc=rpc, code=code)


def metrics_server(
    start_server: Callable[..., RunningServer], **overrides: object
) -> RunningServer:
    return start_server(dim=DIM, metrics_listen="127.0.0.1:0", **overrides)


def vectors(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, DIM)).astype(np.float32)


def test_calls_are_counted_by_rpc_and_status_code(
    start_server: Callable[..., RunningServer],
) -> None:
    running = metrics_server(start_server)
    with running.client() as client:
        client.add_vectors(vectors(5))
        client.query(vector=vectors(1)[0], k=3)
        with pytest.raises(FaceSearchError) as refused:
            client.query(vector=vectors(1)[0], k=-1)
        assert refused.value.code == grpc.StatusCode.INVALID_ARGUMENT
        with pytest.raises(FaceSearchError) as missing:
            client.get(10**9)
        assert missing.value.code == grpc.StatusCode.NOT_FOUND
    with grpc.insecure_channel(running.address) as channel:
        unknown = channel.unary_unary("/facesearch.v1.FaceSearch/NoSuchMethod")
        with pytest.raises(grpc.RpcError) as unimplemented:
            unknown(b"")
        assert unimplemented.value.code() == grpc.StatusCode.UNIMPLEMENTED

    samples = settled(running.server.metrics_address)
    assert requests(samples, "Add", "OK") == 1
    assert requests(samples, "Query", "OK") == 1
    assert requests(samples, "Query", "INVALID_ARGUMENT") == 1
    assert requests(samples, "Get", "NOT_FOUND") == 1
    assert requests(samples, "Get", "OK") is None
    assert requests(samples, "unknown", "UNIMPLEMENTED") == 1
    assert value(samples, "facesearch_request_seconds_count", rpc="Query") == 2
    assert value(samples, "facesearch_request_seconds_bucket", rpc="Query", le="+Inf") == 2
    query_seconds = value(samples, "facesearch_request_seconds_sum", rpc="Query")
    assert query_seconds is not None and query_seconds > 0
    assert value(samples, "facesearch_requests_in_flight", rpc="Query") == 0
    assert value(samples, "facesearch_add_items_total") == 5


def test_index_gauges_follow_adds_and_deletes(start_server: Callable[..., RunningServer]) -> None:
    running = metrics_server(start_server)
    default = {"collection": "default"}
    before = scrape(running.server.metrics_address)
    assert value(before, "facesearch_index_items", **default) == 0
    assert value(before, "facesearch_wal_bytes", **default) is not None
    with running.client() as client:
        ids = [r.id for r in client.add_vectors(vectors(6))]
        client.delete([ids[0], ids[3]])
        stats = client.stats()
    after = settled(running.server.metrics_address)
    assert value(after, "facesearch_index_items", **default) == 4
    assert value(after, "facesearch_index_deleted_items", **default) == 2
    wal_bytes = value(after, "facesearch_wal_bytes", **default)
    assert wal_bytes == stats.wal_bytes
    assert wal_bytes > (value(before, "facesearch_wal_bytes", **default) or 0)
    assert value(after, "facesearch_index_memory_bytes", **default) == stats.memory_bytes
    # Raw vectors only: no face model, so no queue places.
    assert value(after, "facesearch_embed_queue_depth") == 0
    assert value(after, "facesearch_embed_queue_capacity") == 0
    assert value(after, "facesearch_search_ef", **default) == stats.ef
    assert value(after, "process_resident_memory_bytes", **{}) is not None


def test_the_face_models_queue_is_counted_once(
    start_server: Callable[..., RunningServer],
) -> None:
    running = start_server(metrics_listen="127.0.0.1:0", max_embed_queue=3)
    with running.client() as client:
        client.create_collection("more-faces", model="Dlib")  # shares the default's model
    samples = settled(running.server.metrics_address)
    assert value(samples, "facesearch_embed_queue_capacity") == 3
    assert value(samples, "facesearch_index_items", collection="more-faces") == 0


def test_health_calls_are_labelled_by_their_full_method(
    start_server: Callable[..., RunningServer],
) -> None:
    running = metrics_server(start_server)
    with grpc.insecure_channel(running.address) as channel:
        check = health_pb2_grpc.HealthStub(channel).Check
        for _ in range(2):
            check(health_pb2.HealthCheckRequest(service=""))
    samples = settled(running.server.metrics_address)
    assert requests(samples, "/grpc.health.v1.Health/Check", "OK") == 2
    assert requests(samples, "Check", "OK") is None


def test_an_add_stream_aborted_mid_stream_counts_its_status(
    start_server: Callable[..., RunningServer],
) -> None:
    running = metrics_server(start_server, max_batch_items=2)
    batches = [pb.AddRequest(items=[pb.AddItem(vector=pb.Vector(values=v))]) for v in vectors(2)]
    too_big = pb.AddRequest(items=[pb.AddItem(vector=pb.Vector(values=v)) for v in vectors(3)])

    def still_sending() -> Iterator[pb.AddRequest]:
        yield from [*batches, too_big]
        release.wait(timeout=60)  # the client has not finished its stream when it is aborted

    release = threading.Event()
    try:
        with grpc.insecure_channel(running.address) as channel:
            responses = pb_grpc.FaceSearchStub(channel).Add(still_sending())
            with pytest.raises(grpc.RpcError) as aborted:
                for _ in responses:
                    pass
            assert aborted.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    finally:
        release.set()
    samples = settled(running.server.metrics_address)
    assert requests(samples, "Add", "RESOURCE_EXHAUSTED") == 1
    assert requests(samples, "Add", "OK") is None
    assert value(samples, "facesearch_request_seconds_count", rpc="Add") == 1


def held_open_add(first: pb.AddRequest, release: threading.Event) -> Iterator[pb.AddRequest]:
    """An Add stream that sends one batch, then stays open until `release` is set."""
    yield first
    release.wait(timeout=60)


def test_a_client_cancelling_its_add_stream_counts_as_cancelled(
    start_server: Callable[..., RunningServer],
) -> None:
    running = metrics_server(start_server)
    address = running.server.metrics_address
    release = threading.Event()
    first = pb.AddRequest(items=[pb.AddItem(vector=pb.Vector(values=v)) for v in vectors(3)])
    try:
        with grpc.insecure_channel(running.address) as channel:
            responses = pb_grpc.FaceSearchStub(channel).Add(held_open_add(first, release))
            assert len(next(responses).results) == 3
            in_flight = value(scrape(address), "facesearch_requests_in_flight", rpc="Add")
            assert in_flight == 1
            responses.cancel()
            wait_for(lambda: requests(scrape(address), "Add", "CANCELLED") == 1)
    finally:
        release.set()
    samples = settled(address)
    assert requests(samples, "Add", "OK") is None
    assert value(samples, "facesearch_requests_in_flight", rpc="Add") == 0
    assert value(samples, "facesearch_add_items_total") == 3


def test_each_server_has_its_own_registry(start_server: Callable[..., RunningServer]) -> None:
    one, other = metrics_server(start_server), metrics_server(start_server)
    assert one.server.metrics_address != other.server.metrics_address
    with one.client() as client:
        client.stats()
    assert requests(settled(one.server.metrics_address), "Stats", "OK") == 1
    assert requests(scrape(other.server.metrics_address), "Stats", "OK") is None


def test_metrics_stop_with_the_server(start_server: Callable[..., RunningServer]) -> None:
    running = metrics_server(start_server)
    address = running.server.metrics_address
    scrape(address)
    running.stop()
    with pytest.raises(urllib.error.URLError):
        scrape(address)


def test_metrics_are_off_by_default(vector_server: RunningServer) -> None:
    assert vector_server.server.metrics_address is None


def test_http_requests_are_counted_by_route_and_status(
    start_server: Callable[..., RunningServer],
) -> None:
    import requests as http

    running = metrics_server(start_server, http="127.0.0.1:0", model="")
    base = f"{running.http_url}/v1/collections/default"
    http.post(f"{base}/add", json={"rows": {"vectors": vectors(3).tolist()}}, timeout=30)
    for _ in range(2):
        http.post(f"{base}/query", json={"vector": vectors(1)[0].tolist()}, timeout=30)
    http.get(f"{base}/items/99", timeout=30)
    samples = scrape(running.server.metrics_address)
    route = "/v1/collections/{collection}"
    count = "facesearch_http_requests_total"
    assert value(samples, count, route=f"POST {route}/query", status="200") == 2
    assert value(samples, count, route=f"POST {route}/add", status="200") == 1
    assert value(samples, count, route=f"GET {route}/items/{{id}}", status="404") == 1
    seconds = "facesearch_http_request_seconds_count"
    assert value(samples, seconds, route=f"POST {route}/query") == 2


def test_packed_rows_without_dim_are_counted(start_server: Callable[..., RunningServer]) -> None:
    running = metrics_server(start_server)
    rows = vectors(6)
    request = pb.AddRequest(
        rows=pb.VectorRows(vectors=rows.tobytes(), labels=[f"p{i}" for i in range(6)])
    )  # dim unset: the server takes it from the labels' count
    with grpc.insecure_channel(running.address) as channel:
        answers = list(pb_grpc.FaceSearchStub(channel).Add(iter([request])))
    assert len(answers) == 1
    samples = settled(running.server.metrics_address)
    assert value(samples, "facesearch_add_items_total") == 6
