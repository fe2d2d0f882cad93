"""`fsserver enroll`: Ray Data embeds real photos in actors (the real Dlib model, loaded once
each) and adds them to a real server whose index is split over Ray shards."""

from __future__ import annotations

import csv
import io
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from fsserver.shards.enroll import NO_FACE, enroll
from support import RunningServer

pytestmark = [pytest.mark.ray, pytest.mark.usefixtures("ray_cluster")]


def _photos(faces_dir: Path, identities: dict[str, str], people: int, each: int) -> list[Path]:
    by_person: dict[str, list[str]] = {}
    for file in sorted(identities):
        by_person.setdefault(identities[file], []).append(file)
    chosen = sorted(by_person)[:people]
    return [faces_dir / f for person in chosen for f in by_person[person][:each]]


def _face_server(start_server: Callable[..., RunningServer]) -> RunningServer:
    return start_server(backend="ray", shards=2, shard_cpus=0.25, embed_workers=0)


def test_a_folder_is_embedded_on_ray_and_added_to_the_shards(
    start_server: Callable[..., RunningServer],
    faces_dir: Path,
    identities: dict[str, str],
    tmp_path: Path,
) -> None:
    source = tmp_path / "photos"
    photos = _photos(faces_dir, identities, people=2, each=3)
    for photo in photos:  # one folder per person: --label-from-dir
        (source / identities[photo.name]).mkdir(parents=True, exist_ok=True)
        shutil.copy(photo, source / identities[photo.name] / photo.name)
    (source / "blank.png").write_bytes(_blank_png())  # decodes, holds no face
    (source / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    server = _face_server(start_server)
    progress = io.StringIO()
    summary = enroll(
        source,
        server.address,
        workers=2,
        worker_cpus=0.5,
        batch_size=2,
        label_from_dir=True,
        out=progress,
    )
    assert summary.added == len(photos)
    refused = {Path(path).name: why for path, why in summary.refused}
    assert set(refused) == {"blank.png", "broken.jpg"}
    assert refused["blank.png"] == NO_FACE
    assert "enroll:" in progress.getvalue()
    with server.client() as client:
        assert client.stats().count == len(photos)
        # Each photo's stored vector is what the server's own embedding of it gives.
        matches = client.query(image=photos[0], k=1).results[0].neighbors
        assert matches[0].distance < 1e-4
        assert matches[0].label == identities[photos[0].name]
        assert matches[0].metadata == f"{identities[photos[0].name]}/{photos[0].name}"


def test_a_csv_list_with_relative_paths_and_labels(
    start_server: Callable[..., RunningServer],
    faces_dir: Path,
    identities: dict[str, str],
    tmp_path: Path,
) -> None:
    photos = _photos(faces_dir, identities, people=1, each=2)
    listing = tmp_path / "list.csv"
    for photo in photos:
        shutil.copy(photo, tmp_path / photo.name)
    with listing.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["path", "label"])
        writer.writerows([photo.name, f"person-{photo.stem}"] for photo in photos)
        writer.writerow(["missing.jpg", "nobody"])
    server = _face_server(start_server)
    summary = enroll(
        listing, server.address, workers=1, worker_cpus=0.5, batch_size=4, out=io.StringIO()
    )
    assert summary.added == len(photos)
    assert [Path(path).name for path, _ in summary.refused] == ["missing.jpg"]
    with server.client() as client:
        labels = {client.get(id).label for id in range(len(photos))}
        assert labels == {f"person-{photo.stem}" for photo in photos}
        vector = client.get(0).vector
        assert vector.shape == (128,) and np.isfinite(vector).all()


def _blank_png() -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (320, 240), (200, 200, 200)).save(buffer, format="PNG")
    return buffer.getvalue()
