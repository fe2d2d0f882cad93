"""Admission to the face model: a bounded queue, so image work cannot pile up without end.

The model runs one image at a time (DeepFace is not thread-safe), so requests carrying images
wait their turn. At most `slots` requests may be waiting or embedding. A streaming Add that
finds the queue full waits, and while it waits it reads no more of its stream, so gRPC flow
control slows the sender; a unary Embed or Query is refused with RESOURCE_EXHAUSTED instead
of holding a connection open. Waiters give up as soon as their client has gone away.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from fsserver.errors import Cancelled, ResourceExhausted

Alive = Callable[[], bool]  # False once the client cancelled or its deadline passed


def always_alive() -> bool:
    return True


class EmbedQueue:
    def __init__(self, slots: int) -> None:
        self.slots = slots
        self._free = threading.BoundedSemaphore(slots)
        self._depth = 0
        self._depth_lock = threading.Lock()

    @property
    def depth(self) -> int:
        """Requests waiting for or using the model right now."""
        return self._depth

    @contextmanager
    def admit(self, *, wait: bool, alive: Alive = always_alive) -> Iterator[None]:
        if wait:
            while not self._free.acquire(timeout=0.1):
                if not alive():
                    raise Cancelled("the client went away while waiting for the face model")
        elif not self._free.acquire(blocking=False):
            raise ResourceExhausted(
                f"the face model's queue is full ({self.slots} image requests waiting or "
                "running; --max-embed-queue): retry later"
            )
        with self._depth_lock:
            self._depth += 1
        try:
            yield
        finally:
            with self._depth_lock:
                self._depth -= 1
            self._free.release()
