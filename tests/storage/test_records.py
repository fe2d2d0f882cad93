"""The label table: interned labels in a dense array, sparse ids, and old snapshots."""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path

import numpy as np

from fsserver.contract import EmbeddingContract
from fsserver.storage.index import FaceIndex
from fsserver.storage.records import NO_RECORD, Record, RecordTable
from fsserver.storage.rows import Rows
from fsserver.storage.snapshot import load_snapshot, save_snapshot

CONTRACT = EmbeddingContract.build(
    model="", detector="", dim=4, space="euclidean", storage="float32"
)


def test_labels_metadata_and_thumbnails_round_trip() -> None:
    table = RecordTable()
    table.set_labels([0, 1, 2], ["ann", "bob", "ann"])
    table.set(5, Record("cy", "{}", b"jpeg"))
    table.set(2**63 + 1, Record("far"))  # far beyond the items held: a dict, not the array
    assert table.get(2) == Record("ann") and table.get(5) == Record("cy", "{}", b"jpeg")
    assert table.get(2**63 + 1) == Record("far") and table.get(7) is NO_RECORD
    ids = np.array([[0, 5], [2**63 + 1, 7]], dtype=np.uint64)
    assert table.labels_of(ids) == [["ann", "cy"], ["far", ""]]
    assert table.metadata_of(ids) == [["", "{}"], ["", ""]]
    table.discard(1)
    table.set(5, Record("cy"))  # metadata and thumbnail cleared by an upsert without them
    ids_, codes, names = table.label_columns()
    assert sorted(names) == ["ann", "cy", "far"]  # "bob" is gone with its only item
    again = RecordTable.from_columns(ids_, codes, names)
    for id in (0, 1, 2, 5, 2**63 + 1):
        assert again.get(id) == table.get(id)
    assert list(table.extras()) == []


def test_a_stray_huge_id_does_not_grow_the_dense_array() -> None:
    table = RecordTable()
    table.set_labels([10**12], ["x"])
    table.set(10**15, Record("y"))
    assert table._dense.nbytes < 64 * 1024 * 1024
    assert table.labels_of(np.array([[10**12, 10**15]], dtype=np.uint64)) == [["x", "y"]]


def test_many_labels_cost_a_few_bytes_each() -> None:
    table = RecordTable()
    n = 200_000
    table.set_labels(list(range(n)), [f"person-{i // 10}" for i in range(n)])
    per_item = table._dense.nbytes / n
    assert per_item <= 8
    assert table.get(n - 1) == Record(f"person-{(n - 1) // 10}")


def test_format_1_snapshots_still_load(tmp_path: Path) -> None:
    """Snapshots written before labels.npz kept every label in records.jsonl."""
    index = FaceIndex(CONTRACT)
    vectors = np.stack([np.full(4, i, np.float32) for i in range(3)])
    index.add_rows(Rows.of(vectors, labels=[f"l{i}" for i in range(3)]))
    save_snapshot(index, tmp_path)
    directory = next((tmp_path / "snapshots").iterdir())
    rows = [
        {"id": 1, "label": "l1", "metadata": "m", "thumbnail": base64.b64encode(b"t").decode()},
        {"id": 2, "label": "l2", "metadata": ""},
    ]
    (directory / "records.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    for name in ("labels.npz", "labels.json"):
        (directory / name).unlink()
    manifest = json.loads((directory / "manifest.json").read_text())
    manifest["format"] = "facesearch-snapshot/1"
    manifest["files"] = {
        name: {
            "sha256": hashlib.sha256((directory / name).read_bytes()).hexdigest(),
            "bytes": (directory / name).stat().st_size,
        }
        for name in ("index.voyager", "records.jsonl", "deleted.json")
    }
    (directory / "manifest.json").write_text(json.dumps(manifest))
    loaded = load_snapshot(tmp_path, CONTRACT)
    assert loaded is not None
    assert loaded.index.get(1).label == "l1" and loaded.index.get(1).metadata == "m"
    assert loaded.index.get(1).thumbnail == b"t" and loaded.index.get(2).label == "l2"
    assert loaded.index.get(0).label == ""  # format 1 held only what its lines say
