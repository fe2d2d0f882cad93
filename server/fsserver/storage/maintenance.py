"""Maintenance that joins instead of queueing: one Save or Compact serves every caller that
arrives while it runs.

Eight clients that each asked for a compaction used to rebuild the whole index eight times
in turn, and a Save queued behind them all, past a 60 s deadline. Now:

- a compaction runs in a thread of its own (`BackgroundRun`); a Compact that arrives while
  one runs waits for that one and shares its result, and a caller whose deadline comes
  first is answered "still running" while the rebuild goes on (it is nobody's call alone);
- a Save must cover every change acknowledged before it was called, which a snapshot
  already being written may lack. So a Save that arrives while one runs waits for it, and
  then every caller that waited is served by the one next snapshot (`GroupRun`: group
  commit): however many ask, at most two snapshots are written back to back.
"""

from __future__ import annotations

import concurrent.futures
import threading
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class BackgroundRun(Generic[T]):
    """One run at a time, each in its own thread; callers wait for it up to a limit."""

    def __init__(self, name: str) -> None:
        self._name = name
        self._lock = threading.Lock()
        self._current: concurrent.futures.Future[T] | None = None

    @property
    def running(self) -> bool:
        current = self._current
        return current is not None and not current.done()

    def run(self, work: Callable[[], T], wait: float | None = None) -> tuple[T | None, bool]:
        """Start `work` unless a run is going (then join it); its result once done, or None
        when `wait` seconds pass first (the run goes on); and whether it was joined."""
        with self._lock:
            current = self._current
            joined = current is not None and not current.done()
            if current is None or not joined:
                current = self._current = concurrent.futures.Future()
                threading.Thread(
                    target=self._work, args=(current, work), name=self._name, daemon=True
                ).start()
        try:
            return current.result(timeout=wait), joined
        except concurrent.futures.TimeoutError:
            return None, joined

    def join(self) -> None:
        """Until the run in progress, if any, has ended (however it ended)."""
        current = self._current
        if current is not None:
            concurrent.futures.wait([current])

    @staticmethod
    def _work(future: concurrent.futures.Future[T], work: Callable[[], T]) -> None:
        try:
            future.set_result(work())
        except BaseException as error:  # handed to every caller waiting on it
            future.set_exception(error)


class GroupRun(Generic[T]):
    """Runs `work` for callers; those that arrive during a run share the next one."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._running = False
        self._started = 0  # runs started so far; the running one has this number
        self._last: tuple[int, T | None, BaseException | None] | None = None

    def run(self, work: Callable[[], T]) -> tuple[T, bool]:
        """`work`'s result, and whether it was shared with a run another caller started."""
        with self._cond:
            wanted = self._started + 1  # the first run to start after this call arrived
            while True:
                if self._last is not None and self._last[0] >= wanted:
                    _, shared, failure = self._last
                    if failure is not None:
                        raise failure
                    return shared, True  # type: ignore[return-value]
                if not self._running:
                    break
                self._cond.wait()
            self._running = True
            self._started += 1
            number = self._started
        result: T | None = None
        error: BaseException | None = None
        try:
            result = work()
            return result, False
        except BaseException as raised:
            error = raised
            raise
        finally:
            with self._cond:
                self._running = False
                self._last = (number, result, error)
                self._cond.notify_all()
