"""The real Dlib model on the real photos, through a real server."""

from __future__ import annotations

from pathlib import Path

import cv2
import grpc
import numpy as np
import pytest

from fsclient import FaceSearchError
from support import Gallery


def test_enrolled_people_are_recognised_from_other_photos(
    gallery: Gallery, faces_dir: Path
) -> None:
    correct = matched = 0
    misses = []
    with gallery.server.client() as client:
        for file, person in sorted(gallery.probes.items()):
            result = client.query(image=faces_dir / file, k=3)
            top = result.results[0].neighbors[0]
            if top.metadata == person:
                correct += 1
                matched += top.match
            else:
                misses.append((file, person, top.label, top.metadata, round(top.distance, 3)))
            assert result.embed_seconds > 0
            assert 0 < result.search_seconds < result.embed_seconds
    total = len(gallery.probes)
    assert correct / total >= 0.9, f"top-1 {correct}/{total}; misses: {misses}"
    assert matched / total >= 0.9, f"match {matched}/{total}"


def test_a_person_never_enrolled_is_not_a_match(gallery: Gallery, faces_dir: Path) -> None:
    assert gallery.strangers
    with gallery.server.client() as client:
        for file in gallery.strangers:
            neighbours = client.query(image=faces_dir / file, k=5).results[0].neighbors
            assert neighbours, file
            assert not any(n.match for n in neighbours), (file, neighbours)


def test_embed_returns_every_face_with_box_and_confidence(
    gallery: Gallery, faces_dir: Path
) -> None:
    image = cv2.imread(str(faces_dir / "couple.jpg"))
    with gallery.server.client() as client:
        embedding = client.embed(faces_dir / "couple.jpg")
    assert (embedding.model, embedding.dim) == ("Dlib", 128)
    assert len(embedding.faces) == 2
    areas = []
    for face in embedding.faces:
        assert face.embedding.shape == (128,)
        assert face.confidence > 0
        assert face.box is not None
        # Boxes are in the coordinates of the photo as sent, not the downscaled copy.
        assert 0 <= face.box.x < image.shape[1] and 0 <= face.box.y < image.shape[0]
        assert face.box.width > 200
        areas.append(face.box.width * face.box.height)
    assert areas == sorted(areas, reverse=True)


def test_query_answers_each_face_of_a_group_photo(gallery: Gallery, faces_dir: Path) -> None:
    with gallery.server.client() as client:
        result = client.query(image=faces_dir / "couple.jpg", k=2)
    assert len(result.results) == 2
    for face_matches in result.results:
        assert face_matches.face is not None and face_matches.face.box is not None
        assert len(face_matches.neighbors) == 2


def test_enrolled_image_items_keep_a_face_thumbnail(gallery: Gallery) -> None:
    file = sorted(gallery.enrolled)[0]
    with gallery.server.client() as client:
        neighbour = client.query(id=0, k=1).results[0].neighbors[0]
        item = client.get(neighbour.id)
    assert item.label == file
    assert item.vector.shape == (128,)
    thumbnail = cv2.imdecode(np.frombuffer(item.thumbnail, np.uint8), cv2.IMREAD_COLOR)
    assert thumbnail is not None and thumbnail.shape[0] == thumbnail.shape[1] >= 64


def _encode(image: np.ndarray, extension: str) -> bytes:
    ok, data = cv2.imencode(extension, image)
    assert ok
    return data.tobytes()


def test_one_stream_with_bad_images_fails_only_those_items(start_server, faces_dir: Path) -> None:
    server = start_server()
    photo = (faces_dir / "img1.jpg").read_bytes()
    blank = _encode(np.full((300, 300, 3), 255, np.uint8), ".png")
    grey16 = _encode(
        cv2.cvtColor(cv2.imdecode(np.frombuffer(photo, np.uint8), 0), cv2.COLOR_GRAY2BGR).astype(
            np.uint16
        )
        * 256,
        ".png",
    )
    with server.client() as client:
        results = client.add_images(
            [photo, b"garbage bytes", blank, photo[: len(photo) // 3], b"", grey16],
            labels=["ok", "garbage", "blank", "truncated", "empty", "16-bit grey"],
        )
        codes = [r.error.code_name if r.error else "OK" for r in results]
        assert codes[0] == "OK" and results[0].faces_found == 1
        assert results[0].face is not None
        assert codes[1] == "INVALID_ARGUMENT"
        assert codes[2] == "FAILED_PRECONDITION" and "no face" in results[2].error.message
        assert codes[4] == "INVALID_ARGUMENT" and "empty" in results[4].error.message
        assert codes[5] == "OK", results[5]  # 16-bit grey PNGs decode to 8-bit colour
        # A truncated JPEG decodes partially or not at all: never an INTERNAL error.
        assert codes[3] in {"OK", "INVALID_ARGUMENT", "FAILED_PRECONDITION"}
        assert client.stats().count == codes.count("OK")


@pytest.mark.parametrize(
    ("image", "code"),
    [
        (b"not an image", grpc.StatusCode.INVALID_ARGUMENT),
        (b"", grpc.StatusCode.INVALID_ARGUMENT),
        # Bytes are decoded as an image, never handed to DeepFace (which fetches URLs).
        (b"http://127.0.0.1:9/face.jpg", grpc.StatusCode.INVALID_ARGUMENT),
        ("blank", grpc.StatusCode.FAILED_PRECONDITION),
    ],
)
def test_bad_images_get_their_status_and_the_server_keeps_serving(
    gallery: Gallery, image: bytes | str, code: grpc.StatusCode
) -> None:
    if image == "blank":
        image = _encode(np.full((200, 200, 3), 128, np.uint8), ".jpg")
    assert isinstance(image, bytes)
    with gallery.server.client() as client:
        for call in (client.embed, lambda i: client.query(image=i, k=1)):
            with pytest.raises(FaceSearchError) as error:
                call(image)
            assert error.value.code == code
        assert client.stats().count == len(gallery.enrolled)
