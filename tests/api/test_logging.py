"""Logs: one DEBUG line per call with its fields, JSON lines, what recovery replayed."""

from __future__ import annotations

import json
import logging
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest

from fsclient import FaceSearchClient, FaceSearchError
from fsserver.logs import JsonFormatter
from support import RunningServer

DIM = 8


def wait_for(condition: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


def vectors(n: int) -> np.ndarray:
    return np.random.default_rng(7).normal(size=(n, DIM)).astype(np.float32)


def test_each_call_logs_one_debug_line_with_its_fields(
    start_server: Callable[..., RunningServer], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="fsserver.requests")
    running = start_server(dim=DIM)
    with running.client() as client:
        client.add_vectors(vectors(3))
        client.query(vector=vectors(1)[0], k=2)
        with pytest.raises(FaceSearchError):
            client.query(vector=vectors(1)[0], k=-1)

    def call_lines() -> list[logging.LogRecord]:
        return [r for r in caplog.records if r.name == "fsserver.requests"]

    # A call is logged once grpc has finished it, which may be just after the client has
    # its answer.
    wait_for(lambda: len(call_lines()) >= 3)
    lines = call_lines()
    assert [(vars(r)["rpc"], vars(r)["code"]) for r in lines] == [
        ("Add", "OK"),
        ("Query", "OK"),
        ("Query", "INVALID_ARGUMENT"),
    ]
    for record in lines:
        assert record.levelno == logging.DEBUG
        fields: dict[str, Any] = vars(record)
        assert isinstance(fields["duration_ms"], float) and fields["duration_ms"] >= 0
        assert fields["peer"].startswith(("ipv4:127.0.0.1:", "ipv6:"))
        assert fields["rpc"] in record.getMessage() and fields["code"] in record.getMessage()
    assert vars(lines[0])["items"] == 3
    assert "items" not in vars(lines[1])


def test_calls_are_not_logged_above_debug(
    start_server: Callable[..., RunningServer], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="fsserver.requests")
    running = start_server(dim=DIM)
    with running.client() as client:
        client.stats()
    running.stop()  # returns once every FaceSearch call has ended, and so been logged
    assert not [r for r in caplog.records if r.name == "fsserver.requests"]


def test_the_json_formatter_writes_one_object_with_the_extra_fields() -> None:
    logger = logging.getLogger("fsserver.test")
    try:
        raise ValueError("boom")
    except ValueError:
        record = logger.makeRecord(
            logger.name,
            logging.WARNING,
            __file__,
            1,
            "%s went %s",
            ("Get", "wrong"),
            sys.exc_info(),
            extra={"rpc": "Get", "duration_ms": 1.5, "path": Path("/x")},
        )
    line = JsonFormatter().format(record)
    assert "\n" not in line  # the traceback too stays on the one line
    entry = json.loads(line)
    assert entry["level"] == "WARNING"
    assert entry["logger"] == "fsserver.test"
    assert entry["message"] == "Get went wrong"
    assert entry["time"].endswith("+00:00") and "T" in entry["time"]
    assert (entry["rpc"], entry["duration_ms"], entry["path"]) == ("Get", 1.5, "/x")
    assert "ValueError: boom" in entry["exception"]
    assert "args" not in entry and "msg" not in entry


def test_the_server_process_writes_json_lines(tmp_path: Path) -> None:
    log_file = tmp_path / "server.log"
    command = [sys.executable, "-m", "fsserver", "--listen", "127.0.0.1:0", "--dim", str(DIM)]
    command += ["--data-dir", str(tmp_path / "data"), "--log-format", "json"]
    command += ["--log-level", "DEBUG"]
    # Logs go to a file: a pipe nobody reads could fill and block the server.
    with log_file.open("w") as stderr:
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=stderr, text=True)
    try:
        assert process.stdout is not None
        address = process.stdout.readline().rsplit(" ", 1)[-1].strip()
        with FaceSearchClient(address) as client:
            client.add_vectors(vectors(5))
            client.stats()
            with pytest.raises(FaceSearchError) as missing:
                client.get(10**9)
            assert missing.value.code == grpc.StatusCode.NOT_FOUND
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()

    entries = [json.loads(line) for line in log_file.read_text().splitlines() if line.strip()]
    for entry in entries:
        assert {"time", "level", "logger", "message"} <= entry.keys(), entry
    calls = [e for e in entries if e["logger"] == "fsserver.requests"]
    assert [(e["rpc"], e["code"]) for e in calls] == [
        ("Add", "OK"),
        ("Stats", "OK"),
        ("Get", "NOT_FOUND"),
    ]
    for entry in calls:
        assert entry["level"] == "DEBUG"
        assert isinstance(entry["duration_ms"], float)
        assert entry["peer"].startswith(("ipv4:", "ipv6:"))
    assert calls[0]["items"] == 5
    messages = [e["message"] for e in entries if e["level"] == "INFO"]
    assert any(m.startswith("serving on") for m in messages)
    assert any(m.startswith("saved snapshot") for m in messages)
    # DEBUG is fsserver's own: the libraries underneath stay at INFO.
    assert all(e["logger"].startswith("fsserver") for e in entries if e["level"] == "DEBUG")


def test_recovery_logs_what_the_wal_replayed(
    start_server: Callable[..., RunningServer],
    caplog: pytest.LogCaptureFixture,
    tmp_path: Path,
) -> None:
    data = tmp_path / "replayed"
    first = start_server(data_dir=data, dim=DIM)
    with first.client() as client:
        ids = [r.id for r in client.add_vectors(vectors(5))]
        client.delete(ids[:1])
    first.server.stop(grace=0, save=False)  # like a crash: only the WAL has the changes
    caplog.set_level(logging.INFO, logger="fsserver.storage.recovery")
    start_server(data_dir=data, dim=DIM)
    replays = [r.getMessage() for r in caplog.records if r.name == "fsserver.storage.recovery"]
    assert len(replays) == 1
    assert "2 record(s) after LSN 0" in replays[0]
    assert "1 adds of 5 items, 1 deletes of 1 ids" in replays[0]
    assert replays[0].endswith("4 items now")
