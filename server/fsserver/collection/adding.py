"""The Add path of a collection: a batch of images, vectors and packed rows → stored items.

This is where an Add
batch is checked, its images embedded (in the worker pool, all at once, while the previous
batch is stored: see pipeline.py), its packed rows validated in one numpy pass, and the
result handed to the index backend, which logs it to the WAL before applying it.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from concurrent.futures import Future
from typing import TYPE_CHECKING

import numpy as np

from fsclient.types import AddItem, AddResult, FloatArray, ItemError, RowOutcomes, VectorRows
from fsserver.admission import Alive, always_alive
from fsserver.collection.pipeline import CheckedRows, PendingAdd
from fsserver.errors import (
    Cancelled,
    FailedPrecondition,
    InvalidArgument,
    ResourceExhausted,
    ServiceError,
)
from fsserver.faces.embedder import DetectedFace, Faces
from fsserver.faces.pool import EmbedPool
from fsserver.storage.rows import Rows

if TYPE_CHECKING:
    from fsserver.collection.collection import Collection

log = logging.getLogger(__name__)


def item_error(error: ServiceError) -> ItemError:
    return ItemError(error.number, str(error))


class Adder:
    """A collection's Add path (the collection holds one as `adder`)."""

    def __init__(self, collection: Collection) -> None:
        self._collection = collection
        self.config = collection.config

    def add(
        self, items: Sequence[AddItem], vector_model: str = "", alive: Alive = always_alive
    ) -> list[AddResult]:
        """Store a batch; each item gets its id or its own error, never the whole batch's.

        When this returns, the stored items are in the WAL, fsynced. If the client goes away
        while the batch's images are embedded, nothing of it is stored (Cancelled).
        """
        items_done, rows_done = self.finish_add(self.begin_add(items, vector_model, alive))
        return items_done + (rows_done.results() if rows_done else [])

    def begin_add(
        self,
        items: Sequence[AddItem],
        vector_model: str = "",
        alive: Alive = always_alive,
        rows: VectorRows | None = None,
    ) -> PendingAdd:
        """Check a batch, wait for its place in the face model's queue and, with worker
        processes, start embedding all its images at once; finish_add stores it."""
        self._collection.check_vector_model(vector_model)  # Unavailable while the server loads
        checked = self._check_rows(rows) if rows is not None else None
        total = len(items) + (checked.total if checked else 0)
        if total > self.config.max_batch_items:
            raise ResourceExhausted(
                f"a batch holds {total} items; the limit is {self.config.max_batch_items} "
                "(--max-batch-items)"
            )
        pending = PendingAdd(items, alive, checked)
        if any(item.image is not None for item in items):
            pending.admission.enter_context(
                self._collection.embed_queue.admit(wait=True, alive=alive)
            )
            if self._collection.embed_pool is not None:
                try:
                    pending.jobs = [
                        self._submit(item, self._collection.embed_pool) for item in items
                    ]
                except BaseException:
                    pending.abandon()
                    raise
        return pending

    def _submit(self, item: AddItem, pool: EmbedPool) -> Future[Faces] | None:
        if item.image is None:
            return None
        try:
            self._check_sizes(item.label, item.metadata)
        except ServiceError:
            return None  # refused again, as its own error, when the batch is stored
        return pool.submit(item.image)

    def finish_add(self, pending: PendingAdd) -> tuple[list[AddResult], RowOutcomes | None]:
        """Wait for the batch's images and store it (see add): the items' results, and
        what became of its packed rows (None without rows)."""
        store = self._collection.store
        items = pending.items
        try:
            prepared = self._prepare(pending)
        finally:
            pending.abandon()  # the queue's place is free once the images are embedded
        results: list[AddResult] = []
        vectors: list[FloatArray] = []
        kept: list[AddItem] = []
        thumbnails: list[bytes] = []
        waiting: list[tuple[int, DetectedFace | None, int]] = []  # result slot, face, faces
        keep_thumbnails = self._collection.config.thumbnails  # --no-thumbnails: none kept
        for item, outcome in zip(items, prepared, strict=True):
            if isinstance(outcome, ServiceError):
                results.append(AddResult(id=None, error=item_error(outcome)))
                continue
            vector, subject, faces_found = outcome
            vectors.append(vector)
            kept.append(item)
            thumbnails.append(subject.thumbnail if subject and keep_thumbnails else b"")
            waiting.append((len(results), subject, faces_found))
            results.append(AddResult(id=None))  # filled in once the index has stored it
        stored_outcomes = []
        if kept:
            rows = Rows(
                np.stack(vectors),
                [item.id for item in kept],
                [item.label for item in kept],
                [item.metadata for item in kept],
                thumbnails,
            )
            stored_outcomes = store.add_rows(rows)
        for (slot, subject, faces_found), stored in zip(waiting, stored_outcomes, strict=True):
            if isinstance(stored, ServiceError):
                results[slot] = AddResult(id=None, error=item_error(stored))
            else:
                face = subject.face if subject else None
                results[slot] = AddResult(id=stored, face=face, faces_found=faces_found)
        packed = self._store_rows(pending.rows) if pending.rows is not None else None
        self._collection.people.gallery_changed()
        return results, packed

    def _check_rows(self, rows: VectorRows) -> CheckedRows:
        """Shape packed rows by the index's dim and check each; a malformed block as a whole
        (a partial row, a column of the wrong length) is InvalidArgument for the batch."""
        dim = self._collection.store.contract.dim
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
                self._collection.validate_matrix(matrix)
            except InvalidArgument:  # which rows, and why (the slow path: bad batches only)
                for position, row in enumerate(matrix):
                    try:
                        self._collection.validate_vector(row)
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
        checked = Rows.of(matrix, ids=ids, labels=labels, metadata=metadata)
        kept = [p for p in range(total) if p not in errors]
        return CheckedRows(checked.take(kept), kept, errors, total)

    def _store_rows(self, rows: CheckedRows) -> RowOutcomes:
        """Packed rows stay packed: an id per row (0 when refused) and the errors by
        position, with no per-row object (a bulk load's 1000-row batch would otherwise
        build and convert 1000 results)."""
        ids = [0] * rows.total
        errors = dict(rows.errors)
        if rows.positions:
            stored = self._collection.store.add_rows(rows.rows)
            for position, outcome in zip(rows.positions, stored, strict=True):
                if isinstance(outcome, ServiceError):
                    errors[position] = item_error(outcome)
                else:
                    ids[position] = outcome
        return RowOutcomes(ids, errors)

    def _prepare(
        self, pending: PendingAdd
    ) -> list[tuple[FloatArray, DetectedFace | None, int] | ServiceError]:
        items = pending.items
        prepared: list[tuple[FloatArray, DetectedFace | None, int] | ServiceError] = []
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
            except ServiceError as error:
                prepared.append(error)
            except Exception as error:  # a model failure on one odd image spares the stream
                log.exception("embedding item %d of a batch failed", position)
                prepared.append(ServiceError(f"embedding failed: {error}"))
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
            return self._collection.validate_vector(item.vector), None, 0
        if item.image is None:
            raise InvalidArgument("the item has neither an image nor a vector")
        faces = job.result() if job is not None else self._collection.faces_of(item.image)
        if not faces:
            raise FailedPrecondition("no face was found in the image")
        subject = faces[0]  # the largest face
        return self._collection.validate_vector(subject.face.embedding), subject, len(faces)
