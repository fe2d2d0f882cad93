"""Merging shards' answers (pure numpy, no Ray): the global top k, labels kept with ids."""

from __future__ import annotations

import numpy as np

from fsserver.shards.merge import merge_hits
from fsserver.storage.backend import Hits


def _hits(ids: list[list[int]], distances: list[list[float]], metadata: bool = True) -> Hits:
    return Hits(
        ids=np.array(ids, dtype=np.uint64).reshape(len(ids), -1),
        distances=np.array(distances, dtype=np.float32).reshape(len(ids), -1),
        labels=[[f"l{i}" for i in row] for row in ids],
        metadata=[[f"m{i}" for i in row] for row in ids] if metadata else None,
    )


def test_the_k_nearest_over_all_shards_come_first_with_their_labels() -> None:
    even = _hits([[0, 2, 4], [6, 8, 10]], [[0.1, 0.5, 0.9], [0.2, 0.3, 0.4]])
    odd = _hits([[1, 3, 5], [7, 9, 11]], [[0.2, 0.3, 1.0], [0.05, 0.6, 0.7]])
    merged = merge_hits([even, odd], k=3)
    assert merged.ids.tolist() == [[0, 1, 3], [7, 6, 8]]
    np.testing.assert_allclose(merged.distances, [[0.1, 0.2, 0.3], [0.05, 0.2, 0.3]])
    assert merged.labels == [["l0", "l1", "l3"], ["l7", "l6", "l8"]]
    assert merged.metadata == [["m0", "m1", "m3"], ["m7", "m6", "m8"]]


def test_shards_with_fewer_items_than_k_and_empty_ones() -> None:
    some = _hits([[4, 8]], [[0.4, 0.8]], metadata=False)
    empty = _hits([[]], [[]], metadata=False)
    merged = merge_hits([some, empty, _hits([[1]], [[0.1]], metadata=False)], k=10)
    assert merged.ids.tolist() == [[1, 4, 8]]
    assert merged.labels == [["l1", "l4", "l8"]]
    assert merged.metadata is None
    nothing = merge_hits([empty, empty], k=5)
    assert nothing.ids.shape == (1, 0) and nothing.labels == [[]]
