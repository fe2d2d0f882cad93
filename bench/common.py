"""What every benchmark section shares: its context, its result rows, a real server process.

A section is a module with `run(ctx: Context) -> list[Row]`. Each Row is one line of the
results table: a facesearch figure, the baseline it is measured against *in the same run*,
their ratio, and the issue's floor for that ratio when there is one.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np


@dataclass
class Context:
    n: int  # vectors in the large index (100k by default, N=1000000 works)
    dim: int
    seed: int
    faces_dir: Path | None  # ../shared/faces, or None when absent (face sections skip)
    work_dir: Path  # scratch space for data directories and peers' stores
    quick: bool = False  # smaller repetitions, for a smoke run
    # Filled by sections for later ones (e.g. the large index's data directory).
    shared: dict[str, Any] = field(default_factory=dict)


@dataclass
class Row:
    section: str  # e.g. "1 bulk add"
    metric: str  # what is measured, with its unit
    facesearch: float
    baseline: float | None = None
    baseline_name: str = ""
    # facesearch ÷ baseline, oriented so that the floor reads naturally ("≥ 0.95" or
    # "≤ 1.3"); None when there is no baseline.
    ratio: float | None = None
    floor: str = ""  # e.g. ">= 0.95", "<= 1.3", "" when the issue sets none
    passed: bool | None = None
    params: dict[str, Any] = field(default_factory=dict)
    note: str = ""


def check(ratio: float | None, floor: str) -> bool | None:
    """Whether ratio meets a floor written as '>= x' or '<= x'."""
    if ratio is None or not floor:
        return None
    op, value = floor.split()
    return ratio >= float(value) if op == ">=" else ratio <= float(value)


def say(message: str) -> None:
    print(f"bench: {message}", file=sys.stderr, flush=True)


def percentile_ms(seconds: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(seconds), q) * 1e3)


@dataclass
class ServerProcess:
    process: subprocess.Popen[str]
    address: str
    started_seconds: float  # from launch to its "serving on" line (health SERVING)
    http_url: str | None = None  # its HTTP edge, when started with http=True

    @property
    def pid(self) -> int:
        return self.process.pid


@contextmanager
def fsserver(
    *args: str, env: dict[str, str] | None = None, http: bool = False
) -> Iterator[ServerProcess]:
    """A real `python -m fsserver ARGS` on 127.0.0.1:0, stopped with SIGTERM afterwards;
    with `http`, its HTTP edge on another free port (off otherwise, as in earlier runs)."""
    started = time.perf_counter()
    process = subprocess.Popen(
        [
            *(sys.executable, "-m", "fsserver", "--listen", "127.0.0.1:0"),
            *("--http", "127.0.0.1:0" if http else "off"),
            *args,
        ],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, **(env or {})},
    )
    assert process.stdout is not None
    line = process.stdout.readline()  # printed once the model and snapshot are loaded
    if "serving on" not in line:
        process.kill()
        raise RuntimeError(f"fsserver {' '.join(args)} did not start: {line!r}")
    server = ServerProcess(process, line.rsplit(" ", 1)[-1].strip(), time.perf_counter() - started)
    if http:  # "fsserver: HTTP on URL (the web page: URL/)"
        server.http_url = process.stdout.readline().split()[3]
    try:
        yield server
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=600)
        except subprocess.TimeoutExpired:
            process.kill()


def rss_bytes(pid: int) -> int:
    """Resident set size of a process, from /proc (Linux)."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")
