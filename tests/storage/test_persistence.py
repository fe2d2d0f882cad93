"""Save, stop, restart: the same answers; snapshots made under another contract refused."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from fsserver.errors import ContractMismatch
from fsserver.storage.snapshot import SnapshotCorrupt, snapshot_dirs
from support import RunningServer

DIM = 8


def _answers(server: RunningServer, queries: np.ndarray) -> list[list[tuple[int, str, float]]]:
    with server.client() as client:
        return [
            [
                (n.id, n.label, round(n.distance, 5))
                for n in client.query(vector=q, k=5).results[0].neighbors
            ]
            for q in queries
        ]


def test_save_stop_restart_gives_the_same_answers(
    start_server: Callable[..., RunningServer], tmp_path: Path
) -> None:
    rng = np.random.default_rng(3)
    vectors = rng.normal(size=(300, DIM)).astype(np.float32)
    queries = rng.normal(size=(10, DIM)).astype(np.float32)
    data = tmp_path / "data"
    first = start_server(data_dir=data, dim=DIM)
    with first.client() as client:
        client.add_vectors(vectors, labels=[f"v{i}" for i in range(300)], metadata=["m"] * 300)
        client.delete([3, 4])
        saved = client.save()
    assert saved.count == 298 and saved.bytes > 0
    assert saved.snapshot == "snapshots/000000000001"
    before = _answers(first, queries)
    first.stop()
    second = start_server(data_dir=data, dim=DIM)
    assert _answers(second, queries) == before
    with second.client() as client:
        stats = client.stats()
        assert (stats.count, stats.deleted, stats.snapshot) == (298, 2, saved.snapshot)
        assert client.get(10).metadata == "m"
        # Ids keep counting from where they were.
        assert client.add_vectors(vectors[0])[0].id == 300


def test_graceful_stop_saves_unsaved_changes_only(
    start_server: Callable[..., RunningServer], tmp_path: Path
) -> None:
    data = tmp_path / "data"
    server = start_server(data_dir=data, dim=DIM)
    server.stop()
    assert snapshot_dirs(data) == []  # nothing to save
    server = start_server(data_dir=data, dim=DIM)
    with server.client() as client:
        client.add_vectors(np.ones((5, DIM)))
    server.stop()
    assert [p.name for p in snapshot_dirs(data)] == ["000000000001"]
    again = start_server(data_dir=data, dim=DIM)
    with again.client() as client:
        assert client.stats().count == 5


def test_snapshots_are_complete_and_only_two_are_kept(
    start_server: Callable[..., RunningServer], tmp_path: Path
) -> None:
    data = tmp_path / "data"
    server = start_server(data_dir=data, dim=DIM, model="")
    with server.client() as client:
        for i in range(4):
            client.add_vectors(np.full(DIM, float(i + 1)))
            client.save()
    names = [p.name for p in snapshot_dirs(data)]
    assert names == ["000000000003", "000000000004"]
    assert not list((data / "snapshots").glob(".tmp-*"))
    manifest = json.loads((snapshot_dirs(data)[-1] / "manifest.json").read_text())
    assert manifest["count"] == 4
    assert manifest["contract"] == {
        "model": "",
        "detector": "",
        "dim": DIM,
        "space": "euclidean",
        "storage": "float32",
        "normalization": "none",
    }
    assert set(manifest["files"]) == {
        "index.voyager",
        "labels.npz",
        "labels.json",
        "records.jsonl",
        "deleted.json",
    }


@pytest.mark.parametrize(
    ("changed", "named"),
    [
        ({"dim": DIM + 1}, "dim 8 vs 9"),
        ({"space": "cosine"}, "space 'euclidean' vs 'cosine'"),
        ({"storage": "e4m3"}, "storage 'float32' vs 'e4m3'"),
        ({"model": "Facenet"}, "model 'Dlib' vs 'Facenet'"),
    ],
)
def test_a_snapshot_under_another_contract_is_refused(
    start_server: Callable[..., RunningServer],
    tmp_path: Path,
    changed: dict[str, object],
    named: str,
) -> None:
    data = tmp_path / "data"
    server = start_server(data_dir=data, dim=DIM, model="Dlib")
    with server.client() as client:
        client.add_vectors(np.ones(DIM))
        client.save()
    server.stop()
    with pytest.raises(ContractMismatch) as error:
        start_server(data_dir=data, **{"dim": DIM, "model": "Dlib", **changed})
    assert named in str(error.value)
    assert error.value.code == "FAILED_PRECONDITION"


def test_corrupt_snapshots_are_refused_naming_the_file(
    start_server: Callable[..., RunningServer], tmp_path: Path
) -> None:
    data = tmp_path / "data"
    server = start_server(data_dir=data, dim=DIM)
    with server.client() as client:
        for _ in range(3):  # three snapshots: the WAL no longer reaches back to the start
            client.add_vectors(np.ones((3, DIM)))
            client.save()
    server.stop()
    index_files = [d / "index.voyager" for d in snapshot_dirs(data)]
    for index_file in index_files:
        raw = bytearray(index_file.read_bytes())
        raw[len(raw) // 2] ^= 0xFF
        index_file.write_bytes(bytes(raw))
    with pytest.raises(SnapshotCorrupt) as error:
        start_server(data_dir=data, dim=DIM)
    assert error.value.code == "DATA_LOSS"
    for index_file in index_files:
        assert index_file.parent.name in str(error.value)


def test_face_server_restart_gives_the_same_answers(
    start_server: Callable[..., RunningServer], tmp_path: Path, faces_dir: Path
) -> None:
    data = tmp_path / "faces"
    enrolled = ["img1.jpg", "img3.jpg", "img16.jpg", "img20.jpg", "img22.jpg"]
    probes = ["img2.jpg", "img12.jpg"]
    server = start_server(data_dir=data)
    with server.client() as client:
        client.add_images([faces_dir / f for f in enrolled], labels=enrolled)
        before = [client.query(image=faces_dir / p, k=3) for p in probes]
    server.stop()
    again = start_server(data_dir=data)
    with again.client() as client:
        after = [client.query(image=faces_dir / p, k=3) for p in probes]
        assert client.get(0).thumbnail  # thumbnails survive the snapshot
    for old, new in zip(before, after, strict=True):
        assert [(n.id, n.label, n.match) for n in old.results[0].neighbors] == [
            (n.id, n.label, n.match) for n in new.results[0].neighbors
        ]
        np.testing.assert_allclose(
            [n.distance for n in old.results[0].neighbors],
            [n.distance for n in new.results[0].neighbors],
            atol=1e-5,
        )
