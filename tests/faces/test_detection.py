"""--align dlib --detector dlib: dlib's HOG detector, scanning small photos at upsample 1 and
larger ones at upsample 0, then 1.5x larger where that finds nothing (contract detection
"dlib-hog-250k"), on the real model and photos.

Speed is measured by the benchmark, not here: these check what is found and who it is.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import cv2
import numpy as np
import pytest

from fsserver.contract import DETECTION_HOG
from fsserver.faces.embedder import Embedder, Faces, StageTimes, _hog_detector, embed_bytes
from fsserver.faces.images import decode_image

MAX_SIDE = 640  # the server's default --max-image-side
MAX_PIXELS = 120_000_000
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
# Faces in every photo of ../shared/faces with DeepFace's dlib detector (upsample 1):
# one each, two in couple.jpg and four in selfie-many-people.jpg.
FACES_IN_FOLDER = 69
SMALL_FACE = 40  # px: below the HOG window (80 px), found only at upsample 1
PROBE = "img1.jpg"  # scaled down until its face is SMALL_FACE wide


@pytest.fixture(scope="module")
def embedder(dlib_embedder: Embedder) -> Embedder:
    assert (dlib_embedder.alignment, dlib_embedder.detection) == ("dlib", DETECTION_HOG)
    return dlib_embedder


@pytest.fixture(scope="module")
def folder(embedder: Embedder, faces_dir: Path) -> dict[str, Faces]:
    """Every photo of the folder (labelled or not) → its faces: the slow part, once."""
    photos = sorted(p for p in faces_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    return {p.name: embed_bytes(embedder, p.read_bytes(), MAX_SIDE, MAX_PIXELS) for p in photos}


def png(pixels: np.ndarray) -> bytes:
    ok, encoded = cv2.imencode(".png", pixels)
    assert ok
    return bytes(encoded.tobytes())


def test_every_face_of_the_folder_is_found(folder: dict[str, Faces]) -> None:
    assert len(folder) >= 64
    found = sum(len(faces) for faces in folder.values())
    assert found >= FACES_IN_FOLDER, {name: len(faces) for name, faces in folder.items()}
    assert all(folder.values()), [name for name, faces in folder.items() if not faces]
    assert len(folder["couple.jpg"]) == 2 and len(folder["selfie-many-people.jpg"]) == 4
    for faces in folder.values():
        for detected in faces:
            assert 0 <= detected.face.confidence <= 1
            box = detected.face.box
            assert box is not None and box.x >= 0 and box.y >= 0 and box.width > 0


@pytest.mark.parametrize(
    ("face_px", "frame"),
    [
        (SMALL_FACE, (360, 480)),  # a small photo: scanned at upsample 1
        (48, (480, 640)),  # a full-size one: upsample 0 misses it, the 1.5x rescan finds it
    ],
)
def test_a_small_face_is_found_and_is_the_right_person(
    embedder: Embedder,
    folder: dict[str, Faces],
    faces_dir: Path,
    identities: dict[str, str],
    face_px: int,
    frame: tuple[int, int],
) -> None:
    photo = decode_image((faces_dir / PROBE).read_bytes(), MAX_SIDE)
    (big,) = folder[PROBE]
    assert big.face.box is not None
    width_at_640 = big.face.box.width * photo.scale
    scale = face_px / width_at_640
    small = cv2.resize(photo.pixels, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    # The small photo in a larger grey frame: a far-away face in an ordinary photo.
    canvas = np.full((*frame, 3), 110, np.uint8)
    canvas[100 : 100 + small.shape[0], 150 : 150 + small.shape[1]] = small
    rgb = np.ascontiguousarray(canvas[:, :, ::-1])
    assert len(_hog_detector().run(rgb, 0)[0]) == 0  # too small for upsample 0 alone

    faces = embed_bytes(embedder, png(canvas), MAX_SIDE, MAX_PIXELS)
    assert len(faces) == 1
    box = faces[0].face.box
    assert box is not None and 0.7 * face_px <= box.width <= 1.5 * face_px, box
    centre = (box.x + box.width / 2, box.y + box.height / 2)
    assert 150 < centre[0] < 150 + small.shape[1] and 100 < centre[1] < 100 + small.shape[0]
    # Identified against every other labelled photo's largest face.
    others = [f for f in sorted(identities) if f != PROBE]
    gallery = np.stack([folder[f][0].face.embedding for f in others])
    distances = np.linalg.norm(gallery - faces[0].face.embedding, axis=1)
    nearest = others[int(distances.argmin())]
    assert identities[nearest] == identities[PROBE], (nearest, float(distances.min()))


@pytest.mark.parametrize("scene", ["grey", "landscape"])
def test_no_face_gives_no_faces(embedder: Embedder, scene: str) -> None:
    if scene == "grey":
        pixels = np.full((480, 640, 3), 128, np.uint8)
    else:  # sky, rolling hills, a sun, some noise
        rows, cols = np.mgrid[0:480, 0:640]
        pixels = np.zeros((480, 640, 3), np.uint8)
        pixels[..., 0] = np.clip(255 - rows * 0.3, 0, 255)
        pixels[..., 1] = np.clip(180 - rows * 0.1, 0, 255)
        pixels[..., 2] = 120
        hills = 300 + 40 * np.sin(cols / 70.0) + 20 * np.sin(cols / 23.0)
        pixels[rows > hills] = (40, 140, 60)
        cv2.circle(pixels, (500, 90), 40, (80, 220, 255), -1)
        noise = np.random.default_rng(0).integers(-12, 13, pixels.shape)
        pixels = np.clip(pixels.astype(np.int16) + noise, 0, 255).astype(np.uint8)
    faces = embed_bytes(embedder, png(pixels), MAX_SIDE, MAX_PIXELS)
    assert faces == []
    times = faces.stage_times
    assert times.decode > 0 and times.detect > 0  # both passes ran; nothing after them
    assert times.align == times.embed == times.thumbnail == 0


def test_stage_times_come_with_the_faces(folder: dict[str, Faces]) -> None:
    times = folder["couple.jpg"].stage_times
    assert isinstance(times, StageTimes)
    stages = (times.decode, times.detect, times.align, times.embed, times.thumbnail)
    assert all(t > 0 for t in stages), times
    assert times.total == pytest.approx(sum(stages))
    # Pickled as worker processes send them back, times included.
    copy = pickle.loads(pickle.dumps(folder["couple.jpg"]))
    assert isinstance(copy, Faces) and copy.stage_times == times
    assert [f.face.box for f in copy] == [f.face.box for f in folder["couple.jpg"]]
