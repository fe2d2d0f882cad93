"""`fsclient` failing cleanly: one line on stderr, the documented exit status, no server."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from fsclient import FaceSearchClient
from fsclient.connection import DEFAULT_PORT, with_default_port

CLIENT_DIR = Path(__file__).resolve().parents[2] / "client"
# Port 1 refuses connections at once, so "unreachable" costs no timeout.
NOWHERE = "127.0.0.1:1"


def fsclient(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(CLIENT_DIR), env.get("PYTHONPATH")]))
    env.pop("FSCLIENT_SERVER", None)
    return subprocess.run(
        [sys.executable, "-m", "fsclient.cli", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        timeout=60,
    )


def assert_one_line_error(run: subprocess.CompletedProcess[str], status: int, *words: str) -> None:
    assert run.returncode == status, run.stderr
    lines = run.stderr.splitlines()
    assert len(lines) == 1, run.stderr
    assert lines[0].startswith("fsclient: ")
    assert "Traceback" not in run.stderr
    for word in words:
        assert word in lines[0]
    assert run.stdout == ""


@pytest.mark.parametrize(
    "command",
    [
        ["--server", NOWHERE, "stats"],
        ["stats", "--server", NOWHERE, "--json"],  # global options after the command too
        ["--server", NOWHERE, "get", "3"],
    ],
)
def test_an_unreachable_server_is_said_plainly(command: list[str]) -> None:
    run = fsclient(*command)
    assert_one_line_error(run, 1, "cannot reach the facesearch server at 127.0.0.1:1")


def test_an_unreachable_server_during_add_and_query(tmp_path: Path) -> None:
    np.save(tmp_path / "v.npy", np.ones((3, 4), np.float32))
    run = fsclient("--server", NOWHERE, "add", str(tmp_path / "v.npy"))
    assert_one_line_error(run, 1, "cannot reach")
    run = fsclient("--server", NOWHERE, "query", "--vector", str(tmp_path / "v.npy"))
    assert_one_line_error(run, 1)  # three rows: refused locally before any call


@pytest.mark.parametrize(
    "command",
    [
        [],
        ["frobnicate"],
        ["query"],
        ["query", "a.jpg", "--id", "3"],
        ["query", "-k", "0", "a.jpg"],
        ["delete"],
        ["get", "minus-one"],
        ["add", "a.jpg", "--label", "x", "--label-from-dir"],
    ],
)
def test_usage_errors_exit_2(command: list[str]) -> None:
    assert_one_line_error(fsclient("--server", NOWHERE, *command), 2, "fsclient: error:")


def test_id_needs_a_single_item(tmp_path: Path) -> None:
    np.save(tmp_path / "two.npy", np.ones((2, 4), np.float32))
    run = fsclient("--server", NOWHERE, "add", "--id", "7", str(tmp_path / "two.npy"))
    assert_one_line_error(run, 2, "--id needs exactly one item")


@pytest.mark.parametrize(
    "command",
    [["query", "missing.jpg"], ["embed", "missing.jpg"], ["add", "x.npy", "missing.jpg"]],
)
def test_a_missing_file_is_one_line(tmp_path: Path, command: list[str]) -> None:
    np.save(tmp_path / "x.npy", np.ones(4, np.float32))
    run = fsclient("--server", NOWHERE, *command, cwd=tmp_path)
    assert_one_line_error(run, 1, "fsclient: error: cannot read missing.jpg")


def test_a_bad_npy_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "bad.npy").write_text("not numpy")
    run = fsclient("--server", NOWHERE, "query", "--vector", "bad.npy", cwd=tmp_path)
    assert_one_line_error(run, 1, "bad.npy")


def test_help_documents_the_exit_status() -> None:
    run = fsclient("add", "--help")
    assert run.returncode == 0
    assert "Exit status" in run.stdout and "Exits 1 if any item failed" in run.stdout


def test_a_server_without_a_port_is_dialled_on_fsservers_port() -> None:
    # gRPC's own default is 443, where no fsserver listens unless told to.
    assert with_default_port("search.internal") == f"search.internal:{DEFAULT_PORT}"
    assert with_default_port("10.0.0.5") == f"10.0.0.5:{DEFAULT_PORT}"
    assert with_default_port("[::1]") == f"[::1]:{DEFAULT_PORT}"
    assert with_default_port("::1") == f"[::1]:{DEFAULT_PORT}"
    assert with_default_port("dns:///search.internal") == f"dns:///search.internal:{DEFAULT_PORT}"
    for given in ("search.internal:7000", "[::1]:7000", "unix:/run/fs.sock", "dns:///h:7000"):
        assert with_default_port(given) == given
    with FaceSearchClient("search.internal") as client:  # channels connect lazily
        assert client.target == f"search.internal:{DEFAULT_PORT}"
