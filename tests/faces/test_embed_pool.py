"""The face model in worker processes (--embed-workers): a real server with 2 workers gives
what the in-process model gives, survives a worker's death, and leaves no process behind.

One pool-backed server serves the whole module (each worker loads the model once).
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import cv2
import grpc
import numpy as np
import pytest

from fsclient import FaceSearchClient, FaceSearchError
from fsserver.api.server import FaceSearchServer
from fsserver.collection.pipeline import ReadAhead
from fsserver.config import Config
from fsserver.faces.embedder import DetectedFace, Embedder
from fsserver.faces.images import decode_image
from fsserver.faces.pool import EmbedPool
from support import RunningServer, launch_server

WAIT = 60.0
PEOPLE = 4  # people enrolled (2 photos each) and then recognised from a third photo


def wait_for(condition: Callable[[], object], what: str, timeout: float = WAIT) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"waited {timeout:g}s for {what}", pytrace=False)
        time.sleep(0.01)


def alive(pid: int) -> bool:
    """Some thread of the process still runs: a zombie (an orphan's may wait for init) is
    dead, but only once its last thread has exited too (and its pipes have closed)."""
    try:
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
    except OSError:
        return False
    for task in tasks:
        try:
            state = (task / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue  # that thread has just gone
        if state not in ("Z", "X"):
            return True
    return False


def children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def kill_mid_image(pool: EmbedPool) -> int:
    """SIGKILL a worker while it is embedding an image. It is stopped first and killed only
    if still busy then, so it cannot finish the image between the look and the kill."""
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        busy = pool.busy_pids
        if not busy:
            time.sleep(0.01)
            continue
        os.kill(busy[0], signal.SIGSTOP)
        time.sleep(0.3)  # a reply sent just before the stop is read by the server meanwhile
        if busy[0] in pool.busy_pids:
            os.kill(busy[0], signal.SIGKILL)
            return busy[0]
        os.kill(busy[0], signal.SIGCONT)
    pytest.fail("no worker was seen embedding an image", pytrace=False)


def in_process(embedder: Embedder, path: Path) -> list[DetectedFace]:
    return embedder.embed(decode_image(path.read_bytes(), Config().max_image_side))


def pool_of(running: RunningServer) -> EmbedPool:
    pool = running.server.catalog.default.embed_pool
    assert pool is not None, "the server embeds in-process"
    return pool


@pytest.fixture(scope="module")
def pool_server(
    tmp_path_factory: pytest.TempPathFactory, faces_dir: Path
) -> Iterator[RunningServer]:
    config = Config(listen="127.0.0.1:0", data_dir=tmp_path_factory.mktemp("pool"), embed_workers=2)
    running = RunningServer(FaceSearchServer(config).start(), config.data_dir)
    yield running
    running.stop()


@pytest.fixture(scope="module")
def people(identities: dict[str, str]) -> dict[str, list[str]]:
    """Person → their first three photos, for the first PEOPLE people with three."""
    by_person: dict[str, list[str]] = {}
    for file in sorted(identities, key=lambda f: (len(f), f)):
        by_person.setdefault(identities[file], []).append(file)
    chosen = [p for p in sorted(by_person) if len(by_person[p]) >= 3][:PEOPLE]
    return {p: by_person[p][:3] for p in chosen}


def test_workers_enroll_what_the_in_process_model_finds(
    pool_server: RunningServer,
    dlib_embedder: Embedder,
    faces_dir: Path,
    people: dict[str, list[str]],
) -> None:
    pool = pool_of(pool_server)
    assert pool.ready and len(pool.pids) == 2
    files = [f for photos in people.values() for f in photos[:2]]
    person = {f: p for p, photos in people.items() for f in photos}
    with pool_server.client(timeout=WAIT) as client:
        # Batches of 4: one batch embeds while the one before it is stored.
        results = client.add_images(
            [faces_dir / f for f in files],
            labels=files,
            metadata=[person[f] for f in files],
            batch_size=4,
        )
        for file, result in zip(files, results, strict=True):
            expected = in_process(dlib_embedder, faces_dir / file)
            assert result.ok and result.id is not None and result.face is not None, (file, result)
            assert result.faces_found == len(expected), file
            assert result.face.box == expected[0].face.box, file
            assert np.allclose(result.face.embedding, expected[0].face.embedding, atol=1e-4)
            item = client.get(result.id)
            assert item.label == file and item.thumbnail
            assert np.allclose(item.vector, expected[0].face.embedding, atol=1e-4)
        assert [r.id for r in results] == list(range(len(files)))  # stored in order

        for who, photos in people.items():
            top = client.query(image=faces_dir / photos[2], k=1).results[0].neighbors[0]
            assert (top.metadata, top.match) == (who, True), (photos[2], top)


def test_embed_through_the_workers_gives_every_face(
    pool_server: RunningServer, dlib_embedder: Embedder, faces_dir: Path
) -> None:
    expected = in_process(dlib_embedder, faces_dir / "couple.jpg")
    with pool_server.client(timeout=WAIT) as client:
        embedding = client.embed(faces_dir / "couple.jpg")
    assert (embedding.model, embedding.dim) == ("Dlib", 128)
    assert [f.box for f in embedding.faces] == [f.face.box for f in expected]
    for face, want in zip(embedding.faces, expected, strict=True):
        assert np.allclose(face.embedding, want.face.embedding, atol=1e-4)
        assert face.confidence == pytest.approx(want.face.confidence)


def test_image_errors_cross_the_process_boundary_with_their_codes(
    pool_server: RunningServer,
) -> None:
    ok, blank = cv2.imencode(".jpg", np.full((200, 200, 3), 128, np.uint8))
    assert ok
    with pool_server.client(timeout=WAIT) as client:
        for image, code in (
            (b"not an image", grpc.StatusCode.INVALID_ARGUMENT),
            (blank.tobytes(), grpc.StatusCode.FAILED_PRECONDITION),
        ):
            for call in (client.embed, lambda i: client.query(image=i, k=1)):
                with pytest.raises(FaceSearchError) as error:
                    call(image)
                assert error.value.code == code
        results = client.add_images([b"not an image", blank.tobytes()])
        assert [r.error.code_name if r.error else "OK" for r in results] == [
            "INVALID_ARGUMENT",
            "FAILED_PRECONDITION",
        ]


def test_a_worker_killed_mid_image_fails_that_image_only_and_is_replaced(
    pool_server: RunningServer, faces_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    pool = pool_of(pool_server)
    photo = faces_dir / "couple.jpg"
    with pool_server.client(timeout=WAIT) as client:
        failure: list[BaseException] = []

        def embed() -> None:
            try:
                client.embed(photo)
            except BaseException as error:
                failure.append(error)

        call = threading.Thread(target=embed)
        call.start()
        victim = kill_mid_image(pool)
        call.join(WAIT)
        assert len(failure) == 1, "the image being embedded did not fail"
        error = failure[0]
        assert isinstance(error, FaceSearchError) and error.code == grpc.StatusCode.UNAVAILABLE
        assert "worker process died" in error.details and "SIGKILL" in error.details
        assert victim not in pool.pids and not alive(victim)

        # The replacement serves; so does a worker killed while idle, replaced on demand.
        assert len(client.embed(photo).faces) == 2
        idle = pool.pids
        for pid in idle:
            os.kill(pid, signal.SIGKILL)
        wait_for(lambda: not [pid for pid in idle if alive(pid)], "the idle workers to die")
        assert len(client.embed(photo).faces) == 2

        # Killed in the middle of an Add stream: at most that image fails, and not INTERNAL.
        files = sorted(faces_dir.glob("img*.jpg"))[:6]
        before = client.stats().count
        outcome: list[Any] = []
        adding = threading.Thread(
            target=lambda: outcome.append(client.add_images(files, batch_size=3))
        )
        adding.start()
        kill_mid_image(pool)
        adding.join(WAIT)
        codes = [r.error.code_name if r.error else "OK" for r in outcome[0]]
        assert set(codes) <= {"OK", "UNAVAILABLE"} and codes.count("UNAVAILABLE") <= 1, codes
        assert client.stats().count == before + codes.count("OK")
        assert client.embed(photo).faces
    assert pool.ready and len(pool.pids) == 2
    # Nothing reached the client as INTERNAL (which the servicer logs as "… failed").
    assert not [r for r in caplog.records if r.name == "fsserver.api.servicer"]


def test_stopping_the_server_stops_every_worker(tmp_path: Path, faces_dir: Path) -> None:
    config = Config(listen="127.0.0.1:0", data_dir=tmp_path / "data", embed_workers=1)
    server = FaceSearchServer(config).start()
    pool = server.catalog.default.embed_pool
    assert pool is not None
    first = pool.pids
    os.kill(first[0], signal.SIGKILL)
    wait_for(lambda: not alive(first[0]), "the worker to die")
    with FaceSearchClient(server.address, timeout=WAIT) as client:
        assert client.embed(faces_dir / "img1.jpg").faces  # on a replacement worker
    started = first + pool.pids
    assert len(set(started)) == 2
    server.stop(grace=1.0)
    assert not [pid for pid in started if alive(pid)]


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGKILL], ids=["SIGTERM", "SIGKILL"])
def test_no_worker_outlives_the_server_process(
    tmp_path: Path, faces_dir: Path, stop: signal.Signals
) -> None:
    process, address = launch_server(
        "--data-dir", str(tmp_path / "data"), "--embed-workers", "2", "--log-level", "WARNING"
    )
    try:
        # The workers, and multiprocessing's resource tracker: none may outlive the server.
        workers = children(process.pid)
        commands = [Path(f"/proc/{pid}/cmdline").read_bytes() for pid in workers]
        assert sum(b"spawn_main" in c for c in commands) == 2, commands
        with FaceSearchClient(address, timeout=WAIT) as client:
            assert client.add_images([faces_dir / "img1.jpg"])[0].ok
        process.send_signal(stop)
        code = process.wait(timeout=WAIT)
        assert code == (0 if stop == signal.SIGTERM else -signal.SIGKILL)
        # After SIGKILL the workers find their pipe closed and exit by themselves.
        wait_for(lambda: not [pid for pid in workers if alive(pid)], "the workers to exit", 20)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_embed_workers_0_embeds_in_the_server_process(
    tmp_path: Path,
    dlib_embedder: Embedder,
    faces_dir: Path,
) -> None:
    config = Config(listen="127.0.0.1:0", data_dir=tmp_path / "data", embed_workers=0)
    running = RunningServer(FaceSearchServer(config).start(), config.data_dir)
    try:
        assert running.server.catalog.default.embed_pool is None
        with running.client(timeout=WAIT) as client:
            result = client.add_images([faces_dir / "img1.jpg"])[0]
            expected = in_process(dlib_embedder, faces_dir / "img1.jpg")
            assert result.ok and result.face is not None
            assert np.allclose(result.face.embedding, expected[0].face.embedding, atol=1e-4)
            assert len(client.embed(faces_dir / "couple.jpg").faces) == 2
    finally:
        running.stop()


def test_config_defaults_to_a_worker_per_core() -> None:
    from fsserver.config import DEFAULT_EMBED_WORKERS, parse_config

    assert 1 <= DEFAULT_EMBED_WORKERS <= 8
    assert parse_config([]).embed_workers == DEFAULT_EMBED_WORKERS
    assert parse_config(["--embed-workers", "0"]).embed_workers == 0


# ---- reading an Add stream ahead ------------------------------------------------------------


def test_read_ahead_keeps_order_and_stays_one_item_ahead() -> None:
    produced: list[int] = []

    def source() -> Iterator[int]:
        for i in range(5):
            produced.append(i)
            yield i

    seen = []
    for item in ReadAhead(source(), discard=lambda _: None, name="test"):
        time.sleep(0.05)  # the producer has had time to run ahead as far as it may
        assert len(produced) <= item + 2, (item, produced)
        seen.append(item)
    assert seen == list(range(5))


def test_read_ahead_raises_after_the_items_before_the_error_and_discards_the_rest() -> None:
    def failing() -> Iterator[int]:
        yield 1
        yield 2
        raise ValueError("bad request")

    seen = []
    with pytest.raises(ValueError, match="bad request"):
        for item in ReadAhead(failing(), discard=lambda _: None, name="test"):
            seen.append(item)
    assert seen == [1, 2]

    discarded: list[int] = []
    ahead = ReadAhead(iter(range(10)), discard=discarded.append, name="test")
    for item in ahead:
        if item == 3:
            wait_for(lambda: ahead._ready.qsize(), "the next item to be read")
            break
    wait_for(lambda: discarded == [4], "the item read ahead to be discarded", 5)
