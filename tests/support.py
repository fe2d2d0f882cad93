"""Test helpers: handles on running servers and a runner for the real CLI."""

from __future__ import annotations

import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fsclient import FaceSearchClient
from fsserver.api.server import FaceSearchServer


@dataclass
class RunningServer:
    server: FaceSearchServer
    data_dir: Path

    @property
    def address(self) -> str:
        return self.server.address

    @property
    def http_url(self) -> str:
        """http://host:port of the server's HTTP edge (start it with http="127.0.0.1:0")."""
        url = self.server.http_url
        assert url is not None, "this server was started without HTTP"
        return url

    def client(self, **options: Any) -> FaceSearchClient:
        return FaceSearchClient(self.address, **options)

    def stop(self) -> None:
        self.server.stop(grace=1.0)


@dataclass(frozen=True)
class Gallery:
    """A face server with some photos of each person enrolled, and the held-out rest."""

    server: RunningServer
    enrolled: dict[str, str]  # file → person
    probes: dict[str, str]  # file → person, for people in the gallery
    strangers: dict[str, str]  # file → person, for a person never enrolled


def photos_by_person(identities: dict[str, str]) -> dict[str, list[str]]:
    """Person → their photo files, in a fixed order (img2 before img10)."""
    by_person: dict[str, list[str]] = {}
    for file in sorted(identities, key=lambda f: (len(f), f)):
        by_person.setdefault(identities[file], []).append(file)
    return by_person


def split_gallery(
    identities: dict[str, str],
) -> tuple[dict[str, str], dict[str, str], dict[str, str]]:
    """file → person, three ways: enrolled (the first half of each person's photos), probes
    (the rest) and strangers (every photo of the one person, the last by name, never
    enrolled)."""
    by_person = photos_by_person(identities)
    stranger = sorted(by_person)[-1]
    enrolled: dict[str, str] = {}
    probes: dict[str, str] = {}
    strangers: dict[str, str] = {}
    for person, files in by_person.items():
        if person == stranger:
            strangers.update(dict.fromkeys(files, person))
            continue
        half = (len(files) + 1) // 2
        enrolled.update(dict.fromkeys(files[:half], person))
        probes.update(dict.fromkeys(files[half:], person))
    return enrolled, probes, strangers


def wait_calibrated(client: FaceSearchClient, timeout: float = 60.0) -> None:
    """Until the collection's decision rule is measured on everything enrolled."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        stats = client.stats()
        rule = stats.decision
        if rule and rule.source == "calibrated" and rule.items == stats.count:
            return
        time.sleep(0.2)
    raise AssertionError(f"not calibrated: {client.stats().decision}")


def launch_server(*args: str) -> tuple[subprocess.Popen[str], str]:
    """Start `python -m fsserver ARGS` on 127.0.0.1:0; return it and the address it serves."""
    process = subprocess.Popen(
        [sys.executable, "-m", "fsserver", "--listen", "127.0.0.1:0", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None and process.stderr is not None
    line = process.stdout.readline()
    if "serving on" not in line:
        process.kill()
        raise AssertionError(f"no start-up line: {line!r} {process.stderr.read()!r}")
    return process, line.rsplit(" ", 1)[-1].strip()


def run_cli(*args: str, server: str | None = None, **kwargs: Any) -> Any:
    """Run the real `fsclient` CLI in a subprocess; returns CompletedProcess."""
    command = [sys.executable, "-m", "fsclient.cli"]
    if server:
        command += ["--server", server]
    return subprocess.run([*command, *args], capture_output=True, text=True, timeout=300, **kwargs)
