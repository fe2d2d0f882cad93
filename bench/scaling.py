"""Measurements behind docs/scaling.md: memory per vector, build time, Ray fan-out cost.

    python -m bench.scaling [--n 200000] [--fanout-n 100000] [--out bench/results/scaling.json]

1. Resident bytes per vector of a Voyager index (128-d, M=12, ef_construction 200) in a
   fresh process, float32 and E4M3: RSS growth while add_items builds it, and after
   Index.load of its saved file.
2. Build time: add_items seconds at several sizes (one process, all cores), to extrapolate
   the build of one shard (HNSW insertion costs about n log n).
3. Fan-out: the same vectors in the single in-process index (LocalStore) and in 1, 2 and 4
   Ray shards (RayShards, the --backend ray path without gRPC): one-vector query latency
   p50/p99, a no-op call to every shard (the fixed cost of a fan-out), QueryBatch
   throughput (1000 rows), recall@10 against brute force at ef 64, and the load time;
   ratios against the single index.

Needs the facesearch[ray] extra. Face-like vectors as `make bench` draws them without
photos (bench/facelike.py with a fixed random template).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import rss_bytes
from bench.facelike import facelike

DIM, M, EF_CONSTRUCTION, EF, K = 128, 12, 200, 64, 10


def vectors(n: int, seed: int = 0) -> np.ndarray:
    template = np.random.default_rng(12345).normal(0.0, 0.1, (64, DIM))
    return facelike(template, n, seed).vectors


# ---- 1 and 2: a bare Voyager index in a child process ----------------------------------


def child_build(path: str, storage: str, out: str) -> None:
    """Build an index of the rows in `path` here; print RSS growth, seconds; save it."""
    import os

    import voyager

    rows = np.load(path)
    data_type = {"float32": voyager.StorageDataType.Float32, "e4m3": voyager.StorageDataType.E4M3}
    index = voyager.Index(
        voyager.Space.Euclidean,
        num_dimensions=DIM,
        M=M,
        ef_construction=EF_CONSTRUCTION,
        max_elements=len(rows),
        storage_data_type=data_type[storage],
    )
    before = rss_bytes(os.getpid())
    started = time.perf_counter()
    index.add_items(rows)
    seconds = time.perf_counter() - started
    grown = rss_bytes(os.getpid()) - before
    index.save(out)
    print(json.dumps({"built_bytes": grown, "build_seconds": seconds}))


def child_load(out: str) -> None:
    import os

    import voyager

    before = rss_bytes(os.getpid())
    index = voyager.Index.load(out)
    print(json.dumps({"loaded_bytes": rss_bytes(os.getpid()) - before, "count": len(index)}))


def in_child(*args: str) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-m", "bench.scaling", *args], capture_output=True, text=True, check=True
    )
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def memory_and_build(n: int, sizes: list[int], work: Path) -> dict[str, Any]:
    data = vectors(n)
    results: dict[str, Any] = {"n": n, "memory": {}, "build": []}
    for storage in ("float32", "e4m3"):
        np.save(work / "rows.npy", data)
        built = in_child("build", str(work / "rows.npy"), storage, str(work / "index.voyager"))
        loaded = in_child("load", str(work / "index.voyager"))
        results["memory"][storage] = {
            "built_bytes_per_vector": built["built_bytes"] / n,
            "loaded_bytes_per_vector": loaded["loaded_bytes"] / n,
            "build_seconds": built["build_seconds"],
        }
        print(f"{storage}: {results['memory'][storage]}", flush=True)
    for size in sizes:
        np.save(work / "rows.npy", data[:size])
        built = in_child("build", str(work / "rows.npy"), "float32", str(work / "part.voyager"))
        results["build"].append({"n": size, "seconds": built["build_seconds"]})
        print(f"build {size}: {built['build_seconds']:.1f} s", flush=True)
    results["build"].append({"n": n, "seconds": results["memory"]["float32"]["build_seconds"]})
    return results


# ---- 3: fan-out over Ray shards ---------------------------------------------------------


def fanout(n: int, shard_counts: list[int], work: Path) -> list[dict[str, Any]]:
    import ray

    from fsserver.config import Config
    from fsserver.contract import EmbeddingContract
    from fsserver.shards.router import RayShards
    from fsserver.storage.backend import IndexBackend, StoreOptions
    from fsserver.storage.local import LocalStore
    from fsserver.storage.rows import Rows

    ray.init(num_cpus=2, object_store_memory=512 * 2**20, include_dashboard=False)
    data = vectors(n, seed=1)
    template_rng = np.random.default_rng(7)
    singles = data[template_rng.choice(n, 300, replace=False)]
    queries = (singles + template_rng.normal(0, 0.02, singles.shape)).astype(np.float32)
    truth = _brute_force(data, queries)
    batch = np.repeat(queries, 4, axis=0)[:1000]
    contract = EmbeddingContract.build(
        model="", detector="", dim=DIM, space="euclidean", storage="float32"
    )
    options = StoreOptions(m=M, ef_construction=EF_CONSTRUCTION, ef=EF)
    rows: list[dict[str, Any]] = []
    for shards in [0, *shard_counts]:  # 0: the single in-process index
        directory = work / f"fanout-{shards}"
        backend: IndexBackend
        if shards == 0:
            backend = LocalStore(directory, contract, options)
        else:
            config = Config(dim=DIM, backend="ray", shards=shards, shard_cpus=0.25)
            backend = RayShards.open(directory, contract, options, config)
        started = time.perf_counter()
        for start in range(0, n, 10_000):
            part = data[start : start + 10_000]
            backend.add_rows(Rows.of(part))
        load_seconds = time.perf_counter() - started
        for query in queries[:50]:  # warm up
            backend.search(query[None, :], K)
        latencies = []
        for query in queries:
            started = time.perf_counter()
            backend.search(query[None, :], K)
            latencies.append(time.perf_counter() - started)
        # The fixed cost of a fan-out: one no-op call to every shard, waited for together.
        calls = []
        for _ in range(200 if shards else 0):
            started = time.perf_counter()
            backend.shard_pids()  # type: ignore[attr-defined]
            calls.append(time.perf_counter() - started)
        batch_seconds = []
        for _ in range(5):
            started = time.perf_counter()
            backend.search(batch, K)
            batch_seconds.append(time.perf_counter() - started)
        found = backend.search(queries, K).ids
        recall = (
            sum(len(set(f) & set(t)) for f, t in zip(found.tolist(), truth.tolist(), strict=True))
            / truth.size
        )
        row = {
            "shards": shards or "single",
            "load_seconds": load_seconds,
            "query_p50_ms": 1000 * float(np.percentile(latencies, 50)),
            "query_p99_ms": 1000 * float(np.percentile(latencies, 99)),
            "noop_fanout_p50_ms": 1000 * float(np.percentile(calls, 50)) if calls else 0.0,
            "batch_qps": len(batch) / float(np.median(batch_seconds)),
            "recall_at_10": recall,
        }
        print(row, flush=True)
        rows.append(row)
        backend.close()
    ray.shutdown()
    single = rows[0]
    for row in rows:
        row["p50_ratio"] = row["query_p50_ms"] / single["query_p50_ms"]
        row["batch_qps_ratio"] = row["batch_qps"] / single["batch_qps"]
    return rows


def _brute_force(data: np.ndarray, queries: np.ndarray) -> np.ndarray:
    squared = (queries**2).sum(1)[:, None] - 2 * queries @ data.T + (data**2).sum(1)[None, :]
    return np.argsort(squared, axis=1)[:, :K]


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "build":
        return child_build(*sys.argv[2:5])
    if len(sys.argv) > 1 and sys.argv[1] == "load":
        return child_load(sys.argv[2])
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=200_000, help="vectors for memory and build")
    parser.add_argument("--fanout-n", type=int, default=100_000, help="vectors for the fan-out")
    parser.add_argument("--sizes", default="25000,50000,100000", help="build-time sizes")
    parser.add_argument("--shards", default="1,2,4")
    parser.add_argument("--skip", default="", help="memory and/or fanout")
    parser.add_argument("--out", type=Path, default=Path("bench/results/scaling.json"))
    args = parser.parse_args()
    # A run of one part (--skip) keeps the other part's results already in --out.
    results: dict[str, Any] = json.loads(args.out.read_text()) if args.out.is_file() else {}
    results.update({"dim": DIM, "m": M, "ef_construction": EF_CONSTRUCTION, "ef": EF})
    with tempfile.TemporaryDirectory(prefix="facesearch-scaling-") as temp:
        work = Path(temp)
        if "memory" not in args.skip:
            sizes = [int(s) for s in args.sizes.split(",") if s]
            results["memory_and_build"] = memory_and_build(args.n, sizes, work)
        if "fanout" not in args.skip:
            shard_counts = [int(s) for s in args.shards.split(",")]
            results["fanout"] = {
                "n": args.fanout_n,
                "rows": fanout(args.fanout_n, shard_counts, work),
            }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
