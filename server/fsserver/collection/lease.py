"""Who is using a collection: calls hold a lease while they run; a drop retires it."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

from fsserver.errors import NotFound


class Leases:
    """Counts the calls using one collection. `retire` (a drop) refuses new leases with
    NOT_FOUND and waits for the held ones to end, so a drop never pulls the index out from
    under a running query or Add batch, and nothing waits on another collection's leases."""

    def __init__(self, name: str) -> None:
        self._name = name
        self._users = 0
        self._retired = False
        self._idle = threading.Condition()

    def acquire(self) -> None:
        with self._idle:
            if self._retired:
                raise NotFound(f"collection {self._name!r} was dropped")
            self._users += 1

    def release(self) -> None:
        with self._idle:
            self._users -= 1
            self._idle.notify_all()

    @contextmanager
    def held(self) -> Iterator[None]:
        self.acquire()
        try:
            yield
        finally:
            self.release()

    def retire(self) -> None:
        """Refuse new leases; return once none is held."""
        with self._idle:
            self._retired = True
            self._idle.wait_for(lambda: self._users == 0)
