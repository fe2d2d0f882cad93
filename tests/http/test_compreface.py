"""The CompreFace-compatible routes (/api/v1) against the real Dlib model, driven by the
real compreface-sdk (0.6.0) and by the very request Double Take sends.

One server for the module, with two API keys: "people" gets about half of each person's
photos through the SDK, one person never (the stranger); "other" is for the tests that
change things, so the round trip's gallery stays as enrolled.
"""

from __future__ import annotations

import base64
import subprocess
import sys
import threading
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import urllib3.contrib
from PIL import Image

from fsclient import FaceSearchClient
from fsserver.api.security import SecuritySetupError
from fsserver.api.server import FaceSearchServer
from fsserver.config import Config
from fsserver.faces.embedder import Embedder
from fsserver.http.api_keys import parse_api_keys
from support import RunningServer, split_gallery, wait_calibrated

# compreface-sdk 0.6.0 pins requests-toolbelt 0.9.1, which imports urllib3.contrib.appengine
# (gone in urllib3 2) only to name it; an empty stand-in lets the real SDK load unchanged.
_appengine = types.ModuleType("urllib3.contrib.appengine")
sys.modules.setdefault("urllib3.contrib.appengine", _appengine)
urllib3.contrib.appengine = sys.modules["urllib3.contrib.appengine"]  # type: ignore[attr-defined]
from compreface import CompreFace  # noqa: E402

TIMEOUT = 120
PEOPLE_KEY, OTHER_KEY = "3bc74a05-people", "other-key-2"
KEY_FILE = f"""
# CompreFace keys: KEY COLLECTION
{PEOPLE_KEY} people

{OTHER_KEY}   other   # trailing comments are allowed
"""


@pytest.fixture(scope="module")
def split(faces_dir: Path, identities: dict[str, str]) -> dict[str, dict[str, str]]:
    """file → person: "enrolled" (about half of each person), "probes" (the rest) and
    "strangers" (every photo of the one person never enrolled), as conftest's gallery."""
    enrolled, probes, strangers = split_gallery(identities)
    return {"enrolled": enrolled, "probes": probes, "strangers": strangers}


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory, dlib_embedder: Embedder
) -> Iterator[RunningServer]:
    folder = tmp_path_factory.mktemp("compreface")
    keys = folder / "keys.txt"
    keys.write_text(KEY_FILE)
    config = Config(
        listen="127.0.0.1:0", data_dir=folder / "data", http="127.0.0.1:0", api_keys=keys
    )
    running = RunningServer(FaceSearchServer(config, embedder=dlib_embedder).start(), folder)
    yield running
    running.stop()


def sdk(server: RunningServer) -> CompreFace:
    host, port = server.http_url.rsplit(":", 1)
    return CompreFace(domain=host, port=port, options={"limit": 0, "prediction_count": 3})


@pytest.fixture(scope="module")
def enrolled(
    server: RunningServer, split: dict[str, dict[str, str]], faces_dir: Path
) -> dict[str, str]:
    """Enroll the "enrolled" photos under "people" through the SDK: image_id → person."""
    faces = sdk(server).init_face_recognition(PEOPLE_KEY).get_face_collection()
    ids = {}
    for file, person in sorted(split["enrolled"].items()):
        answer = faces.add(image_path=str(faces_dir / file), subject=person)
        assert answer.get("subject") == person, answer
        ids[answer["image_id"]] = person
    with FaceSearchClient(server.address).collection("people") as client:
        wait_calibrated(client)
    return ids


@pytest.fixture(scope="module")
def grey_jpeg(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("grey") / "grey.jpg"
    Image.new("RGB", (320, 240), (128, 128, 128)).save(path, format="JPEG")
    return path


def api(server: RunningServer, path: str) -> str:
    return f"{server.http_url}/api/v1/{path}"


# ---- the SDK, end to end -------------------------------------------------------------------


def test_sdk_recognizes_the_enrolled_and_not_the_stranger(
    server: RunningServer,
    enrolled: dict[str, str],
    split: dict[str, dict[str, str]],
    faces_dir: Path,
    grey_jpeg: Path,
) -> None:
    recognition = sdk(server).init_face_recognition(PEOPLE_KEY)
    wrong = []
    for file, person in sorted(split["probes"].items()):
        answer = recognition.recognize(image_path=str(faces_dir / file))
        best = answer["result"][0]["subjects"]
        if best[0]["subject"] != person or not best[0]["similarity"] > 0.5:
            wrong.append((file, person, best))
        similarities = [s["similarity"] for s in best]
        assert similarities == sorted(similarities, reverse=True)
        assert all(0.0 <= s <= 1.0 and s == round(s, 5) for s in similarities)
    assert not wrong, wrong
    for file in sorted(split["strangers"]):
        answer = recognition.recognize(image_path=str(faces_dir / file))
        assert answer["result"][0]["subjects"][0]["similarity"] < 0.5, (file, answer)
    assert recognition.recognize(image_path=str(grey_jpeg)) == {
        "message": "No face is found in the given image",
        "code": 28,
    }


def test_recognize_answers_compreface_shapes(
    server: RunningServer,
    enrolled: dict[str, str],
    split: dict[str, dict[str, str]],
    faces_dir: Path,
) -> None:
    file = sorted(split["probes"])[0]
    answer = (
        sdk(server)
        .init_face_recognition(PEOPLE_KEY)
        .recognize(
            image_path=str(faces_dir / file), options={"prediction_count": 2, "status": True}
        )
    )
    [face] = answer["result"]
    assert set(face["box"]) == {"probability", "x_min", "y_min", "x_max", "y_max"}
    assert face["box"]["x_max"] > face["box"]["x_min"] and face["box"]["probability"] == 1.0
    assert len(face["subjects"]) == 2 and set(face["subjects"][0]) == {"subject", "similarity"}
    assert set(face["execution_time"]) == {"detector", "search"}
    assert answer["plugins_versions"] == {"detector": "dlib", "calculator": "Dlib"}


def test_sdk_lists_the_faces_and_subjects(server: RunningServer, enrolled: dict[str, str]) -> None:
    recognition = sdk(server).init_face_recognition(PEOPLE_KEY)
    listed = recognition.get_face_collection().list()
    assert listed["total_elements"] == len(enrolled)
    assert listed["page_number"] == 0 and listed["page_size"] == 20
    assert listed["total_pages"] == (len(enrolled) + 19) // 20
    assert all(enrolled[f["image_id"]] == f["subject"] for f in listed["faces"])
    assert recognition.get_subjects().list() == {"subjects": sorted(set(enrolled.values()))}
    # Paging and the subject filter, as CompreFace's UI asks for them.
    person = sorted(enrolled.values())[0]
    page = requests.get(
        api(server, "recognition/faces"),
        params={"page": "0", "size": "1", "subject": person},
        headers={"x-api-key": PEOPLE_KEY},
        timeout=TIMEOUT,
    ).json()
    assert page["total_elements"] == list(enrolled.values()).count(person)
    assert page["total_pages"] == page["total_elements"] and len(page["faces"]) == 1


def test_sdk_changes_subjects_and_faces(server: RunningServer, faces_dir: Path) -> None:
    recognition = sdk(server).init_face_recognition(OTHER_KEY)
    faces, subjects = recognition.get_face_collection(), recognition.get_subjects()
    added = {
        file: faces.add(image_path=str(faces_dir / file), subject=person)
        for file, person in [
            ("img1.jpg", "ann"),
            ("img2.jpg", "ann"),
            ("img12.jpg", "bob"),
            ("img3.jpg", "bob"),
        ]
    }
    assert {a["subject"] for a in added.values()} == {"ann", "bob"}
    # The image's own thumbnail, and verification against one saved face.
    image_id = added["img1.jpg"]["image_id"]
    thumbnail = requests.get(
        api(server, f"recognition/faces/{image_id}/img"),
        headers={"x-api-key": OTHER_KEY},
        timeout=TIMEOUT,
    )
    assert thumbnail.headers["content-type"] == "image/jpeg"
    assert thumbnail.content[:2] == b"\xff\xd8"
    same = faces.verify(image_path=str(faces_dir / "img4.jpg"), image_id=image_id)
    other = faces.verify(image_path=str(faces_dir / "img13.jpg"), image_id=image_id)
    assert same["result"][0]["similarity"] > 0.5 > other["result"][0]["similarity"]
    assert same["result"][0]["subject"] == "ann"
    # Subjects: a declared one without faces, a rename that merges, deletes.
    assert subjects.add("carol") == {"subject": "carol"}
    assert subjects.list() == {"subjects": ["ann", "bob", "carol"]}
    assert subjects.add("carol")["code"] == 43
    assert subjects.update("ann", "bob") == {"updated": True}
    assert subjects.list() == {"subjects": ["bob", "carol"]}
    assert faces.list()["total_elements"] == 4
    assert faces.delete(image_id) == {"image_id": image_id, "subject": "bob"}
    assert faces.delete(image_id)["code"] == 11
    assert faces.delete_all("bob") == {"deleted": 3}
    assert faces.delete_all("nobody") == {"deleted": 0}
    assert faces.list()["total_elements"] == 0
    assert subjects.list() == {"subjects": ["bob", "carol"]}  # CompreFace keeps them
    assert subjects.delete("carol") == {"subject": "carol"}
    assert subjects.delete("carol")["code"] == 42
    assert subjects.delete_all() == {"deleted": 1}
    assert subjects.list() == {"subjects": []}


def test_bulk_delete_skips_unknown_ids(server: RunningServer, faces_dir: Path) -> None:
    faces = sdk(server).init_face_recognition(OTHER_KEY).get_face_collection()
    first = faces.add(image_path=str(faces_dir / "img20.jpg"), subject="dan")["image_id"]
    second = faces.add(image_path=str(faces_dir / "img21.jpg"), subject="dan")["image_id"]
    answer = requests.post(
        api(server, "recognition/faces/delete"),
        json=[first, "no-such-id", "999999", second],
        headers={"x-api-key": OTHER_KEY},
        timeout=TIMEOUT,
    )
    assert answer.status_code == 200, answer.text
    assert answer.json() == [
        {"image_id": first, "subject": "dan"},
        {"image_id": second, "subject": "dan"},
    ]
    # DELETE /faces without a subject empties the collection; the subjects stay.
    faces.add(image_path=str(faces_dir / "img24.jpg"), subject="fay")
    everything = requests.delete(
        api(server, "recognition/faces"), headers={"x-api-key": OTHER_KEY}, timeout=TIMEOUT
    )
    assert everything.json() == {"deleted": 1}
    assert faces.list()["total_elements"] == 0
    subjects = sdk(server).init_face_recognition(OTHER_KEY).get_subjects()
    assert subjects.list() == {"subjects": ["dan", "fay"]}
    assert subjects.delete_all() == {"deleted": 2}


def test_sdk_detects_and_verifies(server: RunningServer, faces_dir: Path) -> None:
    service = sdk(server)
    detected = service.init_face_detection(OTHER_KEY).detect(str(faces_dir / "couple.jpg"))
    assert len(detected["result"]) == 2
    areas = [
        (b["x_max"] - b["x_min"]) * (b["y_max"] - b["y_min"])
        for b in (face["box"] for face in detected["result"])
    ]
    assert areas == sorted(areas, reverse=True)  # largest first
    one = service.init_face_detection(OTHER_KEY).detect(
        str(faces_dir / "couple.jpg"), options={"limit": 1}
    )
    assert one["result"] == detected["result"][:1]
    verification = service.init_face_verification(OTHER_KEY)
    same = verification.verify(str(faces_dir / "img1.jpg"), str(faces_dir / "img2.jpg"))
    [entry] = same["result"]
    assert set(entry["source_image_face"]["box"]) >= {"x_min", "probability"}
    assert entry["face_matches"][0]["similarity"] > 0.5
    different = verification.verify(str(faces_dir / "img1.jpg"), str(faces_dir / "img13.jpg"))
    assert different["result"][0]["face_matches"][0]["similarity"] < 0.5


# ---- Double Take ---------------------------------------------------------------------------


# Without face_plugins in its config, Double Take's template string sends "undefined".
@pytest.mark.parametrize("plugins", ["undefined", "mask,gender,age"])
def test_the_request_double_take_sends(
    server: RunningServer,
    enrolled: dict[str, str],
    split: dict[str, dict[str, str]],
    faces_dir: Path,
    grey_jpeg: Path,
    plugins: str,
) -> None:
    """Double Take's detectors/compreface.js: face_plugins in the URL, det_prob_threshold
    as a parameter, the photo as multipart `file`; it reads result[].subjects[0] and the
    box, and takes code 28 to mean "no faces" rather than a failure."""
    file = next(f for f in sorted(split["probes"]) if f != "img59.jpg")  # a 0.42 HOG score

    def send(photo: Path) -> dict[str, Any]:
        with photo.open("rb") as f:
            answer = requests.post(
                api(server, f"recognition/recognize?face_plugins={plugins}"),
                params={"det_prob_threshold": 0.8},
                files={"file": (photo.name, f)},
                headers={"x-api-key": PEOPLE_KEY},
                timeout=TIMEOUT,
            )
        assert answer.headers["content-type"] == "application/json"
        data: dict[str, Any] = answer.json()
        return data

    data = send(faces_dir / file)
    face = data["result"][0]
    assert face["subjects"][0]["subject"] == split["probes"][file]
    confidence = float(f"{face['subjects'][0]['similarity'] * 100:.2f}")
    assert confidence > 50
    assert face["box"]["x_max"] - face["box"]["x_min"] > 0
    assert "result" not in send(grey_jpeg) and send(grey_jpeg)["code"] == 28


def test_det_prob_threshold_drops_faces_the_detector_doubts(
    server: RunningServer, enrolled: dict[str, str], faces_dir: Path
) -> None:
    """img59.jpg's one face has a HOG score of 0.42: below the bar it is no face at all,
    for recognition and for enrollment (which then stores nothing)."""
    photo = str(faces_dir / "img59.jpg")
    recognition = sdk(server).init_face_recognition(PEOPLE_KEY)
    assert recognition.recognize(photo, {"det_prob_threshold": 0.8})["code"] == 28
    found = recognition.recognize(photo, {"det_prob_threshold": 0.4})["result"][0]
    assert found["box"]["probability"] == pytest.approx(0.417, abs=0.01)
    faces = sdk(server).init_face_recognition(OTHER_KEY).get_face_collection()
    assert faces.add(photo, "doubtful", {"det_prob_threshold": 0.8})["code"] == 28
    listed = requests.get(
        api(server, "recognition/faces"),
        params={"subject": "doubtful"},
        headers={"x-api-key": OTHER_KEY},
        timeout=TIMEOUT,
    ).json()
    assert listed["total_elements"] == 0


# ---- keys ----------------------------------------------------------------------------------


def test_a_missing_or_unknown_key_is_refused(server: RunningServer, faces_dir: Path) -> None:
    url = api(server, "recognition/recognize")
    photo = (faces_dir / "img1.jpg").read_bytes()
    for headers, code in (({}, 20), ({"x-api-key": "guess"}, 10), ({"x-api-key": ""}, 20)):
        answer = requests.post(url, files={"file": photo}, headers=headers, timeout=TIMEOUT)
        assert answer.status_code == 401, answer.text
        body = answer.json()
        assert body["code"] == code and body["message"]
        assert "guess" not in body["message"]
    subjects = requests.get(api(server, "recognition/subjects"), timeout=TIMEOUT)
    assert subjects.status_code == 401


def test_two_keys_keep_their_collections_apart(
    server: RunningServer, enrolled: dict[str, str], faces_dir: Path
) -> None:
    other = sdk(server).init_face_recognition(OTHER_KEY)
    added = other.get_face_collection().add(str(faces_dir / "img22.jpg"), "eve")["image_id"]
    people = sdk(server).init_face_recognition(PEOPLE_KEY)
    assert "eve" not in people.get_subjects().list()["subjects"]
    # Item ids count per collection: "people" has an item of that number, not eve's.
    assert "eve" not in {f["subject"] for f in people.get_face_collection().list()["faces"]}
    mine = requests.get(
        api(server, "recognition/faces"),
        params={"subject": "eve"},
        headers={"x-api-key": OTHER_KEY},
        timeout=TIMEOUT,
    ).json()["faces"]
    assert mine == [{"image_id": added, "subject": "eve"}]
    assert "eve" in other.get_subjects().list()["subjects"]
    with FaceSearchClient(server.address) as client:
        names = {info.name for info in client.collections()}
    assert {"people", "other"} <= names


def test_first_requests_on_a_new_key_create_its_collection_once(
    tmp_path: Path, dlib_embedder: Embedder
) -> None:
    keys = tmp_path / "keys"
    keys.write_text("k1 fresh\n")
    config = Config(
        listen="127.0.0.1:0", data_dir=tmp_path / "data", http="127.0.0.1:0", api_keys=keys
    )
    running = RunningServer(FaceSearchServer(config, embedder=dlib_embedder).start(), tmp_path)
    try:
        answers: list[requests.Response] = []

        def ask() -> None:
            answers.append(
                requests.get(
                    api(running, "recognition/subjects"),
                    headers={"x-api-key": "k1"},
                    timeout=TIMEOUT,
                )
            )

        threads = [threading.Thread(target=ask) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert [a.status_code for a in answers] == [200] * 4, [a.text for a in answers]
        with running.client() as client:
            fresh = [c for c in client.collections() if c.name == "fresh"]
        assert len(fresh) == 1 and fresh[0].model == "Dlib"
    finally:
        running.stop()


def test_open_mode_maps_every_key_to_default(tmp_path: Path, dlib_embedder: Embedder) -> None:
    config = Config(
        listen="127.0.0.1:0",
        data_dir=tmp_path / "data",
        http="127.0.0.1:0",
        http_compreface_open=True,
    )
    running = RunningServer(FaceSearchServer(config, embedder=dlib_embedder).start(), tmp_path)
    try:
        for headers in ({}, {"x-api-key": "anything"}):
            answer = requests.get(
                api(running, "recognition/subjects"), headers=headers, timeout=TIMEOUT
            )
            assert answer.status_code == 200 and answer.json() == {"subjects": []}
    finally:
        running.stop()


def test_the_key_file_is_parsed_line_by_line() -> None:
    keys = parse_api_keys(KEY_FILE)
    assert keys.collection(PEOPLE_KEY) == "people"
    assert keys.collection(OTHER_KEY) == "other"
    assert keys.collections == {"people", "other"}
    for text, says in (
        ("k1 people\nk2\n", "line 2: expected 'KEY COLLECTION'"),
        ("k1 people\nk2 other extra\n", "line 2: expected 'KEY COLLECTION'"),
        ("k1 people\nk1 other\n", "line 2: the key of line 1 again"),
        ("k1 no/such\n", "line 1: 'no/such' is not a collection name"),
        ("# only a comment\n\n", "no 'KEY COLLECTION' line"),
    ):
        with pytest.raises(SecuritySetupError, match=r"--api-keys keys\.txt") as refused:
            parse_api_keys(text, "keys.txt")
        assert says in str(refused.value)
        assert "k1" not in str(refused.value)  # keys are secrets: never in the message


def test_a_bad_key_file_stops_start_up_with_one_line(tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    keys.write_text("good-key people\nbroken\n")
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "fsserver",
            "--listen",
            "127.0.0.1:0",
            "--http",
            "127.0.0.1:0",
            "--data-dir",
            str(tmp_path / "data"),
            "--api-keys",
            str(keys),
        ],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    assert done.returncode == 1, done
    assert done.stderr.strip().splitlines() == [
        f"fsserver: --api-keys {keys} line 2: expected 'KEY COLLECTION' (two words), found 1"
    ]


# ---- bad input -----------------------------------------------------------------------------


def test_bad_requests_get_compreface_errors_and_the_server_goes_on(
    server: RunningServer, enrolled: dict[str, str], faces_dir: Path
) -> None:
    recognize = api(server, "recognition/recognize")
    key = {"x-api-key": PEOPLE_KEY}
    photo = (faces_dir / "img1.jpg").read_bytes()
    boundary = "b0undary"
    cases: list[tuple[str, str, dict[str, Any], int, int | None]] = [
        # (method, url, requests' keyword arguments, HTTP status, CompreFace code)
        ("post", recognize, {"data": b"hello", "headers": {"content-type": "text/plain"}}, 415, 0),
        (
            "post",
            recognize,
            {
                "data": b'--b0undary\r\nContent-Disposition: form-data; name="file"\r\n\r\nno end',
                "headers": {"content-type": f"multipart/form-data; boundary={boundary}"},
            },
            400,
            None,
        ),
        ("post", recognize, {"json": {"file": "not base64!"}}, 400, 36),
        (
            "post",
            recognize,
            {"data": b"{not json", "headers": {"content-type": "application/json"}},
            400,
            36,
        ),
        ("post", recognize, {"json": {}}, 400, 34),
        ("post", recognize, {"files": {"image": photo}}, 400, 34),
        ("post", recognize, {"files": {"file": b"not an image"}}, 400, None),
        ("post", recognize + "?limit=abc", {"files": {"file": photo}}, 400, 36),
        ("post", recognize + "?det_prob_threshold=2", {"files": {"file": photo}}, 400, 36),
        ("post", api(server, "recognition/faces"), {"files": {"file": photo}}, 400, 33),
        ("post", api(server, "recognition/faces?subject="), {"files": {"file": photo}}, 400, 26),
        ("get", api(server, "recognition/faces?size=0"), {}, 400, 36),
        ("delete", api(server, "recognition/faces/not-an-id"), {}, 404, 11),
        ("get", api(server, "recognition/faces/123456/img"), {}, 404, 11),
        ("delete", api(server, "recognition/faces/" + "9" * 30), {}, 404, 11),
        ("delete", api(server, "recognition/faces/1_0"), {}, 404, 11),
        ("get", api(server, "recognition/no-such-route"), {}, 404, 0),
        ("delete", api(server, "recognition/subjects/nobody"), {}, 404, 42),
        ("put", api(server, "recognition/subjects/nobody"), {"json": {"subject": "x"}}, 404, 42),
        ("post", api(server, "recognition/faces/delete"), {"json": {"ids": []}}, 400, 36),
    ]
    for method, url, kwargs, status, code in cases:
        kwargs.setdefault("headers", {}).update(key)
        answer = requests.request(method, url, timeout=TIMEOUT, **kwargs)
        assert answer.status_code == status, (url, kwargs.get("json"), answer.text)
        body = answer.json()
        assert set(body) == {"message", "code"} and body["message"], body
        if code is not None:
            assert body["code"] == code, (url, body)
    good = requests.post(
        recognize, json={"file": base64.b64encode(photo).decode()}, headers=key, timeout=TIMEOUT
    )
    assert good.status_code == 200 and good.json()["result"][0]["subjects"], good.text


def test_base64_bodies_work_as_multipart_does(
    server: RunningServer, enrolled: dict[str, str], faces_dir: Path
) -> None:
    photo = base64.b64encode((faces_dir / "img1.jpg").read_bytes()).decode()
    other = base64.b64encode((faces_dir / "img2.jpg").read_bytes()).decode()
    key = {"x-api-key": OTHER_KEY}
    detected = requests.post(
        api(server, "detection/detect"), json={"file": photo}, headers=key, timeout=TIMEOUT
    )
    assert detected.status_code == 200 and len(detected.json()["result"]) == 1
    verified = requests.post(
        api(server, "verification/verify"),
        json={"source_image": photo, "target_image": other},
        headers=key,
        timeout=TIMEOUT,
    )
    assert verified.json()["result"][0]["face_matches"][0]["similarity"] > 0.5
