"""Sections 7 (memory) and 8 (cold start): the big server saved, stopped and started again.

7: resident bytes per vector of the big server after it loads its snapshot in a fresh
   process, less a face server on an empty data dir (the model, the runtime), against a
   bare Voyager index of the same data loaded in a fresh process (RSS after Index.load
   less RSS before). Beside it, E4M3 storage: bytes per vector and recall@10 at the
   server's default ef, on an in-process E4M3 index of the same distractors.
8: seconds from launching fsserver on the big data dir to SERVING, and the model load
   alone (a face server on an empty data dir); the snapshot's size.

Child mode (a fresh process, so its RSS holds only the index):
  python -m bench.memory load INDEX_FILE
  python -m bench.memory build VECTORS.npy OUT_FILE float32|e4m3
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from typing import Any

import numpy as np

from bench.common import Context, Row, ServerProcess, check, fsserver, rss_bytes, say
from bench.recall import exact_knn, recall_at
from bench.vectors import QUIET, client_for, new_index, settle
from fsclient import FaceSearchClient
from fsclient.types import SaveResult

K = 10
E4M3_CAP = 100_000


def restart_big(ctx: Context) -> tuple[ServerProcess, SaveResult]:
    """Save the big server, stop it, start a fresh one on its data dir (left in shared)."""
    old: ServerProcess = ctx.shared["server"]
    with client_for(ctx) as client:
        saved = client.save()
    say(f"saved {saved.count:,} items, {saved.bytes / 2**20:,.1f} MiB in {saved.seconds:.1f} s")
    old.process.send_signal(signal.SIGTERM)  # its data dir is locked until it exits
    old.process.wait(timeout=600)
    data_dir = str(ctx.shared["data_dir"])
    server = ctx.shared["exit_stack"].enter_context(
        fsserver("--data-dir", data_dir, *QUIET, http=True)
    )
    ctx.shared["server"] = server
    say(f"big server restarted: SERVING after {server.started_seconds:.1f} s")
    return server, saved


def settled_rss(server: ServerProcess) -> tuple[int, int]:
    """RSS once the server has settled (its ef calibrated), and its item count."""
    with FaceSearchClient(server.address) as client:
        client.wait_ready()
        count = settle(client).count
    time.sleep(0.5)  # let any start-up threads finish and free what they hold
    return rss_bytes(server.pid), count


def child(*args: str) -> dict[str, Any]:
    """Run this module in a fresh process; its JSON report."""
    out = subprocess.run(
        [sys.executable, "-m", "bench.memory", *args], capture_output=True, text=True, check=True
    )
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def child_main(mode: str, *args: str) -> None:
    import voyager

    before = rss_bytes(os.getpid())  # numpy and voyager imported: the runtime alone
    started = time.perf_counter()
    if mode == "load":
        index = voyager.Index.load(args[0])
    else:
        vectors = np.load(args[0])
        storage = {
            "float32": voyager.StorageDataType.Float32,
            "e4m3": voyager.StorageDataType.E4M3,
        }[args[2]]
        index = new_index(vectors.shape[1], storage)
        before = rss_bytes(os.getpid())  # the matrix is read (and kept): not the index's
        index.add_items(vectors)
        index.save(args[1])
    seconds = time.perf_counter() - started
    after = rss_bytes(os.getpid())
    print(json.dumps({"before": before, "after": after, "count": len(index), "seconds": seconds}))


def per_vector(report: dict[str, Any]) -> float:
    return float(report["after"] - report["before"]) / report["count"]


def e4m3_rows(ctx: Context, ef: int, float32_per_vector: float) -> list[Row]:
    """The E4M3 option on the same distractors: bytes per vector and recall change."""
    import voyager

    # Building E4M3 takes ~1.7x as long as float32: at 1M that is most of an hour on
    # 2 cores, so past E4M3_CAP both storages are compared on the first E4M3_CAP rows.
    count = min(ctx.n, E4M3_CAP)
    subset = ctx.shared["vectors"][:count]
    vectors_path = ctx.work_dir / "distractors.npy"
    np.save(vectors_path, subset)
    e4m3_path = ctx.work_dir / "distractors-e4m3.voy"
    say(f"E4M3: building an in-process E4M3 index of {count:,} rows (a fresh process) ...")
    built = child("build", str(vectors_path), str(e4m3_path), "e4m3")
    loaded = child("load", str(e4m3_path))
    float32 = ctx.shared["inprocess_index"]
    if count < ctx.n:
        f32_path = ctx.work_dir / "distractors-f32.voy"
        say(f"E4M3: and float32 on the same {count:,} rows, to compare like with like ...")
        child("build", str(vectors_path), str(f32_path), "float32")
        float32_per_vector = per_vector(child("load", str(f32_path)))
        float32 = voyager.Index.load(str(f32_path))
        f32_path.unlink()
    vectors_path.unlink()
    queries, _ = ctx.shared["facelike"].held_out(300 if ctx.quick else 1000, ctx.seed + 70)
    truth = exact_knn(subset, queries, K).astype(np.uint64)
    e4m3 = voyager.Index.load(str(e4m3_path))
    e4m3_recall = recall_at(np.asarray(e4m3.query(queries, k=K, query_ef=ef)[0]), truth)
    f32_recall = recall_at(np.asarray(float32.query(queries, k=K, query_ef=ef)[0]), truth)
    del e4m3
    e4m3_path.unlink()
    e4m3_bytes = per_vector(loaded)
    say(f"E4M3: {e4m3_bytes:,.0f} B/vector, recall@10 {e4m3_recall:.4f} vs {f32_recall:.4f}")
    section = "7 memory"
    return [
        Row(
            section,
            "E4M3 storage: resident bytes/vector (Voyager, loaded)",
            e4m3_bytes,
            float32_per_vector,
            "float32, loaded",
            e4m3_bytes / float32_per_vector,
            params={"built_bytes_per_vector": per_vector(built), "build_seconds": built["seconds"]},
            note=f"{count:,} rows; after building: {per_vector(built):,.0f} B/vector in "
            f"{built['seconds']:.1f} s",
        ),
        Row(
            section,
            f"E4M3 storage: recall@10 at the default ef {ef}",
            e4m3_recall,
            f32_recall,
            "float32, same ef",
            e4m3_recall / f32_recall if f32_recall else None,
            params={"ef": ef, "queries": len(queries), "rows": count},
            note=f"change {e4m3_recall - f32_recall:+.4f}; held-out face-like queries vs exact "
            "kNN of the distractors",
        ),
    ]


def run_memory(ctx: Context) -> list[Row]:
    server, _ = restart_big(ctx)
    big_rss, count = settled_rss(server)
    with client_for(ctx) as client:
        ef = settle(client).ef
    with fsserver("--data-dir", str(ctx.work_dir / "empty-face"), *QUIET) as empty:
        empty_rss, _ = settled_rss(empty)
    facesearch = (big_rss - empty_rss) / count

    # The same distractors in Voyager alone: saved from section 1's index, loaded afresh.
    path = ctx.work_dir / "distractors.voy"
    ctx.shared["inprocess_index"].save(str(path))
    loaded = child("load", str(path))
    path.unlink()
    baseline = per_vector(loaded)
    built = ctx.shared.get("inprocess_build_rss", 0) / ctx.n
    ratio = facesearch / baseline
    say(f"{facesearch:,.0f} B/vector served vs {baseline:,.0f} B/vector in Voyager alone")
    section = "7 memory"
    rows = [
        Row(
            section,
            "resident bytes/vector, server after loading its snapshot",
            facesearch,
            baseline,
            "Voyager Index.load, fresh process",
            ratio,
            "<= 1.10",
            check(ratio, "<= 1.10"),
            params={
                "big_rss": big_rss,
                "empty_face_server_rss": empty_rss,
                "count": count,
                "voyager_rss_before": loaded["before"],
                "voyager_rss_after": loaded["after"],
            },
            note=f"({big_rss / 2**20:,.0f} MiB - {empty_rss / 2**20:,.0f} MiB empty face "
            f"server) / {count:,}",
        ),
        Row(
            section,
            "resident bytes/vector, Voyager after add_items (in-process build)",
            built,
            baseline,
            "Voyager Index.load",
            built / baseline if baseline else None,
            note="RSS growth of the bench process while section 1's add_items ran",
        ),
    ]
    return rows + e4m3_rows(ctx, ef, baseline)


def run_cold_start(ctx: Context) -> list[Row]:
    server, saved = restart_big(ctx)
    with fsserver("--data-dir", str(ctx.work_dir / "empty-face-8"), *QUIET) as empty:
        model_seconds = empty.started_seconds
    with fsserver(
        "--dim", str(ctx.dim), "--data-dir", str(ctx.work_dir / "empty-vec"), *QUIET
    ) as bare:
        bare_seconds = bare.started_seconds
    section = "8 cold start"
    note = "snapshot just written, so in the page cache"
    return [
        Row(
            section,
            f"seconds to SERVING, {saved.count:,} items",
            server.started_seconds,
            params={"count": saved.count, "snapshot_bytes": saved.bytes},
            note=note,
        ),
        Row(
            section,
            "seconds to SERVING, face server, empty data dir (model load)",
            model_seconds,
            note=f"vector-only server, empty: {bare_seconds:.2f} s",
        ),
        Row(
            section,
            "snapshot size (MiB)",
            saved.bytes / 2**20,
            params={"bytes": saved.bytes, "save_seconds": saved.seconds},
            note=f"{saved.bytes / max(saved.count, 1):,.0f} B/item; Save took "
            f"{saved.seconds:.1f} s",
        ),
    ]


if __name__ == "__main__":
    child_main(sys.argv[1], *sys.argv[2:])
