"""`make bench-peers`' data: face-like rows in blocks, held-out queries, exact neighbours.

The rows are `make bench`'s (bench/facelike.py, same template and seed), regenerated block by
block for each pass instead of held in memory, so that `--n 1000000` needs one block of
scratch per pass: each system's load streams the blocks, and the exact neighbours of the
queries are kept as a running top k over them.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from bench.facelike import PHOTOS_PER_PERSON, Facelike, FaceShape, FloatArray, facelike_blocks

IntArray = npt.NDArray[np.int64]


def default_template(dim: int) -> FloatArray:
    """`make bench`'s template when it has no face photos: a fixed random matrix at roughly
    a Dlib embedding's scale (bench/vectors.py), so both benchmarks draw the same rows."""
    template = np.random.default_rng(12345).normal(0.0, 0.1, (64, dim))
    return template.astype(np.float32)


def load_template(path: Path | None, dim: int) -> tuple[FloatArray, str]:
    """The embeddings the rows are shaped after, and what they are (for the report)."""
    if path is None:
        return default_template(dim), "a fixed random template (as make bench without faces)"
    template = np.load(path).astype(np.float32)
    if template.ndim != 2 or template.shape[1] != dim or len(template) < 2:
        raise ValueError(f"{path}: need a rows x {dim} matrix of embeddings, got {template.shape}")
    return template, f"{len(template)} embeddings from {path}"


@dataclass(frozen=True)
class Dataset:
    template: FloatArray
    n: int
    seed: int

    @property
    def dim(self) -> int:
        return int(self.template.shape[1])

    def blocks(self) -> Iterator[FloatArray]:
        """The n rows in order, a block at a time (row r is row r of `facelike(...)`)."""
        for block, _ in facelike_blocks(self.template, self.n, self.seed):
            yield block

    def queries(self, count: int, seed: int) -> FloatArray:
        """`count` new photos of stored people, not in the index: `Facelike.held_out` over
        the same people, built without keeping the rows."""
        people: list[IntArray] = []
        centers: list[npt.NDArray[np.float64]] = []
        drawn = 0
        for block, block_people in facelike_blocks(self.template, self.n, self.seed):
            people.append(drawn + np.arange(len(block)) // PHOTOS_PER_PERSON)
            centers.append(block_people)
            drawn += len(block_people)
        shape = FaceShape.of(self.template)
        rowless = np.zeros((0, self.dim), np.float32)  # held_out reads people and centers only
        data = Facelike(rowless, np.concatenate(people), np.concatenate(centers), shape)
        return data.held_out(count, seed)[0]


class Timed:
    """Iterates `blocks`, adding up the seconds spent making them, so a load's rate counts
    the system's work and not the data generator's."""

    def __init__(self, blocks: Iterator[FloatArray]) -> None:
        self._blocks = blocks
        self.seconds = 0.0

    def __iter__(self) -> Iterator[FloatArray]:
        while True:
            started = time.perf_counter()
            block = next(self._blocks, None)
            self.seconds += time.perf_counter() - started
            if block is None:
                return
            yield block


def exact_neighbours(blocks: Iterator[FloatArray], queries: FloatArray, k: int) -> IntArray:
    """Row numbers of each query's k nearest rows (squared L2 in float64), nearest first:
    brute force one block at a time, keeping a running top k."""
    q = queries.astype(np.float64)
    q_norms = (q**2).sum(1)[:, None]
    best_d = np.zeros((len(q), 0))
    best_i = np.zeros((len(q), 0), dtype=np.int64)
    start = 0
    for block in blocks:
        b = block.astype(np.float64)
        d = q_norms - 2.0 * (q @ b.T) + (b**2).sum(1)[None, :]
        rows = np.broadcast_to(np.arange(start, start + len(b), dtype=np.int64), d.shape)
        cand_d, cand_i = np.hstack([best_d, d]), np.hstack([best_i, rows])
        keep = np.argpartition(cand_d, k - 1, axis=1)[:, :k] if cand_d.shape[1] > k else None
        if keep is not None:
            cand_d = np.take_along_axis(cand_d, keep, 1)
            cand_i = np.take_along_axis(cand_i, keep, 1)
        best_d, best_i = cand_d, cand_i
        start += len(b)
    order = np.argsort(best_d, axis=1, kind="stable")
    return np.take_along_axis(best_i, order, 1)


def recall_at_k(found: Sequence[Sequence[int]], truth: IntArray) -> float:
    """Share of the true k nearest rows among the rows found, over all queries."""
    hits = sum(len(set(f) & set(t.tolist())) for f, t in zip(found, truth, strict=True))
    return hits / truth.size if truth.size else float("nan")


class RowOf:
    """Maps a system's ids back to row numbers: the ids it gave row 0, 1, ... in order."""

    def __init__(self, ids: npt.ArrayLike | None = None) -> None:
        # None: the system stores row r under id r.
        self._ids = None if ids is None else np.asarray(ids, dtype=np.int64)
        self._order = None if self._ids is None else np.argsort(self._ids, kind="stable")

    def __call__(self, ids: Sequence[int]) -> list[int]:
        if self._ids is None or self._order is None:
            return [int(i) for i in ids]
        wanted = np.asarray(ids, dtype=np.int64)
        at = np.searchsorted(self._ids, wanted, sorter=self._order)
        at = self._order[np.minimum(at, len(self._order) - 1)]
        # An id the system never gave (cannot happen unless it invents ids) counts as a miss.
        return [int(r) if self._ids[r] == i else -1 for r, i in zip(at, wanted, strict=True)]
