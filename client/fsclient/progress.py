"""Progress on stderr for the CLI's long work, so the thin client needs no tqdm.

Two shapes: a bar for `add`, whose length is known and which the server acknowledges batch
by batch; and a spinner with the time elapsed for one unary call of unknown length (`save`,
`compact`), which is all that can honestly be shown for it. Rendering is pure; the classes
only write, and only when the caller enabled them (a terminal, no --quiet, no --json).
"""

from __future__ import annotations

import threading
import time
from types import TracebackType
from typing import TextIO

BAR_WIDTH = 30
# ASCII, so a terminal in any encoding can draw it.
SPINNER_FRAMES = "|/-\\"
# A few redraws a second: the tenths of a second move, the CPU does not notice.
SPINNER_INTERVAL = 0.125


def render_bar(done: int, total: int, elapsed: float, width: int = BAR_WIDTH) -> str:
    """`adding  37/120 [#########.....................]  31%  12.3/s` (pure, for tests)."""
    fraction = min(done / total, 1.0) if total > 0 else 1.0
    filled = int(fraction * width)
    rate = f"  {done / elapsed:.1f}/s" if elapsed > 0 and done > 0 else ""
    count = f"{done:>{len(str(total))}}/{total}"
    return f"adding {count} [{'#' * filled}{'.' * (width - filled)}] {fraction:4.0%}{rate}"


def render_spinner(activity: str, elapsed: float, frame: int) -> str:
    """`saving | 3.2 s`: the call is still running, this long so far (pure, for tests)."""
    return f"{activity} {SPINNER_FRAMES[frame % len(SPINNER_FRAMES)]} {elapsed:.1f} s"


class _Line:
    """One stderr line redrawn in place with `\\r`, padded over a longer previous text."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self._width = 0

    def draw(self, text: str) -> None:
        padding = " " * max(0, self._width - len(text))
        self._width = len(text)
        self._stream.write(f"\r{text}{padding}")
        self._stream.flush()

    def clear(self) -> None:
        if self._width:
            self._stream.write(f"\r{' ' * self._width}\r")
            self._stream.flush()
            self._width = 0


class ProgressBar:
    """Redraws one stderr line in place; the caller decides whether it is enabled.

    Updates come once per acknowledged batch, so redrawing on each is cheap enough.
    """

    def __init__(self, total: int, stream: TextIO, *, enabled: bool) -> None:
        self.total = total
        self.done = 0
        self._stream = stream
        self._line = _Line(stream)
        self._enabled = enabled
        self._started = time.monotonic()
        self._draw()

    def update(self, count: int) -> None:
        self.done += count
        self._draw()

    def close(self) -> None:
        """Leave the final state on its own line so the summary starts clean."""
        if self._enabled:
            self._stream.write("\n")
            self._stream.flush()
            self._enabled = False

    def _draw(self) -> None:
        if self._enabled:
            self._line.draw(render_bar(self.done, self.total, time.monotonic() - self._started))


class Spinner:
    """`with Spinner("saving", sys.stderr, enabled=...): client.save()`.

    The call blocks the main thread, so a daemon thread redraws the line until the block
    ends, then wipes it: the result that follows on stdout says how long it took, and a
    failed call's one error line should not land after a stale spinner.
    """

    def __init__(
        self,
        activity: str,
        stream: TextIO,
        *,
        enabled: bool,
        interval: float = SPINNER_INTERVAL,
    ) -> None:
        self.activity = activity
        self.frames = 0  # drawn so far
        self._line = _Line(stream)
        self._enabled = enabled
        self._interval = interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._started = 0.0

    def __enter__(self) -> Spinner:
        if self._enabled:
            self._started = time.monotonic()
            self._draw()  # at once: even a short call shows it was under way
            # A daemon, so Ctrl-C in the main thread never waits on it.
            self._thread = threading.Thread(target=self._run, name="spinner", daemon=True)
            self._thread.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
            self._thread = None
            self._line.clear()

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            self._draw()

    def _draw(self) -> None:
        elapsed = time.monotonic() - self._started
        self._line.draw(render_spinner(self.activity, elapsed, self.frames))
        self.frames += 1
