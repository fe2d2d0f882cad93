"""A minimal progress bar for `fsclient add`, so the thin client needs no tqdm."""

from __future__ import annotations

import time
from typing import TextIO

BAR_WIDTH = 30


def render_bar(done: int, total: int, elapsed: float, width: int = BAR_WIDTH) -> str:
    """`adding  37/120 [#########.....................]  31%  12.3/s` (pure, for tests)."""
    fraction = min(done / total, 1.0) if total > 0 else 1.0
    filled = int(fraction * width)
    rate = f"  {done / elapsed:.1f}/s" if elapsed > 0 and done > 0 else ""
    count = f"{done:>{len(str(total))}}/{total}"
    return f"adding {count} [{'#' * filled}{'.' * (width - filled)}] {fraction:4.0%}{rate}"


class ProgressBar:
    """Redraws one stderr line in place; the caller decides whether it is enabled.

    Updates come once per acknowledged batch, so redrawing on each is cheap enough.
    """

    def __init__(self, total: int, stream: TextIO, *, enabled: bool) -> None:
        self.total = total
        self.done = 0
        self._stream = stream
        self._enabled = enabled
        self._started = time.monotonic()
        self._last_width = 0
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
        if not self._enabled:
            return
        line = render_bar(self.done, self.total, time.monotonic() - self._started)
        # Pad over a longer previous line (the rate can shrink).
        padding = " " * max(0, self._last_width - len(line))
        self._last_width = len(line)
        self._stream.write(f"\r{line}{padding}")
        self._stream.flush()
