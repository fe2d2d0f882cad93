"""Section 13: a Query by vector over HTTP against the same Query over gRPC, on the big
server (the same process, index and ef).

Both sides are a plain client on one kept-alive connection: http.client (the standard
library's; `requests` adds its own ~0.3 ms, reported beside it) posting the JSON body
{"vector", "k"}, and the Python gRPC client. Alternating blocks, so drift on a shared
machine hits both alike. Floor: HTTP p50 within 2x of gRPC's.
"""

from __future__ import annotations

import http.client
import json
import time
from collections.abc import Callable
from urllib.parse import urlsplit

import requests

from bench.common import Context, Row, check, percentile_ms, say
from bench.latency import K, held_out
from bench.vectors import client_for, settle

QUERY_PATH = "/v1/collections/default/query"
HEADERS = {"content-type": "application/json"}


def run(ctx: Context) -> list[Row]:
    calls, warmup, rounds = (400, 100, 4) if ctx.quick else (2000, 300, 10)
    url = ctx.shared["server"].http_url
    if url is None:
        raise RuntimeError("the big server was started without HTTP")
    queries = held_out(ctx, calls + warmup, 40)
    bodies = [json.dumps({"vector": q.tolist(), "k": K}).encode() for q in queries]
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port)
    session = requests.Session()

    def over_http(i: int) -> None:
        connection.request("POST", QUERY_PATH, bodies[i], HEADERS)
        answer = connection.getresponse()
        data = answer.read()
        if answer.status != 200:
            raise RuntimeError(f"HTTP {answer.status}: {data[:200]!r}")

    def over_requests(i: int) -> None:
        session.post(url + QUERY_PATH, data=bodies[i], headers=HEADERS).raise_for_status()

    timings: dict[str, list[float]] = {"http": [], "grpc": [], "requests": []}
    with client_for(ctx) as client:
        stats = settle(client)
        sides: dict[str, Callable[[int], object]] = {
            "grpc": lambda i: client.query(vector=queries[i], k=K),
            "http": over_http,
            "requests": over_requests,
        }
        for i in range(warmup):
            for call in sides.values():
                call(i)
        block = calls // rounds
        for r in range(rounds):
            for name, call in sides.items():
                for i in range(warmup + r * block, warmup + (r + 1) * block):
                    started = time.perf_counter()
                    call(i)
                    timings[name].append(time.perf_counter() - started)
    connection.close()
    session.close()
    p50 = {name: percentile_ms(seconds, 50) for name, seconds in timings.items()}
    p99 = {name: percentile_ms(seconds, 99) for name, seconds in timings.items()}
    ratio = p50["http"] / p50["grpc"]
    say(
        f"Query p50: HTTP {p50['http']:.3f} ms, requests {p50['requests']:.3f} ms, "
        f"gRPC {p50['grpc']:.3f} ms"
    )
    params = {
        "calls": block * rounds,
        "warmup": warmup,
        "k": K,
        "ef": stats.ef,
        "count": stats.count,
        "body_bytes": len(bodies[0]),
    }
    section = "13 http"
    return [
        Row(
            section,
            "HTTP Query by vector p50 (ms), http.client",
            p50["http"],
            p50["grpc"],
            "gRPC Query p50, same server",
            ratio,
            "<= 2",
            check(ratio, "<= 2"),
            params,
            note=f"alternating blocks, ef {stats.ef}, {stats.count:,} items",
        ),
        Row(
            section,
            "HTTP Query p99 (ms), http.client",
            p99["http"],
            p99["grpc"],
            "gRPC Query p99",
            p99["http"] / p99["grpc"],
            params=params,
        ),
        Row(
            section,
            "HTTP Query p50 (ms), requests.Session",
            p50["requests"],
            p50["grpc"],
            "gRPC Query p50",
            p50["requests"] / p50["grpc"],
            params=params,
            note="requests' own overhead included",
        ),
    ]
