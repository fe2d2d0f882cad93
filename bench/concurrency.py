"""Section 9, concurrency: raw-vector Query throughput from 4 client processes vs 1.

Clients are processes, not threads, so the Python client's own work (building requests,
reading results) runs in parallel as separate services' would, and the ratio measures the
server. Each client warms up, says "ready", waits for "go" on stdin, then queries (k=10,
held-out face-like vectors) for a fixed time and prints its count as JSON.

Child mode: python -m bench.concurrency ADDRESS QUERIES.npy SECONDS
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from bench.common import Context, Row, check, say

K = 10
CLIENTS = 4


def client_main(address: str, queries_path: str, seconds: float) -> None:
    from fsclient import FaceSearchClient

    queries = np.load(queries_path)
    with FaceSearchClient(address) as client:
        client.wait_ready()
        for q in queries[:200]:  # warm-up: connection, caches, the server's threads
            client.query(vector=q, k=K)
        print("ready", flush=True)
        sys.stdin.readline()  # "go": every client starts within a few ms of the others
        count, started = 0, time.perf_counter()
        deadline = started + seconds
        while time.perf_counter() < deadline:
            client.query(vector=queries[count % len(queries)], k=K)
            count += 1
        elapsed = time.perf_counter() - started
    print(json.dumps({"count": count, "seconds": elapsed}), flush=True)


def measure(address: str, queries: Path, clients: int, seconds: float) -> float:
    """Total queries/s of `clients` processes querying at once for `seconds`."""
    command = [sys.executable, "-m", "bench.concurrency", address, str(queries), str(seconds)]
    processes = [
        subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        for _ in range(clients)
    ]
    try:
        for p in processes:
            assert p.stdout is not None
            if p.stdout.readline().strip() != "ready":
                raise RuntimeError("a client process did not get ready")
        for p in processes:
            assert p.stdin is not None
            p.stdin.write("go\n")
            p.stdin.flush()
        reports = []
        for p in processes:
            out, _ = p.communicate(timeout=seconds + 120)
            reports.append(json.loads(out.strip().splitlines()[-1]))
    finally:
        for p in processes:
            if p.poll() is None:
                p.kill()
    return float(sum(r["count"] / r["seconds"] for r in reports))


def run(ctx: Context) -> list[Row]:
    seconds = 2.0 if ctx.quick else 5.0
    queries, _ = ctx.shared["facelike"].held_out(2000, ctx.seed + 90)
    path = ctx.work_dir / "concurrency-queries.npy"
    np.save(path, queries)
    address = ctx.shared["server"].address
    one = measure(address, path, 1, seconds)
    many = measure(address, path, CLIENTS, seconds)
    ratio = many / one
    say(f"1 client {one:,.0f} q/s, {CLIENTS} clients {many:,.0f} q/s")
    return [
        Row(
            "9 concurrency",
            f"Query/s, {CLIENTS} client processes (k=10)",
            many,
            one,
            "1 client process",
            ratio,
            ">= 1.6",
            check(ratio, ">= 1.6"),
            params={"clients": CLIENTS, "seconds": seconds, "k": K, "warmup_calls": 200},
            note=f"{seconds:g} s each after warm-up; server and clients share this machine's cores",
        ),
    ]


if __name__ == "__main__":
    client_main(sys.argv[1], sys.argv[2], float(sys.argv[3]))
