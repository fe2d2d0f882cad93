"""`python -m bench.edge`: would another gRPC server shape use more than one core here?

A bare echo (bench/echo.py's method, no (de)serializers), measured from 1 and from 4 client
processes, as:
- `sync`: grpc.server with a thread pool, as fsserver builds it;
- `aio`: grpc.aio's asyncio server;
- `work`: the sync server with `--work` µs of pure Python per call (a GIL-bound handler),
  in one process, and in two processes sharing the port with SO_REUSEPORT.
Summary in docs/benchmarks.md ("More than one core for the edge").
"""

from __future__ import annotations

import argparse
import multiprocessing
import socket
import subprocess
import sys
import time
from typing import Any

import grpc

from bench.echo import METHOD  # the servers below register the same method

PAYLOAD = b"x" * 560  # a QueryRequest of 128 floats is 530-560 bytes

SYNC_SERVER = """
import grpc, sys, time
from concurrent import futures
def work(n):
    x = 0
    for i in range(n):
        x += i
    return x
# A fixed amount of Python per call (not a wall-clock spin, which would burn more CPU the
# more processes wait for a core): as many loop steps as take --work µs here, alone.
started = time.perf_counter()
work(200_000)
steps = int(200_000 * float(sys.argv[2]) / 1e6 / (time.perf_counter() - started))
def echo(request, context):
    work(steps)
    return request
server = grpc.server(futures.ThreadPoolExecutor(8), options=[("grpc.so_reuseport", 1)])
server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(
    "bench.Echo", {"Echo": grpc.unary_unary_rpc_method_handler(echo)}),))
server.add_insecure_port("127.0.0.1:" + sys.argv[1])
server.start()
print("up", flush=True)
server.wait_for_termination()
"""

AIO_SERVER = """
import asyncio, grpc, sys
from grpc import aio
async def echo(request, context):
    return request
async def main():
    server = aio.server()
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(
        "bench.Echo", {"Echo": grpc.unary_unary_rpc_method_handler(echo)}),))
    server.add_insecure_port("127.0.0.1:" + sys.argv[1])
    await server.start()
    print("up", flush=True)
    await server.wait_for_termination()
asyncio.run(main())
"""


def _client(address: str, seconds: float, ready: Any, results: Any) -> None:
    with grpc.insecure_channel(address) as channel:
        call = channel.unary_unary(METHOD)
        for _ in range(200):
            call(PAYLOAD)
        ready.wait()
        count, deadline = 0, time.perf_counter() + seconds
        while time.perf_counter() < deadline:
            call(PAYLOAD)
            count += 1
    results.put(count / seconds)


def qps(address: str, clients: int, seconds: float) -> float:
    spawn = multiprocessing.get_context("spawn")
    ready, results = spawn.Barrier(clients), spawn.Queue()
    processes = [
        spawn.Process(target=_client, args=(address, seconds, ready, results))
        for _ in range(clients)
    ]
    for p in processes:
        p.start()
    total = sum(results.get(timeout=120) for _ in processes)
    for p in processes:
        p.join(30)
    return float(total)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def measure(name: str, script: str, processes: int, work_us: float, seconds: float) -> str:
    port = _free_port()
    servers = [
        subprocess.Popen(
            [sys.executable, "-c", script, str(port), str(work_us)],
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(processes)
    ]
    try:
        for server in servers:
            assert server.stdout is not None and server.stdout.readline().strip() == "up"
        one, four = (qps(f"127.0.0.1:{port}", c, seconds) for c in (1, 4))
    finally:
        for server in servers:
            server.kill()
            server.wait(30)
    return f"| {name} | {one:,.0f} | {four:,.0f} | {four / one:.2f} |"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.edge", description=__doc__)
    p.add_argument("--seconds", type=float, default=4.0, help="each throughput run")
    p.add_argument("--work", type=float, default=450.0, help="µs of Python per call (work)")
    args = p.parse_args(argv)
    print("| server | QPS 1 client | QPS 4 clients | 4 ÷ 1 |\n|---|---|---|---|")
    work = f"{args.work:g} µs of Python per call"
    runs = [
        ("echo, sync (as fsserver)", SYNC_SERVER, 1, 0.0),
        ("echo, grpc.aio", AIO_SERVER, 1, 0.0),
        (f"{work}, 1 process", SYNC_SERVER, 1, args.work),
        (f"{work}, 2 processes (SO_REUSEPORT)", SYNC_SERVER, 2, args.work),
    ]
    for name, script, processes, work_us in runs:
        print(measure(name, script, processes, work_us, args.seconds), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
