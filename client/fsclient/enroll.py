"""`fsclient add`: stream local files to the server and account for every item."""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace

import numpy as np

from fsclient.client import FaceSearchClient
from fsclient.format import AddOutcome
from fsclient.progress import ProgressBar
from fsclient.sources import Source, local_item_error, read_source
from fsclient.types import AddItem, AddResult

# Images cost the server ~0.5 s each, so small batches keep the progress bar moving;
# raw vectors are cheap and want large batches (one index insert per batch).
DEFAULT_IMAGE_BATCH = 8
DEFAULT_VECTOR_BATCH = 1000
# The same photo embeds to the same vector: stored twice, the two are this close (0 but
# for rounding in cosine space). Another photo of the same person is ~0.3 away.
SAME_FACE_DISTANCE = 1e-5


@dataclass(frozen=True)
class EnrollOptions:
    label: str | None = None  # one label for every item
    label_from_dir: bool = False
    metadata: str = ""
    id: int | None = None
    batch_size: int | None = None  # None: the per-kind defaults above
    keep_outcomes: bool = False  # every item's outcome, for --json (else failures only)
    skip_existing: bool = False  # a photo whose face is enrolled already is not kept


class Enrollment:
    """Streams sources to the server and pairs each acknowledged result with its source.

    gRPC pulls the request iterator on its own thread, so the names of sent items wait in
    a FIFO until their results come back. A file that vanished since it was listed fails
    alone, locally, instead of ending the whole stream.
    """

    def __init__(self, options: EnrollOptions) -> None:
        self.options = options
        self.added = 0
        self.last_id: int | None = None
        self.failures: list[AddOutcome] = []
        self.duplicates: list[AddOutcome] = []  # faces enrolled already (skipped or not)
        self.outcomes: list[AddOutcome] = []
        self._pending: deque[tuple[str, str]] = deque()
        self._local_failures: list[AddOutcome] = []
        self._reported_local = 0

    def label(self, source: Source, row: int) -> str:
        if source.label is not None:
            return source.label
        if self.options.label is not None:
            return self.options.label
        if self.options.label_from_dir:
            return source.path.absolute().parent.name
        return source.name(row)

    def items(self, sources: Sequence[Source]) -> Iterator[AddItem]:
        item_id = self.options.id
        for source in sources:
            metadata = self.options.metadata if source.metadata is None else source.metadata
            try:
                content = read_source(source)
            except (OSError, ValueError) as error:
                result = AddResult(id=None, error=local_item_error(error))
                self._local_failures.append(AddOutcome(source.shown, "", result))
                continue
            if isinstance(content, bytes):
                label = self.label(source, 0)
                self._pending.append((source.shown, label))
                yield AddItem(image=content, label=label, id=item_id, metadata=metadata)
                continue
            for row, vector in enumerate(content):
                label = self.label(source, row)
                self._pending.append((source.name(row), label))
                yield AddItem(
                    vector=np.array(vector, dtype=np.float32),  # a copy off the mmap
                    label=label,
                    id=item_id,
                    metadata=metadata,
                )

    def _record(self, outcome: AddOutcome) -> None:
        if outcome.duplicate_of is not None:
            self.duplicates.append(outcome)
        if outcome.skipped:
            pass  # neither added nor failed: counted in duplicates
        elif outcome.result.ok:
            self.added += 1
            self.last_id = outcome.result.id
        else:
            self.failures.append(outcome)
        if self.options.keep_outcomes:
            self.outcomes.append(outcome)

    def _take_local_failures(self) -> int:
        new = self._local_failures[self._reported_local :]
        self._reported_local += len(new)
        for outcome in new:
            self._record(outcome)
        return len(new)

    def run(self, client: FaceSearchClient, sources: Sequence[Source], bar: ProgressBar) -> None:
        """Add everything; FaceSearchError if the stream breaks (what got in stays counted)."""
        # One stream per run of same-kind files: each kind gets its own batch size, and
        # the enrolment order (hence server-assigned ids) stays the order given.
        for is_vectors, group in itertools.groupby(sources, key=lambda s: s.is_vectors):
            default = DEFAULT_VECTOR_BATCH if is_vectors else DEFAULT_IMAGE_BATCH
            batch_size = self.options.batch_size or default
            for batch in client.add(self.items(list(group)), batch_size=batch_size):
                for result in batch:
                    source, label = self._pending.popleft()
                    self._record(self._checked(client, AddOutcome(source, label, result)))
                bar.update(len(batch) + self._take_local_failures())
        bar.update(self._take_local_failures())

    def _checked(self, client: FaceSearchClient, outcome: AddOutcome) -> AddOutcome:
        """The outcome, with the item that held this face already if there is one.

        Adding a photo twice stores it twice, silently, and then every query finds it twice
        over. Only photos are looked at (a search by the new id, well under a millisecond
        beside the ~0.1 s it took to embed); raw vectors go by in thousands and are left be.
        """
        result = outcome.result
        if result.id is None or result.face is None:
            return outcome
        found = client.query(id=result.id, k=2)
        same = [
            n
            for matches in found.results
            for n in matches.neighbors
            if n.id != result.id and n.distance <= SAME_FACE_DISTANCE
        ]
        if not same:
            return outcome
        if not self.options.skip_existing:
            return replace(outcome, duplicate_of=same[0])
        # Taken back out: a check before the add would embed every photo twice.
        client.delete([result.id])
        kept = replace(result, id=same[0].id)
        return replace(outcome, result=kept, duplicate_of=same[0], skipped=True)
