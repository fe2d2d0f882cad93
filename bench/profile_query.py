"""`python -m bench.profile_query`: where one vector Query's time goes, server and client.

1. The CPU time one call costs the server process and the Python client, beside a bare
   gRPC echo of the same request bytes (bench/echo.py): a real `fsserver` and a real echo
   server, each a process of its own, one call at a time.
2. Each layer of the server's path, timed in this process on a server built here (each
   step includes the ones above it), and the client's conversions.

The summary is in docs/benchmarks.md ("Where a Query's time goes").
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

import psutil

from bench.common import fsserver
from bench.echo import METHOD
from bench.peers_data import Dataset, load_template
from fsclient import FaceSearchClient, convert
from fsproto.facesearch.v1 import facesearch_pb2 as pb

K, EF = 10, 64
WARMUP = 200


def per_call_us(call: Callable[[int], object], calls: int) -> float:
    for i in range(WARMUP):
        call(i)
    started = time.perf_counter()
    for i in range(calls):
        call(i)
    return (time.perf_counter() - started) / calls * 1e6


def cpu_per_call(pid: int, call: Callable[[int], object], calls: int) -> list[float]:
    """Wall time, the server process's CPU and this process's CPU per call, in µs."""
    server = psutil.Process(pid)
    for i in range(WARMUP):
        call(i)
    server_cpu, own_cpu = sum(server.cpu_times()[:2]), time.process_time()
    started = time.perf_counter()
    for i in range(calls):
        call(i)
    spent = [
        time.perf_counter() - started,
        sum(server.cpu_times()[:2]) - server_cpu,
        time.process_time() - own_cpu,
    ]
    return [s / calls * 1e6 for s in spent]


def round_trips(data: Dataset, payloads: list[bytes], calls: int) -> list[tuple[str, float]]:
    import grpc

    rows: list[tuple[str, float]] = []
    args = ["--dim", "128", "--data-dir", tempfile.mkdtemp(prefix="fs-profile-")]
    args += ["--m", "12", "--target-recall", "0", "--log-level", "WARNING"]
    requests = [pb.QueryRequest.FromString(p) for p in payloads]
    with fsserver(*args) as server, FaceSearchClient(server.address) as client:
        client.wait_ready()
        for block in data.blocks():
            for _ in client.add_vector_batches(block, batch_size=1000):
                pass
        vectors = [convert.vector_from_pb(r.vector) for r in requests]
        measured = cpu_per_call(
            server.pid, lambda i: client.query(vector=vectors[i % len(vectors)], k=K, ef=EF), calls
        )
        rows += list(zip(["Query: wall", "  server CPU", "  client CPU"], measured, strict=True))
    echo = subprocess.Popen([sys.executable, "-m", "bench.echo"], stdout=subprocess.PIPE, text=True)
    assert echo.stdout is not None
    address = echo.stdout.readline().rsplit(" ", 1)[-1].strip()
    try:
        with grpc.insecure_channel(address) as channel:
            call = channel.unary_unary(METHOD)
            measured = cpu_per_call(echo.pid, lambda i: call(payloads[i % len(payloads)]), calls)
        names = ["gRPC echo of the same bytes: wall", "  server CPU", "  client CPU"]
        rows += list(zip(names, measured, strict=True))
    finally:
        echo.send_signal(signal.SIGTERM)
        echo.wait(30)
    return rows


def layers(data: Dataset, payloads: list[bytes], calls: int) -> list[tuple[str, float]]:
    from fsserver.api.server import FaceSearchServer
    from fsserver.api.servicer import FaceSearchService
    from fsserver.config import parse_config

    args = ["--dim", "128", "--data-dir", tempfile.mkdtemp(prefix="fs-profile-"), "--m", "12"]
    args += ["--target-recall", "0", "--listen", "127.0.0.1:0", "--log-level", "WARNING"]
    server = FaceSearchServer(parse_config(args)).start()
    try:
        with FaceSearchClient(server.address) as client:
            client.wait_ready()
            for block in data.blocks():
                for _ in client.add_vector_batches(block, batch_size=1000):
                    pass
        collection = server.catalog.get("")
        store: Any = collection.store  # a LocalStore: the single-process backend
        graph = store.index._index
        requests = [pb.QueryRequest.FromString(p) for p in payloads]
        vectors = [convert.vector_from_pb(r.vector) for r in requests]
        rows = [v[None, :].copy() for v in vectors]
        service: Any = FaceSearchService(server.catalog)
        context = _Context()
        answer = service.Query(requests[0], context).SerializeToString()
        result = collection.query(vector=vectors[0], k=K, ef=EF)
        n = len(vectors)
        steps: list[tuple[str, Callable[[int], object]]] = [
            (
                "Voyager query of one vector",
                lambda i: graph.query(vectors[i % n], k=K, query_ef=EF),
            ),
            ("+ FaceIndex.search: lock, ef, L2", lambda i: store.index.search(rows[i % n], K, EF)),
            (
                "+ store.search: coalescer, labels, metadata",
                lambda i: store.search(rows[i % n], K, EF, with_metadata=True),
            ),
            (
                "+ Collection.query: validation, neighbours",
                lambda i: collection.query(vector=vectors[i % n], k=K, ef=EF),
            ),
            (
                "+ servicer: lease, request and answer conversion",
                lambda i: service.Query(requests[i % n], context),
            ),
            ("  of which the answer to pb", lambda i: convert.query_result_to_pb(result)),
            (
                "client: build and serialize a request",
                lambda i: pb.QueryRequest(
                    vector=convert.vector_to_pb(vectors[i % n]), k=K, ef=EF
                ).SerializeToString(),
            ),
            (
                "client: parse an answer into dataclasses",
                lambda i: convert.query_result_from_pb(pb.QueryResponse.FromString(answer)),
            ),
        ]
        return [(name, per_call_us(call, calls)) for name, call in steps]
    finally:
        server.stop(grace=1.0, save=False)


class _Context:
    """What the Query handler asks of grpc's ServicerContext."""

    def is_active(self) -> bool:
        return True

    def time_remaining(self) -> None:
        return None


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.profile_query", description=__doc__)
    p.add_argument("--n", type=int, default=100_000, help="rows in the index")
    p.add_argument("--calls", type=int, default=3000, help="calls per measurement")
    args = p.parse_args(argv)
    template, _ = load_template(None, 128)
    data = Dataset(template, args.n, 0)
    payloads = [
        pb.QueryRequest(vector=convert.vector_to_pb(q), k=K, ef=EF).SerializeToString()
        for q in data.queries(300, 1000)
    ]
    print(f"{args.n:,} face-like rows, M 12, ef {EF}, k {K}; µs per call")
    for name, value in round_trips(data, payloads, args.calls) + layers(data, payloads, args.calls):
        print(f"{name:<52} {value:8.1f}")
    sys.stdout.flush()
    os._exit(0)  # the in-process server's threads need not be waited for


if __name__ == "__main__":
    main()
