"""The Add path of the engine: a batch of images, vectors and packed rows → stored items.

Split from engine.py (the Collection inherits it) so each stays readable: this is where an Add
batch is checked, its images embedded (in the worker pool, all at once, while the previous
batch is stored: see pipeline.py), its packed rows validated in one numpy pass, and the
result handed to the index backend, which logs it to the WAL before applying it.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from concurrent.futures import Future

from fsclient.types import AddItem, AddResult, FloatArray, ItemError, VectorRows
from fsserver.admission import Alive, EmbedQueue, always_alive
from fsserver.collection.pipeline import CheckedRows, PendingAdd
from fsserver.config import Config
from fsserver.errors import (
    Cancelled,
    FaceSearchError,
    FailedPrecondition,
    InvalidArgument,
    ResourceExhausted,
)
from fsserver.faces.embedder import DetectedFace, Faces
from fsserver.faces.pool import EmbedPool
from fsserver.storage.backend import IndexBackend, add_records
from fsserver.storage.records import Record

log = logging.getLogger(__name__)


def item_error(error: FaceSearchError) -> ItemError:
    return ItemError(error.number, str(error))


class AddPath:
    """Collection's Add methods; the Collection provides what is declared here."""

    config: Config
    embed_queue: EmbedQueue
    _pool: EmbedPool | None

    @property
    def store(self) -> IndexBackend:
        raise NotImplementedError

    def check_vector_model(self, vector_model: str) -> None:
        raise NotImplementedError

    def validate_vector(self, vector: FloatArray) -> FloatArray:
        raise NotImplementedError

    def validate_matrix(self, matrix: FloatArray) -> FloatArray:
        raise NotImplementedError

    def _faces(self, image: bytes) -> Faces:
        raise NotImplementedError

    def _gallery_changed(self) -> None:
        raise NotImplementedError

    def add(
        self, items: Sequence[AddItem], vector_model: str = "", alive: Alive = always_alive
    ) -> list[AddResult]:
        """Store a batch; each item gets its id or its own error, never the whole batch's.

        When this returns, the stored items are in the WAL, fsynced. If the client goes away
        while the batch's images are embedded, nothing of it is stored (Cancelled).
        """
        return self.finish_add(self.begin_add(items, vector_model, alive))

    def begin_add(
        self,
        items: Sequence[AddItem],
        vector_model: str = "",
        alive: Alive = always_alive,
        rows: VectorRows | None = None,
    ) -> PendingAdd:
        """Check a batch, wait for its place in the face model's queue and, with worker
        processes, start embedding all its images at once; finish_add stores it."""
        self.check_vector_model(vector_model)  # Unavailable while the server loads
        checked = self._check_rows(rows) if rows is not None else None
        total = len(items) + (checked.total if checked else 0)
        if total > self.config.max_batch_items:
            raise ResourceExhausted(
                f"a batch holds {total} items; the limit is {self.config.max_batch_items} "
                "(--max-batch-items)"
            )
        pending = PendingAdd(items, alive, checked)
        if any(item.image is not None for item in items):
            pending.admission.enter_context(self.embed_queue.admit(wait=True, alive=alive))
            if self._pool is not None:
                try:
                    pending.jobs = [self._submit(item, self._pool) for item in items]
                except BaseException:
                    pending.abandon()
                    raise
        return pending

    def _submit(self, item: AddItem, pool: EmbedPool) -> Future[Faces] | None:
        if item.image is None:
            return None
        try:
            self._check_sizes(item.label, item.metadata)
        except FaceSearchError:
            return None  # refused again, as its own error, when the batch is stored
        return pool.submit(item.image)

    def finish_add(self, pending: PendingAdd) -> list[AddResult]:
        """Wait for the batch's images and store it (see add)."""
        store = self.store
        items = pending.items
        try:
            prepared = self._prepare(pending)
        finally:
            pending.abandon()  # the queue's place is free once the images are embedded
        results: list[AddResult] = []
        vectors: list[FloatArray] = []
        ids: list[int | None] = []
        records: list[Record] = []
        waiting: list[tuple[int, DetectedFace | None, int]] = []  # result slot, face, faces
        for item, outcome in zip(items, prepared, strict=True):
            if isinstance(outcome, FaceSearchError):
                results.append(AddResult(id=None, error=item_error(outcome)))
                continue
            vector, subject, faces_found = outcome
            thumbnail = subject.thumbnail if subject else b""
            vectors.append(vector)
            ids.append(item.id)
            records.append(Record(item.label, item.metadata, thumbnail))
            waiting.append((len(results), subject, faces_found))
            results.append(AddResult(id=None))  # filled in once the index has stored it
        stored_outcomes = add_records(store, vectors, ids, records)
        for (slot, subject, faces_found), stored in zip(waiting, stored_outcomes, strict=True):
            if isinstance(stored, FaceSearchError):
                results[slot] = AddResult(id=None, error=item_error(stored))
            else:
                face = subject.face if subject else None
                results[slot] = AddResult(id=stored, face=face, faces_found=faces_found)
        if pending.rows is not None:
            results += self._store_rows(pending.rows)
        self._gallery_changed()
        return results

    def _check_rows(self, rows: VectorRows) -> CheckedRows:
        """Shape packed rows by the index's dim and check each; a malformed block as a whole
        (a partial row, a column of the wrong length) is InvalidArgument for the batch."""
        dim = self.store.contract.dim
        total = len(rows.vectors)
        for name, column in (
            ("labels", rows.labels),
            ("ids", rows.ids),
            ("metadata", rows.metadata),
        ):
            if len(column) not in (0, total):
                raise InvalidArgument(f"rows hold {total} vectors but {len(column)} {name}")
        matrix = rows.vectors
        labels = list(rows.labels) or [""] * total
        metadata = list(rows.metadata) or [""] * total
        errors: dict[int, ItemError] = {}
        if matrix.shape[1] != dim:
            wrong = item_error(
                InvalidArgument(
                    f"vector has dimension {matrix.shape[1]}, this index holds dimension {dim}"
                )
            )
            errors = dict.fromkeys(range(total), wrong)
        else:
            try:
                self.validate_matrix(matrix)
            except InvalidArgument:  # which rows, and why (the slow path: bad batches only)
                for position, row in enumerate(matrix):
                    try:
                        self.validate_vector(row)
                    except InvalidArgument as error:
                        errors[position] = item_error(error)
        # UTF-8 takes at most 4 bytes a character, so most batches skip encoding each row.
        longest = 4 * max(map(len, labels), default=0), 4 * max(map(len, metadata), default=0)
        if longest[0] > self.config.max_label_bytes or longest[1] > self.config.max_metadata_bytes:
            for position, (label, text) in enumerate(zip(labels, metadata, strict=True)):
                try:
                    self._check_sizes(label, text)
                except InvalidArgument as error:
                    errors.setdefault(position, item_error(error))
        ids: list[int | None] = list(rows.ids) or [None] * total
        if not errors:
            return CheckedRows(matrix, list(range(total)), ids, labels, metadata, {}, total)
        kept = [p for p in range(total) if p not in errors]
        return CheckedRows(
            matrix[kept],
            kept,
            [ids[p] for p in kept],
            [labels[p] for p in kept],
            [metadata[p] for p in kept],
            errors,
            total,
        )

    def _store_rows(self, rows: CheckedRows) -> list[AddResult]:
        results = [AddResult(id=None)] * rows.total  # every slot is filled below
        for position, error in rows.errors.items():
            results[position] = AddResult(id=None, error=error)
        if rows.positions:
            stored = self.store.add_rows(
                rows.vectors,
                ids=rows.ids,
                labels=rows.labels,
                metadata=rows.metadata,
                thumbnails=[b""] * len(rows.positions),
            )
            for position, outcome in zip(rows.positions, stored, strict=True):
                if isinstance(outcome, FaceSearchError):
                    results[position] = AddResult(id=None, error=item_error(outcome))
                else:
                    results[position] = AddResult(id=outcome)
        return results

    def _prepare(
        self, pending: PendingAdd
    ) -> list[tuple[FloatArray, DetectedFace | None, int] | FaceSearchError]:
        items = pending.items
        prepared: list[tuple[FloatArray, DetectedFace | None, int] | FaceSearchError] = []
        for position, item in enumerate(items):
            if item.image is not None and not pending.embedded(position):
                log.info(
                    "Add: the client went away after %d of %d items; the batch is not stored",
                    position,
                    len(items),
                )
                raise Cancelled("the client cancelled or its deadline passed")
            try:
                self._check_sizes(item.label, item.metadata)
                job = pending.jobs[position] if pending.jobs else None
                prepared.append(self._item_vector(item, job))
            except FaceSearchError as error:
                prepared.append(error)
            except Exception as error:  # a model failure on one odd image spares the stream
                log.exception("embedding item %d of a batch failed", position)
                prepared.append(FaceSearchError(f"embedding failed: {error}"))
        return prepared

    def _check_sizes(self, label: str, metadata: str) -> None:
        for what, text, limit, flag in (
            ("label", label, self.config.max_label_bytes, "--max-label-bytes"),
            ("metadata", metadata, self.config.max_metadata_bytes, "--max-metadata-bytes"),
        ):
            size = len(text.encode("utf-8"))
            if size > limit:
                raise InvalidArgument(f"the {what} is {size} bytes; the limit is {limit} ({flag})")

    def _item_vector(
        self, item: AddItem, job: Future[Faces] | None = None
    ) -> tuple[FloatArray, DetectedFace | None, int]:
        """The vector to store, and for images the enrolled face and how many were found
        (from the pool's `job` when the image was submitted to it)."""
        if item.vector is not None:
            return self.validate_vector(item.vector), None, 0
        if item.image is None:
            raise InvalidArgument("the item has neither an image nor a vector")
        faces = job.result() if job is not None else self._faces(item.image)
        if not faces:
            raise FailedPrecondition("no face was found in the image")
        subject = faces[0]  # the largest face
        return self.validate_vector(subject.face.embedding), subject, len(faces)
