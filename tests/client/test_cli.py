"""The real `fsclient` CLI, as a subprocess, against real servers."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

from support import Gallery, RunningServer, run_cli


def test_add_a_folder_then_query_a_photo_of_the_same_person(
    start_server: Callable[..., RunningServer], faces_dir: Path, tmp_path: Path
) -> None:
    server = start_server()
    photos = tmp_path / "photos"
    for person, files in {"alice": ["img1.jpg", "img2.jpg"], "bob": ["img3.jpg"]}.items():
        (photos / person).mkdir(parents=True)
        for file in files:
            shutil.copy(faces_dir / file, photos / person / file)
    (photos / "notes.txt").write_text("not a photo")
    added = run_cli("add", str(photos), "--label-from-dir", server=server.address)
    assert added.returncode == 0, added.stderr
    assert "added 3" in added.stdout
    with server.client() as client:
        assert sorted(client.get(i).label for i in range(3)) == ["alice", "alice", "bob"]
    # img4.jpg is the same person as img1/img2 (p00) and is not enrolled.
    found = run_cli("query", str(faces_dir / "img4.jpg"), "-k", "2", server=server.address)
    assert found.returncode == 0, found.stderr
    lines = [line for line in found.stdout.splitlines() if "nearest neighbor" in line]
    assert lines[0].startswith("1. nearest neighbor is alice (id ")
    assert lines[0].endswith("(match)")
    assert "by person: alice 2 of 2 (nearest 0." in found.stdout
    assert "; match: distance <= 0." in found.stdout  # what match was decided by
    as_json = run_cli("--json", "query", str(faces_dir / "img4.jpg"), server=server.address)
    answer = json.loads(as_json.stdout)
    first = answer["results"][0]["neighbors"][0]
    assert first["label"] == "alice" and first["match"] is True
    assert first["distance"] < 0.6


def test_add_reports_each_failed_item_and_exits_one(
    start_server: Callable[..., RunningServer], faces_dir: Path, tmp_path: Path
) -> None:
    server = start_server()
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not a jpeg at all")
    blank = tmp_path / "blank.png"
    Image.new("RGB", (200, 200), "white").save(blank)
    added = run_cli(
        "--json", "add", str(faces_dir / "img1.jpg"), str(broken), str(blank),
        server=server.address,
    )  # fmt: skip
    assert added.returncode == 1
    report = json.loads(added.stdout)
    assert (report["added"], report["failed"]) == (1, 2)
    errors = {Path(i["source"]).name: i["error"] for i in report["items"] if not i["ok"]}
    assert errors["broken.jpg"]["code_name"] == "INVALID_ARGUMENT"
    assert errors["blank.png"]["code_name"] == "FAILED_PRECONDITION"
    plain = run_cli("add", str(broken), server=server.address)
    assert plain.returncode == 1
    assert "broken.jpg" in plain.stdout + plain.stderr
    assert "INVALID_ARGUMENT" in plain.stdout + plain.stderr


def test_vectors_from_npy_files(vector_server: RunningServer, tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    matrix = rng.normal(size=(50, 16)).astype(np.float32)
    np.save(tmp_path / "many.npy", matrix)
    np.save(tmp_path / "probe.npy", matrix[17])
    added = run_cli("add", str(tmp_path / "many.npy"), server=vector_server.address)
    assert added.returncode == 0, added.stderr
    found = run_cli(
        "--json", "query", "--vector", str(tmp_path / "probe.npy"), "-k", "3",
        server=vector_server.address,
    )  # fmt: skip
    neighbours = json.loads(found.stdout)["results"][0]["neighbors"]
    assert neighbours[0]["id"] == 17
    assert neighbours[0]["distance"] < 1e-5
    by_id = run_cli("--json", "query", "--id", "17", server=vector_server.address)
    assert json.loads(by_id.stdout)["results"][0]["neighbors"][0]["id"] == 17


def test_a_vector_query_names_ids_and_metadata_and_decides_nothing_without_a_threshold(
    vector_server: RunningServer, tmp_path: Path
) -> None:
    matrix = np.full((3, 16), 0.6, np.float32)
    matrix[1:] += np.arange(1, 3, dtype=np.float32)[:, None]  # 4 and 8 away from row 0
    np.save(tmp_path / "rows.npy", matrix)
    np.save(tmp_path / "probe.npy", matrix[0])
    added = run_cli(
        "add", str(tmp_path / "rows.npy"), "--metadata", '{"camera": 3}',
        server=vector_server.address,
    )  # fmt: skip
    assert added.returncode == 0, added.stderr
    found = run_cli("query", "--vector", str(tmp_path / "probe.npy"), server=vector_server.address)
    assert found.returncode == 0, found.stderr
    rows = str(tmp_path / "rows.npy")
    assert found.stdout.splitlines()[:3] == [
        f"1. nearest neighbor is {rows}#0 (id 0) with distance 0.0000 (same vector), "
        'metadata {"camera": 3}',
        f'2. nearest neighbor is {rows}#1 (id 1) with distance 4.0000, metadata {{"camera": 3}}',
        f'3. nearest neighbor is {rows}#2 (id 2) with distance 8.0000, metadata {{"camera": 3}}',
    ]
    assert "(no match)" not in found.stdout  # the server has no threshold: nothing decided
    assert "this server has no match threshold" in found.stdout
    # --json: every key, zeros too (the first id is 0, an exact hit is at distance 0), and
    # float32 values at their own precision.
    as_json = run_cli("--json", "query", "--id", "0", "-k", "1", server=vector_server.address)
    answer = json.loads(as_json.stdout)
    assert answer["threshold"] is None
    assert answer["results"][0]["neighbors"] == [
        {
            "id": 0,
            "label": f"{rows}#0",
            "metadata": '{"camera": 3}',
            "distance": 0.0,
            "match": False,
        }
    ]
    item = run_cli("--json", "get", "0", server=vector_server.address)
    assert '"vector": [0.6, 0.6,' in item.stdout and "0.6000000238" not in item.stdout
    assert json.loads(item.stdout)["id"] == 0


def test_adding_a_photo_again_is_said_and_skip_existing_skips_it(
    start_server: Callable[..., RunningServer], faces_dir: Path
) -> None:
    server = start_server()
    photo, other = str(faces_dir / "img1.jpg"), str(faces_dir / "img2.jpg")
    first = run_cli("add", photo, "--label", "alice", server=server.address)
    assert first.returncode == 0 and "already enrolled" not in first.stdout, first.stdout
    again = run_cli("add", photo, "--label", "alice", server=server.address)
    assert again.returncode == 0, again.stderr
    assert f"  {photo}: the same face as id 0 (alice); now also id 1" in again.stdout
    skipped = run_cli(
        "--json", "add", photo, other, "--label", "alice", "--skip-existing",
        server=server.address,
    )  # fmt: skip
    assert skipped.returncode == 0, skipped.stderr
    report = json.loads(skipped.stdout)
    assert (report["added"], report["failed"], report["skipped"]) == (1, 0, 1)
    assert [(i["ok"], i["skipped"]) for i in report["items"]] == [(True, True), (True, False)]
    assert report["items"][0]["duplicate_of"] in (0, 1)  # either earlier copy
    assert report["items"][1]["duplicate_of"] is None  # another photo of her: no copy
    with server.client() as client:
        assert client.stats().count == 3  # img1 twice (before --skip-existing), img2


def test_show_draws_the_query_face_beside_each_neighbour(
    gallery: Gallery, faces_dir: Path, tmp_path: Path
) -> None:
    picture = tmp_path / "matches.png"
    probe = sorted(gallery.probes)[0]
    shown = run_cli(
        "query", str(faces_dir / probe), "-k", "3", "--show", str(picture),
        server=gallery.server.address,
    )  # fmt: skip
    assert shown.returncode == 0, shown.stderr
    with Image.open(picture) as image:
        assert image.format == "PNG"
        width, height = image.size
        # One row (one face): the query tile plus three neighbour tiles, side by side.
        assert width >= 4 * height * 0.75
        pixels = np.asarray(image.convert("RGB"))
    assert pixels.std() > 10  # real photos, not blank tiles


def test_embed_stats_save_get_delete(
    start_server: Callable[..., RunningServer], faces_dir: Path, tmp_path: Path
) -> None:
    server = start_server()
    address = server.address
    embedded = run_cli(
        "--json", "embed", str(faces_dir / "couple.jpg"), "--npy", str(tmp_path / "e.npy"),
        server=address,
    )  # fmt: skip
    assert embedded.returncode == 0, embedded.stderr
    faces = json.loads(embedded.stdout)["faces"]
    assert len(faces) == 2 and len(faces[0]["embedding"]) == 128
    assert np.load(tmp_path / "e.npy").shape == (2, 128)
    assert run_cli("add", str(tmp_path / "e.npy"), server=address).returncode == 0
    stats = json.loads(run_cli("--json", "stats", server=address).stdout)
    assert (stats["count"], stats["model"], stats["detector"], stats["dim"]) == (
        2, "Dlib", "dlib", 128,
    )  # fmt: skip
    text_stats = run_cli("stats", server=address).stdout
    assert "Dlib" in text_stats and "2" in text_stats
    saved = json.loads(run_cli("--json", "save", server=address).stdout)
    assert saved["count"] == 2 and saved["snapshot"].startswith("snapshots/")
    item = json.loads(run_cli("--json", "get", "1", server=address).stdout)
    assert item["id"] == 1 and len(item["vector"]) == 128
    assert run_cli("delete", "0", "1", server=address).returncode == 0
    missing = run_cli("get", "1", server=address)
    assert missing.returncode == 1
    assert missing.stderr.strip() == "fsclient: NOT_FOUND: no item with id 1"


def test_the_server_address_can_come_from_fsclient_server(vector_server: RunningServer) -> None:
    env = {**os.environ, "FSCLIENT_SERVER": vector_server.address}
    shown = run_cli("--json", "stats", env=env)
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["dim"] == 16


def test_compact_and_the_wal_in_stats(vector_server: RunningServer, tmp_path: Path) -> None:
    address = vector_server.address
    np.save(tmp_path / "v.npy", np.random.default_rng(0).normal(size=(10, 16)).astype(np.float32))
    assert run_cli("add", str(tmp_path / "v.npy"), server=address).returncode == 0
    assert run_cli("delete", "0", "1", "2", server=address).returncode == 0
    stats = json.loads(run_cli("--json", "stats", server=address).stdout)
    assert stats["wal_bytes"] > 0 and (stats["count"], stats["deleted"]) == (7, 3)
    compacted = run_cli("compact", server=address)
    assert compacted.returncode == 0, compacted.stderr
    assert compacted.stdout.startswith("compacted: 3 deleted items dropped, 7 kept")
    again = json.loads(run_cli("--json", "compact", server=address).stdout)
    assert (again["removed"], again["count"]) == (0, 7)
    assert "0 WAL record(s) replayed" in run_cli("stats", server=address).stdout


def test_a_compaction_that_would_not_pay_off_is_skipped_unless_forced(
    vector_server: RunningServer, tmp_path: Path
) -> None:
    address = vector_server.address
    np.save(tmp_path / "v.npy", np.random.default_rng(1).normal(size=(100, 16)).astype(np.float32))
    added = json.loads(run_cli("--json", "add", str(tmp_path / "v.npy"), server=address).stdout)
    first = added["items"][0]["id"]
    stats = json.loads(run_cli("--json", "stats", server=address).stdout)
    assert stats["process_rss_bytes"] > 10_000_000  # the server's own RSS, every collection
    assert run_cli("delete", str(first), server=address).returncode == 0
    skipped = run_cli("compact", server=address)
    assert skipped.returncode == 0, skipped.stderr
    assert skipped.stdout.startswith("not compacted: only 1 of "), skipped.stdout
    assert "force" in skipped.stdout
    forced = json.loads(run_cli("--json", "compact", "--force", server=address).stdout)
    assert (forced["removed"], forced["skipped"], forced["joined"]) == (1, "", False)
    assert 0 <= forced["hold_seconds"] <= forced["seconds"]
