"""Progress on stderr: the bar of `add`, the spinners of `save` and `compact`.

On a terminal they draw (the CLI is run with stderr on a pseudo-terminal); without one,
with --quiet or with --json they write nothing at all.
"""

from __future__ import annotations

import io
import os
import pty
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from fsclient.progress import ProgressBar, Spinner
from support import RunningServer, run_cli

SPINNER_LINE = r"\r{} [|/\\-] \d+\.\d s"


def run_cli_on_a_terminal(*args: str, server: str) -> tuple[int, str, str]:
    """Run the real CLI with stderr on a pseudo-terminal (stdout stays a pipe).

    Returns the exit status, stdout, and every byte written to the terminal as text (the
    terminal turns each "\\n" into "\\r\\n").
    """
    main_end, terminal_end = pty.openpty()
    process = subprocess.Popen(
        [sys.executable, "-m", "fsclient.cli", "--server", server, *args],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=terminal_end,
    )
    os.close(terminal_end)  # the child holds its own; EOF (EIO) comes once it exits
    chunks: list[bytes] = []

    def read() -> None:
        while True:
            try:
                data = os.read(main_end, 4096)
            except OSError:  # EIO: the child's end closed
                return
            if not data:
                return
            chunks.append(data)

    # Read as it comes, so a chatty child never blocks on a full terminal buffer.
    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    stdout, _ = process.communicate(timeout=300)
    reader.join(timeout=60)
    os.close(main_end)
    return process.returncode, stdout.decode(), b"".join(chunks).decode()


def bar_counts(terminal: str, total: int) -> list[int]:
    """The `done` of each bar drawn, consecutive repeats folded."""
    counts = [int(n) for n in re.findall(rf"\radding +(\d+)/{total} ", terminal)]
    return [n for i, n in enumerate(counts) if i == 0 or n != counts[i - 1]]


# ---- the classes, into a StringIO --------------------------------------------------------


def test_an_enabled_bar_redraws_one_line_and_ends_it() -> None:
    stream = io.StringIO()
    bar = ProgressBar(3, stream, enabled=True)
    bar.update(2)
    bar.update(1)
    bar.close()
    text = stream.getvalue()
    assert re.findall(r"\radding (\d)/3", text) == ["0", "2", "3"]
    assert text.endswith("100%\n") or re.search(r"100%  [\d.]+/s\n$", text)


def test_a_disabled_bar_or_spinner_writes_nothing() -> None:
    stream = io.StringIO()
    bar = ProgressBar(3, stream, enabled=False)
    bar.update(3)
    bar.close()
    with Spinner("saving", stream, enabled=False, interval=0.001) as spinner:
        time.sleep(0.01)
    assert stream.getvalue() == "" and spinner.frames == 0


def wait_for_frames(spinner: Spinner, frames: int) -> None:
    # A liveness wait, not a speed check: the deadline is far beyond any scheduler delay.
    deadline = time.monotonic() + 30
    while spinner.frames < frames:
        assert time.monotonic() < deadline, "the spinner thread never redrew"
        time.sleep(0.005)


def test_a_spinner_turns_while_the_call_runs_then_wipes_its_line() -> None:
    stream = io.StringIO()
    with Spinner("saving", stream, enabled=True, interval=0.001) as spinner:
        wait_for_frames(spinner, 5)
    text = stream.getvalue()
    drawn = re.findall(r"\rsaving (.) (\d+\.\d) s", text)
    assert len(drawn) >= 5
    assert [frame for frame, _ in drawn[:5]] == ["|", "/", "-", "\\", "|"]
    width = len("saving | 0.0 s")
    assert text.endswith("\r" + " " * width + "\r")  # nothing left on the line
    frames = spinner.frames
    time.sleep(0.05)
    assert spinner.frames == frames  # the thread has stopped


def test_a_spinner_wipes_its_line_when_the_call_fails() -> None:
    stream = io.StringIO()
    with pytest.raises(RuntimeError), Spinner("compacting", stream, enabled=True):
        raise RuntimeError("the call failed")
    assert stream.getvalue().startswith("\rcompacting | ")
    assert stream.getvalue().endswith(" \r")


# ---- the real CLI ------------------------------------------------------------------------


def test_no_terminal_no_progress(vector_server: RunningServer, tmp_path: Path) -> None:
    np.save(tmp_path / "v.npy", np.ones((30, 16), np.float32))
    address = vector_server.address
    added = run_cli("add", str(tmp_path / "v.npy"), "--batch-size", "10", server=address)
    assert added.returncode == 0 and added.stdout == "added 30, failed 0\n"
    assert added.stderr == ""  # no bar, not even a final line
    for command in ("save", "compact"):
        run = run_cli(command, server=address)
        assert run.returncode == 0 and run.stderr == "", run.stderr


def test_the_bar_advances_per_acknowledged_batch_of_rows_on_a_terminal(
    vector_server: RunningServer, tmp_path: Path
) -> None:
    np.save(tmp_path / "v.npy", np.ones((50, 16), np.float32))
    status, stdout, terminal = run_cli_on_a_terminal(
        "add", str(tmp_path / "v.npy"), "--batch-size", "10", server=vector_server.address
    )
    assert status == 0 and stdout == "added 50, failed 0\n"
    assert bar_counts(terminal, 50) == [0, 10, 20, 30, 40, 50]
    assert terminal.endswith("\r\n")  # the bar's last state stays, on a line of its own


def test_the_bar_counts_images_and_rows_alike(
    start_server: Callable[..., RunningServer], faces_dir: Path, tmp_path: Path
) -> None:
    np.save(tmp_path / "v.npy", np.ones((4, 128), np.float32))
    photos = [str(faces_dir / name) for name in ("img1.jpg", "img2.jpg")]
    status, stdout, terminal = run_cli_on_a_terminal(
        "add", *photos, str(tmp_path / "v.npy"), "--batch-size", "2",
        server=start_server().address,
    )  # fmt: skip
    assert status == 0 and stdout == "added 6, failed 0\n"
    assert bar_counts(terminal, 6) == [0, 2, 4, 6]  # one batch of photos, two of rows


def test_save_and_compact_spin_on_a_terminal_and_leave_a_clean_line(
    vector_server: RunningServer, tmp_path: Path
) -> None:
    np.save(tmp_path / "v.npy", np.ones((5, 16), np.float32))
    address = vector_server.address
    assert run_cli("add", str(tmp_path / "v.npy"), server=address).returncode == 0
    for command, activity in (("save", "saving"), ("compact", "compacting")):
        status, stdout, terminal = run_cli_on_a_terminal(command, server=address)
        assert status == 0, terminal
        assert stdout.startswith(("saved 5 items", "nothing to compact: 5 items"))
        assert re.match(SPINNER_LINE.format(activity), terminal), terminal
        assert re.search(r"\r +\r$", terminal), terminal  # wiped: the result is on stdout


@pytest.mark.parametrize("flag", ["--quiet", "--json"])
def test_quiet_and_json_keep_a_terminal_clean(vector_server: RunningServer, flag: str) -> None:
    for command in ("save", "compact"):
        status, stdout, terminal = run_cli_on_a_terminal(
            flag, command, server=vector_server.address
        )
        assert status == 0 and stdout
        assert terminal == ""
