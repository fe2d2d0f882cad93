"""Pipelining an Add stream: batch i+1's images embed while batch i is stored.

Adder.begin_add (adding.py) checks a batch, takes its place in the face model's queue and
submits its images to the worker pool; Adder.finish_add waits for them and stores the batch.
The service runs the begin step of the next request in a thread, one request ahead (ReadAhead),
so the workers are kept busy while the current batch goes into the WAL and the index.
Outcomes and their order are those of doing each batch in turn.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, wait
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import Generic, TypeVar, cast

from fsclient.types import AddItem, ItemError
from fsserver.admission import Alive
from fsserver.faces.embedder import Faces
from fsserver.storage.rows import Rows

T = TypeVar("T")

# How often a wait for an embedding looks whether the client is still there.
_POLL_SECONDS = 0.1


@dataclass(frozen=True)
class CheckedRows:
    """AddRequest.rows after the checks that need no index lock: each row is either a
    validated row to store or its own error."""

    rows: Rows  # the rows to store
    positions: list[int]  # each stored row's position among all the rows
    errors: dict[int, ItemError]  # position → why that row is refused
    total: int


@dataclass
class PendingAdd:
    """A checked batch whose images are being embedded; finish_add stores it."""

    items: Sequence[AddItem]
    alive: Alive
    # Packed raw vectors (AddRequest.rows), checked and shaped: stored after the items.
    rows: CheckedRows | None = None
    # Per item, the pool's work on its image (None: no image, or embedded in-process when
    # the batch is stored); None for the whole batch without a pool.
    jobs: list[Future[Faces] | None] | None = None
    # Holds the batch's place in the face model's queue until its images are embedded.
    admission: ExitStack = field(default_factory=ExitStack)

    def embedded(self, position: int) -> bool:
        """True once item `position`'s image is embedded (at once without a pool job);
        False if the client went away first."""
        job = self.jobs[position] if self.jobs else None
        while job is not None and not job.done():
            if not self.alive():
                return False
            wait([job], timeout=_POLL_SECONDS)
        return self.alive()

    def abandon(self) -> None:
        """Drop what is not embedded yet and give the queue's place back."""
        for job in self.jobs or ():
            if job is not None:
                job.cancel()
        self.admission.close()


class _Failed:
    def __init__(self, error: BaseException) -> None:
        self.error = error


_END = object()


class ReadAhead(Generic[T]):
    """Iterate `source` in a thread, at most one item ahead of the consumer.

    The source's exceptions reach the consumer in order, after the items before them.
    Items produced but never consumed (the consumer stopped early) go to `discard`.
    """

    def __init__(self, source: Iterator[T], discard: Callable[[T], None], name: str) -> None:
        self._source, self._discard = source, discard
        self._ready: queue.SimpleQueue[object] = queue.SimpleQueue()
        # Released when the consumer takes an item: the producer then reads the next one.
        self._turn = threading.Semaphore(1)
        self._lock = threading.Lock()  # a produced item is either queued or discarded
        self._closed = False
        self._thread = threading.Thread(target=self._produce, name=name, daemon=True)

    def _produce(self) -> None:
        while True:
            self._turn.acquire()
            if self._closed:
                return
            try:
                item: object = next(self._source)
            except StopIteration:
                item = _END
            except BaseException as error:  # handed on, raised where the consumer reads
                item = _Failed(error)
            if not self._hand_over(item) or item is _END or isinstance(item, _Failed):
                return

    def _hand_over(self, item: object) -> bool:
        """Queue the item for the consumer, or discard it once the consumer has stopped."""
        with self._lock:
            if not self._closed:
                self._ready.put(item)
                return True
        self._drop(item)
        return False

    def _drop(self, item: object) -> None:
        if item is not _END and not isinstance(item, _Failed):
            self._discard(cast(T, item))

    def __iter__(self) -> Iterator[T]:
        self._thread.start()  # reading begins with the first item asked for
        try:
            while True:
                item = self._ready.get()
                self._turn.release()
                if item is _END:
                    return
                if isinstance(item, _Failed):
                    raise item.error
                yield cast(T, item)
        finally:
            self.close()

    def close(self) -> None:
        """Stop reading ahead; discard what was read but not consumed."""
        with self._lock:
            self._closed = True
            left: list[object] = []
            while not self._ready.empty():
                left.append(self._ready.get())
        self._turn.release()  # a producer waiting for its turn sees _closed and ends
        for item in left:
            self._drop(item)
