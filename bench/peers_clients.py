"""`make bench-peers`' query side: each system through its own Python client.

The same code answers the per-ef latency sweep (in the parent, one query at a time) and the
throughput runs (client processes started with multiprocessing's spawn, each with its own
client, connection and interpreter, as separate services would query). This module imports
only numpy at the top: a spawned client loads only its own system's library.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import queue
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np

from bench.facelike import FloatArray

K = 10
WARMUP = 50  # queries before timing: connection set-up, prepared statements, caches
SETUP_TIMEOUT = 300.0  # seconds for every client process to start, connect and warm up

Search = Callable[[FloatArray], list[int]]  # one query vector -> its k nearest ids


@dataclass(frozen=True)
class Endpoint:
    """Where and how to query one system at one ef (picklable: spawned clients get it)."""

    system: str  # "facesearch", "pgvector", "chroma" or "echo" (the gRPC floor)
    address: str  # host:port (facesearch, chroma) or a libpq URI (pgvector)
    ef: int
    collection: str = ""  # chroma's collection name


@contextmanager
def connect(endpoint: Endpoint) -> Iterator[Search]:
    """A search function on a fresh client of `endpoint`; every answer carries the k ids and
    their distances, as facesearch's does."""
    if endpoint.system == "facesearch":
        from fsclient import FaceSearchClient

        with FaceSearchClient(endpoint.address) as fs_client:
            fs_client.wait_ready()

            def search_fs(vector: FloatArray) -> list[int]:
                result = fs_client.query(vector=vector, k=K, ef=endpoint.ef)
                return [n.id for n in result.results[0].neighbors]

            yield search_fs
    elif endpoint.system == "pgvector":
        import psycopg
        from pgvector.psycopg import register_vector

        with psycopg.connect(endpoint.address, autocommit=True) as conn:
            register_vector(conn)
            # ef_search is per session: each client sets its own, as an application would.
            conn.execute(f"SET hnsw.ef_search = {int(endpoint.ef)}")
            sql = (
                "SELECT id, embedding <-> %(q)s FROM items ORDER BY embedding <-> %(q)s LIMIT %(k)s"
            )
            cursor = conn.cursor()

            def search_pg(vector: FloatArray) -> list[int]:
                # prepare=True: parsed and planned once per connection, as a pool would.
                cursor.execute(sql, {"q": vector, "k": K}, prepare=True)
                return [int(row[0]) for row in cursor.fetchall()]

            yield search_pg
    elif endpoint.system == "chroma":
        import chromadb
        from chromadb.config import Settings

        host, port = endpoint.address.rsplit(":", 1)
        settings = Settings(anonymized_telemetry=False)
        http = chromadb.HttpClient(host=host, port=int(port), settings=settings)
        collection = http.get_collection(endpoint.collection)

        # Chroma's ef_search is the collection's, read when the server loads it: no per-query ef.
        def search_chroma(vector: FloatArray) -> list[int]:
            one: Any = [vector]  # chromadb's stubs want an invariant dtype union
            result: Any = collection.query(query_embeddings=one, n_results=K, include=["distances"])
            return [int(i) for i in result["ids"][0]]

        yield search_chroma
    elif endpoint.system == "echo":
        from bench.echo import EchoClient
        from fsproto.facesearch.v1 import facesearch_pb2 as pb

        echo = EchoClient(endpoint.address)

        # What facesearch's client sends for this query, echoed back unread: the round
        # trip of the Python gRPC stack alone, on both sides, with no work in it.
        def search_echo(vector: FloatArray) -> list[int]:
            request = pb.QueryRequest(vector=pb.Vector(values=vector.tolist()), k=K)
            echo.call(request.SerializeToString())
            return []

        try:
            yield search_echo
        finally:
            echo.close()
    else:
        raise ValueError(f"unknown system {endpoint.system!r}")


def sweep(
    endpoint: Endpoint, queries: FloatArray, then: Callable[[], object] | None = None
) -> tuple[list[float], list[list[int]]]:
    """Each query once, one at a time after a warm-up: seconds per call and the ids found.
    `then` runs after the last query, while the client is still connected."""
    times: list[float] = []
    found: list[list[int]] = []
    with connect(endpoint) as search:
        for q in queries[:WARMUP]:
            search(q)
        for q in queries:
            started = time.perf_counter()
            ids = search(q)
            times.append(time.perf_counter() - started)
            found.append(ids)
        if then is not None:
            then()
    return times, found


def client_process(
    endpoint: Endpoint,
    queries: FloatArray,
    seconds: float,
    ready: threading.Barrier,
    results: multiprocessing.Queue[tuple[int, float] | str],
) -> None:
    """One spawned client: warm up, wait for the others, query for `seconds`, report."""
    try:
        with connect(endpoint) as search:
            for q in queries[:WARMUP]:
                search(q)
            ready.wait(SETUP_TIMEOUT)  # every client starts within a few ms of the others
            count, started = 0, time.perf_counter()
            deadline = started + seconds
            while time.perf_counter() < deadline:
                search(queries[count % len(queries)])
                count += 1
            results.put((count, time.perf_counter() - started))
    except Exception as error:  # reported to the parent, which names it in the result
        ready.abort()
        results.put(f"{type(error).__name__}: {error}")


def measure_qps(endpoint: Endpoint, queries: FloatArray, clients: int, seconds: float) -> float:
    """Total queries per second of `clients` processes querying at once for `seconds`."""
    spawn = multiprocessing.get_context("spawn")
    ready = spawn.Barrier(clients + 1)
    results: multiprocessing.Queue[tuple[int, float] | str] = spawn.Queue()
    processes = [
        spawn.Process(
            target=client_process,
            args=(endpoint, np.ascontiguousarray(queries), seconds, ready, results),
            daemon=True,
        )
        for _ in range(clients)
    ]
    for p in processes:
        p.start()
    try:
        # Broken: a client failed, and its message is in the queue.
        with contextlib.suppress(threading.BrokenBarrierError):
            ready.wait(SETUP_TIMEOUT)
        reports = [results.get(timeout=SETUP_TIMEOUT + seconds) for _ in processes]
    except queue.Empty:
        raise RuntimeError(f"{endpoint.system}: a client process reported nothing") from None
    finally:
        for p in processes:
            p.join(timeout=30)
            if p.is_alive():
                p.kill()
    if errors := [r for r in reports if isinstance(r, str)]:
        # The others' broken barrier follows from the first failure: name that one.
        errors.sort(key=lambda e: e.startswith("BrokenBarrierError"))
        raise RuntimeError(f"{endpoint.system} client: {errors[0]}")
    counts = [r for r in reports if not isinstance(r, str)]
    # Each client stops at its deadline, overshooting by at most one call.
    return sum(count for count, _ in counts) / seconds
