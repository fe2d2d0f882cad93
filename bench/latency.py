"""Sections 2 and 3: single-query latency and batch-query throughput on the big index.

2: a Query round trip (k=10, one held-out face-like vector) against a bare gRPC echo of
   the same request bytes through a server built the same way (bench/echo.py): the ratio
   is what facesearch adds to gRPC itself. Beside it, Voyager's own search time.
3: QueryBatch of 1000 rows against Voyager's index.query of the same matrix in-process.
Both search at the server's default ef (Stats.ef), the baseline at that same ef.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

from bench.common import Context, Row, check, percentile_ms, say
from bench.echo import EchoClient, echo_server
from bench.facelike import FloatArray
from bench.vectors import client_for, settle
from fsproto.facesearch.v1 import facesearch_pb2 as pb  # only to size the echo

K = 10


def held_out(ctx: Context, count: int, seed_offset: int) -> FloatArray:
    """New photos of the stored synthetic people: queries the index has not seen."""
    queries, _ = ctx.shared["facelike"].held_out(count, ctx.seed + seed_offset)
    return queries


def timed(call: Callable[[], object]) -> float:
    started = time.perf_counter()
    call()
    return time.perf_counter() - started


def run_query_latency(ctx: Context) -> list[Row]:
    calls, warmup, rounds = (400, 100, 4) if ctx.quick else (2000, 300, 10)
    queries = held_out(ctx, calls + warmup, 20)
    # The bytes a QueryRequest for each vector carries: what the echo sends and gets back.
    payloads = [
        pb.QueryRequest(vector=pb.Vector(values=q.tolist()), k=K).SerializeToString()
        for q in queries
    ]
    query_rt: list[float] = []
    echo_rt: list[float] = []
    search: list[float] = []
    with echo_server() as echo_address, client_for(ctx) as client:
        echo = EchoClient(echo_address)
        stats = settle(client)
        try:
            for q, payload in zip(queries[:warmup], payloads[:warmup], strict=True):
                client.query(vector=q, k=K)
                echo.call(payload)
            # Alternating blocks: drift on a shared machine hits both sides alike.
            block = calls // rounds
            for r in range(rounds):
                rows = slice(warmup + r * block, warmup + (r + 1) * block)
                for payload in payloads[rows]:
                    started = time.perf_counter()
                    echo.call(payload)
                    echo_rt.append(time.perf_counter() - started)
                for q in queries[rows]:
                    started = time.perf_counter()
                    result = client.query(vector=q, k=K)
                    query_rt.append(time.perf_counter() - started)
                    search.append(result.search_seconds)
        finally:
            echo.close()

    # Voyager alone, same ef, same queries, on the in-process copy of the distractors.
    index = ctx.shared["inprocess_index"]
    for q in queries[:warmup]:
        index.query(q, k=K, query_ef=stats.ef)
    inprocess = []
    for q in queries[warmup:]:
        started = time.perf_counter()
        index.query(q, k=K, query_ef=stats.ef)
        inprocess.append(time.perf_counter() - started)

    p50, echo_p50 = percentile_ms(query_rt, 50), percentile_ms(echo_rt, 50)
    p99, echo_p99 = percentile_ms(query_rt, 99), percentile_ms(echo_rt, 99)
    search_p50, voyager_p50 = percentile_ms(search, 50), percentile_ms(inprocess, 50)
    ratio = p50 / echo_p50
    params = {
        "calls": len(query_rt),
        "warmup": warmup,
        "k": K,
        "ef": stats.ef,
        "count": stats.count,
        "payload_bytes": len(payloads[0]),
    }
    say(f"Query p50 {p50:.3f} ms, echo p50 {echo_p50:.3f} ms, Voyager {voyager_p50:.3f} ms")
    section = "2 query latency"
    return [
        Row(
            section,
            "Query round trip p50 (ms), k=10, one vector",
            p50,
            echo_p50,
            "gRPC echo of the same bytes",
            ratio,
            "<= 1.3",
            check(ratio, "<= 1.3"),
            params,
            note=f"{len(query_rt)} calls each, alternating blocks, ef {stats.ef}, "
            f"{stats.count:,} items",
        ),
        Row(
            section,
            "Query round trip p99 (ms)",
            p99,
            echo_p99,
            "gRPC echo p99",
            p99 / echo_p99,
            params=params,
        ),
        Row(
            section,
            "search time p50 (ms), server-reported",
            search_p50,
            voyager_p50,
            f"Voyager query in-process, ef {stats.ef}",
            search_p50 / voyager_p50,
            params=params,
            note="Query.search_seconds vs index.query(vector) timed here (the baseline "
            "index holds the distractors only)",
        ),
    ]


def run_batch_query(ctx: Context) -> list[Row]:
    reps = 3 if ctx.quick else 7
    queries = held_out(ctx, 1000, 30)
    index = ctx.shared["inprocess_index"]
    with client_for(ctx) as client:
        ef = settle(client).ef
        client.query_batch(queries, k=K)  # warm-up
        served = [timed(lambda: client.query_batch(queries, k=K)) for _ in range(reps)]
    index.query(queries, k=K, query_ef=ef)  # warm-up
    local = [timed(lambda: index.query(queries, k=K, query_ef=ef)) for _ in range(reps)]
    rate = len(queries) / statistics.median(served)
    baseline = len(queries) / statistics.median(local)
    ratio = rate / baseline
    say(f"QueryBatch {rate:,.0f} q/s, in-process {baseline:,.0f} q/s")
    return [
        Row(
            "3 batch query",
            "QueryBatch queries/s (1000 rows, k=10)",
            rate,
            baseline,
            f"Voyager index.query(matrix) in-process, ef {ef}",
            ratio,
            ">= 0.8",
            check(ratio, ">= 0.8"),
            params={
                "rows": len(queries),
                "k": K,
                "ef": ef,
                "repetitions": reps,
                "served_seconds": served,
                "inprocess_seconds": local,
            },
            note=f"median of {reps}; both use all cores (Voyager's num_threads=-1)",
        ),
    ]
