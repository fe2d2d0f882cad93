"""Merging the shards' answers into one (pure numpy: no Ray, so it is tested on its own)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from fsserver.storage.backend import Hits


def merge_hits(parts: Sequence[Hits], k: int) -> Hits:
    """The k nearest of each row over every shard's nearest, nearest first.

    Each shard answered with its own min(k, its count) nearest per row; the global k nearest
    are among their union, because an item in the global top k is in its own shard's top k.
    """
    ids = np.concatenate([part.ids for part in parts], axis=1)
    distances = np.concatenate([part.distances for part in parts], axis=1)
    width = min(k, ids.shape[1])
    # Stable, so equal distances keep shard order and the answer is deterministic.
    order = np.argsort(distances, axis=1, kind="stable")[:, :width]
    picked_ids = np.take_along_axis(ids, order, axis=1)
    picked_distances = np.take_along_axis(distances, order, axis=1)
    labels = _pick([part.labels for part in parts], order)
    with_metadata = all(part.metadata is not None for part in parts)
    metadata = _pick([part.metadata or [] for part in parts], order) if with_metadata else None
    return Hits(picked_ids, picked_distances, labels, metadata)


def _pick(columns: Sequence[list[list[str]]], order: np.ndarray) -> list[list[str]]:
    """Row by row, the strings of every part side by side, taken in `order`."""
    picked: list[list[str]] = []
    for row, positions in enumerate(order.tolist()):
        joined = [text for part in columns for text in part[row]]
        picked.append([joined[p] for p in positions])
    return picked
