"""`fsclient add` without a server: which files, which labels, which result goes with what."""

from __future__ import annotations

import io
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
import pytest

from fsclient.enroll import Enrollment, EnrollOptions
from fsclient.progress import ProgressBar
from fsclient.sources import LocalFileError, collect_sources
from fsclient.types import AddItem, AddResult, ItemError


@pytest.fixture
def photos(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "photos" / "bob").mkdir(parents=True)
    (tmp_path / "photos" / "b.JPG").write_bytes(b"b")
    (tmp_path / "photos" / "a.png").write_bytes(b"a")
    (tmp_path / "photos" / "notes.txt").write_text("skipped")
    (tmp_path / "photos" / ".hidden.jpg").write_bytes(b"skipped")
    (tmp_path / "photos" / "bob" / "c.webp").write_bytes(b"c")
    np.save(tmp_path / "photos" / "rows.npy", np.ones((2, 3), np.float32))
    return tmp_path


class FakeClient:
    """Answers each batch like the server: ids in order, images named 'bad' fail."""

    def __init__(self) -> None:
        self.sent: list[AddItem] = []
        self.batch_sizes: list[int] = []

    def add(self, items: Iterable[AddItem], *, batch_size: int = 64) -> Iterator[list[AddResult]]:
        batch: list[AddItem] = []
        for item in [*items, None]:
            if item is not None:
                batch.append(item)
            if batch and (item is None or len(batch) == batch_size):
                self.batch_sizes.append(batch_size)
                yield [self._answer(i) for i in batch]
                batch = []

    def _answer(self, item: AddItem) -> AddResult:
        self.sent.append(item)
        if item.image == b"bad":
            return AddResult(id=None, error=ItemError(3, "not an image"))
        return AddResult(id=len(self.sent) - 1)


def enroll(options: EnrollOptions, *paths: str) -> tuple[Enrollment, FakeClient]:
    client = FakeClient()
    enrollment = Enrollment(options)
    bar = ProgressBar(1, io.StringIO(), enabled=False)
    enrollment.run(client, collect_sources(paths), bar)  # type: ignore[arg-type]
    return enrollment, client


def test_folders_are_walked_sorted_and_labelled_by_the_path_as_given(photos: Path) -> None:
    enrollment, client = enroll(EnrollOptions(keep_outcomes=True), "photos/")
    assert [o.source for o in enrollment.outcomes] == [
        "photos/a.png",
        "photos/b.JPG",
        "photos/bob/c.webp",
        "photos/rows.npy#0",
        "photos/rows.npy#1",
    ]
    assert [item.label for item in client.sent] == [o.source for o in enrollment.outcomes]
    assert client.sent[3].vector is not None and client.sent[3].vector.shape == (3,)
    # Images and vectors go in separate streams, each with its own batch size.
    assert client.batch_sizes == [8, 1000]
    assert enrollment.added == 5 and enrollment.last_id == 4


def test_label_options_and_failures(photos: Path) -> None:
    (photos / "photos" / "bob" / "bad.jpg").write_bytes(b"bad")
    enrollment, client = enroll(
        EnrollOptions(label_from_dir=True, metadata="{}", batch_size=2), "photos/bob"
    )
    assert [item.label for item in client.sent] == ["bob", "bob"]
    assert {item.metadata for item in client.sent} == {"{}"}
    assert [f.source for f in enrollment.failures] == ["photos/bob/bad.jpg"]
    assert enrollment.added == 1

    enrollment, client = enroll(EnrollOptions(label="alice", id=9), "photos/a.png")
    assert (client.sent[0].label, client.sent[0].id) == ("alice", 9)


def test_a_file_gone_since_listing_fails_alone(photos: Path) -> None:
    client = FakeClient()
    sources = collect_sources(["photos/a.png", "photos/b.JPG"])
    (photos / "photos" / "a.png").unlink()
    enrollment = Enrollment(EnrollOptions())
    enrollment.run(client, sources, ProgressBar(2, io.StringIO(), enabled=False))  # type: ignore[arg-type]
    assert enrollment.added == 1
    assert [f.source for f in enrollment.failures] == ["photos/a.png"]
    assert enrollment.failures[0].result.error.code_name == "NOT_FOUND"  # type: ignore[union-attr]


def test_missing_paths_empty_folders_and_bad_npy_are_refused(photos: Path) -> None:
    with pytest.raises(LocalFileError, match=r"cannot read nope\.jpg"):
        collect_sources(["nope.jpg"])
    (photos / "empty").mkdir()
    with pytest.raises(LocalFileError, match=r"no images or \.npy files in empty"):
        collect_sources(["empty"])
    np.save(photos / "cube.npy", np.ones((2, 2, 2)))
    with pytest.raises(LocalFileError, match="1-D or 2-D"):
        collect_sources(["cube.npy"])
