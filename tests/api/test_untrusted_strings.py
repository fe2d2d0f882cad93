"""What a client sends is data, never an address: no URL is fetched, no path is opened.

DeepFace would fetch an http(s):// string and open a path it is given; the server hands it
pixels it decoded itself (images.py), and builds every file name under the data directory
from its own constants. These tests send the strings a careless server would act on.
"""

from __future__ import annotations

import base64
import socket
import uuid
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path

import grpc
import numpy as np
import pytest

from fsclient import FaceSearchError
from fsclient.types import AddItem
from support import RunningServer

DIM = 16  # the vector_server fixture's dimension


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    """A local TCP socket that is listening but never accepts: a connection attempt lands
    in its backlog, where a non-blocking accept() finds it afterwards."""
    with socket.create_server(("127.0.0.1", 0)) as sock:
        sock.setblocking(False)
        yield sock


def _assert_never_connected(sock: socket.socket) -> None:
    with pytest.raises(BlockingIOError):
        connection, peer = sock.accept()
        connection.close()
        pytest.fail(f"the server connected to the URL it was sent (from {peer})")


def _invalid_argument(call: Callable[[], object]) -> str:
    with pytest.raises(FaceSearchError) as caught:
        call()
    assert caught.value.code == grpc.StatusCode.INVALID_ARGUMENT, caught.value
    return caught.value.details


def test_urls_and_paths_sent_as_images_are_neither_fetched_nor_opened(
    start_server: Callable[..., RunningServer], faces_dir: Path, listener: socket.socket
) -> None:
    port = listener.getsockname()[1]
    photo = faces_dir / "img1.jpg"  # a real photo: read as a path, it would be found
    # Each with the likely cause the error names, so the sender knows what to change.
    sent = [
        (f"http://127.0.0.1:{port}/x.jpg".encode(), "looks like a URL"),
        (f"https://127.0.0.1:{port}/x.jpg".encode(), "looks like a URL"),
        (f"file://{photo}".encode(), "looks like a file path"),
        (str(photo).encode(), "looks like a file path"),
        (b"img1.jpg", "looks like a file path"),
        (base64.b64encode(photo.read_bytes()[:3000]), "base64 text of an image"),
    ]
    server = start_server()
    with server.client(timeout=60) as client:
        for image, cause in sent:
            for call in (partial(client.embed, image), partial(client.query, image=image, k=1)):
                details = _invalid_argument(call)
                assert "not a decodable image" in details
                assert cause in details
            (added,) = client.add([AddItem(image=image, label="x")])
            assert added[0].error is not None
            assert added[0].error.code_name == "INVALID_ARGUMENT"
            assert cause in added[0].error.message
        assert client.stats().count == 0
    _assert_never_connected(listener)


def test_labels_and_metadata_that_look_like_paths_are_only_text(
    vector_server: RunningServer, tmp_path: Path
) -> None:
    marker = f"planted-{uuid.uuid4().hex}"
    data_dir = vector_server.data_dir
    hostile = [f"../../{marker}", f"/tmp/{marker}", f"{data_dir}/{marker}", "../../etc/passwd"]
    with vector_server.client(timeout=30) as client:
        results = client.add_vectors(
            np.eye(len(hostile), DIM),
            labels=hostile,
            metadata=[f"file://{label}" for label in hostile],
        )
        client.save()
        for result, label in zip(results, hostile, strict=True):
            item = client.get(result.id)  # type: ignore[arg-type]
            assert (item.label, item.metadata) == (label, f"file://{label}")
    # Nothing was created under any of those names, here or where they point.
    assert not [p for p in tmp_path.rglob("*") if marker in p.name]
    assert not (data_dir / ".." / ".." / marker).exists()
    assert not Path(f"/tmp/{marker}").exists()
