"""`fsclient --json` against docs/json.md: the real CLI, real servers, the doc's own tables.

The shapes are read out of docs/json.md, and every command's output is checked against
them recursively (exact key sets, and each value's type), so the doc and the output cannot
drift apart.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from fsclient.cli import build_parser
from support import RunningServer, run_cli

DOC = Path(__file__).resolve().parents[2] / "docs" / "json.md"
PRIMITIVES: dict[str, Callable[[Any], bool]] = {
    # bool is an int in Python; JSON's true is not a number.
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    "string": lambda v: isinstance(v, str),
    "boolean": lambda v: isinstance(v, bool),
}


def _table_rows(text: str) -> list[list[str]]:
    """The body rows of the first Markdown table in `text`, cells stripped of backticks."""
    rows: list[list[str]] = []
    for line in text.splitlines():
        if not line.startswith("|"):
            if rows:
                break
            continue
        cells = [cell.strip().strip("`") for cell in line.strip().strip("|").split("|")]
        rows.append(cells)
    return rows[2:]  # past the header and the |---| line


def _sections(text: str, level: str) -> dict[str, str]:
    """Heading → the text under it, for headings of `level` (e.g. "##")."""
    parts = re.split(rf"^{level} (.+)$", text, flags=re.M)
    return {title.strip(): body for title, body in zip(parts[1::2], parts[2::2], strict=True)}


def read_doc() -> tuple[dict[str, str], dict[str, dict[str, str]]]:
    """(command → shape it prints, shape → {key: type}) as docs/json.md states them."""
    text = DOC.read_text()
    chapters = _sections(text, "##")
    commands = {row[0]: row[1] for row in _table_rows(chapters["Commands"])}
    shapes = {
        name: {row[0]: row[1] for row in _table_rows(body)}
        for name, body in _sections(chapters["Shapes"], "###").items()
    }
    return commands, shapes


COMMANDS, SHAPES = read_doc()


def _named(kind: str) -> str:
    """The shape or primitive a type names, without `or null` and `array of`."""
    kind = kind.removesuffix(" or null")
    while kind.startswith("array of "):
        kind = kind.removeprefix("array of ")
    return kind


def check(value: Any, kind: str, where: str, seen: set[str]) -> None:
    """Assert `value` has the documented type `kind`; add each shape met (not null) to seen."""
    if kind.endswith(" or null"):
        if value is None:
            return
        kind = kind.removesuffix(" or null")
    if kind.startswith("array of "):
        assert isinstance(value, list), f"{where}: expected an array, got {value!r}"
        for index, element in enumerate(value):
            check(element, kind.removeprefix("array of "), f"{where}[{index}]", seen)
        return
    if kind in PRIMITIVES:
        assert PRIMITIVES[kind](value), f"{where}: expected {kind}, got {value!r}"
        return
    shape = SHAPES[kind]
    assert isinstance(value, dict), f"{where}: expected a {kind} object, got {value!r}"
    assert set(value) == set(shape), (
        f"{where} ({kind}): undocumented keys {sorted(set(value) - set(shape))}, "
        f"documented but missing {sorted(set(shape) - set(value))}"
    )
    seen.add(kind)
    for key, key_kind in shape.items():
        check(value[key], key_kind, f"{where}.{key}", seen)


def run_json(
    command: str, *args: str, server: str, status: int = 0
) -> tuple[dict[str, Any], set[str]]:
    """Run `fsclient --json COMMAND ARGS`; check the one line against the doc; return it
    and the shapes it held."""
    run = run_cli("--json", command, *args, server=server)
    assert run.returncode == status, run.stderr
    assert run.stdout.endswith("\n") and run.stdout.count("\n") == 1, run.stdout
    if status == 0:
        assert run.stderr == "", run.stderr  # documented: stderr is empty on success
    value = json.loads(run.stdout)
    seen: set[str] = set()
    # A command with an action word ("collections create") may have a row of its own.
    named = f"{command} {args[0]}" if args and f"{command} {args[0]}" in COMMANDS else command
    check(value, COMMANDS[named], named, seen)
    return value, seen


# ---- the doc itself ----------------------------------------------------------------------


def _subcommands() -> set[str]:
    parser = build_parser()
    [choices] = [a.choices for a in parser._actions if hasattr(a, "choices") and a.choices]
    return set(choices)


def test_the_doc_covers_every_command_and_names_only_shapes_it_defines() -> None:
    assert {command.split()[0] for command in COMMANDS} == _subcommands()
    referenced = {_named(kind) for shape in SHAPES.values() for kind in shape.values()}
    referenced |= set(COMMANDS.values())
    assert referenced - set(PRIMITIVES) == set(SHAPES)  # none undefined, none unused
    assert all(SHAPES.values()), "a shape without keys: is its table malformed?"


def test_the_checker_rejects_a_key_the_doc_lacks() -> None:
    with pytest.raises(AssertionError, match="undocumented keys"):
        check({"deleted": 1, "extra": 2}, "DeleteResult", "delete", set())
    with pytest.raises(AssertionError, match="expected integer"):
        check({"deleted": True}, "DeleteResult", "delete", set())


# ---- every command on a vector server ----------------------------------------------------


def test_every_vector_command_prints_its_documented_shape(
    vector_server: RunningServer, tmp_path: Path
) -> None:
    address = vector_server.address
    vectors = np.zeros((4, 16), np.float32)
    vectors[1, :2] = (3.0, 4.0)  # 5 from vector 0: plain L2; squared it would be 25
    vectors[2, 0] = 10.0
    vectors[3, 1] = 10.0
    np.save(tmp_path / "v.npy", vectors)
    np.save(tmp_path / "probe.npy", vectors[2])

    added, seen = run_json("add", str(tmp_path / "v.npy"), server=address)
    assert (added["added"], added["failed"], added["error"]) == (4, 0, None)
    assert [item["id"] for item in added["items"]] == [0, 1, 2, 3]
    assert seen == {"AddReport", "AddOutcome"}

    by_id, seen = run_json("query", "--id", "0", "-k", "2", server=address)
    [matches] = by_id["results"]
    assert matches["face"] is None and by_id["embed_seconds"] == 0
    assert [n["id"] for n in matches["neighbors"]] == [0, 1]
    assert matches["neighbors"][1]["distance"] == pytest.approx(5.0)
    assert seen == {"QueryResult", "FaceMatches", "Neighbor"}

    by_vector, _ = run_json("query", "--vector", str(tmp_path / "probe.npy"), server=address)
    assert by_vector["results"][0]["neighbors"][0]["id"] == 2

    item, _ = run_json("get", "1", server=address)
    assert item["vector"][:2] == [3.0, 4.0] and item["thumbnail_base64"] == ""

    assert run_json("delete", "3", server=address)[0] == {"deleted": 1}
    stats, _ = run_json("stats", server=address)
    assert (stats["count"], stats["deleted"], stats["space"]) == (3, 1, "euclidean")
    # Before save, which would compact first: a quarter of the graph is deleted.
    compacted, _ = run_json("compact", server=address)
    assert (compacted["removed"], compacted["count"]) == (1, 3)
    saved, _ = run_json("save", server=address)
    assert saved["count"] == 3 and saved["snapshot"].startswith("snapshots/")


def test_add_prints_one_report_on_failed_items_and_on_a_broken_stream(
    start_server: Callable[..., RunningServer], tmp_path: Path
) -> None:
    server = start_server(dim=16, model="", max_batch_items=5)
    np.save(tmp_path / "a_good.npy", np.ones((3, 16), np.float32))
    np.save(tmp_path / "b_short.npy", np.ones(8, np.float32))  # the wrong length
    Image.new("RGB", (64, 64), "white").save(tmp_path / "c_photo.png")
    np.save(tmp_path / "d_many.npy", np.ones((8, 16), np.float32))  # a batch over 5

    items_failed, _ = run_json(
        "add", str(tmp_path / "a_good.npy"), str(tmp_path / "b_short.npy"),
        server=server.address, status=1,
    )  # fmt: skip
    assert (items_failed["added"], items_failed["failed"], items_failed["error"]) == (3, 1, None)
    assert items_failed["items"][-1]["error"]["code_name"] == "INVALID_ARGUMENT"

    # The image fails alone (a vector-only server); then d_many.npy's first batch breaks
    # the stream: the report holds what was answered, and says why the rest never went.
    broken = run_cli(
        "--json", "add", *(str(tmp_path / f) for f in ("a_good.npy", "c_photo.png", "d_many.npy")),
        server=server.address,
    )  # fmt: skip
    assert broken.returncode == 1
    assert broken.stdout.count("\n") == 1
    report = json.loads(broken.stdout)
    seen: set[str] = set()
    check(report, COMMANDS["add"], "add", seen)
    assert (report["added"], report["failed"]) == (3, 1)
    assert report["error"]["code_name"] == "RESOURCE_EXHAUSTED"
    assert len(report["items"]) == 4 and "Error" in seen
    [line] = broken.stderr.splitlines()
    assert line.startswith("fsclient: RESOURCE_EXHAUSTED")


def test_errors_stay_one_plain_line_on_stderr(vector_server: RunningServer) -> None:
    missing = run_cli("--json", "get", "99", server=vector_server.address)
    assert (missing.returncode, missing.stdout) == (1, "")
    assert missing.stderr == "fsclient: NOT_FOUND: no item with id 99\n"
    usage = run_cli("--json", "query", server=vector_server.address)
    assert (usage.returncode, usage.stdout) == (2, "")
    assert usage.stderr.startswith("fsclient: error: ") and usage.stderr.count("\n") == 1


# ---- the face shapes, from a face server -------------------------------------------------


def test_face_commands_print_their_documented_shapes(
    start_server: Callable[..., RunningServer], faces_dir: Path, tmp_path: Path
) -> None:
    address = start_server().address

    added, seen = run_json("add", str(faces_dir / "img1.jpg"), server=address)
    assert added["items"][0]["faces_found"] >= 1
    assert {"Face", "Box"} <= seen

    embedded, seen = run_json(
        "embed", str(faces_dir / "couple.jpg"), "--npy", str(tmp_path / "e.npy"), server=address
    )
    assert (embedded["model"], embedded["dim"], len(embedded["faces"])) == ("Dlib", 128, 2)
    assert {"Embedding", "Face", "Box"} <= seen

    found, seen = run_json(
        "query", str(faces_dir / "img2.jpg"), "--show", str(tmp_path / "m.png"), server=address
    )
    assert found["results"][0]["face"]["box"]["width"] > 0 and found["embed_seconds"] > 0
    assert {"QueryResult", "FaceMatches", "Face", "Box", "Neighbor"} <= seen
    assert (tmp_path / "m.png").stat().st_size > 0

    item, _ = run_json("get", "0", server=address)
    assert base64.b64decode(item["thumbnail_base64"]).startswith(b"\xff\xd8")  # a JPEG


# ---- the people commands, from a face server ---------------------------------------------


def test_people_commands_print_their_documented_shapes(
    start_server: Callable[..., RunningServer], faces_dir: Path, tmp_path: Path
) -> None:
    server = start_server()
    address = server.address
    with server.client() as client:
        added = client.add_images(
            [faces_dir / "img1.jpg", faces_dir / "img26.jpg"], labels=["p00", "p01"]
        )
        assert all(r.ok for r in added)
        np.save(tmp_path / "v.npy", client.get(0).vector)

    people, seen = run_json("people", server=address)
    assert people["people"] == [{"label": "p00", "count": 1}, {"label": "p01", "count": 1}]
    assert seen == {"PeopleList", "Person"}
    listed, seen = run_json("list", "--label", "p01", server=address)
    assert [i["id"] for i in listed["items"]] == [1] and seen == {"ItemList", "ItemSummary"}

    who, seen = run_json(
        "identify", str(faces_dir / "img2.jpg"), "--show", str(tmp_path / "who.png"),
        server=address,
    )  # fmt: skip
    [face] = who["results"]
    assert face["known"] and face["person"] == "p00" and face["candidates"][0]["id"] == 0
    assert {"IdentifyResult", "Identification", "Candidate", "DecisionRule", "Face"} <= seen
    assert (tmp_path / "who.png").stat().st_size > 0

    pair, seen = run_json(
        "verify", str(faces_dir / "img2.jpg"), str(faces_dir / "img26.jpg"), server=address
    )
    assert pair["same"] is False and pair["other_id"] is None and pair["other_face"]
    assert {"VerifyResult", "Face", "Box"} <= seen
    person, _ = run_json("verify", str(faces_dir / "img2.jpg"), "--person", "p00", server=address)
    assert person["same"] is True and person["other_id"] == 0 and person["other_face"] is None

    stats, seen = run_json("stats", server=address)
    assert stats["people"] == 2 and "DecisionRule" in seen

    renamed, _ = run_json("rename", "p01", "p00", server=address)
    assert renamed == {"old_label": "p01", "new_label": "p00", "renamed": 1, "merged": True}
    forgot, _ = run_json("forget", "p00", server=address)
    assert forgot == {"label": "p00", "deleted": 2}
    # Nobody left: the distance to the nearest person is infinite, which JSON writes as null.
    lonely, _ = run_json("identify", "--vector", str(tmp_path / "v.npy"), server=address)
    assert lonely["results"][0]["distance"] is None and lonely["results"][0]["known"] is False


# ---- collections -------------------------------------------------------------------------


def test_collection_commands_print_their_documented_shapes(
    vector_server: RunningServer, tmp_path: Path
) -> None:
    address = vector_server.address
    created, seen = run_json("collections", "create", "raw8", "--dim", "8", server=address)
    assert (created["name"], created["dim"], created["model"]) == ("raw8", 8, "")
    assert seen == {"CollectionInfo"}
    np.save(tmp_path / "v.npy", np.eye(8, dtype=np.float32)[:3])
    added, _ = run_json("add", str(tmp_path / "v.npy"), "--collection", "raw8", server=address)
    assert added["added"] == 3
    listed, seen = run_json("collections", server=address)
    assert [(c["name"], c["count"]) for c in listed["collections"]] == [
        ("default", 0),
        ("raw8", 3),
    ]
    assert seen == {"CollectionList", "CollectionInfo"}
    stats, _ = run_json("stats", "--collection", "raw8", server=address)
    assert (stats["collection"], stats["count"], stats["dim"]) == ("raw8", 3, 8)
    assert stats["memory_bytes"] > 0
    dropped, seen = run_json("collections", "drop", "raw8", server=address)
    assert dropped == {"name": "raw8", "dropped": True, "items": 3}
    assert seen == {"DroppedCollection"}
