"""Admission control on a real server: the face model's queue, client deadlines, and the
limit on calls in progress.

- A full embed queue (--max-embed-queue) refuses unary Embed and image Query calls with
  RESOURCE_EXHAUSTED, while a second Add stream waits its turn and then succeeds.
- An Add whose client deadline passes mid-batch is abandoned: nothing of it is stored and
  the server goes on serving; so does a Query with an image and a tiny deadline.
- Calls beyond --max-concurrent-rpcs are refused with RESOURCE_EXHAUSTED until one ends.

Every wait is bounded: a server that does not do what is expected fails the test, never
hangs it.
"""

from __future__ import annotations

import logging
import math
import re
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest

from fsclient import FaceSearchError, convert
from fsclient.types import AddItem, AddResult
from fsproto.facesearch.v1 import facesearch_pb2 as pb
from fsproto.facesearch.v1 import facesearch_pb2_grpc as pb_grpc
from support import RunningServer

WAIT = 30.0  # the longest any one condition is waited for
MAX_MESSAGE = 64 * 1024 * 1024
GONE = re.compile(r"Add: the client went away after (\d+) of (\d+) items; the batch is not stored")


def wait_for(condition: Callable[[], bool], what: str, timeout: float = WAIT) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"waited {timeout:g}s for {what}", pytrace=False)
        time.sleep(0.02)


def photos(faces_dir: Path, identities: dict[str, str], n: int) -> list[Path]:
    """n labelled one-person photos (the gallery enrolls every one of them)."""
    files = sorted(identities, key=lambda f: (len(f), f))
    assert len(files) >= n, f"only {len(files)} labelled photos in {faces_dir}"
    return [faces_dir / f for f in files[:n]]


def stub_for(address: str) -> tuple[grpc.Channel, pb_grpc.FaceSearchStub]:
    channel = grpc.insecure_channel(
        address,
        options=[
            ("grpc.max_send_message_length", MAX_MESSAGE),
            ("grpc.max_receive_message_length", MAX_MESSAGE),
        ],
    )
    grpc.channel_ready_future(channel).result(timeout=WAIT)  # so deadlines time the call
    return channel, pb_grpc.FaceSearchStub(channel)


def image_request(images: list[bytes], label: str) -> pb.AddRequest:
    return pb.AddRequest(
        items=[
            convert.add_item_to_pb(AddItem(image=image, label=f"{label}{i}"))
            for i, image in enumerate(images)
        ]
    )


def expect_code(code: grpc.StatusCode, call: Callable[[], object]) -> FaceSearchError:
    with pytest.raises(FaceSearchError) as error:
        call()
    assert error.value.code == code, error.value
    return error.value


def server_errors(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        f"{r.name}: {r.getMessage()}"
        for r in caplog.records
        if r.name.startswith("fsserver") and r.levelno >= logging.ERROR
    ]


class Background:
    """Run a call in a thread; keep its result or its exception."""

    def __init__(self, call: Callable[[], Any], name: str) -> None:
        self.result: Any = None
        self.error: BaseException | None = None
        self._call, self.name = call, name
        self.thread = threading.Thread(target=self._run, name=name, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            self.result = self._call()
        except BaseException as error:
            self.error = error

    def join(self, timeout: float = 120.0) -> Any:
        self.thread.join(timeout)
        assert not self.thread.is_alive(), f"{self.name} did not finish in {timeout:g}s"
        if self.error is not None:
            raise self.error
        return self.result


# ---- the embed queue ----------------------------------------------------------------------


@pytest.mark.timeout(180)
def test_a_full_embed_queue_refuses_unary_calls_and_holds_add_streams(
    start_server: Callable[..., RunningServer],
    faces_dir: Path,
    identities: dict[str, str],
) -> None:
    running = start_server(max_embed_queue=1)
    first_photos = photos(faces_dir, identities, 9)
    batch, extra = first_photos[:8], first_photos[8]

    def add_batch() -> list[AddResult]:
        with running.client(timeout=120) as client:
            # One request with all 8 images: it holds the model's one slot throughout.
            return client.add_images(batch, labels=[p.name for p in batch], batch_size=8)

    with running.client(timeout=WAIT) as client:
        first = Background(add_batch, "first")
        wait_for(lambda: client.stats().embed_queue == 1, "the Add to take the model's slot")

        error = expect_code(grpc.StatusCode.RESOURCE_EXHAUSTED, lambda: client.embed(extra))
        assert "--max-embed-queue" in error.details, error.details
        error = expect_code(
            grpc.StatusCode.RESOURCE_EXHAUSTED, lambda: client.query(image=extra, k=1)
        )
        assert "--max-embed-queue" in error.details, error.details
        # Calls without an image do not need the model and are not held up.
        dim = client.stats().dim
        assert client.query(vector=np.ones(dim, np.float32), k=1).results[0].neighbors == []

        # A second Add stream is not refused: it waits for the slot (flow control).
        sent = threading.Event()

        def second_requests() -> Iterator[pb.AddRequest]:
            yield image_request([extra.read_bytes()], "second")
            sent.set()  # gRPC asks for the next request once the first is on the wire

        channel, stub = stub_for(running.address)
        with channel:
            second = Background(lambda: list(stub.Add(second_requests(), timeout=120)), "second")
            wait_for(
                lambda: sent.is_set() or not second.thread.is_alive(),
                "the second Add's request to be sent",
            )
            assert second.thread.is_alive(), f"the second Add was answered at once: {second.error}"
            assert first.thread.is_alive(), "the first Add finished too soon to test waiting"
            assert client.stats().embed_queue == 1

            results = first.join()
            assert [r.ok for r in results] == [True] * 8, [r.error for r in results]
            responses = second.join()
        assert len(responses) == 1 and len(responses[0].results) == 1
        assert not responses[0].results[0].HasField("error"), responses[0]
        # Ids are handed out as items are stored: the second Add was stored after the first.
        assert [r.id for r in results] == list(range(8))
        assert responses[0].results[0].id == 8

        wait_for(lambda: client.stats().embed_queue == 0, "the model's slot to be free")
        assert client.embed(extra).faces  # the queue admits again
        stats = client.stats()
        assert stats.count == 9, stats
        labels = {n.label for n in client.query(image=batch[0], k=9).results[0].neighbors}
        assert labels == {p.name for p in batch} | {"second0"}


# ---- client deadlines ---------------------------------------------------------------------


@pytest.mark.timeout(180)
def test_an_add_past_its_deadline_is_abandoned_and_nothing_of_it_is_stored(
    start_server: Callable[..., RunningServer],
    faces_dir: Path,
    identities: dict[str, str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="fsserver")
    running = start_server()
    files = photos(faces_dir, identities, 12)
    deadline = 1.5
    with running.client(timeout=120) as client:
        started = time.perf_counter()
        assert client.add_images([files[0]], labels=["before"])[0].ok
        per_photo = time.perf_counter() - started
        # Enough photos that the batch takes several deadlines (more on a fast machine).
        n = max(12, math.ceil(4 * deadline / max(per_photo, 0.01)))
        images = [files[i % len(files)].read_bytes() for i in range(n)]

        channel, stub = stub_for(running.address)
        with channel, pytest.raises(grpc.RpcError) as error:
            list(stub.Add(iter([image_request(images, "late")]), timeout=deadline))
        assert isinstance(error.value, grpc.Call)
        assert error.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED, error.value

        def abandoned() -> re.Match[str] | None:
            found = (GONE.search(r.getMessage()) for r in caplog.records)
            return next((m for m in found if m), None)

        wait_for(lambda: abandoned() is not None, "the server to abandon the batch", 60)
        match = abandoned()
        assert match is not None
        embedded, total = int(match.group(1)), int(match.group(2))
        assert total == n and embedded < n, match.group(0)

        wait_for(lambda: client.stats().embed_queue == 0, "the model's slot to be free")
        stats = client.stats()
        assert stats.count == 1, f"part of an abandoned batch was stored: {stats}"
        neighbours = client.query(image=files[1], k=10).results[0].neighbors
        assert [x.label for x in neighbours] == ["before"]
        assert client.embed(files[1]).faces  # the server keeps serving
        assert client.add_images([files[1]], labels=["after"])[0].ok
        assert client.stats().count == 2
    assert not server_errors(caplog), server_errors(caplog)


@pytest.mark.timeout(180)
def test_a_query_past_its_deadline_leaves_the_server_serving(
    start_server: Callable[..., RunningServer],
    faces_dir: Path,
    identities: dict[str, str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="fsserver")
    running = start_server(max_embed_queue=2)
    files = photos(faces_dir, identities, 2)
    with running.client(timeout=120) as client:
        assert client.add_images([files[0]], labels=["enrolled"])[0].ok
        channel, stub = stub_for(running.address)
        with channel:
            for _ in range(3):  # more than the queue's slots: each one gives its slot back
                with pytest.raises(grpc.RpcError) as error:
                    stub.Query(pb.QueryRequest(image=files[1].read_bytes(), k=1), timeout=0.05)
                assert isinstance(error.value, grpc.Call)
                assert error.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED, error.value
                wait_for(lambda: client.stats().embed_queue == 0, "the model's slot to be free")
        assert client.embed(files[1]).faces
        neighbours = client.query(image=files[0], k=1).results[0].neighbors
        assert [n.label for n in neighbours] == ["enrolled"]
    assert not server_errors(caplog), server_errors(caplog)


# ---- calls in progress --------------------------------------------------------------------


@pytest.mark.timeout(120)
def test_calls_beyond_max_concurrent_rpcs_are_refused_until_one_ends(
    start_server: Callable[..., RunningServer],
) -> None:
    running = start_server(dim=4, model="", max_concurrent_rpcs=2)
    release = threading.Event()

    def requests(id: int) -> Iterator[pb.AddRequest]:
        yield pb.AddRequest(
            items=[convert.add_item_to_pb(AddItem(vector=np.ones(4, np.float32), id=id))]
        )
        release.wait(WAIT)  # the stream stays open until the test lets it go
        yield pb.AddRequest(
            items=[convert.add_item_to_pb(AddItem(vector=np.full(4, 2.0, np.float32), id=id + 10))]
        )

    channel, stub = stub_for(running.address)
    with channel, running.client(timeout=WAIT) as client:
        calls = [stub.Add(requests(id), timeout=2 * WAIT) for id in (1, 2)]
        try:
            for id, call in zip((1, 2), calls, strict=True):
                first = next(call)  # the stream is established: its first batch is stored
                assert [r.id for r in first.results] == [id]
            error = expect_code(grpc.StatusCode.RESOURCE_EXHAUSTED, client.stats)
            assert error.details
        finally:
            release.set()
        rest = [[r.id for response in call for r in response.results] for call in calls]
        assert rest == [[11], [12]]

        def stats_answer() -> bool:
            try:
                client.stats()
            except FaceSearchError as error:
                assert error.code == grpc.StatusCode.RESOURCE_EXHAUSTED, error
                return False  # the server may count a finished stream a moment longer
            return True

        wait_for(stats_answer, "Stats to be answered again")
        assert client.stats().count == 4
