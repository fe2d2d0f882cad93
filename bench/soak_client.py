"""One soak client process: a weighted mix of calls until a deadline, and what it saw.

Runs in a process of its own (multiprocessing "spawn"), so that eight clients are eight
Python interpreters and the load is not throttled by one client-side GIL. Everything it
learns (the calls' timings and outcomes, the ids the server acknowledged and deleted, a
sample of vectors to check bit for bit after the restart) is pickled to a file for the
parent, which checks it against what a restarted server holds.
"""

from __future__ import annotations

import pickle
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from bench.facelike import BETWEEN_PEOPLE, WITHIN_PERSON, FaceShape
from fsclient import FaceSearchClient
from fsclient.client import FaceSearchError

DIM, K = 128, 10
# The mix: adds 30 / single queries 50 / gets 10 / deletes 8 / saves 1.5 /
# compactions 0.5.
WEIGHTS = {"add": 30.0, "query": 50.0, "get": 10.0, "delete": 8.0, "save": 1.5, "compact": 0.5}
CALL_TIMEOUT_S = 60.0
SAMPLE_EVERY = 20  # one added row in this many is kept to compare bit for bit later
EXAMPLES_PER_KIND = 5  # error messages and short answers kept verbatim, per client
PEOPLE = 60  # synthetic people per client, whose photos it adds and queries with

# One call: (operation, start, end, outcome, rows): time.time() seconds; outcome "ok", a
# gRPC status code name, or "short" (a query answered with fewer than K neighbours).
OpRecord = tuple[str, float, float, str, int]
FloatArray = npt.NDArray[np.float32]


def face_shape() -> FaceShape:
    """Where face-like vectors vary: bench's fixed random template (as bench.scaling and
    section 11 use without photos), the same in every process."""
    template = np.random.default_rng(12345).normal(0.0, 0.1, (64, DIM))
    return FaceShape.of(template)


def people_photos(
    shape: FaceShape, centres: npt.NDArray[np.float64], rng: np.random.Generator, count: int
) -> FloatArray:
    """`count` new photos of people picked at random from `centres`."""
    rows = centres[rng.integers(0, len(centres), size=count)]
    return (rows + shape.draw(rng, count, WITHIN_PERSON)).astype(np.float32)


@dataclass(frozen=True)
class ClientPlan:
    number: int
    address: str
    seconds: float  # from the start signal until no new call starts
    seed: int
    preload_ids: list[int]  # never deleted: what a get reads when the client holds nothing
    live_cap: int | None = None

    @property
    def label(self) -> str:
        return f"c{self.number}"


@dataclass
class ClientOutcome:
    number: int
    label: str
    records: list[OpRecord] = field(default_factory=list)
    acknowledged: set[int] = field(default_factory=set)  # every id an Add answered ok
    deleted: set[int] = field(default_factory=set)  # ids a Delete answered ok
    unknown: set[int] = field(default_factory=set)  # ids of a Delete that failed
    sample: dict[int, bytes] = field(default_factory=dict)  # id -> float32 bytes added
    # Compactions that rebuilt (or joined a rebuild): (start, end); skipped ones are not
    # a rebuild, so queries beside them say nothing about the swap.
    rebuilds: list[tuple[float, float]] = field(default_factory=list)
    skipped_compactions: int = 0
    skip_reason: str = ""  # the server's, for the last skipped one
    examples: dict[str, list[str]] = field(default_factory=dict)  # kind -> messages
    # Own deleted ids that came back in a query or a get after their Delete was answered.
    deleted_seen: set[int] = field(default_factory=set)
    vector_mismatches: list[int] = field(default_factory=list)  # sampled ids Get changed


class LiveIds:
    """The client's live ids: a random one, and the oldest ones, cheaply at 100k+ ids.

    Deleted ids stay in `order` until half of it is dead (then it is rebuilt), so a random
    pick takes two tries on average and the oldest live id is found from a moving head.
    """

    def __init__(self) -> None:
        self.order: list[int] = []
        self.live: set[int] = set()
        self.head = 0

    def __len__(self) -> int:
        return len(self.live)

    def add(self, ids: list[int]) -> None:
        self.order += [i for i in ids if i not in self.live]
        self.live.update(ids)

    def remove(self, ids: list[int]) -> None:
        self.live.difference_update(ids)
        if len(self.order) > 64 and len(self.live) < len(self.order) // 2:
            self.order = [i for i in self.order if i in self.live]
            self.head = 0

    def random(self, rng: random.Random, count: int) -> list[int]:
        picked: set[int] = set()
        count = min(count, len(self.live))
        while len(picked) < count:
            candidate = self.order[rng.randrange(len(self.order))]
            if candidate in self.live:
                picked.add(candidate)
        return list(picked)

    def oldest(self, count: int) -> list[int]:
        while self.head < len(self.order) and self.order[self.head] not in self.live:
            self.head += 1
        found: list[int] = []
        i = self.head
        while len(found) < min(count, len(self.live)):
            if self.order[i] in self.live:
                found.append(self.order[i])
            i += 1
        return found


class Worker:
    """The loop of one client: pick an operation by weight, call, record."""

    def __init__(
        self, plan: ClientPlan, client: FaceSearchClient, progress: Any, deadline: float
    ) -> None:
        self.plan, self.client, self.progress, self.deadline = plan, client, progress, deadline
        self.out = ClientOutcome(plan.number, plan.label)
        self.rng = random.Random(plan.seed)
        self.np_rng = np.random.default_rng(plan.seed)
        self.shape = face_shape()
        self.centres = self.shape.mean + self.shape.draw(self.np_rng, PEOPLE, BETWEEN_PEOPLE)
        self.live = LiveIds()
        self.calls: dict[str, Callable[[], tuple[str, int]]] = {
            "add": self.add,
            "query": self.query,
            "get": self.get,
            "delete": self.delete,
            "save": self.save,
            "compact": self.compact,
        }

    def loop(self) -> ClientOutcome:
        names, weights = list(WEIGHTS), list(WEIGHTS.values())
        while time.time() < self.deadline:
            name = self.rng.choices(names, weights)[0]
            if name == "delete" and not self.live:
                name = "add"  # nothing of its own to delete yet
            self.timed(name, self.calls[name])
        return self.out

    def timed(self, name: str, call: Callable[[], tuple[str, int]]) -> str:
        start = time.time()
        try:
            outcome, rows = call()
        except FaceSearchError as error:
            outcome, rows = error.code.name, 0
            self.example(outcome, f"{name} at {start:.3f}: {error.details}")
        self.out.records.append((name, start, time.time(), outcome, rows))
        self.progress[self.plan.number] += 1
        return outcome

    def example(self, kind: str, message: str) -> None:
        kept = self.out.examples.setdefault(kind, [])
        if len(kept) < EXAMPLES_PER_KIND:
            kept.append(message)

    def add(self) -> tuple[str, int]:
        count = self.rng.randint(1, 200)
        cap = self.plan.live_cap
        if cap is not None and len(self.live) + count > cap:
            # Make room first, as its own recorded delete, so live rows stay bounded.
            excess = len(self.live) + count - cap
            if self.timed("delete", lambda: self.delete_ids(self.live.oldest(excess))) != "ok":
                return "skipped", 0
        vectors = people_photos(self.shape, self.centres, self.np_rng, count)
        results = self.client.add_vectors(vectors, labels=[self.plan.label] * count)
        added: list[int] = []
        for row, result in enumerate(results):
            if result.error is not None:
                self.example(result.error.code_name, f"add item: {result.error.message}")
                return result.error.code_name, 0
            assert result.id is not None
            added.append(result.id)
            if result.id % SAMPLE_EVERY == 0:
                self.out.sample[result.id] = vectors[row].tobytes()
        self.out.acknowledged.update(added)
        self.live.add(added)
        return "ok", count

    def query(self) -> tuple[str, int]:
        vector = people_photos(self.shape, self.centres, self.np_rng, 1)[0]
        result = self.client.query(vector=vector, k=K)
        neighbours = [n.id for r in result.results for n in r.neighbors]
        self.out.deleted_seen.update(self.out.deleted.intersection(neighbours))
        if len(neighbours) < K:
            self.example("short", f"query at {time.time():.3f}: {len(neighbours)} of {K}")
            return "short", len(neighbours)
        return "ok", len(neighbours)

    def get(self) -> tuple[str, int]:
        if self.live:
            id = self.live.random(self.rng, 1)[0]
        else:
            id = self.rng.choice(self.plan.preload_ids)
        item = self.client.get(id)
        if (
            id in self.out.sample
            and item.vector.astype(np.float32).tobytes() != self.out.sample[id]
        ):
            self.out.vector_mismatches.append(id)
            return "vector-mismatch", 1
        return "ok", 1

    def delete(self) -> tuple[str, int]:
        return self.delete_ids(self.live.random(self.rng, self.rng.randint(1, 10)))

    def delete_ids(self, ids: list[int]) -> tuple[str, int]:
        # Until the answer comes the outcome is unknown: a failed Delete may or may not
        # have reached the log, so its ids leave both checks.
        self.live.remove(ids)
        try:
            deleted = self.client.delete(ids)
        except FaceSearchError:
            self.out.unknown.update(ids)
            raise
        self.out.deleted.update(ids)
        if deleted != len(ids):
            self.example("delete-count", f"delete of {len(ids)} own live ids said {deleted}")
            return "delete-count", deleted
        return "ok", deleted

    def save(self) -> tuple[str, int]:
        return "ok", self.client.save().count

    def compact(self) -> tuple[str, int]:
        start = time.time()
        result = self.client.compact()
        if not result.skipped:
            self.out.rebuilds.append((start, time.time()))
        else:
            self.out.skipped_compactions += 1
            self.out.skip_reason = result.skipped
        return "ok", result.removed


def client_main(plan: ClientPlan, out_path: str, progress: Any, started: Any) -> None:
    """A client process's entry point: the loop, then its outcome pickled to `out_path`.

    `progress` is a shared array of call counts, one slot per client, for the parent's
    progress line. `started` is a barrier the parent and every client pass once all are
    connected, so that process start-up (seconds, for imports) is not part of the run.
    """
    with FaceSearchClient(plan.address, timeout=CALL_TIMEOUT_S) as client:
        client.wait_ready(timeout=60)
        worker = Worker(plan, client, progress, 0.0)
        started.wait(timeout=300)
        worker.deadline = time.time() + plan.seconds
        outcome = worker.loop()
    Path(out_path).write_bytes(pickle.dumps(outcome))
