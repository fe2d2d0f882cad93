"""The write-ahead log and snapshots together: replay, torn and corrupt files, Save crashes."""

from __future__ import annotations

import errno
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest

from fsserver.contract import EmbeddingContract
from fsserver.errors import ContractMismatch, NotFound
from fsserver.storage import index as index_module
from fsserver.storage import snapshot as snapshot_module
from fsserver.storage import wal as wal_module
from fsserver.storage.index import FaceIndex
from fsserver.storage.recovery import open_store
from fsserver.storage.rows import Rows
from fsserver.storage.snapshot import SnapshotCorrupt, save_snapshot, snapshot_dirs
from fsserver.storage.wal import WalCorrupt, WalWriteFailed

DIM = 8
CONTRACT = EmbeddingContract.build(
    model="", detector="", dim=DIM, space="euclidean", storage="float32"
)


class Store:
    """A FaceIndex with its WAL in `data`, opened as the engine opens it (no gRPC)."""

    def __init__(self, data: Path, contract: EmbeddingContract = CONTRACT) -> None:
        self.data = data
        recovered = open_store(data, contract)
        self.index, self.wal, self.report = recovered.index, recovered.wal, recovered.report

    def add(self, start: int, n: int, label: str = "x", seed: int = 0) -> dict[int, np.ndarray]:
        vectors = np.random.default_rng(seed + start).normal(size=(n, DIM)).astype(np.float32)
        ids = list(range(start, start + n))
        rows = Rows(
            vectors,
            ids,
            [f"{label}{id}" for id in ids],
            [f"m{id}" for id in ids],
            [b"t" if i % 2 else b"" for i in range(n)],
        )
        assert self.index.add_rows(rows) == ids
        return {start + i: v for i, v in enumerate(vectors)}

    def save(self) -> None:
        save_snapshot(self.index, self.data)

    def close(self) -> None:
        self.wal.close()


def _assert_holds(index: FaceIndex, expected: dict[int, np.ndarray], label: str = "x") -> None:
    assert index.count == len(expected)
    for id, vector in expected.items():
        item = index.get(id)
        np.testing.assert_array_equal(item.vector, vector)
        assert (item.label, item.metadata) == (f"{label}{id}", f"m{id}")
        assert item.thumbnail == (b"t" if id % 2 else b"")


def _segments(data: Path) -> list[Path]:
    return sorted((data / "wal").glob("*.wal"))


def test_replay_rebuilds_adds_upserts_and_deletes_without_a_snapshot(tmp_path: Path) -> None:
    store = Store(tmp_path)
    expected = store.add(0, 50) | store.add(50, 50)
    expected |= store.add(10, 5, seed=7)  # upsert: new vectors for 10..14
    store.index.delete([3, 60])
    del expected[3], expected[60]
    auto = store.index.add_rows(
        Rows.of(np.ones((1, DIM), np.float32), labels=["x100"], metadata=["m100"])
    )
    expected[100] = np.ones(DIM, np.float32)
    assert auto == [100]
    store.close()

    again = Store(tmp_path)
    assert again.report.replayed == 5 and again.report.dropped == 0
    _assert_holds(again.index, expected)
    for gone in (3, 60):
        with pytest.raises(NotFound):
            again.index.get(gone)
    # Ids are never reused, even the deleted ones above the largest live id.
    assert again.index.add_rows(Rows.of(np.ones((1, DIM), np.float32))) == [101]


@pytest.mark.parametrize("cut", [1, 7, 9, 200])
def test_a_torn_last_record_is_dropped_and_logged(
    tmp_path: Path, cut: int, caplog: pytest.LogCaptureFixture
) -> None:
    store = Store(tmp_path)
    expected = store.add(0, 10) | store.add(10, 10)
    store.add(20, 10)  # this one is torn below: as if the process died mid-write
    store.close()
    segment = _segments(tmp_path)[-1]
    size = segment.stat().st_size
    with segment.open("r+b") as f:
        f.truncate(size - cut)

    with caplog.at_level(logging.WARNING, logger="fsserver.storage.wal"):
        again = Store(tmp_path)
    assert (again.report.replayed, again.report.dropped) == (2, 1)
    assert "dropped 1 record(s)" in caplog.text and segment.name in caplog.text
    _assert_holds(again.index, expected)
    # The log goes on from the good end, and the next start sees the new record.
    expected |= again.add(40, 3)
    again.close()
    third = Store(tmp_path)
    assert third.report.dropped == 0
    _assert_holds(third.index, expected)
    kept = list((tmp_path / "wal").glob("dropped-*/*.tail"))
    assert len(kept) == 1 and kept[0].stat().st_size > 0  # the torn bytes are kept aside


def test_a_corrupt_record_in_the_middle_drops_it_and_everything_after(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = Store(tmp_path)
    expected = store.add(0, 10)
    for start in (10, 20, 30):
        store.add(start, 10)
    store.close()
    segment = _segments(tmp_path)[-1]
    raw = bytearray(segment.read_bytes())
    raw[-3 * (len(raw) // 5)] ^= 0x55  # somewhere in the second or third record
    segment.write_bytes(bytes(raw))

    with caplog.at_level(logging.WARNING, logger="fsserver.storage.wal"):
        again = Store(tmp_path)
    assert again.report.dropped >= 2
    assert again.report.replayed + again.report.dropped == 4
    assert f"dropped {again.report.dropped} record(s)" in caplog.text
    assert again.index.count == 10 * again.report.replayed
    for id in range(again.index.count):  # never silently wrong: what is there is exact
        assert again.index.get(id).label == f"x{id}"
    assert all(id in again.index for id in expected)


def test_a_segment_with_a_broken_header_is_moved_aside(tmp_path: Path) -> None:
    store = Store(tmp_path)
    store.add(0, 5)
    store.close()
    segment = _segments(tmp_path)[0]
    segment.write_bytes(b"FSW")  # as if the crash came while creating the segment
    again = Store(tmp_path)
    assert again.index.count == 0 and again.report.dropped == 1
    assert list((tmp_path / "wal").glob(f"dropped-*/{segment.name}"))
    assert again.index.add_rows(Rows.of(np.ones((1, DIM), np.float32))) == [0]


def test_a_wal_from_another_contract_is_refused(tmp_path: Path) -> None:
    Store(tmp_path).add(0, 3)
    other = EmbeddingContract.build(
        model="", detector="", dim=DIM, space="cosine", storage="float32"
    )
    with pytest.raises(ContractMismatch, match="space 'euclidean' vs 'cosine'"):
        Store(tmp_path, other)


def test_save_trims_the_wal_but_keeps_what_the_older_snapshot_lacks(tmp_path: Path) -> None:
    store = Store(tmp_path)
    expected = store.add(0, 10)
    store.save()
    first_segments = _segments(tmp_path)
    assert len(first_segments) == 2  # one snapshot only: the log is kept whole
    expected |= store.add(10, 10)
    store.save()
    expected |= store.add(20, 10)
    store.save()
    # Three saves: snapshots 2 and 3 kept; segments holding only what 2 has are gone.
    assert [p.name for p in snapshot_dirs(tmp_path)] == ["000000000002", "000000000003"]
    assert not first_segments[0].exists()
    expected |= store.add(30, 10)  # after the last snapshot: only in the WAL
    store.close()

    again = Store(tmp_path)
    assert again.report.replayed == 1
    _assert_holds(again.index, expected)


def test_a_corrupt_newest_snapshot_falls_back_to_the_previous_one_plus_the_wal(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = Store(tmp_path)
    expected = store.add(0, 10)
    store.save()
    expected |= store.add(10, 10)
    store.index.delete([4])
    del expected[4]
    store.save()
    expected |= store.add(20, 10)
    store.close()
    newest = snapshot_dirs(tmp_path)[-1]
    raw = bytearray((newest / "index.voyager").read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    (newest / "index.voyager").write_bytes(bytes(raw))

    with caplog.at_level(logging.ERROR, logger="fsserver.storage.snapshot"):
        again = Store(tmp_path)
    assert str(newest / "index.voyager") in caplog.text
    assert [p.name for p in snapshot_dirs(tmp_path)] == ["000000000001"]
    assert (tmp_path / "snapshots" / f"{newest.name}.corrupt").is_dir()
    _assert_holds(again.index, expected)
    again.save()  # life goes on: a new snapshot, numbered after the good one
    assert [p.name for p in snapshot_dirs(tmp_path)] == ["000000000001", "000000000002"]


def test_no_intact_snapshot_and_a_trimmed_wal_refuses_to_start(tmp_path: Path) -> None:
    store = Store(tmp_path)
    for start in (0, 10, 20):
        store.add(start, 10)
        store.save()
    store.close()
    for directory in snapshot_dirs(tmp_path):
        (directory / "records.jsonl").write_text("{}\n")
    with pytest.raises(SnapshotCorrupt, match="no intact snapshot") as error:
        Store(tmp_path)
    assert "records.jsonl" in str(error.value)


def test_a_wal_that_skips_records_after_the_snapshot_is_refused(tmp_path: Path) -> None:
    store = Store(tmp_path)
    store.add(0, 10)
    store.save()
    store.add(10, 10)
    store.save()  # rotates: records after this go to a new segment
    store.add(20, 10)
    store.save()
    store.add(30, 10)
    store.close()
    # Put the oldest snapshot back as the only one: the WAL no longer reaches back to it.
    snapshots = snapshot_dirs(tmp_path)
    shutil.rmtree(snapshots[-1])
    manifest = snapshots[0] / "manifest.json"
    text = manifest.read_text().replace('"wal_lsn": 2', '"wal_lsn": 1')
    manifest.write_text(text)
    with pytest.raises(WalCorrupt, match="records are missing"):
        Store(tmp_path)


# ---- a crash at each step of Save -------------------------------------------------------


class Crash(BaseException):
    """Stands for the process dying: nothing after it runs."""


@pytest.mark.parametrize("step", range(1, 9))
def test_a_crash_at_any_step_of_save_loses_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, step: int
) -> None:
    store = Store(tmp_path)
    expected = store.add(0, 20)
    store.save()
    expected |= store.add(20, 20)
    store.index.delete([1, 25])
    del expected[1], expected[25]
    store.save()
    expected |= store.add(40, 20)

    # Steps of the third save: fsync of each of 4 files, of the temp dir, of the parent
    # after the rename; removal of the oldest snapshot; the WAL trim. Crash at one of them.
    calls = {"n": 0}

    def crash_at_step(real):  # type: ignore[no-untyped-def]
        def wrapper(*args, **kwargs):  # type: ignore[no-untyped-def]
            calls["n"] += 1
            if calls["n"] == step:
                raise Crash
            return real(*args, **kwargs)

        return wrapper

    monkeypatch.setattr(snapshot_module, "fsync_path", crash_at_step(snapshot_module.fsync_path))
    monkeypatch.setattr(store.wal, "trim", crash_at_step(store.wal.trim))
    monkeypatch.setattr(snapshot_module.shutil, "rmtree", crash_at_step(shutil.rmtree))
    with pytest.raises(Crash):
        store.save()
    store.close()
    monkeypatch.undo()

    again = Store(tmp_path)
    _assert_holds(again.index, expected)
    for gone in (1, 25):
        assert gone not in again.index
    again.add(100, 5)  # and it goes on
    again.save()
    assert not list((tmp_path / "snapshots").glob(".tmp-*"))


def test_a_corrupt_only_snapshot_is_rebuilt_from_the_whole_wal(tmp_path: Path) -> None:
    store = Store(tmp_path)
    expected = store.add(0, 10)
    store.save()
    expected |= store.add(10, 10)
    store.close()
    (snapshot_dirs(tmp_path)[0] / "manifest.json").write_text("{")
    again = Store(tmp_path)
    assert again.report.replayed == 2
    _assert_holds(again.index, expected)


def test_a_failed_wal_write_stores_nothing_and_leaves_the_log_clean(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = Store(tmp_path)
    expected = store.add(0, 10)
    real_write = wal_module.os.write

    def full_disk(fd: int, data: bytes) -> int:
        real_write(fd, bytes(data)[: len(data) // 2])  # a partial write, then the error
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(wal_module.os, "write", full_disk)
    with pytest.raises(WalWriteFailed, match="No space left"):
        store.add(10, 10)
    monkeypatch.undo()
    assert store.index.count == 10 and 10 not in store.index  # not applied either
    expected |= store.add(20, 10)  # the log goes on, with no torn record in between
    store.close()
    again = Store(tmp_path)
    assert (again.report.replayed, again.report.dropped) == (2, 0)
    _assert_holds(again.index, expected)


def test_a_failed_fsync_refuses_further_writes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = Store(tmp_path)
    store.add(0, 5)

    def failing_fsync(fd: int) -> None:
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(wal_module.os, "fdatasync", failing_fsync)
    with pytest.raises(WalWriteFailed, match="fsync"):
        store.add(10, 5)
    monkeypatch.undo()
    with pytest.raises(WalWriteFailed, match="unusable"):
        store.index.delete([0])
    assert store.index.count == 5 and 0 in store.index


def test_a_change_that_cannot_be_applied_is_taken_back_out_of_the_log(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = Store(tmp_path)
    expected = store.add(0, 10)

    def refuse(*args: object) -> None:
        raise RuntimeError("the index refused the rows")

    monkeypatch.setattr(index_module, "insert", refuse)
    with pytest.raises(RuntimeError, match="refused"):
        store.add(5, 10, label="y")  # an upsert of 5..9 and new 10..14
    monkeypatch.undo()
    _assert_holds(store.index, expected)  # labels of 5..9 rolled back too
    expected |= store.add(20, 5)
    store.close()
    again = Store(tmp_path)
    assert (again.report.replayed, again.report.dropped) == (2, 0)
    _assert_holds(again.index, expected)
