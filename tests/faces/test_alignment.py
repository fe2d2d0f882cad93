"""--align: the Dlib model fed dlib's own 5-point face chips, on the real model and photos.

One embedder per pipeline for the module (DeepFace caches the model itself, so the servers
started here with `--embed-workers 0` load it again in milliseconds).
"""

from __future__ import annotations

import json
import struct
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest

from fsclient.types import Box, Stats
from fsserver.api.server import FaceSearchServer
from fsserver.config import Config, parse_config
from fsserver.contract import DETECTION_HOG, EmbeddingContract
from fsserver.errors import ContractMismatch
from fsserver.faces.embedder import DeepFaceEmbedder, DetectedFace
from fsserver.faces.images import decode_image
from fsserver.faces.pool import EmbedPool
from fsserver.shards.enroll import _alignment
from fsserver.storage.wal import MAGIC
from support import RunningServer

MAX_SIDE = 640  # the server's default --max-image-side
# Leave-one-out top-1 on ../shared/faces with the dlib chips: measured 61/61 (100%).
LOO_TOP1 = 0.96


@pytest.fixture(scope="module")
def chips(faces_dir: Path) -> DeepFaceEmbedder:
    return DeepFaceEmbedder("Dlib", "dlib", "dlib")


@pytest.fixture(scope="module")
def embedded(chips: DeepFaceEmbedder, faces_dir: Path, identities: dict[str, str]) -> dict:
    """Every labelled photo's faces, dlib pipeline (the slow part: once per module)."""
    return {file: embed(chips, faces_dir / file) for file in sorted(identities)}


def embed(embedder: DeepFaceEmbedder, path: Path) -> list[DetectedFace]:
    return embedder.embed(decode_image(path.read_bytes(), MAX_SIDE))


def iou(a: Box, b: Box) -> float:
    w = min(a.x + a.width, b.x + b.width) - max(a.x, b.x)
    h = min(a.y + a.height, b.y + b.height) - max(a.y, b.y)
    inter = max(w, 0) * max(h, 0)
    return inter / (a.width * a.height + b.width * b.height - inter)


# ---- the pipeline ----------------------------------------------------------------------


def test_auto_is_dlib_for_the_dlib_model_only() -> None:
    assert Config().alignment == "dlib"
    assert Config(model="Facenet").alignment == "deepface"
    assert Config(align="deepface").alignment == "deepface"
    assert Config(dim=8, model="Dlib").alignment == ""  # vector-only: no faces to align


def test_dlib_chips_find_every_face_with_boxes_in_the_photo(
    chips: DeepFaceEmbedder, faces_dir: Path
) -> None:
    assert (chips.alignment, chips.dim) == ("dlib", 128)
    photo = cv2.imread(str(faces_dir / "couple.jpg"))
    faces = embed(chips, faces_dir / "couple.jpg")
    assert len(faces) == 2
    boxes = [f.face.box for f in faces]
    assert all(b is not None for b in boxes)
    areas = [b.width * b.height for b in boxes if b is not None]
    assert areas == sorted(areas, reverse=True)  # largest first
    for detected in faces:
        face, box = detected.face, detected.face.box
        assert box is not None and face.embedding.shape == (128,)
        assert face.embedding.dtype == np.float32 and np.isfinite(face.embedding).all()
        assert 0 < face.confidence <= 1
        # In the photo's own coordinates (it is larger than the 640 px it is detected at).
        assert box.x >= 0 and box.x + box.width <= photo.shape[1] + 1
        assert box.y >= 0 and box.y + box.height <= photo.shape[0] + 1
        assert detected.thumbnail.startswith(b"\xff\xd8")  # a JPEG thumbnail, as before
    # dlib's HOG finds the same faces as DeepFace's own pipeline (whose boxes are those
    # found at upsample 1 on its black-bordered copy, turned with the face as it levels the
    # eyes; at upsample 0 the sizes step more coarsely, so the order may differ).
    deepface = embed(DeepFaceEmbedder("Dlib", "dlib", "deepface"), faces_dir / "couple.jpg")
    theirs = [f.face.box for f in deepface if f.face.box is not None]
    assert len(theirs) == len(boxes)
    for box in boxes:
        assert box is not None
        assert max(iou(box, other) for other in theirs) > 0.6, (box, theirs)


def test_no_face_is_an_empty_list(chips: DeepFaceEmbedder) -> None:
    grey = np.full((200, 300, 3), 128, np.uint8)
    ok, encoded = cv2.imencode(".png", grey)
    assert ok
    assert chips.embed(decode_image(encoded.tobytes(), MAX_SIDE)) == []


def test_the_same_person_is_closer_than_another(
    embedded: dict[str, list[DetectedFace]], identities: dict[str, str]
) -> None:
    by_person: dict[str, list[str]] = {}
    for file, person in sorted(identities.items()):
        by_person.setdefault(person, []).append(file)
    first, second = [p for p in sorted(by_person) if len(by_person[p]) >= 2][:2]

    def vector(file: str) -> np.ndarray:
        return embedded[file][0].face.embedding

    a1, a2 = by_person[first][:2]
    b1 = by_person[second][0]
    same = float(np.linalg.norm(vector(a1) - vector(a2)))
    other = float(np.linalg.norm(vector(a1) - vector(b1)))
    assert same < 0.6 < other, (same, other)  # 0.6: dlib's (and DeepFace's) threshold


def test_leave_one_out_nearest_neighbour(
    embedded: dict[str, list[DetectedFace]], identities: dict[str, str]
) -> None:
    files = [f for f in sorted(identities) if embedded[f]]
    assert len(files) == len(identities), "a labelled photo without a face"
    vectors = np.stack([embedded[f][0].face.embedding for f in files])
    people = np.array([identities[f] for f in files])
    distances = np.linalg.norm(vectors[:, None, :] - vectors[None, :, :], axis=2)
    np.fill_diagonal(distances, np.inf)
    has_another = np.array([(people == p).sum() > 1 for p in people])
    nearest = people[distances.argmin(axis=1)]
    top1 = float((nearest == people)[has_another].mean())
    misses = [
        (f, p, n)
        for f, p, n, h in zip(files, people, nearest, has_another, strict=True)
        if h and p != n
    ]
    assert top1 >= LOO_TOP1, f"top-1 {top1:.3f}; misses {misses}"


def test_workers_embed_with_the_same_pipeline(chips: DeepFaceEmbedder, faces_dir: Path) -> None:
    photo = faces_dir / "couple.jpg"
    pool = EmbedPool(1, "Dlib", "dlib", MAX_SIDE, 120_000_000, alignment="dlib")
    try:
        assert pool.alignment == "dlib"
        remote = pool.embed(photo.read_bytes())
    finally:
        pool.close()
    local = embed(chips, photo)
    assert pool.detection == chips.detection == DETECTION_HOG
    assert [f.face.box for f in remote] == [f.face.box for f in local]
    # The worker's own stage times come back with the faces (decoding included).
    assert remote.stage_times.decode > 0 and remote.stage_times.embed > 0
    for theirs, ours in zip(remote, local, strict=True):
        assert np.allclose(theirs.face.embedding, ours.face.embedding, atol=1e-5)


# ---- the contract ----------------------------------------------------------------------


@pytest.fixture
def servers(tmp_path: Path) -> Iterator[list[RunningServer]]:
    started: list[RunningServer] = []
    yield started
    for running in started:
        running.stop()


def start(servers: list[RunningServer], data_dir: Path, align: str) -> RunningServer:
    """A face server loading its own model in-process, as `fsserver --embed-workers 0`."""
    config = Config(listen="127.0.0.1:0", data_dir=data_dir, align=align, embed_workers=0)
    running = RunningServer(FaceSearchServer(config).start(), data_dir)
    servers.append(running)
    return running


def make_data_dir(servers: list[RunningServer], data_dir: Path, align: str) -> None:
    """A face data dir under `align`: one vector in a snapshot, one more in the WAL."""
    running = start(servers, data_dir, align)
    assert running.server.catalog.default.contract().alignment == align
    with running.client() as client:
        client.add_vectors(np.full(128, 0.1, np.float32), labels=["a"], vector_model="Dlib")
        client.save()
        client.add_vectors(np.full(128, 0.2, np.float32), labels=["b"], vector_model="Dlib")
    running.server.stop(grace=1.0, save=False)  # leave the second in the WAL only
    servers.remove(running)


def test_the_contract_records_the_alignment(tmp_path: Path, servers: list[RunningServer]) -> None:
    make_data_dir(servers, tmp_path / "data", "dlib")
    manifest = json.loads(next((tmp_path / "data").glob("snapshots/*/manifest.json")).read_text())
    assert manifest["contract"]["alignment"] == "dlib"
    assert manifest["contract"]["detection"] == DETECTION_HOG
    for segment in (tmp_path / "data" / "wal").glob("*.wal"):
        assert wal_contract(segment)["alignment"] == "dlib"
        assert wal_contract(segment)["detection"] == DETECTION_HOG
    running = start(servers, tmp_path / "data", "auto")  # auto is dlib for Dlib
    with running.client() as client:
        assert client.stats().count == 2


def test_a_data_dir_made_under_another_alignment_is_refused(
    tmp_path: Path, servers: list[RunningServer]
) -> None:
    make_data_dir(servers, tmp_path / "data", "deepface")
    with pytest.raises(ContractMismatch) as error:
        start(servers, tmp_path / "data", "dlib")
    assert error.value.code == "FAILED_PRECONDITION"
    assert "alignment 'deepface' vs 'dlib'" in str(error.value)


def wal_contract(segment: Path) -> dict:
    data = segment.read_bytes()
    (size,) = struct.unpack_from("<I", data, len(MAGIC))
    return dict(json.loads(data[len(MAGIC) + 4 : len(MAGIC) + 4 + size]))


def strip_field(data_dir: Path, field: str) -> None:
    """Rewrite the snapshots' and WAL segments' contracts as the release before `field`
    (alignment: --align; detection: the direct HOG detector) wrote them: without it."""
    for manifest in data_dir.glob("snapshots/*/manifest.json"):
        loaded = json.loads(manifest.read_text())
        del loaded["contract"][field]
        manifest.write_text(json.dumps(loaded))
    for segment in (data_dir / "wal").glob("*.wal"):
        data = segment.read_bytes()
        (size,) = struct.unpack_from("<I", data, len(MAGIC))
        contract = wal_contract(segment)
        del contract[field]
        header = json.dumps(contract, sort_keys=True).encode()
        rest = data[len(MAGIC) + 4 + size :]
        segment.write_bytes(MAGIC + struct.pack("<I", len(header)) + header + rest)


def test_a_data_dir_from_before_align_opens_as_deepface(
    tmp_path: Path, servers: list[RunningServer]
) -> None:
    data = tmp_path / "data"
    make_data_dir(servers, data, "deepface")
    # DeepFace's pipeline has no detection of its own to record: as before the field.
    assert all("detection" not in wal_contract(s) for s in (data / "wal").glob("*.wal"))
    strip_field(data, "alignment")
    assert all("alignment" not in wal_contract(s) for s in (data / "wal").glob("*.wal"))
    with pytest.raises(ContractMismatch) as error:
        start(servers, data, "auto")  # the new default for Dlib: dlib chips
    assert "alignment 'deepface' vs 'dlib'" in str(error.value)
    running = start(servers, data, "deepface")
    with running.client() as client:
        stats = client.stats()
        assert (stats.count, stats.model, stats.detector) == (2, "Dlib", "dlib")
        assert [client.get(i).label for i in (0, 1)] == ["a", "b"]  # snapshot + WAL replay


def test_a_data_dir_of_the_previous_dlib_pipeline_is_refused(
    tmp_path: Path, servers: list[RunningServer]
) -> None:
    """--align dlib before the direct HOG detector: DeepFace's dlib detector (upsample 1),
    recorded as alignment dlib and no detection. No flag runs that pipeline any more."""
    data = tmp_path / "data"
    make_data_dir(servers, data, "dlib")
    strip_field(data, "detection")
    for align in ("auto", "dlib"):
        with pytest.raises(ContractMismatch) as error:
            start(servers, data, align)
        said = str(error.value)
        assert error.value.code == "FAILED_PRECONDITION"
        assert f"detection 'deepface' vs '{DETECTION_HOG}'" in said, said
        assert "re-enroll" in said and "fsclient add --labels-csv" in said, said
    with pytest.raises(ContractMismatch, match="alignment 'dlib' vs 'deepface'") as error:
        start(servers, data, "deepface")
    assert "re-enroll" in str(error.value)


def test_legacy_contracts_read_back() -> None:
    face = {"model": "Dlib", "detector": "dlib", "dim": 128, "space": "euclidean"}
    face |= {"storage": "float32", "normalization": "none"}
    assert EmbeddingContract.from_dict(face).alignment == "deepface"
    vectors = face | {"detector": ""}
    assert EmbeddingContract.from_dict(vectors).alignment == ""
    # Vector-only contracts are written as before (no field); face ones carry theirs.
    assert "alignment" not in EmbeddingContract.from_dict(vectors).to_dict()
    chip = EmbeddingContract.from_dict(face | {"alignment": "dlib"})
    assert chip.to_dict()["alignment"] == "dlib"
    assert chip.differences(EmbeddingContract.from_dict(face)) == [
        ("alignment", "dlib", "deepface")
    ]
    # Before the direct HOG detector every face contract's detection was DeepFace's.
    assert EmbeddingContract.from_dict(face).detection == "deepface"
    assert EmbeddingContract.from_dict(vectors).detection == ""
    assert chip.detection == "deepface"
    assert "detection" not in chip.to_dict()  # written as before: it is the default
    hog = EmbeddingContract.build(
        model="Dlib",
        detector="dlib",
        dim=128,
        space="euclidean",
        storage="float32",
        alignment="dlib",
    )
    assert hog.detection == DETECTION_HOG and hog.to_dict()["detection"] == DETECTION_HOG
    assert EmbeddingContract.from_dict(hog.to_dict()) == hog
    assert chip.differences(hog) == [("detection", "deepface", DETECTION_HOG)]
    assert "re-enroll" in chip.mismatch_advice()
    other = EmbeddingContract.build(
        model="Dlib",
        detector="opencv",
        dim=128,
        space="euclidean",
        storage="float32",
        alignment="dlib",
    )
    assert other.detection == "deepface"  # other detectors run through DeepFace as before
    assert "matching flags" in other.mismatch_advice()


# ---- configuration ---------------------------------------------------------------------


def test_align_dlib_with_another_model_is_refused_at_start_up(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(SystemExit) as exited:
        parse_config(["--align", "dlib", "--model", "Facenet512"])
    assert exited.value.code == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert "--align dlib" in last and "'Facenet512'" in last and "--align deepface" in last
    with pytest.raises(ValueError, match="--align dlib"):
        DeepFaceEmbedder("Facenet512", "dlib", "dlib")  # before any model loads
    # The variable as well as the flag; auto and deepface fit any model.
    monkeypatch.setenv("FSSERVER_ALIGN", "dlib")
    assert parse_config([]).alignment == "dlib"
    with pytest.raises(SystemExit):
        parse_config(["--model", "ArcFace"])
    assert parse_config(["--model", "ArcFace", "--align", "auto"]).alignment == "deepface"
    monkeypatch.setenv("FSSERVER_ALIGN", "sideways")
    with pytest.raises(SystemExit):
        parse_config([])
    monkeypatch.delenv("FSSERVER_ALIGN")
    assert parse_config(["--model", "ArcFace", "--align", "deepface"]).align == "deepface"
    assert parse_config(["--dim", "8", "--align", "dlib"]).alignment == ""  # vector-only


def test_enroll_embeds_with_the_servers_alignment() -> None:
    stats = Stats(
        count=0, dim=128, space="euclidean", storage="float32", model="Dlib", detector="dlib", ef=64
    )
    assert _alignment("auto", stats) == "dlib"
    assert _alignment("deepface", stats) == "deepface"
    with pytest.raises(SystemExit, match="--align dlib"):
        _alignment("dlib", replace(stats, model="Facenet512"))
