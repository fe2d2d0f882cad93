"""Collections: several indexes in one server, each with its own contract, WAL, snapshots and
decision rule. Results never cross; create and drop are durable through a SIGKILL; a data
dir written before collections existed opens as `default` with nothing lost; bad requests
get their status codes and the server keeps serving."""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

import grpc
import numpy as np
import pytest

from fsclient import FaceSearchClient, FaceSearchError
from support import RunningServer

Launch = Callable[..., tuple[subprocess.Popen[str], str]]

RELEASE_0_1 = Path(__file__).resolve().parent / "data" / "release-0.1.0"
RAW = {"raw128": 128, "raw64": 64}


def _vectors(n: int, dim: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)


def _code(call: Callable[[], object]) -> grpc.StatusCode:
    with pytest.raises(FaceSearchError) as caught:
        call()
    return caught.value.code


# ---- three collections in one server ----------------------------------------------------


def test_three_collections_in_one_server_never_cross(
    start_server: Callable[..., RunningServer], faces_dir: Path
) -> None:
    server = start_server()  # the face `default` (Dlib)
    with server.client() as client:
        for name, dim in RAW.items():
            created = client.create_collection(name, dim=dim)
            assert (created.name, created.dim, created.model, created.count) == (name, dim, "", 0)
        enrolled = client.add_images(
            [faces_dir / "img1.jpg", faces_dir / "img26.jpg"], labels=["p00", "p01"]
        )
        assert all(r.ok for r in enrolled)
        stored = {name: _vectors(40, dim, seed=dim) for name, dim in RAW.items()}
        for name, vectors in stored.items():
            labels = [f"{name}-{i % 5}" for i in range(len(vectors))]
            results = client.collection(name).add_vectors(vectors, labels=labels)
            assert [r.id for r in results] == list(range(40))  # ids are each collection's own

        for name, vectors in stored.items():
            handle = client.collection(name)
            [matches] = handle.query(vector=vectors[7], k=5).results
            assert matches.neighbors[0].id == 7 and matches.neighbors[0].distance < 1e-3
            assert all(n.label.startswith(f"{name}-") for n in matches.neighbors)
            assert handle.get(3).vector.shape == (RAW[name],)
            who = handle.identify(vector=vectors[12], threshold=0.01).results[0]
            assert who.known and who.person == f"{name}-2"
            # A vector of the other collection's dimension is refused, not searched there.
            other = 64 if RAW[name] == 128 else 128
            assert _code(lambda h=handle, o=other: h.query(vector=np.ones(o, np.float32), k=1)) == (
                grpc.StatusCode.INVALID_ARGUMENT
            )
        [face] = client.query(image=faces_dir / "img2.jpg", k=2).results
        assert {n.label for n in face.neighbors} == {"p00", "p01"}
        probe = faces_dir / "img2.jpg"
        assert client.identify(image=probe, threshold=0.6).results[0].person == "p00"
        raw64 = client.collection("raw64")
        assert _code(lambda: raw64.query(image=probe, k=1)) == (
            grpc.StatusCode.FAILED_PRECONDITION  # raw vectors: no face model
        )

        assert client.collection("raw64").delete([0, 1]) == 2
        counts = {c.name: (c.count, c.people, c.dim) for c in client.collections()}
        assert counts == {"default": (2, 2, 128), "raw128": (40, 5, 128), "raw64": (38, 5, 64)}
        assert client.collection("raw128").get(0).label == "raw128-0"  # untouched
        stats = client.collection("raw64").stats()
        assert (stats.collection, stats.count, stats.deleted) == ("raw64", 38, 2)
        assert stats.memory_bytes > 38 * 64 * 4
        assert client.stats().collection == "default"

        # A second face collection shares the loaded model: no second model in memory.
        faces2 = client.create_collection("faces2", model="Dlib")
        assert (faces2.model, faces2.alignment, faces2.dim) == ("Dlib", "dlib", 128)
        assert len(server.server.catalog.faces.loaded) == 1
        added = client.collection("faces2").add_images([faces_dir / "img26.jpg"], labels=["x"])
        assert added[0].ok and added[0].id == 0
        assert client.stats().count == 2


def test_the_client_takes_its_collection_from_an_argument_or_the_environment(
    vector_server: RunningServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    with vector_server.client() as client:
        client.create_collection("env", dim=4)
    with FaceSearchClient(vector_server.address, collection="env") as client:
        client.add_vectors(np.eye(4, dtype=np.float32), labels=list("abcd"))
        assert client.stats().count == 4
    monkeypatch.setenv("FSCLIENT_COLLECTION", "env")
    with FaceSearchClient(vector_server.address) as client:
        assert client.stats().collection == "env"
        assert client.collection("default").stats().count == 0


# ---- durability ---------------------------------------------------------------------------


def test_sigkill_keeps_every_acknowledged_write_and_every_drop(
    server_process: Launch, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    args = ("--data-dir", str(data), "--dim", "16", "--model", "")
    process, address = server_process(*args)
    dims = {"default": 16, **RAW, "gone": 8}
    with FaceSearchClient(address) as client:
        for name, dim in dims.items():
            if name != "default":
                client.create_collection(name, dim=dim)
            handle = client.collection(name)
            handle.add_vectors(_vectors(30, dim, seed=dim), labels=[f"p{i % 3}" for i in range(30)])
            handle.delete([4])
        client.save()  # default's snapshot; the others live in their WALs only
        client.collection("raw64").rename("p1", "p9")
        client.collection("raw128").add_vectors(_vectors(5, 128, seed=1), labels=["late"] * 5)
        expected = {
            name: sorted((i.id, i.label) for i in client.collection(name).all_items())
            for name in dims
            if name != "gone"
        }
        assert client.drop_collection("gone") == 29
    process.kill()  # SIGKILL right after the drop was acknowledged
    process.wait()

    # A crash half-way through a create and through a drop, as they would leave the disk.
    folder = data / "collections"
    (folder / ".creating-half-0123abcd").mkdir()
    (folder / ".creating-half-0123abcd" / "collection.json").write_text("{")
    (folder / ".dropped-old-0123abcd" / "wal").mkdir(parents=True)

    process, address = server_process(*args)
    with FaceSearchClient(address) as client:
        assert [c.name for c in client.collections()] == ["default", "raw128", "raw64"]
        for name, items in expected.items():
            assert sorted((i.id, i.label) for i in client.collection(name).all_items()) == items
        [matches] = client.collection("raw128").query(vector=_vectors(5, 128, 1)[2], k=1).results
        assert matches.neighbors[0].label == "late" and matches.neighbors[0].distance < 1e-3
        assert _code(lambda: client.collection("gone").stats()) == grpc.StatusCode.NOT_FOUND
    assert sorted(p.name for p in folder.iterdir()) == ["raw128", "raw64"]


@pytest.mark.parametrize("kind", ["vectors", "faces"])
def test_a_data_dir_of_release_0_1_opens_as_default_with_nothing_lost(
    kind: str, start_server: Callable[..., RunningServer], tmp_path: Path
) -> None:
    data = tmp_path / kind
    shutil.copytree(RELEASE_0_1 / kind, data)
    expected = json.loads((RELEASE_0_1 / f"{kind}.json").read_text())
    if kind == "vectors":
        server = start_server(data_dir=data, dim=8, model="")
        query = {"vector": np.asarray(expected["probe"], np.float32), "k": 5}
    else:
        server = start_server(data_dir=data)
        query = {"id": 1, "k": 3}
    with server.client() as client:
        [info] = client.collections()
        assert (info.name, info.count, info.people) == (
            "default",
            expected["count"],
            expected["people"],
        )
        [matches] = client.query(**query, exact=True).results
        got = [(n.id, n.label, n.metadata) for n in matches.neighbors]
        assert got == [tuple(n[:3]) for n in expected["neighbors"]]
        distances = [n.distance for n in matches.neighbors]
        assert distances == pytest.approx([n[3] for n in expected["neighbors"]], abs=1e-5)
        if kind == "faces":
            stats = client.stats()
            assert (stats.model, stats.alignment) == (expected["model"], expected["alignment"])


# ---- bad requests ---------------------------------------------------------------------------


def test_bad_collection_requests_get_their_codes_and_the_server_keeps_serving(
    start_server: Callable[..., RunningServer],
) -> None:
    server = start_server(dim=16, model="", max_collections=3)
    invalid, exists = grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.ALREADY_EXISTS
    with server.client() as client:
        missing = client.collection("nope")
        with pytest.raises(FaceSearchError) as caught:
            missing.query(vector=np.ones(16, np.float32), k=1)
        assert caught.value.code == grpc.StatusCode.NOT_FOUND and "'nope'" in caught.value.details
        assert _code(lambda: list(missing.add_vectors(np.ones((1, 16), np.float32)))) == (
            grpc.StatusCode.NOT_FOUND
        )
        for bad in ("a b", "x" * 65, "caf\u00e9", "../etc", "a/b"):
            assert _code(lambda b=bad: client.create_collection(b, dim=4)) == invalid
            assert _code(lambda b=bad: client.collection(b).stats()) == invalid
            assert _code(lambda b=bad: client.drop_collection(b)) == invalid
        assert _code(lambda: client.create_collection("", dim=4)) == invalid
        for wrong in (
            {"model": "Dlib", "dim": 4},
            {},
            {"model": "NoSuchModel"},
            {"dim": 4, "space": "manhattan"},
            {"dim": 4, "storage": "float16"},
            {"dim": 100_000},
            {"dim": 4, "m": 1},
        ):
            assert _code(lambda w=wrong: client.create_collection("fresh", **w)) == invalid, wrong

        client.create_collection("one", dim=4)
        assert _code(lambda: client.create_collection("one", dim=4)) == exists
        assert _code(lambda: client.create_collection("default", dim=4)) == exists
        client.create_collection("two", dim=4)
        assert _code(lambda: client.create_collection("three", dim=4)) == (
            grpc.StatusCode.RESOURCE_EXHAUSTED
        )
        assert _code(lambda: client.drop_collection("default")) == (
            grpc.StatusCode.FAILED_PRECONDITION
        )
        assert _code(lambda: client.drop_collection("nope")) == grpc.StatusCode.NOT_FOUND
        client.drop_collection("two")
        client.create_collection("three", dim=4)  # room again
        assert client.query(vector=np.ones(16, np.float32), k=1).results[0].neighbors == []
        assert [c.name for c in client.collections()] == ["default", "one", "three"]


def test_a_drop_while_adding_and_querying_answers_each_call_or_says_not_found(
    start_server: Callable[..., RunningServer],
) -> None:
    server = start_server(dim=16, model="")
    with server.client() as client:
        client.create_collection("busy", dim=32)
        client.collection("busy").add_vectors(_vectors(500, 32, seed=3))
    codes: list[grpc.StatusCode] = []
    streamed: list[int] = []
    stop = threading.Event()

    def query() -> None:
        with FaceSearchClient(server.address, collection="busy") as client:
            probe = _vectors(1, 32, seed=4)[0]
            while not stop.is_set():
                try:
                    client.query(vector=probe, k=10)
                    codes.append(grpc.StatusCode.OK)
                except FaceSearchError as error:
                    codes.append(error.code)

    def add_stream() -> None:
        """One long Add stream across the drop: its next batch after it is NOT_FOUND."""

        def batches():  # type: ignore[no-untyped-def]
            seed = 10
            while not stop.is_set():
                seed += 1
                yield from ((v, "", "") for v in _vectors(50, 32, seed=seed))
                time.sleep(0.01)

        with FaceSearchClient(server.address, collection="busy") as client:
            from fsclient.types import AddItem

            items = (AddItem(vector=v, label=label, metadata=m) for v, label, m in batches())
            try:
                for results in client.add(items, batch_size=50):
                    streamed.append(len(results))
                codes.append(grpc.StatusCode.OK)
            except FaceSearchError as error:
                codes.append(error.code)

    threads = [threading.Thread(target=f) for f in (query, query, add_stream)]
    for thread in threads:
        thread.start()
    time.sleep(1.0)
    with server.client() as client:
        assert client.drop_collection("busy") > 500
    time.sleep(0.5)
    stop.set()
    for thread in threads:
        thread.join(timeout=30)
    assert set(codes) <= {grpc.StatusCode.OK, grpc.StatusCode.NOT_FOUND}, set(codes)
    assert grpc.StatusCode.NOT_FOUND in codes and streamed
    with server.client() as client:
        assert client.stats().count == 0  # default, untouched and serving
        assert client.create_collection("busy", dim=32).count == 0  # the name is free again


def test_metrics_carry_a_collection_label(start_server: Callable[..., RunningServer]) -> None:
    server = start_server(dim=16, model="", metrics_listen="127.0.0.1:0")
    with server.client() as client:
        client.create_collection("raw8", dim=8)
        client.collection("raw8").add_vectors(_vectors(3, 8, seed=1))
    address = server.server.metrics_address
    with urllib.request.urlopen(f"http://{address}/metrics", timeout=10) as response:
        text = response.read().decode()
    assert 'facesearch_index_items{collection="raw8"} 3.0' in text
    assert 'facesearch_index_items{collection="default"} 0.0' in text
    assert 'facesearch_index_memory_bytes{collection="raw8"}' in text
