"""The HTTP edge's face routes against the real Dlib model: the same answers as gRPC's.

Uses the session's gallery server (conftest.py): some photos of each person enrolled,
the rest held out, one person never enrolled.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import requests

from support import Gallery, RunningServer

TIMEOUT = 120


def _b64(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode()


def test_embed_by_upload_equals_grpc_embed(gallery: Gallery, faces_dir: Path) -> None:
    photo = faces_dir / sorted(gallery.probes)[0]
    with photo.open("rb") as f:
        answer = requests.post(
            f"{gallery.server.http_url}/v1/collections/default/embed",
            files={"image": (photo.name, f, "image/jpeg")},
            timeout=TIMEOUT,
        )
    assert answer.status_code == 200, answer.text
    faces = answer.json()["faces"]
    with gallery.server.client() as client:
        expected = client.embed(photo)
    assert len(faces) == len(expected.faces) >= 1
    assert faces[0]["box"]["width"] == expected.faces[0].box.width
    assert np.allclose(faces[0]["embedding"], expected.faces[0].embedding, atol=1e-6)


def test_identify_names_the_enrolled_and_not_the_stranger(
    gallery: Gallery, faces_dir: Path
) -> None:
    url = f"{gallery.server.http_url}/v1/collections/default/identify"
    probe = sorted(gallery.probes)[0]
    stranger = sorted(gallery.strangers)[0]
    with gallery.server.client() as client:
        for file in (probe, stranger):
            answer = requests.post(url, json={"image": _b64(faces_dir / file)}, timeout=TIMEOUT)
            assert answer.status_code == 200, answer.text
            got = answer.json()["results"][0]
            want = client.identify(image=faces_dir / file).results[0]
            assert (got["known"], got["person"]) == (want.known, want.person)
            assert got["similarity"] == pytest.approx(want.similarity, abs=1e-6)
    named = requests.post(url, json={"image": _b64(faces_dir / probe)}, timeout=TIMEOUT).json()
    # The gallery's labels are file names; its metadata holds the person.
    best = named["results"][0]["candidates"][0]
    with gallery.server.client() as client:
        assert client.get(best["id"]).metadata == gallery.probes[probe]


def test_verify_and_thumbnails(gallery: Gallery, faces_dir: Path) -> None:
    base = f"{gallery.server.http_url}/v1/collections/default"
    enrolled = sorted(gallery.enrolled)
    # Labels are file names: the enrolled photo against itself, then against a stranger's.
    photo, stranger = faces_dir / enrolled[0], faces_dir / sorted(gallery.strangers)[0]
    verdict = requests.post(
        f"{base}/verify", json={"image": _b64(photo), "person": enrolled[0]}, timeout=TIMEOUT
    ).json()
    assert verdict["same"] is True and verdict["distance"] < 0.05, verdict
    with photo.open("rb") as a, stranger.open("rb") as b:
        pair = requests.post(
            f"{base}/verify", files={"image": a, "other_image": b}, timeout=TIMEOUT
        ).json()
    with gallery.server.client() as client:
        want = client.verify(photo, stranger)
    assert pair["same"] is want.same is False
    assert pair["distance"] == pytest.approx(want.distance, abs=1e-5)
    thumbnail = requests.get(f"{base}/people/{enrolled[0]}/thumbnail", timeout=TIMEOUT)
    assert thumbnail.status_code == 200 and thumbnail.headers["content-type"] == "image/jpeg"
    assert thumbnail.content[:2] == b"\xff\xd8" and len(thumbnail.content) < 20_000
    item = requests.get(f"{base}/items", params={"label": enrolled[0]}, timeout=TIMEOUT).json()
    by_id = requests.get(f"{base}/items/{item['items'][0]['id']}/thumbnail", timeout=TIMEOUT)
    assert by_id.content == thumbnail.content


def test_enroll_by_upload_into_a_new_face_collection(gallery: Gallery, faces_dir: Path) -> None:
    url = f"{gallery.server.http_url}/v1/collections"
    created = requests.post(url, json={"name": "uploads", "model": "Dlib"}, timeout=TIMEOUT)
    assert created.status_code == 201, created.text
    try:
        files = sorted(gallery.enrolled)[:2]
        uploads = [("image", (f, (faces_dir / f).read_bytes(), "image/jpeg")) for f in files]
        added = requests.post(
            f"{url}/uploads/add", files=uploads, data={"label": "someone"}, timeout=TIMEOUT
        ).json()
        assert [item["ok"] for item in added["items"]] == [True, True]
        assert [item["id"] for item in added["items"]] == [0, 1]
        people = requests.get(f"{url}/uploads/people", timeout=TIMEOUT).json()
        assert people["people"] == [{"label": "someone", "count": 2}]
        # A path sent where the image's bytes belong is named as such.
        wrong = requests.post(
            f"{url}/uploads/query",
            files={"image": ("x", str(faces_dir / files[0]).encode(), "image/jpeg")},
            timeout=TIMEOUT,
        )
        assert wrong.status_code == 400 and wrong.json()["code"] == "INVALID_ARGUMENT"
    finally:
        requests.delete(f"{url}/uploads", timeout=TIMEOUT)


def test_no_thumbnails_keeps_none(
    start_server: Callable[..., RunningServer], faces_dir: Path, gallery: Gallery
) -> None:
    server = start_server(http="127.0.0.1:0", thumbnails=False)
    photo = faces_dir / sorted(gallery.enrolled)[0]
    with server.client() as client:
        (added,) = client.add_images([photo], labels=["someone"])
        assert added.ok and client.get(added.id).thumbnail == b""
    base = f"{server.http_url}/v1/collections/default"
    missing = requests.get(f"{base}/items/{added.id}/thumbnail", timeout=TIMEOUT)
    assert missing.status_code == 404 and "--no-thumbnails" in missing.json()["message"]
    with gallery.server.client() as client:  # the gallery's server keeps them, as by default
        assert client.get(0).thumbnail[:2] == b"\xff\xd8"
