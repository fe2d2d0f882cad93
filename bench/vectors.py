"""Section 1, bulk add: the big index every later section works on.

One face server (the defaults: Dlib, dim 128, euclidean, float32, M 12, ef_construction
200) enrolls the real photos, then N face-like distractors streamed as raw vectors through
Add. The baseline, in the same run, is Voyager's own add_items on the same matrix in this
process: what the server costs on top of the library it wraps.

Left in ctx.shared for later sections (the server stays up until the run ends):
  server, data_dir      the ServerProcess and its --data-dir
  vectors, ids, people  the N distractors in order, their ids, each one's synthetic person
  facelike              the bench.facelike.Facelike they came from (for held-out draws)
  template              the embeddings the distractors were shaped after
  faces, probe          [(photo, label)] enrolled, and the held-out photo (None: no faces)
  real_embeddings, real_ids   the enrolled faces' embeddings and ids ((0, dim): none)
  inprocess_index       the baseline voyager.Index (distractors only, ids 0..N-1)
  inprocess_build_rss   this process's RSS growth while add_items built it, in bytes
"""

from __future__ import annotations

import math
import os
import time
from pathlib import Path

import numpy as np
import voyager

from bench.common import Context, Row, check, fsserver, rss_bytes, say
from bench.facelike import FloatArray, facelike, pick_photos
from fsclient import AddItem, FaceSearchClient
from fsclient.types import Stats

SECTION = "1 bulk add"
M, EF_CONSTRUCTION = 12, 200  # the server's defaults, so both sides build the same graph
BATCH = 1000  # vectors per Add message: the CLI's default for vectors
QUIET = ("--log-level", "WARNING")


def new_index(dim: int, storage: voyager.StorageDataType | None = None) -> voyager.Index:
    """An empty in-process index with the server's build parameters."""
    return voyager.Index(
        voyager.Space.Euclidean,
        num_dimensions=dim,
        M=M,
        ef_construction=EF_CONSTRUCTION,
        storage_data_type=storage or voyager.StorageDataType.Float32,
    )


def client_for(ctx: Context) -> FaceSearchClient:
    """A fresh client of the big server (each section opens its own channel)."""
    client = FaceSearchClient(ctx.shared["server"].address)
    client.wait_ready()
    return client


def settle(client: FaceSearchClient, timeout: float = 900.0) -> Stats:
    """Stats once the server's default-ef calibration has caught up with the index.

    The server re-measures recall in the background after writes pause (and once the
    index is 1.5x the size last measured): measuring before it has would time one ef and
    report another, and its work would steal CPU from the next measurement.
    """
    deadline = time.monotonic() + timeout
    last: tuple[int, int] | None = None
    since = time.monotonic()
    while True:
        stats = client.stats()
        if not stats.target_recall:  # calibration off: the default ef is fixed
            return stats
        key = (stats.ef, stats.recall_measured_at)
        if key != last:
            last, since = key, time.monotonic()
        # It does not calibrate an index of under 100 items (searched almost exhaustively).
        caught_up = stats.count < 100 or stats.count < 1.5 * stats.recall_measured_at
        if caught_up and time.monotonic() - since >= 2.0:
            return stats
        if time.monotonic() > deadline:
            say(f"the server's ef calibration did not settle in {timeout:g} s; going on")
            return stats
        time.sleep(0.5)


def enroll_faces(client: FaceSearchClient, faces: Path, ctx: Context) -> float:
    """Enroll all photos but the probe; returns seconds. Fills faces/probe/real_* in shared."""
    photos, probe, people = pick_photos(faces)
    labels = [people.get(p.name, p.stem) for p in photos]
    started = time.perf_counter()
    items = (
        AddItem(image=p.read_bytes(), label=label, metadata=p.name)
        for p, label in zip(photos, labels, strict=True)
    )
    results = [r for batch in client.add(items, batch_size=4) for r in batch]
    seconds = time.perf_counter() - started
    enrolled, embeddings, ids = [], [], []
    for photo, label, result in zip(photos, labels, results, strict=True):
        if result.ok and result.face is not None and result.id is not None:
            enrolled.append((photo, label))
            embeddings.append(result.face.embedding)
            ids.append(result.id)
        else:
            say(f"  {photo.name} not enrolled: {result.error}")
    say(f"enrolled {len(enrolled)} of {len(photos)} photos in {seconds:.1f} s")
    ctx.shared.update(
        faces=enrolled,
        probe=probe,
        real_embeddings=np.stack(embeddings).astype(np.float32),
        real_ids=np.asarray(ids, dtype=np.uint64),
    )
    return seconds


class Progress:
    """Prints every ~10% of a long step, with the rate so far."""

    def __init__(self, what: str, total: int) -> None:
        self.what, self.total, self.started, self.next = what, total, time.perf_counter(), 0.1

    def update(self, done: int) -> None:
        if done >= self.next * self.total or done == self.total:
            rate = done / max(time.perf_counter() - self.started, 1e-9)
            say(f"  {self.what}: {done:,}/{self.total:,} ({rate:,.0f}/s)")
            self.next = math.floor(done / self.total * 10 + 1) / 10


def add_stream(client: FaceSearchClient, vectors: FloatArray, labels: list[str]) -> list[int]:
    """The distractors through the Add stream, packed rows as add_vectors sends them."""
    ids: list[int] = []
    progress = Progress("Add stream", len(vectors))
    for batch in client.add_vector_batches(vectors, labels=labels, batch_size=BATCH):
        for result in batch:
            if result.id is None:
                raise RuntimeError(f"vector {len(ids)} was refused: {result.error}")
            ids.append(result.id)
        progress.update(len(ids))
    return ids


def build_inprocess(vectors: FloatArray, batch: int | None = None) -> tuple[voyager.Index, float]:
    """Voyager alone: one add_items call (batch None) or calls of `batch` rows; seconds."""
    index = new_index(vectors.shape[1])
    started = time.perf_counter()
    if batch is None:
        index.add_items(vectors)
    else:
        progress = Progress(f"in-process add_items x{batch}", len(vectors))
        for start in range(0, len(vectors), batch):
            index.add_items(vectors[start : start + batch])
            progress.update(start + min(batch, len(vectors) - start))
    return index, time.perf_counter() - started


def run(ctx: Context) -> list[Row]:
    data_dir = ctx.work_dir / "big"
    server = ctx.shared["exit_stack"].enter_context(
        fsserver("--data-dir", str(data_dir), *QUIET, http=True)
    )
    ctx.shared.update(server=server, data_dir=data_dir, faces=[], probe=None)
    ctx.shared.update(real_embeddings=np.zeros((0, ctx.dim), np.float32))
    ctx.shared.update(real_ids=np.zeros(0, np.uint64))
    say(f"face server up in {server.started_seconds:.1f} s on {server.address}")
    with FaceSearchClient(server.address) as client:
        client.wait_ready()
        enroll_seconds = 0.0
        if ctx.faces_dir is not None:
            enroll_seconds = enroll_faces(client, ctx.faces_dir, ctx)
        if len(ctx.shared["real_embeddings"]) >= 2:
            template = ctx.shared["real_embeddings"]
            shaped_after = f"{len(template)} real Dlib embeddings"
        else:
            # No faces: a fixed random template at roughly a Dlib embedding's scale.
            template = np.random.default_rng(12345).normal(0.0, 0.1, (64, ctx.dim))
            template = template.astype(np.float32)
            shaped_after = "a fixed random template (no faces)"
        data = facelike(template, ctx.n, ctx.seed)
        labels = [f"synthetic-{p}" for p in data.people.tolist()]
        say(f"adding {ctx.n:,} face-like vectors through Add, batches of {BATCH} ...")
        started = time.perf_counter()
        ids = add_stream(client, data.vectors, labels)
        server_seconds = time.perf_counter() - started
        say("waiting for the server's ef calibration ...")
        started = time.perf_counter()
        stats = settle(client)
        settle_seconds = time.perf_counter() - started
        say(f"  default ef {stats.ef} after {settle_seconds:.1f} s")
        count = stats.count
    ctx.shared.update(
        vectors=data.vectors,
        ids=np.asarray(ids, np.uint64),
        people=data.people,
        facelike=data,
        template=template,
    )

    say(f"baseline: in-process Voyager add_items of the same {ctx.n:,} rows (one call) ...")
    before = rss_bytes(os.getpid())
    index, one_call_seconds = build_inprocess(data.vectors)
    ctx.shared["inprocess_build_rss"] = rss_bytes(os.getpid()) - before
    ctx.shared["inprocess_index"] = index
    batched_seconds = float("nan")
    if ctx.n <= 200_000:  # a note only: at 1M it would cost another ~15 min build
        say(f"  {ctx.n / one_call_seconds:,.0f}/s; now in calls of {BATCH} rows (a note) ...")
        batched, batched_seconds = build_inprocess(data.vectors, BATCH)
        del batched

    rate, baseline = ctx.n / server_seconds, ctx.n / one_call_seconds
    ratio = rate / baseline
    return [
        Row(
            SECTION,
            "vectors/s added (Add stream, 1000 per batch)",
            rate,
            baseline,
            "Voyager add_items, one call, in-process",
            ratio,
            ">= 0.95",
            check(ratio, ">= 0.95"),
            params={
                "n": ctx.n,
                "dim": ctx.dim,
                "M": M,
                "ef_construction": EF_CONSTRUCTION,
                "batch": BATCH,
                "server_seconds": server_seconds,
                "inprocess_seconds": one_call_seconds,
                "batched_seconds": batched_seconds,
                "index_count": count,
                "ef": stats.ef,
                "calibration_wait_seconds": settle_seconds,
                "template": shaped_after,
                "enroll_seconds": enroll_seconds,
                "server_start_seconds": server.started_seconds,
            },
            note=f"{ctx.n:,} in {server_seconds:.1f} s vs {one_call_seconds:.1f} s; "
            f"Voyager in calls of {BATCH}: {ctx.n / batched_seconds:,.0f}/s; "
            f"distractors shaped after {shaped_after}; index holds {count:,}",
        )
    ]
