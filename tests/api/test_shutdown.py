"""Graceful shutdown of the real `fsserver` process: SIGTERM with a call in flight.

The call in flight is an Add stream the test holds open: it has stored one batch and sends
the next only when the test says so, so "in flight" is a state the test controls rather
than a race against a slow call.
"""

from __future__ import annotations

import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from fsclient import FaceSearchClient
from fsproto.facesearch.v1 import facesearch_pb2 as pb
from fsproto.facesearch.v1 import facesearch_pb2_grpc as pb_grpc
from fsserver.storage.snapshot import snapshot_dirs

DIM = 8
BATCH = 4
Launch = Callable[..., tuple[subprocess.Popen[str], str]]


def batch(seed: int) -> pb.AddRequest:
    rows = np.random.default_rng(seed).normal(size=(BATCH, DIM)).astype(np.float32)
    return pb.AddRequest(items=[pb.AddItem(vector=pb.Vector(values=row)) for row in rows])


def held_open(release: threading.Event) -> Iterator[pb.AddRequest]:
    """An Add stream: one batch, then (once released) a second one, then its end."""
    yield batch(1)
    if release.wait(timeout=60):
        yield batch(2)


def wait_for(condition: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


def health_status(channel: grpc.Channel) -> int:
    check = health_pb2_grpc.HealthStub(channel).Check
    return check(health_pb2.HealthCheckRequest(service="facesearch.v1.FaceSearch")).status


def stored_count(data: Path, launch: Launch) -> int:
    process, address = launch("--dim", str(DIM), "--data-dir", str(data))
    try:
        with FaceSearchClient(address) as client:
            return client.stats().count
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)


def test_sigterm_lets_the_call_in_flight_finish_then_saves_and_exits_zero(
    server_process: Launch, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    process, address = server_process(
        "--dim", str(DIM), "--data-dir", str(data), "--shutdown-grace", "60"
    )
    release = threading.Event()
    try:
        with grpc.insecure_channel(address) as channel:
            stub = pb_grpc.FaceSearchStub(channel)
            responses = stub.Add(held_open(release))
            assert len(next(responses).results) == BATCH  # stored: the stream is in flight
            assert health_status(channel) == health_pb2.HealthCheckResponse.SERVING

            process.send_signal(signal.SIGTERM)
            wait_for(lambda: health_status(channel) == health_pb2.HealthCheckResponse.NOT_SERVING)
            with pytest.raises(grpc.RpcError) as refused:
                stub.Stats(pb.StatsRequest())
            assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
            assert "shutting down" in (refused.value.details() or "")
            assert process.poll() is None  # still waiting for the Add stream

            release.set()
            assert len(next(responses).results) == BATCH
            assert list(responses) == []  # the stream ends with OK
    finally:
        release.set()
    assert process.wait(timeout=60) == 0
    assert len(snapshot_dirs(data)) == 1
    assert stored_count(data, server_process) == 2 * BATCH


def test_calls_still_running_after_the_grace_period_are_cancelled(
    server_process: Launch, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    process, address = server_process(
        "--dim", str(DIM), "--data-dir", str(data), "--shutdown-grace", "0.5"
    )
    release = threading.Event()
    try:
        with grpc.insecure_channel(address) as channel:
            responses = pb_grpc.FaceSearchStub(channel).Add(held_open(release))
            assert len(next(responses).results) == BATCH
            process.send_signal(signal.SIGTERM)
            with pytest.raises(grpc.RpcError) as cancelled:
                next(responses)
            # grpc's cancel_all_calls: retryable, the client may send the rest elsewhere.
            assert cancelled.value.code() == grpc.StatusCode.UNAVAILABLE
    finally:
        release.set()
    assert process.wait(timeout=60) == 0
    assert process.stderr is not None
    assert "cancelling 1 call(s) still running" in process.stderr.read()
    # The batch it acknowledged before the shutdown is kept.
    assert stored_count(data, server_process) == BATCH
