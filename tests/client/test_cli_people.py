"""The people commands of the real `fsclient` CLI, as a subprocess, against a real Dlib server:
people, list, rename, forget, identify (with --show) and verify; and their formatters.

One face server for the module with four photos of three people enrolled (p00 twice); the
test that renames and forgets runs last, as it changes who is enrolled.
"""

from __future__ import annotations

import io
import json
import math
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fsclient.format import dumps, format_stats
from fsclient.format_people import format_identify, format_items, format_verify, shown
from fsclient.picture import CELL_WIDTH, GAP
from fsclient.picture_people import MIN_WIDTH, draw_identities
from fsclient.types import (
    Box,
    Candidate,
    DecisionRule,
    Face,
    Identification,
    IdentifyResult,
    ItemSummary,
    Stats,
    VerifyResult,
)
from fsserver.api.server import FaceSearchServer
from fsserver.config import Config
from fsserver.faces.embedder import Embedder
from support import RunningServer, run_cli

ENROLLED = {"img1.jpg": "p00", "img2.jpg": "p00", "img26.jpg": "p01", "img8.jpg": "p02"}
PROBE = "img4.jpg"  # p00, not enrolled
SAME = ("img4.jpg", "img5.jpg")  # both p00
DIFFERENT = ("img4.jpg", "img28.jpg")  # p00 and p01


@pytest.fixture(scope="module")
def people_server(
    tmp_path_factory: pytest.TempPathFactory, faces_dir: Path, dlib_embedder: Embedder
) -> Iterator[RunningServer]:
    config = Config(listen="127.0.0.1:0", data_dir=tmp_path_factory.mktemp("people"))
    running = RunningServer(
        FaceSearchServer(config, embedder=dlib_embedder).start(), config.data_dir
    )
    with running.client() as client:
        files = list(ENROLLED)
        results = client.add_images(
            [faces_dir / f for f in files], labels=list(ENROLLED.values()), metadata=files
        )
    assert all(r.ok for r in results), results
    yield running
    running.stop()


@pytest.fixture(scope="module")
def blank(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("blank") / "blank.png"
    Image.new("RGB", (160, 160), "white").save(path)
    return path


def ok(*args: str, server: str) -> str:
    run = run_cli(*args, server=server)
    assert run.returncode == 0, run.stderr
    return str(run.stdout)


def one_error_line(*args: str, server: str) -> str:
    run = run_cli(*args, server=server)
    assert (run.returncode, run.stdout) == (1, ""), (run.returncode, run.stdout, run.stderr)
    [line] = run.stderr.splitlines()
    return str(line)


# ---- against the server ------------------------------------------------------------------


def test_people_and_list_show_what_was_enrolled(people_server: RunningServer) -> None:
    address = people_server.address
    assert ok("people", server=address).splitlines() == [
        "person  items",
        "p00         2",
        "p01         1",
        "p02         1",
        "3 people, 4 items",
    ]
    as_json = json.loads(ok("--json", "people", server=address))
    assert as_json["people"][0] == {"label": "p00", "count": 2}

    listed = ok("list", server=address).splitlines()
    assert listed[0].split() == ["id", "label", "metadata"]
    assert [line.split() for line in listed[1:-1]] == [
        [str(i), label, file] for i, (file, label) in enumerate(ENROLLED.items())
    ]
    assert listed[-1] == "4 items"
    mine = ok("list", "--label", "p00", server=address).splitlines()
    assert [line.split()[0] for line in mine[1:-1]] == ["0", "1"]
    assert mine[-1] == "2 items labelled 'p00'"
    assert ok("list", "--label", "nobody", server=address) == "0 items labelled 'nobody'\n"

    stats = ok("stats", server=address)
    assert "people         3" in stats.splitlines()
    assert any(line.startswith("decision       ") for line in stats.splitlines())


def test_identify_names_a_held_out_photo_and_draws_it(
    people_server: RunningServer, faces_dir: Path, tmp_path: Path
) -> None:
    picture = tmp_path / "who.png"
    run = run_cli(
        "identify", str(faces_dir / PROBE), "--show", str(picture),
        server=people_server.address,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert run.stderr == f"identity picture written to {picture}\n"
    lines = run.stdout.splitlines()
    assert lines[0].startswith("face 1: p00 (similarity 0.")
    assert lines[1].startswith("  at x=")
    candidates = [line.split() for line in lines[2:5]]
    assert [c[0] for c in candidates] == ["1.", "2.", "3."]
    assert candidates[0][1] == "p00" and {c[1] for c in candidates[1:]} == {"p01", "p02"}
    assert candidates[0][-2:] == ["near", "2"]
    distance = float(candidates[0][3])
    assert 0 < distance < 0.6 and len(candidates[0][3].split(".")[1]) <= 4
    assert lines[-1].startswith("decided with threshold ")

    with Image.open(picture) as image:
        assert image.format == "PNG" and image.width >= GAP + 4 * CELL_WIDTH
        pixels = np.asarray(image.convert("RGB"))
    assert pixels.std() > 10  # the photo and the thumbnails, not blank tiles

    quiet = ok("-q", "identify", str(faces_dir / PROBE), server=people_server.address)
    assert quiet.splitlines() == [lines[0]]


def test_verify_two_photos_and_a_person(people_server: RunningServer, faces_dir: Path) -> None:
    address = people_server.address
    same = ok("verify", *(str(faces_dir / f) for f in SAME), server=address).splitlines()
    assert same[0].startswith("same person (distance 0.")
    assert same[0].endswith(", threshold 0.6000)")
    assert same[1].startswith("compared the largest faces: x=")
    different = ok("verify", *(str(faces_dir / f) for f in DIFFERENT), server=address)
    assert different.startswith("different people (distance ")  # and exit status 0

    person = ok("-q", "verify", str(faces_dir / PROBE), "--person", "p00", server=address)
    assert person.startswith("same person as p00 (distance ") and person.count("\n") == 1
    not_them = ok("verify", str(faces_dir / PROBE), "--person", "p02", server=address)
    assert not_them.startswith("different person from p02 (")
    assert "p02's nearest item (id 3)" in not_them


def test_errors_are_one_line_naming_the_status(
    people_server: RunningServer, blank: Path, faces_dir: Path
) -> None:
    address = people_server.address
    assert one_error_line("forget", "nobody", server=address).startswith("fsclient: NOT_FOUND: ")
    assert one_error_line("identify", str(blank), server=address).startswith(
        "fsclient: FAILED_PRECONDITION: "
    )
    assert one_error_line("forget", "", server=address).startswith("fsclient: INVALID_ARGUMENT:")
    assert one_error_line("rename", "p01", "", server=address).startswith(
        "fsclient: INVALID_ARGUMENT:"
    )
    missing = one_error_line("verify", str(faces_dir / PROBE), "--person", "x", server=address)
    assert missing.startswith("fsclient: NOT_FOUND: ")
    usage = run_cli("verify", str(faces_dir / PROBE), server=address)
    assert usage.returncode == 2 and usage.stderr.startswith("fsclient: error: one of the ")
    both = run_cli("identify", "a.jpg", "--vector", "v.npy", server=address)
    assert both.returncode == 2 and "not allowed with" in both.stderr


def test_rename_and_forget_change_who_is_identified(
    people_server: RunningServer, tmp_path: Path
) -> None:
    """Last: it changes the people. Identified by a stored vector: no photo to embed."""
    address = people_server.address
    with people_server.client() as client:
        np.save(tmp_path / "p00.npy", client.get(0).vector)
    vector = str(tmp_path / "p00.npy")

    plain = ok("rename", "p02", "p03", server=address)
    assert plain == "renamed p02 to p03: 1 item\n"
    merged = ok("rename", "p03", "p01", server=address)
    assert merged == "renamed p03 to p01: 1 item, merged into the existing person p01\n"
    assert ok("rename", "p00", "alice", server=address) == "renamed p00 to alice: 2 items\n"
    assert ok("people", server=address).splitlines()[1:] == [
        "alice       2",
        "p01         2",
        "2 people, 4 items",
    ]
    found = ok("identify", "--vector", vector, "--candidates", "1", server=address)
    assert found.splitlines()[0] == "vector: alice (similarity 1.00)"
    assert found.splitlines()[1].split()[:3] == ["1.", "alice", "distance"]

    assert ok("forget", "alice", server=address) == "forgot alice: deleted 2 items\n"
    unknown = ok("identify", "--vector", vector, server=address).splitlines()
    assert unknown[0].startswith("vector: unknown (nearest: p01, similarity 0.")
    assert ok("list", server=address).splitlines()[-1] == "2 items"


# ---- the formatters and the picture, without a server --------------------------------------


RULE = DecisionRule(source="pair-threshold", reason="too few people", threshold=0.6)


def _face() -> Face:
    return Face(Box(10, 20, 30, 30), 1.0, np.zeros(4, np.float32))


def test_nobody_enrolled_is_unknown_and_its_infinite_distance_is_null_in_json() -> None:
    lonely = Identification(_face(), False, "", math.inf, 0.0, math.inf, [])
    result = IdentifyResult([lonely], RULE)
    assert format_identify(result).splitlines()[:2] == [
        "face 1: unknown (no enrolled person)",
        "  at x=10,y=20,30×30",  # noqa: RUF001
    ]
    as_json = json.loads(dumps(result))  # strict JSON: no Infinity
    assert as_json["results"][0]["distance"] is None and as_json["results"][0]["margin"] is None
    assert "threshold 0.4000 (given)" in format_identify(result, threshold=0.4)


def test_labels_print_on_one_line_and_verify_says_same_or_different() -> None:
    assert shown("a\nb\x1b[31m") == "a\\nb\\x1b[31m"
    listing = format_items([ItemSummary(7, "evil\nline", "")], label=None).splitlines()
    assert len(listing) == 3 and "evil\\nline" in listing[1]
    verdict = VerifyResult(same=False, distance=0.71234, similarity=0.2, threshold=0.6)
    assert format_verify(verdict, quiet=True) == (
        "different people (distance 0.7123, similarity 0.20, threshold 0.6000)"
    )


def test_stats_show_a_calibrated_rule_and_the_people() -> None:
    calibrated = DecisionRule(
        source="calibrated", threshold=0.5213, margin=0.031, target_far=0.001,
        estimated_far=0.0008, estimated_tar=0.953, people=40, items=120,
    )  # fmt: skip
    stats = Stats(
        count=120, dim=128, space="euclidean", storage="float32", model="Dlib",
        detector="dlib", ef=64, decision=calibrated, people=40,
    )  # fmt: skip
    lines = format_stats(stats).splitlines()
    assert "people         40" in lines
    at = lines.index("decision       calibrated: threshold 0.5213, margin 0.0310")
    assert lines[at + 1].strip() == (
        "estimated FAR 0.08% (target 0.10%), TAR 95.3%, on 40 people, 120 items"
    )
    assert json.loads(dumps(stats))["decision"]["people"] == 40


def test_a_vector_is_drawn_without_a_photo() -> None:
    candidates = [Candidate("ann", 0.2, 0.9, 1, 5), Candidate("bo", 0.8, 0.2, 0, 6)]
    known = Identification(None, True, "ann", 0.2, 0.9, 0.6, candidates)
    png = draw_identities(None, IdentifyResult([known], RULE), {5: None})
    with Image.open(io.BytesIO(png)) as image:
        assert image.size[0] == max(GAP + 3 * CELL_WIDTH, MIN_WIDTH)
