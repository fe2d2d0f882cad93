"""Section 4, recall@10 against exact neighbours that the bench computes (numpy), not the
server, at the server's default settings (no ef sent), through QueryBatch:

(a) 1000 held-out face-like queries against the big index (floor: recall >= 0.99);
(b) uniform(-5, 5) vectors in a vector-only server of min(N, 100k): recall at its default
    ef and the smallest ef reaching 0.9 and 0.99 (reported, no floor: the hard case);
(c) the real Dlib embeddings, each searched with itself left out, against the big index.
Plus what the server says of itself: Stats.ef, estimated_recall, target_recall.
"""

from __future__ import annotations

import math
import time

import numpy as np
import numpy.typing as npt

from bench.common import Context, Row, check, fsserver, say
from bench.facelike import FloatArray, uniform_vectors
from bench.vectors import BATCH, QUIET, client_for, settle
from fsclient import FaceSearchClient
from fsclient.types import Stats

SECTION = "4 recall"
K = 10
EF_GRID = (
    10,
    12,
    16,
    20,
    24,
    32,
    40,
    48,
    64,
    80,
    96,
    128,
    160,
    192,
    256,
    320,
    384,
    512,
    640,
    768,
    1024,
    1280,
    1536,
    2048,
    2560,
    3072,
    4096,
)
UNIFORM_MAX = 100_000

IdArray = npt.NDArray[np.uint64]


def exact_knn(
    base: FloatArray, queries: FloatArray, k: int, chunk: int = 16_384
) -> npt.NDArray[np.int64]:
    """Row numbers in `base` of each query's k nearest (squared L2), nearest first.

    float64 and chunked over the base: exact enough to order near-ties, and a 1M base
    never needs a queries x N distance matrix at once.
    """
    q = queries.astype(np.float64)
    q_norms = (q * q).sum(axis=1)[:, None]
    best_d = np.zeros((len(q), 0))
    best_i = np.zeros((len(q), 0), dtype=np.int64)
    for start in range(0, len(base), chunk):
        b = base[start : start + chunk].astype(np.float64)
        d = np.concatenate([best_d, q_norms - 2.0 * (q @ b.T) + (b * b).sum(axis=1)], axis=1)
        rows = np.broadcast_to(np.arange(start, start + len(b)), (len(q), len(b)))
        i = np.concatenate([best_i, rows], axis=1)
        if d.shape[1] > k:  # keep the k best so far (unordered)
            keep = np.argpartition(d, k - 1, axis=1)[:, :k]
            d, i = np.take_along_axis(d, keep, axis=1), np.take_along_axis(i, keep, axis=1)
        best_d, best_i = d, i
    order = np.argsort(best_d, axis=1, kind="stable")
    return np.take_along_axis(best_i, order, axis=1)


def recall_at(found: IdArray, truth: IdArray, k: int = K) -> float:
    """Mean share of each row's true k nearest among the k found."""
    hits = [
        len(set(f[:k].tolist()) & set(t[:k].tolist())) for f, t in zip(found, truth, strict=True)
    ]
    return float(np.sum(hits)) / (len(truth) * k)


def stats_note(stats: Stats) -> str:
    return (
        f"Stats: ef {stats.ef}, estimated_recall {stats.estimated_recall:.3f} "
        f"(measured at {stats.recall_measured_at:,}), target_recall {stats.target_recall:g}"
    )


def big_base(ctx: Context) -> tuple[FloatArray, IdArray]:
    """Everything in the big index, with ids: the real faces, then the distractors."""
    base = np.concatenate([ctx.shared["real_embeddings"], ctx.shared["vectors"]])
    ids = np.concatenate([ctx.shared["real_ids"], ctx.shared["ids"]]).astype(np.uint64)
    return base, ids


def clustered(ctx: Context, client: FaceSearchClient, stats: Stats) -> list[Row]:
    count = 300 if ctx.quick else 1000
    queries, _ = ctx.shared["facelike"].held_out(count, ctx.seed + 40)
    base, ids = big_base(ctx)
    truth = ids[exact_knn(base, queries, K)]
    found = client.query_batch(queries, k=K).ids
    recall = recall_at(found, truth)
    say(f"(a) face-like held-out: recall@10 {recall:.4f} at the default ef {stats.ef}")
    return [
        Row(
            SECTION,
            "recall@10, held-out face-like queries, default ef",
            recall,
            ratio=recall,
            floor=">= 0.99",
            passed=check(recall, ">= 0.99"),
            params={"queries": count, "count": stats.count, "ef": stats.ef},
            note=f"{count} new photos of stored synthetic people vs exact kNN of all "
            f"{stats.count:,}; ratio = recall itself",
        ),
        Row(
            SECTION,
            "server's estimated recall@10 (Stats)",
            stats.estimated_recall,
            recall,
            "measured (a)",
            stats.estimated_recall / recall if recall else None,
            params={"ef": stats.ef, "target_recall": stats.target_recall},
            note=stats_note(stats) + " (0: not measured)",
        ),
    ]


def real_faces(ctx: Context, client: FaceSearchClient, stats: Stats) -> list[Row]:
    embeddings, real_ids = ctx.shared["real_embeddings"], ctx.shared["real_ids"]
    if len(embeddings) < 2:
        return [
            Row(
                SECTION,
                "recall@10, real Dlib faces (leave-one-out)",
                math.nan,
                note="skipped: no real faces enrolled (no face folder)",
            )
        ]
    base, ids = big_base(ctx)
    truth = ids[exact_knn(base, embeddings, K + 1)]
    found = client.query_batch(embeddings, k=K + 1).ids
    # Leave one out: each face finds itself first; compare the 10 after it on both sides.
    truth = np.stack([t[t != own][:K] for t, own in zip(truth, real_ids, strict=True)])
    found = np.stack([f[f != own][:K] for f, own in zip(found, real_ids, strict=True)])
    recall = recall_at(found, truth)
    say(f"(c) real faces: recall@10 {recall:.4f} over {len(embeddings)} queries")
    return [
        Row(
            SECTION,
            "recall@10, real Dlib faces (leave-one-out), default ef",
            recall,
            params={"queries": len(embeddings), "ef": stats.ef},
            note=f"each enrolled face's vector, itself dropped; {stats.count:,} items",
        )
    ]


def uniform(ctx: Context) -> list[Row]:
    n = min(ctx.n, UNIFORM_MAX)
    vectors = uniform_vectors(n, ctx.dim, ctx.seed + 50)
    queries = uniform_vectors(300 if ctx.quick else 1000, ctx.dim, ctx.seed + 51)
    truth = np.arange(n, dtype=np.uint64)[exact_knn(vectors, queries, K)]
    data_dir = ctx.work_dir / "uniform"
    with (
        fsserver("--dim", str(ctx.dim), "--data-dir", str(data_dir), *QUIET) as server,
        FaceSearchClient(server.address) as client,
    ):
        say(f"(b) uniform: {n:,} vectors into a vector-only server ...")
        started = time.perf_counter()
        added = client.add_vectors(vectors, ids=list(range(n)), batch_size=BATCH)
        add_seconds = time.perf_counter() - started
        if not all(r.ok for r in added):
            raise RuntimeError("the uniform server refused some vectors")
        stats = settle(client)
        default = recall_at(client.query_batch(queries, k=K).ids, truth)
        curve: dict[int, tuple[float, float]] = {}  # ef -> (recall, ms per query)
        for ef in EF_GRID:
            started = time.perf_counter()
            found = client.query_batch(queries, k=K, ef=ef).ids
            per_query_ms = (time.perf_counter() - started) / len(queries) * 1e3
            curve[ef] = (recall_at(found, truth), per_query_ms)
            if curve[ef][0] >= 0.99:
                break
    points = ", ".join(f"{ef}: {r:.3f}" for ef, (r, _) in curve.items())
    say(f"(b) uniform: recall@10 {default:.4f} at default ef {stats.ef}; by ef {points}")
    params = {
        "n": n,
        "queries": len(queries),
        "ef": stats.ef,
        "add_seconds": add_seconds,
        "curve": {str(ef): {"recall": r, "ms_per_query": t} for ef, (r, t) in curve.items()},
    }
    rows = [
        Row(
            SECTION,
            "recall@10, uniform(-5,5), default ef",
            default,
            params=params,
            note=f"{n:,} vectors, vector-only server; " + stats_note(stats),
        )
    ]
    for target in (0.9, 0.99):
        reached = [ef for ef, (r, _) in curve.items() if r >= target]
        smallest: float
        if reached:
            smallest = ef = min(reached)
            note = f"recall {curve[ef][0]:.4f}, QueryBatch {curve[ef][1]:.3f} ms/query"
        else:
            smallest, note = (
                math.nan,
                f"not reached at ef {max(curve)} ({curve[max(curve)][0]:.4f})",
            )
        rows.append(
            Row(
                SECTION,
                f"uniform: smallest ef for recall@10 >= {target}",
                smallest,
                params=params,
                note=note,
            )
        )
    return rows


def run(ctx: Context) -> list[Row]:
    with client_for(ctx) as client:
        stats = settle(client)
        rows = clustered(ctx, client, stats)
        rows += real_faces(ctx, client, stats)
    return rows + uniform(ctx)
