"""Coalesced search: single queries that arrive together are searched together.

Voyager holds the GIL for the whole of a query call, so single-row queries from many gRPC
threads run one after another on one core, each paying the call's fixed costs alone. Here
the first caller to find no search running leads: it searches its own rows at once (a lone
client waits for nobody). Callers arriving while a search runs queue; when it ends, the
first of them is promoted and searches the whole queue in one multi-row call, which
Voyager spreads over all cores, and hands each caller its own rows of the answer. The batch
thus grows with the load by itself (while one batch searches, the next gathers); a caller
waits for the search running when it came, and for the batches queued before its own.

Measured (docs/benchmarks.md): the leader holds the GIL through its search, so under plain
load other handler threads seldom reach the queue meanwhile; batches form when callers are
held up together, behind the index's write lock (a delete, a resize, a compaction's swap).
Making the leader yield first formed batches but cost a lone client more than it saved.

Only rows that would be searched with the same settings share a call: the key (k, ef,
whether metadata is wanted) splits a queue into one call per key. A call that raises fails
the callers in it alone; requests are validated before they queue, so a bad one never
joins a batch.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

import numpy as np

from fsclient.types import FloatArray

Answer = TypeVar("Answer")
Key = TypeVar("Key", bound=Hashable)

# Rows per shared call at most: past this a batch's callers wait longer for the whole than
# the shared call saves them (Voyager's multi-row query is already parallel at 64 rows).
MAX_BATCH_ROWS = 64


@dataclass(eq=False)
class _Ticket(Generic[Key, Answer]):
    key: Key
    rows: FloatArray
    done: threading.Event = field(default_factory=threading.Event)
    answer: Answer | None = None
    error: BaseException | None = None
    promoted: bool = False  # woken to lead the next batch, not with an answer

    def outcome(self) -> Answer:
        if self.error is not None:
            raise self.error
        assert self.answer is not None
        return self.answer


class Coalescer(Generic[Key, Answer]):
    """Runs `search(key, rows)` for queued callers in shared calls; `split(answer, slices)`
    cuts a shared answer into each caller's rows."""

    def __init__(
        self,
        search: Callable[[Key, FloatArray], Answer],
        split: Callable[[Answer, list[slice]], list[Answer]],
        max_batch_rows: int = MAX_BATCH_ROWS,
    ) -> None:
        self._search = search
        self._split = split
        self._max_rows = max_batch_rows
        self._lock = threading.Lock()
        self._queue: list[_Ticket[Key, Answer]] = []
        self._leading = False
        self.calls = 0  # search calls made, and the rows they held (tests, benchmarks)
        self.rows = 0

    def search(self, key: Key, rows: FloatArray) -> Answer:
        with self._lock:
            ticket = None
            if self._leading:
                ticket = _Ticket[Key, Answer](key, rows)
                self._queue.append(ticket)
            self._leading = True
        if ticket is None:
            # No search running: search at once, alone (the lone client's path: two lock
            # round trips more than a plain search, nothing else).
            try:
                self.calls, self.rows = self.calls + 1, self.rows + len(rows)
                return self._search(key, rows)
            finally:
                self._hand_over()
        ticket.done.wait()
        if ticket.promoted:
            with self._lock:
                batch = self._take()  # this ticket is at its front
            try:
                self._run(batch)
            finally:
                self._hand_over()
        return ticket.outcome()

    def _hand_over(self) -> None:
        """Promote the first waiting caller to search the queue, or stand down."""
        with self._lock:
            if self._queue:
                successor = self._queue[0]
                successor.promoted = True
                successor.done.set()
            else:
                self._leading = False

    def _take(self) -> list[_Ticket[Key, Answer]]:
        taken, rows = 0, 0
        for ticket in self._queue:
            if taken and rows + len(ticket.rows) > self._max_rows:
                break
            taken, rows = taken + 1, rows + len(ticket.rows)
        batch, self._queue = self._queue[:taken], self._queue[taken:]
        return batch

    def _run(self, batch: list[_Ticket[Key, Answer]]) -> None:
        groups: dict[Key, list[_Ticket[Key, Answer]]] = {}
        for ticket in batch:
            groups.setdefault(ticket.key, []).append(ticket)
        for key, tickets in groups.items():
            try:
                if len(tickets) == 1:
                    answers = [self._search(key, tickets[0].rows)]
                else:
                    answers = self._split(
                        self._search(key, np.concatenate([t.rows for t in tickets])),
                        _slices([len(t.rows) for t in tickets]),
                    )
                for ticket, answer in zip(tickets, answers, strict=True):
                    ticket.answer = answer
            except BaseException as error:  # every caller in this call gets it
                for ticket in tickets:
                    ticket.error = error
            self.calls += 1
            self.rows += sum(len(t.rows) for t in tickets)
        for ticket in batch:
            ticket.promoted = False
            ticket.done.set()


def _slices(lengths: list[int]) -> list[slice]:
    return [slice(a, b) for a, b in itertools.pairwise(itertools.accumulate(lengths, initial=0))]
