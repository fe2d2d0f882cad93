"""The Node.js example client (examples/node) against real servers, checked against the
Python client's answers to the same questions.

Needs `node` and `npm`; without them these tests skip and say why, and with
FACESEARCH_REQUIRE_NODE=1 (set by .ci/run) they fail instead. `npm ci` runs once per
session; a failing `npm ci` (no registry, a broken lock file) is a failure, not a skip.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from fsclient.types import QueryResult
from support import Gallery, RunningServer

NODE_DIR = Path(__file__).resolve().parents[2] / "examples" / "node"
# A caller-chosen id past 2^53, where a JS number would lose it: the example reads
# uint64 fields as decimal strings (proto-loader `longs: String`).
BIG_ID = 2**63 + 5


@pytest.fixture(scope="session")
def node() -> str:
    """The `node` executable, with examples/node's locked dependencies installed."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        missing = " and ".join(name for name, path in (("node", node), ("npm", npm)) if not path)
        message = f"{missing} not found on PATH: the Node example client is not tested"
        if os.environ.get("FACESEARCH_REQUIRE_NODE") == "1":
            pytest.fail(message)
        pytest.skip(message)
    result = subprocess.run(
        [npm, "ci", "--no-audit", "--no-fund", "--prefer-offline"],
        cwd=NODE_DIR,
        env={**os.environ, "npm_config_update_notifier": "false"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    if result.returncode:
        pytest.fail(f"npm ci in {NODE_DIR} failed (exit {result.returncode}):\n{result.stderr}")
    return node


def run_node(node: str, server: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Run `node example.js ARGS` against `server`, with no token or TLS from our env."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FSCLIENT_")}
    env["FSCLIENT_SERVER"] = server
    return subprocess.run(
        [node, "example.js", *args],
        cwd=NODE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def node_json(node: str, server: str, *args: str) -> Any:
    result = run_node(node, server, "--json", *args)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def assert_same_neighbours(from_node: dict[str, Any], from_python: QueryResult) -> None:
    """One QueryResponse as the Node example printed it, one as the Python client read it."""
    assert len(from_node["results"]) == len(from_python.results)
    for node_face, python_face in zip(from_node["results"], from_python.results, strict=True):
        node_neighbours = node_face["neighbors"]
        assert [int(n["id"]) for n in node_neighbours] == [n.id for n in python_face.neighbors]
        for n, p in zip(node_neighbours, python_face.neighbors, strict=True):
            assert isinstance(n["id"], str)
            assert (n["label"], n["metadata"], n["match"]) == (p.label, p.metadata, p.match)
            assert n["distance"] == pytest.approx(p.distance, rel=1e-6, abs=1e-6)
        if python_face.face is not None:
            box = python_face.face.box
            assert box is not None
            assert node_face["face"]["box"] == {
                "x": box.x,
                "y": box.y,
                "width": box.width,
                "height": box.height,
            }


def test_node_adds_vectors_and_finds_what_the_python_client_finds(
    node: str, start_server: Callable[..., RunningServer], tmp_path: Path
) -> None:
    dim = 16
    server = start_server(dim=dim, model="")
    rng = np.random.default_rng(5)
    vectors = rng.normal(size=(300, dim)).astype(np.float32)
    # Two files: server-assigned ids, then caller-chosen ones past 2^53. A batch size of 64
    # sends several batches down one Add stream.
    assigned = [
        {"vector": v.tolist(), "label": f"v{i}", "metadata": json.dumps({"row": i})}
        for i, v in enumerate(vectors[:200])
    ]
    chosen_ids = [BIG_ID + i for i in range(100)]
    chosen = [
        {"vector": v.tolist(), "label": f"w{i}", "id": str(chosen_ids[i])}
        for i, v in enumerate(vectors[200:])
    ]
    address = server.address

    def add(name: str, items: list[dict[str, Any]]) -> Any:
        (tmp_path / name).write_text(json.dumps(items))
        return node_json(node, address, "add-vectors", str(tmp_path / name), "--batch-size", "64")

    first, second = add("assigned.json", assigned), add("chosen.json", chosen)
    assert (first["added"], first["failed"]) == (200, 0)
    assert (second["added"], second["failed"]) == (100, 0)
    ids = [int(r["id"]) for r in first["results"]] + [int(r["id"]) for r in second["results"]]
    assert ids[200:] == chosen_ids
    assert len(set(ids)) == 300

    with server.client() as client:
        # The packed little-endian float32 rows arrived bit for bit, under the right ids.
        for row in (0, 117, 199, 200, 299):
            item = client.get(ids[row])
            np.testing.assert_array_equal(item.vector, vectors[row])
            assert item.label == (assigned + chosen)[row]["label"]

        queries = [
            vectors[3] + rng.normal(scale=0.05, size=dim),
            vectors[250] + rng.normal(scale=0.05, size=dim),
            rng.normal(size=dim),
        ]
        for query in (q.astype(np.float32) for q in queries):
            text = json.dumps(query.tolist())
            # An explicit ef: the server may recalibrate its default between two calls.
            from_node = node_json(node, address, "query-vector", text, "-k", "7", "--ef", "80")
            assert_same_neighbours(from_node, client.query(vector=query, k=7, ef=80))
            from_node = node_json(node, address, "query-vector", text, "-k", "5", "--exact")
            assert_same_neighbours(from_node, client.query(vector=query, k=5, exact=True))

        stats = node_json(node, address, "stats")
        assert stats["count"] == str(client.stats().count) == "300"
        assert stats["dim"] == dim


def test_node_query_by_photo_matches_the_python_client(
    node: str, gallery: Gallery, faces_dir: Path
) -> None:
    address = gallery.server.address
    # A held-out photo of an enrolled person, and a photo with two faces in it.
    for photo in (faces_dir / sorted(gallery.probes)[0], faces_dir / "couple.jpg"):
        from_node = node_json(node, address, "query-image", str(photo), "-k", "3", "--exact")
        with gallery.server.client() as client:
            from_python = client.query(image=photo, k=3, exact=True)
        assert len(from_python.results) == (2 if photo.name == "couple.jpg" else 1)
        assert_same_neighbours(from_node, from_python)
        assert from_node["embed_seconds"] > 0


def test_node_reports_a_failed_call_in_one_line(
    node: str, vector_server: RunningServer, unused_address: str
) -> None:
    result = run_node(node, vector_server.address, "query-vector", "[1, 2, 3]")
    assert result.returncode == 1
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("example.js: INVALID_ARGUMENT: ")
    assert "dimension" in lines[0]

    result = run_node(node, unused_address, "stats")
    assert result.returncode == 1
    assert len(result.stderr.splitlines()) == 1, result.stderr
    assert result.stderr.startswith("example.js: UNAVAILABLE: ")


@pytest.fixture
def unused_address() -> str:
    """An address nothing listens on: a port bound and released by us."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{s.getsockname()[1]}"
