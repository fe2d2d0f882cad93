"""Shared fixtures: real servers on 127.0.0.1:0, the real Dlib model, the real photos.

Face photos come from $FACESEARCH_FACES (default ../shared/faces beside the repo). Where
they are absent the face tests skip and say why; with FACESEARCH_REQUIRE_FACES=1 (set by
.ci/run) a missing folder fails instead. Likewise the Ray tests (marked `ray`, run by `make
test-ray`) skip without the facesearch[ray] extra unless FACESEARCH_REQUIRE_RAY=1.
"""

from __future__ import annotations

import csv
import os
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from fsserver.api.server import FaceSearchServer
from fsserver.config import Config
from fsserver.faces.embedder import DeepFaceEmbedder, Embedder
from support import Gallery, RunningServer, launch_server, split_gallery

# Servers the tests start as processes serve HTTP on a free port, not on fsserver's 8000.
os.environ.setdefault("FSSERVER_HTTP", "127.0.0.1:0")
REPO = Path(__file__).resolve().parent.parent
FACES_DIR = Path(os.environ.get("FACESEARCH_FACES") or REPO.parent / "shared" / "faces")


@pytest.fixture(scope="session")
def faces_dir() -> Path:
    if not (FACES_DIR / "identities.csv").is_file():
        message = f"face photos not found at {FACES_DIR} (set FACESEARCH_FACES to their folder)"
        if os.environ.get("FACESEARCH_REQUIRE_FACES") == "1":
            pytest.fail(message)
        pytest.skip(message)
    return FACES_DIR


@pytest.fixture(scope="session")
def ray_cluster() -> Iterator[None]:
    """One local Ray for the whole session (it takes seconds to start), sized as the Ray
    tests' 2-core machine: 2 CPUs, a 256 MB object store; shard actors take fractions."""
    try:
        import ray
    except ImportError:
        if os.environ.get("FACESEARCH_REQUIRE_RAY") == "1":
            pytest.fail("Ray is not installed: pip install -e '.[ray]' (make test-ray does)")
        pytest.skip("Ray is not installed (the facesearch[ray] extra; make test-ray)")
    ray.init(
        num_cpus=2,
        object_store_memory=256 * 1024 * 1024,
        include_dashboard=False,
        log_to_driver=False,
    )
    yield
    ray.shutdown()


@pytest.fixture(scope="session")
def identities(faces_dir: Path) -> dict[str, str]:
    """Photo file name → person id."""
    with (faces_dir / "identities.csv").open() as f:
        return {row["file"]: row["identity"] for row in csv.DictReader(f)}


@pytest.fixture(scope="session")
def dlib_embedder(faces_dir: Path) -> Embedder:
    """The real DeepFace Dlib model, loaded once for the whole session."""
    return DeepFaceEmbedder("Dlib", "dlib")


def _start(config: Config, embedder: Embedder | None) -> RunningServer:
    server = FaceSearchServer(config, embedder=embedder).start()
    return RunningServer(server, config.data_dir)


@pytest.fixture
def start_server(
    tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[Callable[..., RunningServer]]:
    """Start real servers on 127.0.0.1:0: `start_server(dim=8)` for vector-only,
    `start_server()` for the Dlib face server. All are stopped after the test."""
    started: list[RunningServer] = []

    def start(data_dir: Path | None = None, **overrides: Any) -> RunningServer:
        config = replace(
            Config(listen="127.0.0.1:0", data_dir=data_dir or tmp_path / f"data{len(started)}"),
            **overrides,
        )
        embedder = None if config.vector_only else request.getfixturevalue("dlib_embedder")
        running = _start(config, embedder)
        started.append(running)
        return running

    yield start
    for running in started:
        running.stop()


@pytest.fixture
def vector_server(start_server: Callable[..., RunningServer]) -> RunningServer:
    return start_server(dim=16, model="")


@pytest.fixture(scope="session")
def gallery(
    tmp_path_factory: pytest.TempPathFactory,
    faces_dir: Path,
    identities: dict[str, str],
    dlib_embedder: Embedder,
) -> Iterator[Gallery]:
    enrolled, probes, strangers = split_gallery(identities)
    config = Config(
        listen="127.0.0.1:0", data_dir=tmp_path_factory.mktemp("gallery"), http="127.0.0.1:0"
    )
    running = _start(config, dlib_embedder)
    with running.client() as client:
        files = sorted(enrolled)
        results = client.add_images(
            [faces_dir / f for f in files],
            labels=files,
            metadata=[enrolled[f] for f in files],
        )
    failed = [(f, r.error) for f, r in zip(files, results, strict=True) if not r.ok]
    assert not failed, f"gallery enrollment failed: {failed}"
    yield Gallery(running, enrolled, probes, strangers)
    running.stop()


Launch = Callable[..., tuple[subprocess.Popen[str], str]]


@pytest.fixture
def server_process() -> Iterator[Launch]:
    """Start the real `python -m fsserver ARGS` on 127.0.0.1:0 (returns the process and its
    address); whatever is still running at the end of the test is killed."""
    launched: list[subprocess.Popen[str]] = []

    def launch(*args: str) -> tuple[subprocess.Popen[str], str]:
        process, address = launch_server(*args)
        launched.append(process)
        return process, address

    yield launch
    for process in launched:
        if process.poll() is None:
            process.kill()
            process.wait()
