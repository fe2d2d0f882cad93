"""Label lists: `fsclient add --labels-csv FILE` (the real CLI against a real Dlib server)
and the same CSV columns in `fsserver enroll`, whose missing Ray is one line, not a trace."""

from __future__ import annotations

import csv
import importlib.util
import io
import json
import math
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fsclient.labels import find_columns
from fsclient.sources import LocalFileError
from fsserver.shards.enroll import listed_row
from support import RunningServer, run_cli

NOWHERE = "127.0.0.1:1"  # refuses at once: the CSV is judged before any call


def write_csv(path: Path, header: list[str], rows: list[list[str]]) -> Path:
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def test_each_listed_photo_is_enrolled_with_its_person(
    start_server: Callable[..., RunningServer], faces_dir: Path, tmp_path: Path
) -> None:
    server = start_server(embed_workers=0)
    listing = tmp_path / "lists"
    (listing / "photos").mkdir(parents=True)
    for file in ["img1.jpg", "img2.jpg", "img3.jpg"]:
        (listing / "photos" / file).symlink_to(faces_dir / file)
    Image.new("RGB", (200, 200), "white").save(listing / "photos" / "blank.png")
    rows = [
        ["photos/img1.jpg", "p00"],
        ["photos/blank.png", "nobody"],  # no face: reported as an item, not fatal
        ["photos/img3.jpg", "p02"],
        [str(faces_dir / "img2.jpg"), "p00"],  # an absolute path
    ]
    ids = write_csv(listing / "ids.csv", ["file", "identity"], rows)
    # Run from elsewhere: relative paths are the CSV's folder's, not the working directory's.
    added = run_cli(
        "--json", "add", "--labels-csv", str(ids), "--batch-size", "2",
        server=server.address, cwd=tmp_path.parent,
    )  # fmt: skip
    assert added.returncode == 1, added.stderr  # the blank photo failed
    report = json.loads(added.stdout)
    assert (report["added"], report["failed"]) == (3, 1)
    sources = [str(listing / row[0]) for row in rows[:3]] + [rows[3][0]]
    assert [i["source"] for i in report["items"]] == sources
    assert [i["label"] for i in report["items"]] == [row[1] for row in rows]
    failed = next(i for i in report["items"] if not i["ok"])
    assert failed["error"]["code_name"] == "FAILED_PRECONDITION"
    with server.client() as client:
        assert sorted(client.get(i).label for i in range(3)) == ["p00", "p00", "p02"]
        assert client.get(0).metadata == ""
        # img4 is p00, not enrolled: its nearest neighbour carries the listed label.
        nearest = client.query(image=faces_dir / "img4.jpg", k=1).results[0].neighbors[0]
        assert nearest.label == "p00" and nearest.match

    plain = run_cli("add", "--labels-csv", str(ids), server=server.address)
    assert plain.returncode == 1
    assert "blank.png" in plain.stdout and "FAILED_PRECONDITION" in plain.stdout


def test_vectors_person_and_metadata_columns(vector_server: RunningServer, tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    np.save(tmp_path / "one.npy", rng.normal(size=16).astype(np.float32))
    np.save(tmp_path / "two.npy", rng.normal(size=(2, 16)).astype(np.float32))
    ids = write_csv(
        tmp_path / "people.csv",
        [" Path", "Person", "photos", "metadata"],  # case and spaces ignored; extras too
        [["one.npy", "ann", "one", '{"x": 1}'], ["two.npy", "bo", "several", ""]],
    )
    added = run_cli(
        "add", "--labels-csv", str(ids), "--metadata", "default", server=vector_server.address
    )
    assert added.returncode == 0, added.stderr
    assert "added 3" in added.stdout
    with vector_server.client() as client:
        items = [client.get(i) for i in range(3)]
    assert [(i.label, i.metadata) for i in items] == [
        ("ann", '{"x": 1}'), ("bo", "default"), ("bo", "default"),
    ]  # fmt: skip
    one = run_cli(
        "--json", "add", "--labels-csv", str(write_csv(tmp_path / "one.csv", ["file", "label"],
        [["one.npy", "ann"]])), "--id", "40", server=vector_server.address,
    )  # fmt: skip
    assert json.loads(one.stdout)["items"][0]["id"] == 40


def assert_one_line(run: subprocess.CompletedProcess[str], status: int, *words: str) -> None:
    assert run.returncode == status, run.stderr
    lines = run.stderr.splitlines()
    assert len(lines) == 1 and "Traceback" not in run.stderr, run.stderr
    for word in words:
        assert word in lines[0], lines[0]
    assert run.stdout == ""


@pytest.mark.parametrize(
    ("content", "words"),
    [
        ("name,who\na.npy,x\n", ["lists.csv", "no `path` or `file` column", "name, who"]),
        ("file,photos\na.npy,1\n", ["no `label`, `person` or `identity` column", "file, photos"]),
        ("file,person\na.npy,x\ngone.jpg,y\n", ["lists.csv line 3", "gone.jpg", "No such file"]),
        ("file,person\na.npy,\n", ["lists.csv line 2", "empty `person`"]),
        ("", ["lists.csv", "empty CSV"]),
        ("file,person\n", ["lists.csv", "lists no files"]),
        ("file,person\n\xff\xfe,x\n", ["not UTF-8"]),
    ],
)
def test_a_bad_list_is_one_line_naming_what_is_wrong(
    tmp_path: Path, content: str, words: list[str]
) -> None:
    np.save(tmp_path / "a.npy", np.ones(4, np.float32))
    (tmp_path / "lists.csv").write_bytes(content.encode("latin-1"))
    run = run_cli("add", "--labels-csv", str(tmp_path / "lists.csv"), server=NOWHERE)
    assert_one_line(run, 1, "fsclient: error: ", *words)


def test_labels_csv_and_paths_do_not_mix(tmp_path: Path) -> None:
    assert_one_line(run_cli("add", server=NOWHERE), 2, "add needs a PATH (or --labels-csv FILE)")
    both = run_cli("add", "x.jpg", "--labels-csv", "l.csv", server=NOWHERE)
    assert_one_line(both, 2, "PATHs or --labels-csv FILE, not both")
    label = run_cli("add", "--labels-csv", "l.csv", "--label", "x", server=NOWHERE)
    assert_one_line(label, 2, "--label", "not allowed with argument --labels-csv")
    missing = run_cli("add", "--labels-csv", str(tmp_path / "nope.csv"), server=NOWHERE)
    assert_one_line(missing, 1, "cannot read", "nope.csv")


def test_fsserver_enroll_reads_the_same_columns(tmp_path: Path) -> None:
    columns = find_columns(["File", "person", "photos"], "x.csv", need_label=False)
    assert (columns.path, columns.label, columns.metadata) == ("File", "person", None)
    assert find_columns(["path"], "x.csv", need_label=False).label is None  # label optional
    with pytest.raises(LocalFileError, match=r"x\.csv: no `path` or `file` column .*: a, b"):
        find_columns(["a", "b"], "x.csv", need_label=False)
    relative = listed_row({"File": "bob/1.jpg", "person": 7}, columns, tmp_path)
    assert relative == {"path": str(tmp_path / "bob/1.jpg"), "label": "7", "metadata": "bob/1.jpg"}
    both = find_columns(["path", "label", "metadata"], "x.parquet")
    absolute = listed_row({"path": "/p/a.jpg", "label": math.nan, "metadata": "m"}, both, tmp_path)
    assert absolute == {"path": "/p/a.jpg", "label": "a.jpg", "metadata": "m"}


@pytest.mark.ray
@pytest.mark.usefixtures("ray_cluster")
def test_fsserver_enroll_takes_a_file_person_csv(
    start_server: Callable[..., RunningServer], faces_dir: Path, tmp_path: Path
) -> None:
    from fsserver.shards.enroll import enroll

    (tmp_path / "photos").mkdir()
    for file in ["img1.jpg", "img3.jpg"]:
        (tmp_path / "photos" / file).symlink_to(faces_dir / file)
    rows = [["photos/img1.jpg", "p00", "x"], ["photos/img3.jpg", "p02", "y"]]
    ids = write_csv(tmp_path / "ids.csv", ["file", "person", "photos"], rows)
    server = start_server(embed_workers=0)
    summary = enroll(
        ids, server.address, workers=1, worker_cpus=0.5, batch_size=2, out=io.StringIO()
    )
    assert (summary.added, summary.refused) == (2, [])
    with server.client() as client:
        stored = sorted((client.get(i).label, client.get(i).metadata) for i in range(2))
    assert stored == [("p00", "photos/img1.jpg"), ("p02", "photos/img3.jpg")]


ENROLL_WITHOUT_RAY = """
import sys
sys.modules["ray"] = None  # `import ray` now fails, whether or not Ray is installed
from fsserver.__main__ import main
sys.exit(main(sys.argv[1:]))
"""


def _enroll_says_install_ray(command: list[str], tmp_path: Path) -> None:
    ids = write_csv(tmp_path / "ids.csv", ["file", "person"], [["a.jpg", "x"]])
    run = subprocess.run(
        [*command, "enroll", str(ids), "--server", NOWHERE],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 1, run.stderr
    lines = run.stderr.splitlines()
    assert len(lines) == 1 and "Traceback" not in run.stderr, run.stderr
    assert lines[0].startswith("fsserver enroll: Ray Data is not installed (ray): ")
    assert "pip install 'facesearch[server,ray]'" in lines[0]


def test_fsserver_enroll_without_ray_says_what_to_install(tmp_path: Path) -> None:
    _enroll_says_install_ray([sys.executable, "-c", ENROLL_WITHOUT_RAY], tmp_path)


@pytest.mark.skipif(
    importlib.util.find_spec("ray") is not None, reason="Ray is installed here: nothing to miss"
)
def test_the_real_fsserver_enroll_without_ray(tmp_path: Path) -> None:
    _enroll_says_install_ray([sys.executable, "-m", "fsserver"], tmp_path)
