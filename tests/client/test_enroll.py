"""`fsclient add`'s enrollment against a real face server: files, labels, and which
result goes with which file."""

from __future__ import annotations

import io
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from fsclient.enroll import Enrollment, EnrollOptions
from fsclient.progress import ProgressBar
from fsclient.sources import LocalFileError, collect_sources
from support import RunningServer


@pytest.fixture
def photos(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, faces_dir: Path) -> Path:
    """Real photos under odd names and extensions, a .npy of 2 rows, and files to skip."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "photos" / "bob").mkdir(parents=True)
    shutil.copy(faces_dir / "img2.jpg", tmp_path / "photos" / "b.JPG")
    shutil.copy(faces_dir / "img1.jpg", tmp_path / "photos" / "a.png")
    shutil.copy(faces_dir / "img3.jpg", tmp_path / "photos" / "bob" / "c.webp")
    (tmp_path / "photos" / "notes.txt").write_text("skipped")
    (tmp_path / "photos" / ".hidden.jpg").write_bytes(b"skipped")
    np.save(tmp_path / "photos" / "rows.npy", np.ones((2, 128), np.float32))
    return tmp_path


@pytest.fixture
def face_server(start_server: Callable[..., RunningServer]) -> RunningServer:
    return start_server()


def enroll(server: RunningServer, options: EnrollOptions, *paths: str) -> Enrollment:
    enrollment = Enrollment(options)
    bar = ProgressBar(1, io.StringIO(), enabled=False)
    with server.client() as client:
        enrollment.run(client, collect_sources(paths), bar)
    return enrollment


def stored(server: RunningServer, enrollment: Enrollment) -> list[tuple[str, str]]:
    """(label, metadata) as the server holds them, in the order the items were sent."""
    with server.client() as client:
        items = [client.get(o.result.id) for o in enrollment.outcomes if o.result.id is not None]
    return [(item.label, item.metadata) for item in items]


def test_folders_are_walked_sorted_and_labelled_by_the_path_as_given(
    photos: Path, face_server: RunningServer
) -> None:
    enrollment = enroll(face_server, EnrollOptions(keep_outcomes=True), "photos/")
    names = ["photos/a.png", "photos/b.JPG", "photos/bob/c.webp"]
    names += ["photos/rows.npy#0", "photos/rows.npy#1"]
    assert [o.source for o in enrollment.outcomes] == names
    assert [o.result.id for o in enrollment.outcomes] == [0, 1, 2, 3, 4]
    assert stored(face_server, enrollment) == [(name, "") for name in names]
    assert enrollment.added == 5 and enrollment.last_id == 4
    with face_server.client() as client:
        np.testing.assert_allclose(client.get(3).vector, np.ones(128))
        assert client.get(0).thumbnail and not client.get(3).thumbnail


def test_label_options_and_failures(photos: Path, face_server: RunningServer) -> None:
    (photos / "photos" / "bob" / "bad.jpg").write_bytes(b"bad")
    enrollment = enroll(
        face_server,
        EnrollOptions(label_from_dir=True, metadata="{}", batch_size=1, keep_outcomes=True),
        "photos/bob",
    )
    assert [f.source for f in enrollment.failures] == ["photos/bob/bad.jpg"]
    assert enrollment.failures[0].result.error is not None
    assert enrollment.failures[0].result.error.code_name == "INVALID_ARGUMENT"
    assert enrollment.added == 1
    assert stored(face_server, enrollment) == [("bob", "{}")]

    enrollment = enroll(
        face_server, EnrollOptions(label="alice", id=9, keep_outcomes=True), "photos/a.png"
    )
    assert enrollment.last_id == 9
    assert stored(face_server, enrollment) == [("alice", "")]


def test_a_file_gone_since_listing_fails_alone(photos: Path, face_server: RunningServer) -> None:
    sources = collect_sources(["photos/a.png", "photos/b.JPG"])
    (photos / "photos" / "a.png").unlink()
    enrollment = Enrollment(EnrollOptions())
    with face_server.client() as client:
        enrollment.run(client, sources, ProgressBar(2, io.StringIO(), enabled=False))
    assert enrollment.added == 1
    assert [f.source for f in enrollment.failures] == ["photos/a.png"]
    assert enrollment.failures[0].result.error is not None
    assert enrollment.failures[0].result.error.code_name == "NOT_FOUND"


def test_missing_paths_empty_folders_and_bad_npy_are_refused(photos: Path) -> None:
    with pytest.raises(LocalFileError, match=r"cannot read nope\.jpg"):
        collect_sources(["nope.jpg"])
    (photos / "empty").mkdir()
    with pytest.raises(LocalFileError, match=r"no images or \.npy files in empty"):
        collect_sources(["empty"])
    np.save(photos / "cube.npy", np.ones((2, 2, 2)))
    with pytest.raises(LocalFileError, match="1-D or 2-D"):
        collect_sources(["cube.npy"])
