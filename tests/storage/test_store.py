"""The store alone (no gRPC): Voyager + records, snapshots, over every space and storage."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from fsserver.contract import EmbeddingContract
from fsserver.errors import InvalidArgument, NotFound
from fsserver.storage.index import FaceIndex
from fsserver.storage.rows import Rows
from fsserver.storage.snapshot import load_snapshot, save_snapshot

DIM = 12


def _contract(space: str, storage: str) -> EmbeddingContract:
    return EmbeddingContract.build(model="m", detector="", dim=DIM, space=space, storage=storage)


def _filled(space: str, storage: str, n: int = 300) -> tuple[FaceIndex, np.ndarray]:
    index = FaceIndex(_contract(space, storage))
    vectors = np.random.default_rng(11).normal(size=(n, DIM)).astype(np.float32)
    rows = Rows.of(
        index.validate_matrix(vectors),
        labels=[f"l{i}" for i in range(n)],
        thumbnails=[b"jpg" * (i % 2) for i in range(n)],
    )
    assert index.add_rows(rows) == list(range(n))
    return index, vectors


def _nearest(
    index: FaceIndex, vectors: np.ndarray, k: int, ef: int | None = None
) -> list[list[tuple[int, str, float]]]:
    """(id, label, distance) of each row's k nearest, nearest first."""
    ids, distances = index.search(vectors, k, ef)
    labels = index.labels_of(ids)
    return [
        [
            (id, label, round(d, 5))
            for id, label, d in zip(row_ids.tolist(), row_labels, row_d.tolist(), strict=True)
        ]
        for row_ids, row_labels, row_d in zip(ids, labels, distances, strict=True)
    ]


@pytest.mark.parametrize("space", ["euclidean", "cosine"])
@pytest.mark.parametrize("storage", ["float32", "e4m3"])
def test_snapshot_round_trip(tmp_path: Path, space: str, storage: str) -> None:
    index, vectors = _filled(space, storage)
    index.delete([5, 6, 7])
    saved = save_snapshot(index, tmp_path)
    assert saved.count == 297
    loaded = load_snapshot(tmp_path, _contract(space, storage))
    assert loaded is not None
    again = loaded.index
    assert loaded.name == saved.snapshot
    assert (again.count, again.deleted_count) == (297, 3)
    assert again.get(1).thumbnail == b"jpg" and again.get(2).thumbnail == b""
    with pytest.raises(NotFound):
        again.get(6)
    before, after = _nearest(index, vectors[:10], 5, 100), _nearest(again, vectors[:10], 5, 100)
    assert before == after
    assert all(id not in {5, 6, 7} for row in after for id, _, _ in row)


@pytest.mark.parametrize("space", ["euclidean", "cosine"])
def test_mostly_deleted_index_still_answers_exactly(space: str) -> None:
    index, vectors = _filled(space, "float32", n=200)
    index.delete(list(range(10, 200)))
    for row in _nearest(index, vectors[150:160], k=10):
        assert sorted(id for id, _, _ in row) == list(range(10))
    assert [len(r) for r in _nearest(index, vectors[:2], k=50)] == [10, 10]


def test_validation_names_what_is_wrong() -> None:
    index = FaceIndex(_contract("cosine", "float32"))
    with pytest.raises(InvalidArgument, match="dimension 3"):
        index.validate_vector(np.ones(3, np.float32))
    with pytest.raises(InvalidArgument, match="NaN or Inf"):
        index.validate_vector(np.full(DIM, np.inf, np.float32))
    with pytest.raises(InvalidArgument, match=r"zero .* vector has no direction"):
        index.validate_vector(np.zeros(DIM, np.float32))
    with pytest.raises(InvalidArgument, match="vanishingly small"):
        index.validate_vector(np.full(DIM, 1e-45, np.float32))
    with pytest.raises(InvalidArgument, match="overflows float32"):
        index.validate_vector(np.full(DIM, 3.4e38, np.float32))
    e4m3 = FaceIndex(_contract("euclidean", "e4m3"))
    with pytest.raises(InvalidArgument, match="at most ±448"):
        e4m3.validate_vector(np.array([449.0] + [0.0] * (DIM - 1), np.float32))
    assert e4m3.validate_vector(np.full(DIM, 448.0, np.float32)).max() == 448.0
    with pytest.raises(InvalidArgument, match="k must be"):
        index.search(np.ones((1, DIM), np.float32), k=0)


def test_capacity_grows_past_the_first_allocation() -> None:
    index = FaceIndex(_contract("euclidean", "float32"))
    rng = np.random.default_rng(2)
    for _ in range(3):
        batch = rng.normal(size=(1500, DIM)).astype(np.float32)
        index.add_rows(Rows.of(index.validate_matrix(batch)))
    assert index.count == 4500
    assert index.voyager_index.max_elements >= 4500


def test_a_scan_skips_items_deleted_while_it_runs() -> None:
    """Brute force (exact queries, calibration) reads the index a chunk at a time; an item
    deleted between two chunks is left out, not an error (Voyager refuses to read a
    deleted item's vector)."""
    index, _ = _filled("euclidean", "float32", n=300)
    chunks = index.live_chunks(size=100)
    first_ids, _ = next(chunks)
    later = [150, 250]
    index.delete(later)
    rest = [ids for ids, _ in chunks]
    seen = np.concatenate([first_ids, *rest]).tolist()
    assert sorted(seen) == [i for i in range(300) if i not in later]
