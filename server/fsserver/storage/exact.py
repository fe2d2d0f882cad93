"""Exact nearest neighbours by brute force, a chunk of stored vectors at a time.

Used for `exact` queries, for the recall calibration's ground truth, and when the graph walk
comes back short (Voyager's RecallError). Memory stays at one chunk (16k vectors) however
large the index; distances come out in Voyager's own scale (squared L2, or 1 - cos), so
callers convert them exactly as they convert Voyager's.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import numpy.typing as npt

from fsclient.types import FloatArray

IdArray = npt.NDArray[np.uint64]


def nearest(
    queries: FloatArray, k: int, chunks: Iterable[tuple[IdArray, FloatArray]], cosine: bool
) -> tuple[IdArray, FloatArray]:
    """The k nearest stored vectors of each query row: (ids, distances), nearest first.

    Candidates are picked per chunk with the matrix-product form of the distance (fast,
    but it loses precision for near-duplicates), then their distances are recomputed
    directly, so the order and the distances returned are exact.
    """
    queries = np.asarray(queries, dtype=np.float32)
    if cosine:
        queries = _unit(queries)
    rows = len(queries)
    best_ids = np.zeros((rows, 0), np.uint64)
    best = np.zeros((rows, 0), np.float32)
    squared = np.einsum("ij,ij->i", queries, queries)[:, None]
    for ids, vectors in chunks:
        if not len(ids):
            continue
        stored = _unit(vectors) if cosine else vectors
        if cosine:
            rough = 1.0 - queries @ stored.T
        else:
            rough = squared - 2.0 * (queries @ stored.T) + np.einsum("ij,ij->i", stored, stored)
        # A margin of extra candidates absorbs the rough form's rounding.
        take = min(len(ids), 2 * k + 8)
        picked = np.argpartition(rough, take - 1, axis=1)[:, :take]
        exact = _distances(queries, stored[picked], cosine)
        best_ids = np.concatenate([best_ids, ids[picked]], axis=1)
        best = np.concatenate([best, exact], axis=1)
        keep = np.argsort(best, axis=1, kind="stable")[:, :k]
        best_ids = np.take_along_axis(best_ids, keep, axis=1)
        best = np.take_along_axis(best, keep, axis=1)
    return best_ids, best


def _unit(vectors: FloatArray) -> FloatArray:
    norms = np.linalg.norm(vectors, axis=-1, keepdims=True)
    return (vectors / np.maximum(norms, np.finfo(np.float32).tiny)).astype(np.float32)


def _distances(queries: FloatArray, candidates: FloatArray, cosine: bool) -> FloatArray:
    """Distances of each query (rows x dim) to its candidates (rows x c x dim)."""
    if cosine:
        return (1.0 - np.einsum("rd,rcd->rc", queries, candidates)).astype(np.float32)
    differences = candidates - queries[:, None, :]
    return np.einsum("rcd,rcd->rc", differences, differences).astype(np.float32)
