"""Recall you can trust: the default query ef, calibrated on the index's own vectors.

HNSW's recall at a given ef depends on the data and the index size: Voyager's default ef 10
gives recall@10 near 0.84 on 100k face-like vectors and near 0.07 on uniform random ones.
So the server measures instead of guessing. It needs queries like the ones it will get, a
new photo of a known person: near stored vectors, but not on them. A stored vector itself
is too easy (the graph walk lands on its own node: leave-one-out recall read 0.995 where new
photos got 0.982), and noise in a random direction barely moves the ranking (most of its
length falls where faces do not vary). So each sampled vector x is moved by the difference
of its two nearest stored neighbours, (n1 - n2) / sqrt(2): a step along the directions the
data varies in, as long as the step between two photos of one person. On face-like data
this tracked the recall of held-out photos within 0.003 (ef 24..128, 100k vectors).

The exact neighbours of these queries come from brute force; the default ef becomes the
smallest on a grid of ~25% steps whose recall@10 reaches the target less two standard
errors. It is measured again as the index grows or shrinks by half, once writes pause: no
Add stream open (`writing`) and no change for half a second, however slow a stream's
batches are. A bulk load is not slowed, and a measurement never counts rows added under it
as misses; one that a write invalidated anyway is dropped quietly and taken again.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from fsserver.storage import exact
from fsserver.storage.heap import release_free_memory

if TYPE_CHECKING:
    from fsserver.storage.index import FaceIndex

log = logging.getLogger(__name__)

# Roughly 25% steps: each is a few percent slower than the one before it.
EF_GRID = tuple(sorted({int(10 * 1.25**i) for i in range(30)}))
K = 10  # recall@10, the figure people quote
# Standard errors the estimate must clear the target by: with one, 1M face-like vectors got
# ef 181, estimated 0.992, and held-out photos then measured 0.9885.
MARGIN = 2.0
SAMPLE = 300  # queries per measurement: recall 0.99 is known to about ±0.002
MIN_ITEMS = 100  # below this the graph is searched almost exhaustively anyway
REGROW = 1.5  # measure again once the index is this many times larger (or smaller)
# Measuring waits for writes to pause: a bulk load is not slowed, and rows added during a
# measurement would be found by the graph but missing from its brute-force truth, reading
# as misses (a 1M load measured mid-stream pushed ef to the top of the grid, and batches
# slower than the pause were taken for the load's end: seven bogus warnings in one load).
QUIET_SECONDS = 0.5
CLOSE_WAIT_SECONDS = 5.0  # what close() waits for a measurement in progress to end


@dataclass(frozen=True)
class Calibration:
    ef: int  # the default ef now in force
    recall: float  # estimated recall@10 at that ef
    measured_at: int  # live items when measured
    seconds: float
    reached: bool = True  # whether some ef of the grid reached the target


def measure(index: FaceIndex, target: float, seed: int = 0) -> Calibration:
    """The smallest grid ef whose recall@10 on a sample of the index reaches `target`."""
    started = time.perf_counter()
    count = index.count
    ids, sampled = index.sample(min(SAMPLE, count), np.random.default_rng(seed))
    k = min(K, count)
    cosine = index.contract.space == "cosine"
    nearest, _ = exact.nearest(sampled, 3, index.live_chunks(), cosine=cosine)
    first, second = _two_others(nearest, ids)
    steps = (index.vectors_of(first) - index.vectors_of(second)) / np.sqrt(2.0)
    queries = (sampled + steps).astype(np.float32)
    truth, _ = exact.nearest(queries, k, index.live_chunks(), cosine=cosine)
    slots = truth.size
    chosen, recall, reached = EF_GRID[-1], 0.0, False
    for ef in EF_GRID:
        found, _ = index.search(queries, k, ef=ef)
        recall = _recall(found, truth)
        error = math.sqrt(max(recall * (1 - recall), 1 / slots) / slots)
        if recall - MARGIN * error >= target or ef >= count:
            chosen, reached = ef, True
            break
    return Calibration(chosen, recall, count, time.perf_counter() - started, reached)


def _two_others(
    nearest: npt.NDArray[np.uint64], own: npt.NDArray[np.uint64]
) -> tuple[npt.NDArray[np.uint64], npt.NDArray[np.uint64]]:
    """Each row's two nearest ids other than its own (of its three nearest)."""
    others = [
        [i for i in row if i != id][:2]
        for row, id in zip(nearest.tolist(), own.tolist(), strict=True)
    ]
    return np.array([o[0] for o in others], np.uint64), np.array([o[-1] for o in others], np.uint64)


def _recall(found: npt.NDArray[np.uint64], truth: npt.NDArray[np.uint64]) -> float:
    hits = sum(len(set(f) & set(t)) for f, t in zip(found.tolist(), truth.tolist(), strict=True))
    return hits / max(truth.size, 1)


class RecallCalibrator:
    """Keeps `index.default_ef` at the smallest ef reaching `target`, in a background thread."""

    def __init__(self, index: FaceIndex, target: float) -> None:
        self._index = index
        self.target = target
        self.latest: Calibration | None = None
        self._wake = threading.Event()
        self._closed = False
        self._writers = 0  # Add streams open: writing, however long between their batches
        self._writers_lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="recall-calibration", daemon=True)
        self._thread.start()
        self.note_change()

    def note_change(self) -> None:
        """Called after writes: wakes the calibration when the index has grown enough."""
        count = self._index.count
        if count < MIN_ITEMS:
            return
        last = self.latest.measured_at if self.latest else 0
        if not last or count >= last * REGROW or count * REGROW <= last:
            self._wake.set()

    @contextmanager
    def writing(self) -> Iterator[None]:
        """Held by an Add stream while it is open: no measurement starts meanwhile."""
        with self._writers_lock:
            self._writers += 1
        try:
            yield
        finally:
            with self._writers_lock:
                self._writers -= 1

    def close(self) -> None:
        self._closed = True
        self._wake.set()
        # Joined so that its hold on the index goes before the interpreter exits (Voyager's
        # bindings print a leak warning at exit otherwise, breaking a JSON log). A measurement
        # in progress runs on, in a daemon thread, rather than holding up the shutdown.
        self._thread.join(timeout=CLOSE_WAIT_SECONDS)

    def _run(self) -> None:
        while True:
            self._wake.wait()
            if self._closed:
                return
            self._wait_for_quiet()
            self._wake.clear()
            version = self._index.version
            try:
                calibration = measure(self._index, self.target)
            except Exception:  # never take the server down; the previous ef stays
                if self._index.version != version:
                    # Items it sampled were deleted or compacted away meanwhile.
                    log.debug("the index changed under a recall measurement; measuring again")
                    self._wake.set()
                else:
                    log.exception("recall calibration failed; the default ef stays")
                continue
            finally:
                release_free_memory()  # the brute force's distance blocks (tens of MB)
            if self._index.version != version:
                # Writes invalidated it (a miss may be a row added mid-measurement): quietly.
                log.debug("the index changed while recall was measured; measuring again")
                self._wake.set()
                continue
            self._index.default_ef = calibration.ef
            self.latest = calibration
            if not calibration.reached:  # only a finished, valid measurement warns
                log.warning(
                    "recall@10 reaches only %.4f at ef %d, short of the target %.4f: this "
                    "data is hard for HNSW at these build settings (raise --m / "
                    "--ef-construction)",
                    calibration.recall,
                    calibration.ef,
                    self.target,
                )
            log.info(
                "default ef %d: estimated recall@10 %.4f (target %.4f) over %d items, "
                "measured in %.1fs",
                calibration.ef,
                calibration.recall,
                self.target,
                calibration.measured_at,
                calibration.seconds,
            )
            self.note_change()  # it may have grown a lot meanwhile

    def _wait_for_quiet(self) -> None:
        """Until no Add stream is open and nothing has changed for QUIET_SECONDS."""
        version = self._index.version
        while not self._closed:
            time.sleep(QUIET_SECONDS)
            if self._index.version == version and not self._writers:
                return
            version = self._index.version
